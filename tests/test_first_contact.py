"""A new user's first hour (issue 25): a bare ``mixforget`` prints its help, every subcommand's
``--help`` has a description, an objective class passed for an instance names the fix, the
demo shows progress on a terminal only, and the starvation study runs on the user's own
problem in the lines the docs give."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest

import mixforget as mf
from mixforget.cli import build_parser, main, run_demo

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------
def test_bare_mixforget_prints_the_help(capsys):
    assert main([]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: mixforget") and "demo" in out and "bench" in out
    assert "error" not in out + err
    assert main(["--debug"]) == 0  # only a global option: still the help
    assert "usage: mixforget" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["demo", "simulate", "sweep", "bench"])
def test_every_subcommand_help_has_a_description(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    text = sub.format_help()
    body = text.split("\n\n", 1)[1]  # after the usage block
    description = body.split("options:")[0].split("positional arguments:")[0].strip()
    assert command != "bench" or len(description) > 80, text
    if command == "bench":
        assert "Rust" in description and "--quick" in description


@pytest.mark.parametrize(
    "call",
    [
        lambda t: mf.simulate(t, t, mf.ReverseKL, steps=10, replicates=2),
        lambda t: mf.population_gradient(t, t, mf.ForwardKL),
        lambda t: mf.estimate_gradient(t, t, mf.SDFT, batches=2),
        lambda t: mf.studies.starvation(target=t, objective=mf.ReverseKL, replicates=10),
        lambda t: mf.studies.drift_vs_separation([2.0], objective=mf.ReverseKL, replicates=0),
    ],
)
def test_an_objective_class_for_an_instance_names_the_fix(call):
    target = mf.TwoMode([0.0], [3.0], 0.5, 1.0)
    with pytest.raises(TypeError, match=r"did you mean (ReverseKL|ForwardKL|SDFT)\(\)\?"):
        call(target)


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize(
    "tty, progress, shown",
    [(True, None, True), (False, None, False), (False, True, True), (True, False, False)],
)
def test_demo_progress_follows_the_terminal(tmp_path, monkeypatch, tty, progress, shown):
    err = _Stream(tty)
    monkeypatch.setattr("sys.stderr", err)
    run_demo(
        out=tmp_path,
        replicates=4,
        steps=20,
        figures=False,
        stream=io.StringIO(),
        progress=progress,
    )
    text = err.getvalue()
    if not shown:
        assert text == ""
        return
    stages = re.findall(r"mixforget demo \[(\d)/(\d)\] ([^(]+)", text)
    assert [int(k) for k, _, _ in stages] == [1, 2, 3, 4, 5]
    assert {n for _, n, _ in stages} == {"5"}
    assert "training ReverseKL, λ=0.25" in text and "done in" in text
    # rewritten in place on a terminal, one line per stage in a log
    assert ("\r" in text) == tty and text.count("\n") == (1 if tty else 6)


def test_demo_progress_flag_parses():
    parser = build_parser()
    assert parser.parse_args(["demo"]).progress is None
    assert parser.parse_args(["demo", "--progress"]).progress is True
    assert parser.parse_args(["demo", "--no-progress"]).progress is False


# ---------------------------------------------------------------------------------------
# the starvation study on the user's problem
# ---------------------------------------------------------------------------------------
def _docstring_example() -> str:
    """The example of mixforget.studies.starvation's docstring (its indented block)."""
    doc = mf.studies.starvation.__doc__
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    lines = [line[8:] for line in block.splitlines()]
    return "\n".join(lines)


