"""The ``mixforget`` command line (docs: api).

Subcommands::

    mixforget demo [--out DIR] [--replicates N] [--threads T] [--steps S] [--seed S] [--no-figures]
    mixforget simulate CONFIG.toml --out FILE.npz [--threads T] [--progress]
    mixforget sweep CONFIG.toml --db FILE [--scheduler ADDRESS] [--workers N]
                    [--keep-trajectories DIR] [--progress]
    mixforget bench [--quick]          (implemented in mixforget.bench)

Exit status: 0 success; 1 a failed run: an I/O failure (unwritable output, unreachable
scheduler, database error) or a demo whose numbers do not show the expected effects; 2 a usage
or configuration error (nothing written); 130 interrupted. Every expected failure is one line on
stderr; ``--debug`` (before or after the subcommand) also prints the traceback. Configuration
files are described in :mod:`mixforget.config`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sqlite3
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ._defaults import DEFAULT_LR, DEFAULT_PROBLEM

__all__ = [
    "DEMO_SETTINGS",
    "FIGURE_FORMATS",
    "build_parser",
    "format_demo_table",
    "main",
    "run_demo",
]

#: The canonical study: the default problem of the docs (1-D, old mode −3, new target 3.5,
#: start new mean 0.5, α* = 0.75, cov 1), forward vs reverse KL, with and without replay.
DEMO_SETTINGS: dict[str, Any] = {
    **copy.deepcopy(DEFAULT_PROBLEM),
    "runs": [("ForwardKL", 0.0), ("ForwardKL", 0.25), ("ReverseKL", 0.0), ("ReverseKL", 0.25)],
    "steps": 1000,
    "batch_size": 64,
    "lr": DEFAULT_LR,
    "replicates": 1000,
    "record_every": 10,
    # figure (c): starvation rate against batch size
    "starvation_batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128],
    "starvation_old_weights": [0.02, 0.1],
    "starvation_replays": [0.0, 0.25],
    "starvation_batches": 200_000,
    "gradient_batches": 20_000,
}


class _UsageError(Exception):
    """A usage/configuration problem: message on stderr, exit status 2."""


class _RunError(Exception):
    """A runtime failure (I/O, scheduler): message on stderr, exit status 1."""


#: Seconds to wait for a dask scheduler before giving up.
SCHEDULER_TIMEOUT = 5


# ---------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------
def _fmt_ci(stats: Optional[dict[str, float]], digits: int = 4) -> str:
    if not stats:
        return "n/a"
    return f"{stats['mean']:.{digits}f} [{stats['lo']:.{digits}f}, {stats['hi']:.{digits}f}]"


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


def _starvation_table(
    settings: dict[str, Any], seed: np.random.SeedSequence, threads: Optional[int]
) -> list[dict[str, Any]]:
    """Measured starvation rates: kernels.starvation_counts for every (α, λ, B), and
    estimate_gradient (ReverseKL on the demo problem with the model's α set) as a cross-check."""
    import mixforget as mf
    from mixforget.theory import starvation_probability

    def theory_p(a: float, b: int, lam: float) -> float:
        return float(starvation_probability(a, b, lam))

    target = mf.TwoMode(**settings["target"])
    cells = [
        (a, lam, b)
        for a in settings["starvation_old_weights"]
        for lam in settings["starvation_replays"]
        for b in settings["starvation_batch_sizes"]
    ]
    seeds = seed.spawn(2 * len(cells))
    rows = []
    for k, (a, lam, b) in enumerate(cells):
        counts = mf.kernels.starvation_counts(
            a, b, settings["starvation_batches"], replay=lam, rng=seeds[2 * k], threads=threads
        )
        rows.append(
            {
                "source": "starvation_counts",
                "old_weight": a,
                "replay": lam,
                "batch_size": b,
                "batches": settings["starvation_batches"],
                "measured": float(np.mean(counts == 0)),
                "predicted": float(theory_p(a, b, lam)),
            }
        )
        if b in (8, 32):
            model = target.replace(old_weight=a)
            est = mf.estimate_gradient(
                target,
                model,
                mf.ReverseKL(replay=lam),
                batch_size=b,
                batches=settings["gradient_batches"],
                rng=seeds[2 * k + 1],
                threads=threads,
            )
            rows.append(
                {
                    "source": "estimate_gradient",
                    "old_weight": a,
                    "replay": lam,
                    "batch_size": b,
                    "batches": settings["gradient_batches"],
                    "measured": float(np.mean(est.starved)),
                    "predicted": float(theory_p(a, b, lam)),
                }
            )
    return rows


def _save_figure(fig: Any, path: Path, dpi: int = 110) -> None:
    from ._files import atomic_write

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
        f"lr = {settings['lr']:g}); black dotted: the exact population flow. Reverse KL with and "
        "without replay coincide: replay does not change the reverse-KL objective.\n"
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
    """Write the demo's three figures into ``out``; returns their paths."""
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

    from .plot import plot_densities, plot_forgetting, plot_starvation

    figures: dict[str, Any] = {}
    labels = list(trajs)
    fig = Figure(figsize=(9.5, 7.0), layout="constrained")
    axes = fig.subplots(2, 2)
    plot_densities(trajs, axes=[axes[i // 2, i % 2] for i in range(len(labels))])
    fig.suptitle("(a) model density over training (replicate-mean parameters) vs the target $p^*$")
    figures["densities"] = fig

    fig = Figure(figsize=(12, 5.2), layout="constrained")
    plot_forgetting(trajs, flows, axes=fig.subplots(1, 2))
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
) -> dict[str, Any]:
    """The canonical study (docs: api): ForwardKL vs ReverseKL, each with replay 0 and 0.25,
    on the default problem; prints a table, writes ``summary.json`` and (with matplotlib)
    ``densities``, ``forgetting`` and ``starvation`` figures into ``out``, as
    ``figure_format`` ('png', 'svg' or 'pdf') at ``dpi`` dots per inch (raster parts).

    Returns the summary dict: settings, one row per run (final old weight, sup drift, new-mode
    error, starved batches per replicate — each mean with its 95% interval —, the population
    flow's final old weight, wall time), the starvation table, the checks (ForwardKL λ=0 old
    weight < 0.1: mass forgetting; ReverseKL within 0.05 of α*: retention) and the figures."""
    import mixforget as mf

    if figure_format not in FIGURE_FORMATS:
        raise ValueError(
            f"figure_format must be one of {list(FIGURE_FORMATS)}, got {figure_format!r}"
        )
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 10 <= dpi <= 2400:
        raise ValueError(f"dpi must be an integer in [10, 2400], got {dpi!r}")
    stream = sys.stdout if stream is None else stream
    began = time.perf_counter()
    settings = dict(DEMO_SETTINGS)
    settings["replicates"] = int(replicates)
    if steps is not None:
        settings["steps"] = int(steps)
    from ._files import atomic_write, check_writable

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out / "summary.json", "out")  # before the work
    target = mf.TwoMode(**settings["target"])
    start = target.replace(new_mean=settings["start_new_mean"])
    root = np.random.SeedSequence(seed)
    run_seeds = root.spawn(len(settings["runs"]) + 1)
    trajs: dict[str, Any] = {}
    flows: dict[str, Any] = {}
    rows = []
    print(
        f"mixforget demo: target {target}, start new mean {settings['start_new_mean']}, "
        f"B={settings['batch_size']}, lr={settings['lr']}, steps={settings['steps']}, "
        f"replicates={settings['replicates']}",
        file=stream,
    )
    for k, (kind, lam) in enumerate(settings["runs"]):
        objective = getattr(mf, kind)(replay=lam)
        label = f"{kind}, λ={lam:g}"
        traj = mf.simulate(
            target,
            start,
            objective,
            steps=settings["steps"],
            batch_size=settings["batch_size"],
            lr=settings["lr"],
            replicates=settings["replicates"],
            record_every=settings["record_every"],
            rng=run_seeds[k],
            threads=threads,
        )
        flow = mf.population_flow(
            target,
            start,
            objective,
            steps=settings["steps"],
            lr=settings["lr"],
            record_every=settings["record_every"],
        )
        trajs[label], flows[label] = traj, flow
        summ = traj.summary()
        rows.append(
            {
                "objective": kind,
                "replay": lam,
                "label": label,
                "replicates": summ["replicates"],
                "diverged": summ["diverged"],
                "old_weight": summ.get("old_weight"),
                "old_weight_population": float(flow.old_weight[0, -1]),
                "sup_drift": summ.get("sup_drift"),
                "sup_drift_population": float(flow.drift[0].max()),
                "new_error": summ.get("new_error"),
                "starved": summ.get("starved"),
                "wall_time": float(traj.meta["wall_time"]),
            }
        )
    starvation = _starvation_table(settings, run_seeds[-1], threads)
    print(format_demo_table(rows), file=stream)

    alpha_star = target.old_weight
    fwd = next(r for r in rows if r["objective"] == "ForwardKL" and r["replay"] == 0.0)
    rev = [r for r in rows if r["objective"] == "ReverseKL"]
    checks = {
        "forward_kl_mass_forgetting": bool(fwd["old_weight"] and fwd["old_weight"]["mean"] < 0.1),
        "reverse_kl_retention": bool(
            all(r["old_weight"] and abs(r["old_weight"]["mean"] - alpha_star) <= 0.05 for r in rev)
        ),
    }
    print(
        f"\nForwardKL λ=0 forgets the old mode's mass: α_T = {fwd['old_weight']['mean']:.4f} < 0.1 "
        f"[{'ok' if checks['forward_kl_mass_forgetting'] else 'FAILED'}]",
        file=stream,
    )
    for r in rev:
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

    figure_paths: list[str] = []
    figures_note = "not requested"
    if figures:
        try:
            import matplotlib

            if "matplotlib.pyplot" not in sys.modules:
                matplotlib.use("Agg")  # files only; never open a window
            figure_paths = _demo_figures(
                out, trajs, flows, starvation, settings, figure_format, dpi
            )
            figures_note = "written"
        except ImportError:
            figures_note = "skipped (matplotlib is not installed: pip install 'mixforget[plot]')"
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


# ---------------------------------------------------------------------------------------
# simulate / sweep
# ---------------------------------------------------------------------------------------
def _load(path: str) -> Any:
    from .config import ConfigError, load_config

    try:
        return load_config(path)
    except (ConfigError, UnicodeDecodeError) as exc:
        raise _UsageError(f"invalid config {path}: {exc}") from None


def _check_output_path(path: str, what: str) -> Path:
    """Before any work: the output's directory exists (else usage error, 2) and a file can
    be written there (else runtime error, 1)."""
    from ._files import check_writable

    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise _UsageError(f"{what}: directory {parent} does not exist")
    if p.is_dir():
        raise _UsageError(f"{what}: {p} is a directory")
    try:
        return check_writable(p, what)
    except OSError as exc:
        raise _RunError(str(exc)) from None


def _print_summary(summary: dict[str, Any], stream: Any) -> None:
    print(f"replicates {summary['replicates']} (diverged {summary['diverged']})", file=stream)
    for name in ("old_weight", "drift", "sup_drift", "new_error", "starved"):
        if name in summary:
            print(f"  {name:<11} {_fmt_ci(summary[name])}", file=stream)


def _cmd_simulate(args: argparse.Namespace) -> int:
    import mixforget as mf

    cfg = _load(args.config)
    out = _check_output_path(args.out, "--out")
    if cfg.grid is not None:
        print("note: the [sweep] section is ignored by `mixforget simulate`", file=sys.stderr)
    kwargs = cfg.simulate_kwargs()
    if args.threads is not None:
        kwargs["threads"] = args.threads
    try:
        traj = mf.simulate(**kwargs, progress=args.progress)
    except (ValueError, TypeError) as exc:
        raise _UsageError(str(exc)) from None
    traj.save(out)
    print(
        f"{cfg.objective!r}: {traj.replicates} replicates, {int(traj.steps[-1])} steps in "
        f"{traj.meta['wall_time']:.2f} s"
    )
    _print_summary(traj.summary(), sys.stdout)
    print(f"wrote {out}")
    return 0


def _executor(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    """(executor or None, objects to close afterwards)."""
    if args.scheduler:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise _UsageError(
                "--scheduler needs dask.distributed, the optional extra 'dask': "
                "pip install 'mixforget[dask]'"
            ) from None
        if args.scheduler == "local":
            cluster = LocalCluster(
                n_workers=args.workers or 1, threads_per_worker=1, processes=True
            )
            client = Client(cluster)
            return client.get_executor(), [client, cluster]
        try:
            client = Client(args.scheduler, timeout=SCHEDULER_TIMEOUT)
        except ValueError as exc:  # a malformed address
            raise _UsageError(f"--scheduler: {exc}") from None
        except Exception as exc:  # unreachable, timed out, or not a dask scheduler
            raise _RunError(
                f"--scheduler: no dask scheduler reachable at {args.scheduler} "
                f"(waited at most {SCHEDULER_TIMEOUT} s): {type(exc).__name__}: {exc}"
            ) from None
        return client.get_executor(), [client]
    if args.workers and args.workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=args.workers)
        return pool, [pool]
    return None, []


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweeps import sweep

    cfg = _load(args.config)
    if cfg.grid is None:
        raise _UsageError(
            f"invalid config {args.config}: `mixforget sweep` needs a [sweep.grid] table "
            "(key = [values]; see mixforget.config)"
        )
    _check_output_path(args.db, "--db")
    if Path(args.db).exists() and not os.access(args.db, os.W_OK):
        raise _RunError(f"--db: {args.db} is not writable")
    keep = args.keep_trajectories or cfg.keep_trajectories
    base = cfg.sweep_base()
    if args.threads is not None:
        base["threads"] = args.threads
    stored_before = _stored_points(args.db)
    executor, closers = _executor(args)
    began = time.perf_counter()
    try:
        try:
            rows = sweep(
                base,
                cfg.grid,
                args.db,
                executor=executor,
                rng=cfg.rng,
                progress=args.progress,
                keep_trajectories=keep,
                population=cfg.population,
                separation_mode=cfg.separation_mode,
            )
        except (ValueError, TypeError) as exc:
            raise _UsageError(str(exc)) from None
    finally:
        for obj in closers:
            try:
                if hasattr(
                    obj, "close"
                ):  # dask Client / LocalCluster (close, never shut the scheduler down)
                    obj.close()
                else:  # ThreadPoolExecutor
                    obj.shutdown()
            except Exception:  # pragma: no cover - best effort
                pass
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    computed = [r for r in records if int(r["point"]) not in stored_before]
    skipped = len(records) - len(computed)
    if skipped and not computed:
        print(
            f"nothing to compute: all {len(records)} points are already in {args.db} "
            f"(skipped); read them with mixforget.load_sweep({str(args.db)!r})"
        )
        return 0
    records = computed
    keys = list(cfg.grid)
    header = ["point", *keys, "old weight α_T", "sup drift", "new error", "starved", "wall s"]
    body = []
    for r in records:
        body.append(
            [
                str(r["point"]),
                *(str(r[k]) for k in keys),
                *(
                    f"{r[c]:.4f}" if r[c] is not None else "n/a"
                    for c in ("old_weight_mean", "sup_drift_mean", "new_error_mean")
                ),
                f"{r['starved_mean']:.1f}" if r["starved_mean"] is not None else "n/a",
                f"{r['wall_time']:.2f}",
            ]
        )
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for b in body:
        print("  ".join(c.ljust(w) for c, w in zip(b, widths)))
    elapsed = time.perf_counter() - began
    if skipped:
        print(
            f"resumed {args.db}: {skipped} points were already stored (skipped), "
            f"{len(records)} computed now ({elapsed:.1f} s); all {skipped + len(records)}: "
            f"mixforget.load_sweep({str(args.db)!r})"
        )
    else:
        print(f"{len(records)} points in {args.db} ({elapsed:.1f} s)")
    return 0


def _stored_points(db: str) -> set[int]:
    """Indices of the points already in a sweep database (empty when there is none yet, or
    when it is not a sweep database: the sweep itself then reports the problem)."""
    if not Path(db).is_file():
        return set()
    from .sweeps import load_sweep

    try:
        rows = load_sweep(db)
    except Exception:  # not a sweep database: sweep() raises its own clear error
        return set()
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    return {int(r["point"]) for r in records}


def _cmd_demo(args: argparse.Namespace) -> int:
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
    )
    return 0 if all(summary["checks"].values()) else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        import mixforget.bench as bench
    except ImportError as exc:
        print(f"mixforget: bench is not available: {exc}", file=sys.stderr)
        return 1
    rc = bench.main(args)
    return int(rc or 0)


# ---------------------------------------------------------------------------------------
# parser and entry point
# ---------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _dpi(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer in 10..2400, got {text!r}") from None
    if not 10 <= value <= 2400:
        raise argparse.ArgumentTypeError(f"must be an integer in 10..2400, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``mixforget`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mixforget", description="Forgetting in two-mode Gaussian mixtures, measured."
    )
    parser.add_argument("--version", action="version", version=f"mixforget {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of a failure, too"
    )
    sub = parser.add_subparsers(dest="command", metavar="{demo,simulate,sweep,bench}")
    sub.required = True

    p = sub.add_parser(
        "demo",
        help="the canonical study: forward vs reverse KL, replay, starvation",
        description=(
            "The canonical study on the default problem (1-D, old mode at -3, new target at "
            "3.5, start new mean 0.5, alpha* = 0.75): forward KL (SFT) against reverse KL "
            "(on-policy), each without and with replay 0.25, many replicates each, beside the "
            "exact population flow, and the starvation rate of finite batches against the "
            "batch size. Prints a table, checks the expected effects (forward KL forgets the "
            "old mass, reverse KL keeps it; exit status 1 if not) and writes summary.json and "
            "three figures (densities, forgetting, starvation) into --out."
        ),
    )
    p.add_argument(
        "--out",
        default="mixforget-demo",
        help="output directory, created if needed (default: mixforget-demo)",
    )
    p.add_argument(
        "--replicates",
        type=_positive_int,
        default=DEMO_SETTINGS["replicates"],
        help=f"replicates per run (default {DEMO_SETTINGS['replicates']})",
    )
    p.add_argument(
        "--threads", type=_positive_int, default=None, help="threads (default: all cores)"
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help=(
            f"training steps, a multiple of {DEMO_SETTINGS['record_every']} "
            f"(default {DEMO_SETTINGS['steps']})"
        ),
    )
    p.add_argument("--seed", type=_nonneg_int, default=0, help="root seed (default 0)")
    p.add_argument("--no-figures", action="store_true", help="print the table only")
    p.add_argument(
        "--format",
        choices=FIGURE_FORMATS,
        default="png",
        help="figure file format (default png)",
    )
    p.add_argument(
        "--dpi",
        type=_dpi,
        default=120,
        help="resolution of the figures in dots per inch, 10..2400 (default 120)",
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("simulate", help="run one configuration and save the Trajectory (.npz)")
    p.add_argument("config", help="TOML configuration (see mixforget.config)")
    p.add_argument("--out", required=True, help="output .npz (mixforget.Trajectory.load reads it)")
    p.add_argument(
        "--threads", type=_positive_int, default=None, help="threads (default: config or all cores)"
    )
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "sweep", help="run a configuration's [sweep.grid] into a resumable SQLite db"
    )
    p.add_argument("config", help="TOML configuration with a [sweep.grid] table")
    p.add_argument("--db", required=True, help="SQLite file; re-running resumes it")
    p.add_argument(
        "--scheduler",
        default=None,
        help="dask.distributed scheduler address (tcp://host:8786), or 'local' for a local cluster",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="points computed concurrently (threads; with --scheduler local: worker processes)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="threads per point (default: config or all cores)",
    )
    p.add_argument(
        "--keep-trajectories",
        default=None,
        metavar="DIR",
        help="save each point's Trajectory there",
    )
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("bench", help="Rust vs NumPy timings on this machine (mixforget.bench)")
    p.add_argument("--quick", action="store_true", help="small workloads only")
    p.add_argument("--backend", default=None, help="W1 on this simulate backend, next to Rust")
    p.add_argument("--device", default=None, help="device of --backend")
    p.add_argument("--precision", default="float64", help="float64 or float32 (--backend)")
    p.add_argument("--replicates", type=int, default=1000, help="R for --backend")
    p.add_argument("--steps", type=int, default=1000, help="T for --backend")
    p.set_defaults(func=_cmd_bench)
    for command in sub.choices.values():  # --debug also after the subcommand
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``mixforget`` command; returns the exit status (0 ok, 1 failure,
    2 usage or configuration error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _report(args, "interrupted", prefix="mixforget")
        return 130
    except _UsageError as exc:
        _report(args, str(exc))
        return 2
    except (ValueError, TypeError) as exc:  # arguments the library refused
        _report(args, str(exc))
        return 2
    except _RunError as exc:
        _report(args, str(exc))
        return 1
    except (OSError, sqlite3.Error) as exc:
        _report(args, f"I/O error: {_describe_os_error(exc)}")
        return 1
    except MemoryError:
        _report(args, "out of memory")
        return 1
    except Exception as exc:  # an unexpected failure: still one line (traceback with --debug)
        _report(args, f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
        return 1


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


def _report(args: argparse.Namespace, message: str, prefix: Optional[str] = None) -> None:
    """One line on stderr (the traceback before it with --debug)."""
    if getattr(args, "debug", False):
        traceback.print_exc()
    head = prefix or f"mixforget {args.command}: error"
    print(f"{head}: {' '.join(message.split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
