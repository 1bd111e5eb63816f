"""Figures (formats, styles, legends, labels) and the small usability items of the CLI and
the result objects: demo --help, sweep resume messages, short reprs, the objective column,
bench labels."""

from __future__ import annotations

import io
import math
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import mixforget as mf
from mixforget.cli import DEMO_SETTINGS, build_parser, main, run_demo

ROOT = Path(__file__).resolve().parents[1]

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import rgb_to_hsv, to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def _no_literal_underscores(text: str) -> bool:
    """Outside $...$ (mathtext), a label must not show a literal underscore."""
    return "_" not in re.sub(r"\$[^$]*\$", "", text)


def _hue_distance(a: tuple, b: tuple) -> float:
    ha, hb = rgb_to_hsv(a)[0], rgb_to_hsv(b)[0]
    return min(abs(ha - hb), 1 - abs(ha - hb))


@pytest.fixture(scope="module")
def demo_runs():
    """The demo's four runs at a small size, with their population flows."""
    target = mf.TwoMode(**DEMO_SETTINGS["target"])
    start = target.replace(new_mean=DEMO_SETTINGS["start_new_mean"])
    trajs, flows = {}, {}
    for k, (kind, lam) in enumerate(DEMO_SETTINGS["runs"]):
        objective = getattr(mf, kind)(replay=lam)
        label = f"{kind}, λ={lam:g}"
        trajs[label] = mf.simulate(
            target, start, objective, steps=200, batch_size=64, lr=0.05, replicates=40, rng=k
        )
        flows[label] = mf.population_flow(target, start, objective, steps=200, lr=0.05)
    return trajs, flows


# ---------------------------------------------------------------------------------------
# forgetting figure
# ---------------------------------------------------------------------------------------
def test_forgetting_runs_are_told_apart_and_every_panel_has_a_legend(demo_runs):
    from mixforget.plot import plot_forgetting

    trajs, flows = demo_runs
    axes = Figure().subplots(1, 2)
    plot_forgetting(trajs, flows, axes=axes)
    for ax in axes:
        runs = [line for line in ax.lines if line.get_label() in trajs]
        assert len(runs) == len(trajs)
        styles = {(line.get_linestyle(), line.get_marker(), line.get_color()) for line in runs}
        assert len(styles) == len(trajs)  # no two runs drawn alike
        # markers at staggered steps: runs whose curves coincide stay visible
        starts = {line.get_markevery()[0] for line in runs}
        assert len(starts) == len(trajs)
        legend = ax.get_legend()
        assert legend is not None
        texts = [t.get_text() for t in legend.get_texts()]
        assert set(trajs) <= set(texts)
        # every population flow has its own legend entry and the hue of its run
        flow_lines = {
            line.get_label(): line for line in ax.lines if "population flow" in line.get_label()
        }
        assert set(flow_lines) == {f"{label}: population flow" for label in trajs}
        assert set(flow_lines) <= set(texts)
        run_colour = {line.get_label(): to_rgb(line.get_color()) for line in runs}
        for label, line in flow_lines.items():
            own = run_colour[label.removesuffix(": population flow")]
            others = [
                c
                for name, c in run_colour.items()
                if name != label.removesuffix(": population flow")
            ]
            shade = to_rgb(line.get_color())
            # a darker shade of its own run's colour, closer to it than to any other run's
            ratio = [x / y for x, y in zip(shade, own) if y > 0.05]
            assert max(ratio) - min(ratio) < 1e-9 and ratio[0] < 1
            assert all(_hue_distance(shade, own) < _hue_distance(shade, c) for c in others)
        assert len({to_rgb(line.get_color()) for line in flow_lines.values()}) == len(trajs)
        assert "central 95% of replicates" in texts and "95% CI of the mean" in texts
        # two bands per run: replicates (light) and the mean's interval (darker)
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 2 * len(trajs)
        assert _no_literal_underscores(ax.get_ylabel()) and "$" in ax.get_ylabel()