def test_the_documented_starvation_example_runs_in_ten_lines(monkeypatch):
    """'10 000 replicates, B = 8, replay 0.1, my problem, the plot': the lines of the
    docstring (and of tutorial 2), run as written but at 2 000 replicates."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    code = _docstring_example()
    assert "replicates=10_000" in code and "batch_sizes=8" in code and "replay=0.1" in code
    tutorial = (ROOT / "docs" / "tutorials_src" / "tutorial_2_starvation.py").read_text()
    tutorial_lines = {line.strip() for line in tutorial.splitlines()}
    assert all(line.strip() in tutorial_lines for line in code.splitlines())
    lines = ["import mixforget as mf", *code.splitlines()]
    assert len(lines) <= 10
    namespace: dict = {}
    monkeypatch.setattr("builtins.print", lambda *a, **k: namespace.setdefault("printed", a))
    exec("\n".join(lines).replace("replicates=10_000", "replicates=2_000"), namespace)
    study = namespace["study"]
    (row,) = study.rows
    assert row["batch_size"] == 8 and row["replay"] == 0.1 and row["batches"] == 2000
    assert study.settings["problem"] == "user"
    assert study.settings["target"] == namespace["target"].to_dict()
    assert study.settings["start"] == namespace["start"].to_dict()
    # the user's problem starves at B = 8: (1 − 0.05)^8 ≈ 0.66
    assert row["predicted_onpolicy"] == pytest.approx(0.95**8, rel=1e-12)
    assert abs(row["z_onpolicy"]) < 5 and abs(row["z_replay"]) < 5
    assert "your problem" in namespace["printed"][0]


def test_starvation_uses_the_users_target_and_start():
    target = mf.TwoMode(old_mean=[-2.0, 0.0], new_mean=[2.0, 1.0], old_weight=0.3, cov=1.0)
    start = target.replace(new_mean=[0.0, 1.0], old_weight=0.1)
    study = mf.studies.starvation(
        target=target, start=start, batch_sizes=[4, 8], replay=[0.0, 0.25], replicates=4000
    )
    assert len(study.rows) == 4
    for r in study.rows:
        assert r["old_weight"] == 0.1  # the start's α: the batches come from the model
        assert r["predicted_onpolicy"] == pytest.approx(0.9 ** r["batch_size"], rel=1e-12)
    # the population gradient is the user's problem's, not a built-in one's
    grad = mf.population_gradient(target, start, mf.ReverseKL())
    assert study.rows[0]["population_onpolicy"] == pytest.approx(grad["old_mean"][0], rel=1e-12)
    # old_weights replaces the model's α, one setting per value
    by_alpha = mf.studies.starvation(
        [0.05, 0.2], 8, 0.1, target=target, start=start, replicates=2000
    )
    assert [r["old_weight"] for r in by_alpha.rows] == [0.05, 0.2]
    # without a start, the model is the target itself
    at_target = mf.studies.starvation(target=target, batch_sizes=8, replay=0.1, replicates=500)
    assert at_target.rows[0]["old_weight"] == 0.3
    assert abs(at_target.rows[0]["population_onpolicy"]) < 1e-10


def test_starvation_arguments_that_do_not_fit_the_problem_are_refused():
    target = mf.TwoMode([0.0], [3.0], 0.2, 1.0)
    with pytest.raises(ValueError, match="separation"):
        mf.studies.starvation(target=target, separation=3.0, replicates=10)
    with pytest.raises(ValueError, match="start needs its target"):
        mf.studies.starvation(start=target, replicates=10)
    with pytest.raises(ValueError, match="same number"):
        mf.studies.starvation(replicates=10, batches=20)
    with pytest.raises(TypeError, match="TwoMode"):
        mf.studies.starvation(target="p*", replicates=10)


def test_starvation_defaults_starve_and_batches_is_the_old_name_of_replicates():
    study = mf.studies.starvation(replicates=3000, rng=5)
    (row,) = study.rows  # α = 0.05, B = 8, λ = 0.25 by default
    assert (row["old_weight"], row["batch_size"], row["replay"]) == (0.05, 8, 0.25)
    assert row["predicted_onpolicy"] > 0.6 and row["measured_onpolicy"] > 0.6
    old = mf.studies.starvation(batches=3000, rng=5)
    assert old.rows[0]["measured_onpolicy"] == row["measured_onpolicy"]
    assert old.rows[0]["var_replay"] == row["var_replay"]


# ---------------------------------------------------------------------------------------
# the starvation figure: one reader of the columns, a theory curve at one batch size
# ---------------------------------------------------------------------------------------
def _curves(ax):
    return [line for line in ax.lines if len(line.get_xdata()) > 3]


def test_starvation_plot_at_one_batch_size_draws_the_theory_against_replay():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    study = mf.studies.starvation(batch_sizes=8, replay=0.1, replicates=2000, old_weights=0.05)
    ax = study.plot(ax=Figure().subplots())
    assert "replay" in ax.get_xlabel()
    (curve,) = _curves(ax)
    x, y = np.asarray(curve.get_xdata()), np.asarray(curve.get_ydata())
    np.testing.assert_allclose(y, ((1 - x) * 0.95) ** 8, rtol=1e-12)
    # the markers sit at λ = 0 (on-policy) and λ = 0.1, not stacked at one x
    xs = sorted(
        float(v)
        for c in ax.containers
        for v in np.asarray(c.lines[0].get_xdata(), dtype=float).ravel()
    )
    assert xs == [0.0, 0.1]


def test_starvation_plot_at_one_batch_size_several_alphas_is_against_alpha():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    study = mf.studies.starvation([0.02, 0.1, 0.3], 8, [0.25], replicates=2000)
    ax = study.plot(ax=Figure().subplots())
    assert "old weight" in ax.get_xlabel()
    curves = _curves(ax)
    assert len(curves) == 2  # λ = 0 (on-policy) and λ = 0.25
    for curve in curves:
        x, y = np.asarray(curve.get_xdata()), np.asarray(curve.get_ydata())
        on = np.allclose(y, (1 - x) ** 8, rtol=1e-12)
        rep = np.allclose(y, (0.75 * (1 - x)) ** 8, rtol=1e-12)
        assert on or rep
    assert "B = 8" in ax.get_title()


def test_study_plot_and_plot_starvation_read_the_same_columns():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from mixforget.plot import plot_starvation

    study = mf.studies.starvation([0.05, 0.1], [4, 8, 16], 0.25, replicates=2000)
    drawn = [
        study.plot(ax=Figure().subplots()),
        plot_starvation(study, ax=Figure().subplots()),
        plot_starvation(study.rows, ax=Figure().subplots()),
        plot_starvation(study.to_pandas(), ax=Figure().subplots())
        if _has_pandas()
        else plot_starvation(study.rows, ax=Figure().subplots()),
    ]
    signatures = [
        sorted((tuple(c.get_xdata()), tuple(np.round(c.get_ydata(), 15))) for c in _curves(ax))
        for ax in drawn
    ]
    assert all(s == signatures[0] for s in signatures)
    assert len(signatures[0]) == 4  # two α colours x (on-policy, replay)
    # the long form it reads: one on-policy row per (α, B) and one replay row per λ > 0
    from mixforget._starvation_plot import starvation_measurements

    cols = starvation_measurements(study)
    assert cols["measured"].size == 2 * len(study.rows)
    assert set(cols["replay"].tolist()) == {0.0, 0.25}
    with pytest.raises(ValueError, match="against must be one of"):
        plot_starvation(study, ax=Figure().subplots(), against="lr")


def _has_pandas() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------
# docs: citations as links, tutorial width, the fitted exponent's caveat, the build backend
# ---------------------------------------------------------------------------------------
def _load(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_citations_become_links_outside_literal_blocks():
    ext = _load(ROOT / "docs" / "_ext" / "docs_links.py", "docs_links")
    lines = [
        "Result (docs: theory-reverse-kl, theory-starvation,",
        "    theory-pred-replay); see docs: api.",
        "",
        "Example::",
        "",
        "    x = 1  # docs: theory-model",
        "",
        "Then docs: theory-model-x, and theory-geometry alone stays text.",
    ]
    ext._process_docstring(None, "function", "f", None, None, lines)
    text = "\n".join(lines)
    for label in ("theory-reverse-kl", "theory-starvation", "theory-pred-replay", "api"):
        assert f":ref:`{label} <{label}>`" in text
    assert "    x = 1  # docs: theory-model" in lines  # the literal block is untouched
    assert ":ref:`theory-model-x <theory-model-x>`" in text
    assert "and theory-geometry alone" in text
    # every package docstring citation is converted (the labels exist: tests/test_docs.py)
    doc = mf.studies.starvation.__doc__
    converted = ext.link_citations(doc)
    assert "docs: theory" not in converted.replace("docs: :ref:", "")


def test_tutorial_code_lines_fit_the_page():
    """Code lines (not the prose blocks, which wrap) stay within 88 characters, so the
    tutorials do not scroll sideways at 1280 px."""
    long = []
    for path in sorted((ROOT / "docs" / "tutorials_src").glob("tutorial_*.py")):
        text = path.read_text(encoding="utf-8")
        body = text.split('"""', 2)[2]  # after the module docstring (prose)
        in_prose = False
        for line in body.splitlines():
            if line.startswith("# %%"):
                in_prose = True
                continue
            in_prose = in_prose and line.startswith("#")
            if not in_prose and len(line) > 88:
                long.append(f"{path.name}: {line}")
    assert not long, "\n".join(long)


