"""``mixforget demo``: runs the canonical study of :mod:`mixforget.studies.demo`, prints its
table and checks, and writes ``summary.json`` and the three figures."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .._files import atomic_write, check_writable
from ..studies.demo import DEMO_SETTINGS, demo_checks, demo_problem, demo_runs, starvation_table
from ._errors import _UsageError
from ._format import _fmt_ci


def format_demo_table(rows: Sequence[dict[str, Any]]) -> str:
    """The demo's table as text (one line per run)."""
    header = [
        "objective",
        "replay",
        "old weight α_T (95% CI)",
        "flow α_T",
        "sup drift (95% CI)",
        "new-mode error (95% CI)",
        "starved/run",
        "wall s",
    ]
    body = []
    for r in rows:
        body.append(
            [
                r["objective"],
                f"{r['replay']:.2f}",
                _fmt_ci(r["old_weight"]),
                f"{r['old_weight_population']:.4f}",
                _fmt_ci(r["sup_drift"]),
                _fmt_ci(r["new_error"]),
                f"{r['starved']['mean']:.1f}" if r.get("starved") else "n/a",
                f"{r['wall_time']:.2f}",
            ]
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(header, widths)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def _save_figure(fig: Any, path: Path, dpi: int = 110) -> None:
    with atomic_write(path) as fh:
        fig.savefig(fh, format=path.suffix.lstrip("."), dpi=dpi)


#: figure formats of ``mixforget demo --format`` (matplotlib back ends that need no display)
FIGURE_FORMATS = ("png", "svg", "pdf")


def _forgetting_caption(settings: dict[str, Any]) -> str:
    """Caption of the forgetting figure, with the SGD noise floor of the old mean.

    Under forward KL with replay λ, about λB old samples per batch pull μ_o back to μ_o*
    (rate lr·λ per step) while adding noise of variance lr²·λ/B: the stationary spread of
    μ_o − μ_o* is lr/(2B) whatever λ, and the mean of its absolute value is √(lr/(πB))."""
    floor = math.sqrt(settings["lr"] / (math.pi * settings["batch_size"]))
    return (
        f"Lines: mean over {settings['replicates']} replicates (B = {settings['batch_size']}, "
        f"lr = {settings['lr']:g}), shaded: their 95% interval; dotted, in the colour of its "
        "run: the exact population flow.\nReverse KL with and without replay coincide: replay "
        "does not change the reverse-KL objective.\n"
        rf"ForwardKL, λ = 0.25: the drift stays near $\sqrt{{\mathrm{{lr}}/(\pi B)}}$ ≈ "
        rf"{floor:.3f}, SGD noise of the old mean around $\mu_o^*$ (zero on average, but its "
        r"size $\Vert\mu_o - \mu_o^*\Vert$ is not); the population flow has no noise and "
        "returns to 0."
    )


def _demo_figures(
    out: Path,
    trajs: dict[str, Any],
    flows: dict[str, Any],
    starvation: list[dict[str, Any]],
    settings: dict[str, Any],
    fmt: str = "png",
    dpi: int = 120,
) -> list[str]:
    """Write the demo's three figures into ``out``; returns their paths (ImportError without
    matplotlib)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # files only; never open a window
    figures = _demo_figure_objects(trajs, flows, starvation, settings)
    paths = []
    for name, fig in figures.items():
        paths.append(out / f"{name}.{fmt}")
        _save_figure(fig, paths[-1], dpi)
    return [str(p) for p in paths]


def _demo_figure_objects(
    trajs: dict[str, Any],
    flows: dict[str, Any],
    starvation: list[dict[str, Any]],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The demo's figures (matplotlib Figure objects, no pyplot): densities, forgetting,
    starvation."""
    from matplotlib.figure import Figure

    from ..plot import plot_densities, plot_forgetting, plot_starvation

    figures: dict[str, Any] = {}
    labels = list(trajs)
    fig = Figure(figsize=(9.5, 7.0), layout="constrained")
    axes = fig.subplots(2, 2)
    plot_densities(trajs, axes=[axes[i // 2, i % 2] for i in range(len(labels))])
    fig.suptitle("(a) model density over training (replicate-mean parameters) vs the target $p^*$")
    figures["densities"] = fig

    fig = Figure(figsize=(12, 5.2), layout="constrained")
    # the mean's 95% band only: the central 95% of 4 runs' replicates overlap into one blur
    plot_forgetting(trajs, flows, axes=fig.subplots(1, 2), band="mean")
    fig.suptitle("(b) forgetting over training: finite batches vs the population flow")
    fig.supxlabel(_forgetting_caption(settings), fontsize="small")
    figures["forgetting"] = fig

    fig = Figure(figsize=(7, 5.4), layout="constrained")
    ax = fig.subplots()
    counts = [r for r in starvation if r["source"] == "starvation_counts"]
    grads = [r for r in starvation if r["source"] == "estimate_gradient"]
    keep = [r for r in grads if r["measured"] > 0]
    if keep:  # drawn first, with a label: plot_starvation adds it to its legend
        ax.scatter(
            [r["batch_size"] for r in keep],
            [r["measured"] for r in keep],
            marker="x",
            color="black",
            zorder=4,
            label="measured inside the ReverseKL gradient estimator",
        )
    plot_starvation(counts, ax=ax)
    ax.set_title("(c) starved batches (no old-mode sample) against the batch size")
    fig.supxlabel(
        f"Markers: {settings['starvation_batches']:,} batches per point with 95% intervals "
        "(rates of 0 are not drawn on the log scale); lines: the theory.",
        fontsize="small",
    )
    figures["starvation"] = fig
    return figures


class _StageProgress:
    """The demo's progress on stderr: one stage at a time (a run, the starvation table, the
    figures) with the time so far; rewritten in place on a terminal, one line per stage
    elsewhere (``--progress`` into a log)."""

    def __init__(self, total: int, stream: Any) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.began = time.perf_counter()
        self.in_place = bool(getattr(stream, "isatty", lambda: False)())

    def stage(self, what: str) -> None:
        self.done += 1
        line = f"mixforget demo [{self.done}/{self.total}] {what} ({self._elapsed()})"
        self.stream.write(f"\r\x1b[2K{line}" if self.in_place else f"{line}\n")
        self.stream.flush()

    def close(self) -> None:
        done = f"mixforget demo: done in {self._elapsed()}"
        self.stream.write(f"\r\x1b[2K{done}\n" if self.in_place else f"{done}\n")
        self.stream.flush()

    def _elapsed(self) -> str:
        return f"{time.perf_counter() - self.began:.1f} s"


def _progress_wanted(progress: Optional[bool]) -> bool:
    """``progress``, or by default whether stderr is a terminal (no bars in CI logs)."""
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool or None, got {type(progress).__name__}")
    return progress


def run_demo(
    out: str | Path = "mixforget-demo",
    replicates: int = 1000,
    threads: Optional[int] = None,
    steps: Optional[int] = None,
    seed: int = 0,
    figures: bool = True,
    stream: Any = None,
    figure_format: str = "png",
    dpi: int = 120,
    progress: Optional[bool] = None,
) -> dict[str, Any]:
    """The canonical study (docs: api): ForwardKL vs ReverseKL, each with replay 0 and 0.25,
    on the default problem; prints a table, writes ``summary.json`` and (with matplotlib)
    ``densities``, ``forgetting`` and ``starvation`` figures into ``out``, as
    ``figure_format`` ('png', 'svg' or 'pdf') at ``dpi`` dots per inch (raster parts).

    Returns the summary dict: settings, one row per run (final old weight, sup drift, new-mode
    error, starved batches per replicate — each mean with its 95% interval —, the population
    flow's final old weight, wall time), the starvation table, the checks (ForwardKL λ=0 old
    weight < 0.1: mass forgetting; ReverseKL within 0.05 of α*: retention) and the figures.

    ``progress``: show which stage is running on stderr; None (default) shows it when stderr
    is a terminal and stays quiet otherwise (CI logs)."""
    stream = sys.stdout if stream is None else stream
    show_progress = _progress_wanted(progress)
    began = time.perf_counter()
    settings, out = _checked_demo_setup(out, replicates, steps, figure_format, dpi)
    target, _ = demo_problem(settings)
    run_seeds = np.random.SeedSequence(seed).spawn(len(settings["runs"]) + 1)
    print(
        f"mixforget demo: target {target}, start new mean {settings['start_new_mean']}, "
        f"B={settings['batch_size']}, lr={settings['lr']}, steps={settings['steps']}, "
        f"replicates={settings['replicates']}",
        file=stream,
    )
    # progress on stderr while computing; the table follows once the work is done
    bar = _StageProgress(len(settings["runs"]) + 1 + int(figures), sys.stderr)
    stage = bar.stage if show_progress else (lambda what: None)
    trajs, flows, rows = demo_runs(
        settings, run_seeds, threads, lambda label: stage(f"training {label}")
    )
    stage("starvation against the batch size")
    starvation = starvation_table(settings, run_seeds[-1], threads)
    figure_paths: list[str] = []
    figures_note = "not requested"
    if figures:
        stage("figures")
        try:
            figure_paths = _demo_figures(
                out, trajs, flows, starvation, settings, figure_format, dpi
            )
            figures_note = "written"
        except ImportError:
            figures_note = "skipped (matplotlib is not installed: pip install 'mixforget[plot]')"
    if show_progress:
        bar.close()
    print(format_demo_table(rows), file=stream)
    alpha_star = target.old_weight
    checks = demo_checks(rows, alpha_star)
    _print_checks(rows, starvation, checks, alpha_star, stream)
    summary = {
        "settings": {
            **{k: v for k, v in settings.items() if k != "runs"},
            "runs": [list(r) for r in settings["runs"]],
            "seed": seed,
            "threads": threads,
        },
        "alpha_star": alpha_star,
        "rows": rows,
        "starvation": starvation,
        "checks": checks,
        "figures": figure_paths,
        "total_time": time.perf_counter() - began,
    }
    with atomic_write(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)
    if figure_paths:
        print(f"\nfigures: {', '.join(figure_paths)}", file=stream)
    else:
        print(f"\nfigures {figures_note}", file=stream)
    print(f"summary: {out / 'summary.json'}   total {summary['total_time']:.1f} s", file=stream)
    return summary


def _checked_demo_setup(
    out: str | Path, replicates: int, steps: Optional[int], figure_format: str, dpi: int
) -> tuple[dict[str, Any], Path]:
    """The demo's arguments checked and its settings built, and the output directory made,
    before any work: (settings, out)."""
    if figure_format not in FIGURE_FORMATS:
        raise ValueError(
            f"figure_format must be one of {list(FIGURE_FORMATS)}, got {figure_format!r}"
        )
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 10 <= dpi <= 2400:
        raise ValueError(f"dpi must be an integer in [10, 2400], got {dpi!r}")
    settings = dict(DEMO_SETTINGS)
    settings["replicates"] = int(replicates)
    if steps is not None:
        settings["steps"] = int(steps)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"out: {out} exists and is not a directory; give a directory for the results"
        )
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out / "summary.json", "out")
    return settings, out


def _print_checks(
    rows: list[dict[str, Any]],
    starvation: list[dict[str, Any]],
    checks: dict[str, bool],
    alpha_star: float,
    stream: Any,
) -> None:
    """The demo's checks (mass forgetting under ForwardKL, retention under ReverseKL) and
    the starvation rates at B = 32, measured and predicted."""
    fwd = next(r for r in rows if r["objective"] == "ForwardKL" and r["replay"] == 0.0)
    print(
        f"\nForwardKL λ=0 forgets the old mode's mass: α_T = {fwd['old_weight']['mean']:.4f} < 0.1 "
        f"[{'ok' if checks['forward_kl_mass_forgetting'] else 'FAILED'}]",
        file=stream,
    )
    for r in (r for r in rows if r["objective"] == "ReverseKL"):
        print(
            f"{r['label']} retains it: |α_T − α*| = "
            f"{abs(r['old_weight']['mean'] - alpha_star):.4f} <= 0.05 "
            f"[{'ok' if checks['reverse_kl_retention'] else 'FAILED'}]",
            file=stream,
        )
    print("starvation (fraction of batches with no old-labelled sample), B=32:", file=stream)
    for r in starvation:
        if r["batch_size"] == 32 and r["source"] == "starvation_counts":
            print(
                f"  α={r['old_weight']:g} λ={r['replay']:g}: measured {r['measured']:.3g}, "
                f"predicted {r['predicted']:.3g}",
                file=stream,
            )


def _cmd_demo(args: argparse.Namespace) -> int:
    """``mixforget demo``: exit status 0 when both checks hold, 1 otherwise."""
    every = DEMO_SETTINGS["record_every"]
    if args.steps is not None and args.steps % every:
        raise _UsageError(f"--steps must be a multiple of {every}, got {args.steps}")
    summary = run_demo(
        out=args.out,
        replicates=args.replicates,
        threads=args.threads,
        steps=args.steps,
        seed=args.seed,
        figures=not args.no_figures,
        figure_format=args.format,
        dpi=args.dpi,
        progress=args.progress,
    )
    return 0 if all(summary["checks"].values()) else 1