def test_forgetting_band_modes(demo_runs):
    from mixforget.plot import plot_forgetting

    trajs, _ = demo_runs
    for band, per_run in (("mean", 1), ("replicates", 1), ("both", 2)):
        axes = Figure().subplots(1, 2)
        plot_forgetting(trajs, axes=axes, band=band)
        bands = [c for c in axes[1].collections if isinstance(c, PolyCollection)]
        assert len(bands) == per_run * len(trajs)
    # the replicates' band holds the central 95% of the runs: it is wider than the mean's
    traj = next(iter(trajs.values()))
    lo, hi = np.quantile(traj.drift, [0.025, 0.975], axis=0)
    _, mlo, mhi = mf.results.mean_interval(traj.drift)
    assert np.all(hi - lo >= mhi - mlo - 1e-12) and np.any(hi - lo > 2 * (mhi - mlo))
    with pytest.raises(ValueError, match="band must be one of"):
        plot_forgetting(trajs, axes=Figure().subplots(1, 2), band="none")


def test_density_panels_share_one_scale_and_demo_bands_stay_apart(demo_runs):
    """The demo's density panels compare heights (one y scale for all four), and its
    forgetting figure shades only the mean's interval (no central-95% blur)."""
    from mixforget.cli.demo import _demo_figure_objects

    trajs, flows = demo_runs
    from mixforget.studies.demo import starvation_table

    settings = {**DEMO_SETTINGS, "starvation_batches": 200, "gradient_batches": 50}
    starvation = starvation_table(settings, np.random.SeedSequence(0), None)
    figures = _demo_figure_objects(trajs, flows, starvation, settings)
    tops = {ax.get_ylim() for ax in figures["densities"].axes}
    assert len(tops) == 1
    peak = max(max(line.get_ydata().max() for line in ax.lines) for ax in figures["densities"].axes)
    assert next(iter(tops))[1] >= peak
    for ax in figures["forgetting"].axes:
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == len(trajs)  # one band per run: the mean's 95% interval
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "central 95% of replicates" not in texts
    # on axes it did not make, plot_densities also sets one scale
    from mixforget.plot import plot_densities

    axes = Figure().subplots(1, 2)
    plot_densities(dict(list(trajs.items())[:2]), axes=axes)
    assert axes[0].get_ylim() == axes[1].get_ylim()


def test_noise_floor_in_the_caption_matches_the_measurement():
    """The caption's √(lr/(πB)) is the mean size of the SGD noise of the old mean under
    forward KL with replay; measured on the demo problem it agrees within 5 standard errors."""
    from mixforget.cli.demo import _forgetting_caption

    lr, batch = 0.05, 64
    caption = _forgetting_caption({"lr": lr, "batch_size": batch, "replicates": 1000})
    floor = math.sqrt(lr / (math.pi * batch))
    assert f"≈ {floor:.3f}" in caption
    target = mf.TwoMode(**DEMO_SETTINGS["target"])
    start = target.replace(new_mean=DEMO_SETTINGS["start_new_mean"])
    traj = mf.simulate(
        target,
        start,
        mf.ForwardKL(replay=0.25),
        steps=1000,
        batch_size=batch,
        lr=lr,
        replicates=400,
        rng=7,
    )
    # one value per replicate (its final drift): independent samples of |μ_o − μ_o*|
    final = traj.drift[:, -1]
    stderr = final.std(ddof=1) / math.sqrt(final.size)
    assert abs(final.mean() - floor) <= 5 * stderr + 0.05 * floor  # 5σ + the o(lr·λ) bias


# ---------------------------------------------------------------------------------------
# starvation figure
# ---------------------------------------------------------------------------------------
def test_starvation_colour_per_alpha_and_style_per_replay():
    from mixforget.plot import plot_starvation

    rows = [
        {"batch_size": b, "old_weight": a, "replay": lam, "measured": ((1 - lam) * (1 - a)) ** b}
        for a in (0.02, 0.1)
        for lam in (0.0, 0.25)
        for b in (1, 4, 16)
    ]
    ax = plot_starvation(rows, ax=Figure().subplots())
    curves = [line for line in ax.lines if len(line.get_xdata()) > 3]
    assert len(curves) == 4
    by_colour: dict = {}
    by_style: dict = {}
    for line in curves:
        x, y = line.get_xdata(), line.get_ydata()
        alpha = 1 - y[0] ** (1 / x[0]) if line.get_linestyle() == "-" else None
        by_colour.setdefault(line.get_color(), set()).add(line.get_linestyle())
        by_style.setdefault(line.get_linestyle(), set()).add(line.get_color())
        if alpha is not None:
            assert min(abs(alpha - 0.02), abs(alpha - 0.1)) < 1e-9
    assert len(by_colour) == 2 and all(len(s) == 2 for s in by_colour.values())
    assert len(by_style) == 2 and all(len(s) == 2 for s in by_style.values())
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(texts) == len(set(texts)) == 4  # two α colours, two λ styles, once each
    assert not any("_" in t for t in texts)