def test_fitted_exponent_is_flagged_where_the_drift_is_not_overlap_gated():
    from mixforget.studies.drift_separation import DriftSeparationStudy

    row = {"separation": 5.0, "bhattacharyya": 0.04, "sup_drift_population": 0.02}
    row["ratio_population"] = 0.5
    row.update(sup_drift_batch_mean=0.03, sup_drift_batch_lo=0.02, sup_drift_batch_hi=0.04)
    row["sup_mean_path_drift"] = 0.02
    common = dict(
        rows=[row],
        fit_separations=(5.0, 6.0, 7.0, 8.0),
        slope_population=-0.121,
        slope_population_corrected=-0.124,
        poly_exponent_population=0.23,
        constant_population=0.6,
    )
    gated = DriftSeparationStudy(
        **common, slope_batch=-0.12, slope_batch_corrected=-0.13, poly_exponent_batch=0.5
    )
    flat = DriftSeparationStudy(
        **common, slope_batch=-0.0435, slope_batch_corrected=0.0528, poly_exponent_batch=-8.07
    )
    assert "not meaningful" not in gated.to_markdown()
    text = flat.to_markdown()
    assert text.count("not meaningful") == 1
    assert "(k = -8.07; not meaningful here" in text and "(k = 0.23)" in text


def test_source_build_without_cargo_stops_with_one_line(monkeypatch, tmp_path):
    import sys
    import types

    fake = types.ModuleType("maturin")
    calls = []
    for hook in (
        "build_wheel",
        "build_editable",
        "build_sdist",
        "get_requires_for_build_wheel",
        "get_requires_for_build_editable",
        "get_requires_for_build_sdist",
        "prepare_metadata_for_build_wheel",
        "prepare_metadata_for_build_editable",
    ):
        setattr(fake, hook, lambda *a, _name=hook, **k: calls.append(_name) or _name)
        getattr(fake, hook).__name__ = hook
    monkeypatch.setitem(sys.modules, "maturin", fake)
    backend = _load(ROOT / "build_backend" / "mixforget_build.py", "mixforget_build")
    monkeypatch.delenv("CARGO", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no cargo anywhere
    with pytest.raises(SystemExit) as info:
        backend.get_requires_for_build_wheel()
    message = str(info.value)
    assert "\n" not in message and "rustup" in message and "wheel" in message
    assert calls == []  # maturin never ran
    cargo = tmp_path / "cargo"
    cargo.write_text("#!/bin/sh\n")
    cargo.chmod(0o755)
    assert backend.build_wheel("out") == "build_wheel" and calls == ["build_wheel"]
    # the pyproject names this backend
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'build-backend = "mixforget_build"' in pyproject
    assert 'backend-path = ["build_backend"]' in pyproject