def test_demo_figures_titles_legends_and_formats(demo_runs, tmp_path):
    from mixforget.cli.demo import _demo_figure_objects
    from mixforget.studies.demo import starvation_table

    trajs, flows = demo_runs
    settings = {**DEMO_SETTINGS, "starvation_batches": 2000, "gradient_batches": 500}
    starvation = starvation_table(settings, np.random.SeedSequence(0), None)
    figures = _demo_figure_objects(trajs, flows, starvation, settings)
    assert list(figures) == ["densities", "forgetting", "starvation"]
    fig = figures["starvation"]
    (ax,) = fig.axes
    assert fig._suptitle is None and ax.get_title()  # one title, not two
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert not any("estimate_gradient" in t for t in texts)
    assert "measured inside the ReverseKL gradient estimator" in texts
    for fig in figures.values():
        for ax in fig.axes:
            for text in (ax.get_xlabel(), ax.get_ylabel()):
                assert _no_literal_underscores(text), text
            legend = ax.get_legend()
            if legend is not None:
                for t in legend.get_texts():
                    assert _no_literal_underscores(t.get_text()), t.get_text()


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "magic"), [("svg", b"<?xml"), ("pdf", b"%PDF"), ("png", None)])
def test_demo_writes_the_requested_format_and_dpi(tmp_path, fmt, magic):
    summary = run_demo(
        out=tmp_path,
        replicates=10,
        steps=100,
        figure_format=fmt,
        dpi=40,
        stream=io.StringIO(),
    )
    names = sorted(Path(p).name for p in summary["figures"])
    assert names == [f"densities.{fmt}", f"forgetting.{fmt}", f"starvation.{fmt}"]
    for path in summary["figures"]:
        head = Path(path).read_bytes()[:8]
        if magic is not None:
            assert head.startswith(magic)
        else:
            import matplotlib.image

            height, width = matplotlib.image.imread(path).shape[:2]
            if Path(path).name == "forgetting.png":  # 12 x 5.2 inches at 40 dpi
                assert (width, height) == (480, 208)


def test_demo_format_and_dpi_are_checked():
    with pytest.raises(ValueError, match="figure_format must be one of"):
        run_demo(figure_format="jpg")
    with pytest.raises(ValueError, match=r"dpi must be an integer in \[10, 2400\]"):
        run_demo(dpi=5)
    assert main(["demo", "--format", "gif"]) == 2
    assert main(["demo", "--dpi", "0"]) == 2


def test_demo_help_describes_the_study(capsys):
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "forward KL (SFT) against reverse KL" in out and "--format {png,svg,pdf}" in out
    assert "--dpi" in out
    args = build_parser().parse_args(["demo"])
    assert (args.format, args.dpi, args.out) == ("png", 120, "mixforget-demo")


# ---------------------------------------------------------------------------------------
# drift vs separation
# ---------------------------------------------------------------------------------------
def test_drift_vs_separation_one_population_curve_and_fitted_slopes():
    from mixforget.plot import plot_drift_vs_separation

    seps = (4.0, 5.0, 6.0, 7.0, 8.0)
    rows = [
        {
            "separation": d,
            "batch_size": b,
            "sup_drift_population": 0.3 * math.exp(-d * d / 8),
            "sup_drift_mean": 0.3 * math.exp(-d * d / 8) + 0.1 / math.sqrt(b),
        }
        for d in seps
        for b in (16, 64)
    ]
    ax = plot_drift_vs_separation(rows, ax=Figure().subplots(), by="batch_size")
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    population = [t for t in texts if t.startswith("population flow")]
    assert population == ["population flow (slope -0.125)"]  # once, with its fitted slope
    finite = [t for t in texts if "finite batch" in t]
    assert len(finite) == 2 and all("slope -0.0" in t for t in finite)  # the noise floor
    assert any("theory: slope $-1/8$" in t for t in texts)
    # population curves that differ are all drawn, each named by its series
    rows2 = [
        dict(r, sup_drift_population=r["sup_drift_population"] * r["batch_size"]) for r in rows
    ]
    ax = plot_drift_vs_separation(rows2, ax=Figure().subplots(), by="batch_size")
    population = [t.get_text() for t in ax.get_legend().get_texts() if "population" in t.get_text()]
    assert population == [
        "population flow (batch_size=16) (slope -0.125)",
        "population flow (batch_size=64) (slope -0.125)",
    ]
    with pytest.raises(ValueError, match="fit_points"):
        plot_drift_vs_separation(rows, ax=Figure().subplots(), fit_points=1)


# ---------------------------------------------------------------------------------------
# small items
# ---------------------------------------------------------------------------------------
def test_trajectory_and_gradient_reprs_are_short(target, start):
    traj = mf.simulate(
        target, start, mf.ReverseKL(replay=0.25), steps=20, batch_size=8, replicates=1000, rng=0
    )
    text = repr(traj)
    assert len(text) < 250 and "ReverseKL(replay=0.25)" in text and "1000 replicates" in text
    assert "3 records" in text and "array" not in text
    flow = mf.population_flow(target, start, mf.ForwardKL(), steps=20)
    assert "ForwardKL, population flow" in repr(flow)
    est = mf.estimate_gradient(target, start, mf.ReverseKL(), batch_size=8, batches=5000, rng=0)
    assert repr(est).startswith("<GradientEstimates 5000 batches x 3 parameters")
    assert len(repr(est)) < 120


def test_objective_label_shows_only_changed_fields():
    from mixforget.studies import objective_label

    assert mf.ReverseKL().label == "ReverseKL"
    assert mf.ReverseKL(replay=0.25).label == "ReverseKL(replay=0.25)"
    sdft = mf.SDFT(anchor=1.0, direction="forward")
    assert sdft.label == "SDFT(anchor=1.0, direction='forward')"
    # the documented older name is the same label, not a second definition
    assert objective_label(sdft) == sdft.label


def _sweep_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        """
[target]
old_mean = [-3.0]
new_mean = [3.5]
old_weight = 0.75
[start]
new_mean = [0.5]
[objective]
kind = "ReverseKL"
[run]
steps = 20
batch_size = 8
replicates = 5
record_every = 10
[sweep.grid]
"objective.replay" = [0.0, 0.25]
batch_size = [8, 16]
""",
        encoding="utf-8",
    )
    return cfg


def test_sweep_resume_says_what_was_skipped(tmp_path, capsys):
    cfg, db = _sweep_config(tmp_path), tmp_path / "s.sqlite"
    assert main(["sweep", str(cfg), "--db", str(db)]) == 0
    first = capsys.readouterr().out
    assert "4 points in" in first and "skipped" not in first
    assert "objective.replay" in first.splitlines()[0]
    # all done: one line, no table
    assert main(["sweep", str(cfg), "--db", str(db)]) == 0
    again = capsys.readouterr().out
    assert again.startswith("nothing to compute: all 4 points are already in")
    assert len(again.strip().splitlines()) == 1
    # partly done: the computed rows only, and how many were skipped
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM points WHERE point >= 2")
    assert main(["sweep", str(cfg), "--db", str(db)]) == 0
    partial = capsys.readouterr().out
    rows = [line.split()[0] for line in partial.splitlines()[1:] if line[:1].isdigit()]
    assert rows == ["2", "3"]
    assert "2 points were already stored (skipped), 2 computed now" in partial


def test_sweep_table_objective_column_is_compact(tmp_path, capsys):
    cfg = _sweep_config(tmp_path)
    text = cfg.read_text(encoding="utf-8").replace(
        '"objective.replay" = [0.0, 0.25]',
        'objective = [{ kind = "ForwardKL" }, { kind = "ReverseKL", replay = 0.25 }]',
    )
    cfg.write_text(text, encoding="utf-8")
    assert main(["sweep", str(cfg), "--db", str(tmp_path / "o.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "ForwardKL " in out and "ReverseKL(replay=0.25)" in out
    assert max(len(line) for line in out.splitlines()) < 120
    rows = mf.load_sweep(tmp_path / "o.sqlite")
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    assert [r["objective"] for r in records] == ["ForwardKL"] * 2 + ["ReverseKL(replay=0.25)"] * 2


def test_bench_labels_name_each_size_once():
    from mixforget import bench

    for key in bench.WORKLOADS:
        w = bench.make_workload(key, bench.SMOKE_SIZES[key])
        label = re.sub(r"\(.*?\)", "", f"{key} {w.title} {w.describe()}")  # not "(NumPy T=5)"
        for token in ("d=", "n=", "R=", "B=", "T="):
            assert label.count(token) <= 1, label
    w = bench.make_workload("W3a", bench.SMOKE_SIZES["W3a"])
    assert f"W3a {w.title} {w.describe()}" == "W3a responsibilities n=2000 d=1"
