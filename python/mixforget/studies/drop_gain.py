"""The drop-vs-gain study (the trade-off of arXiv 2510.18874): forgetting of the old task at
the first step where the new task's gain reaches a threshold, per objective and learning rate."""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .._overlap import _COV_RTOL
from .._problem import check_models, check_run
from .._rng import RngLike, resolve_rng, seed_record
from .._stats import mean_interval
from .._validate import (
    as_positive_int,
    describe_type,
)
from ..mixture import TwoMode
from ..objectives import SDFT, ForwardKL, Objective
from ..reference._backend import check_backend_args
from ..simulate import simulate
from ._shared import _as_list, _axes, _fmt, _markdown, _to_pandas


# ---------------------------------------------------------------------------------------
# drop vs gain (the trade-off of arXiv 2510.18874)
# ---------------------------------------------------------------------------------------
def objective_label(objective: Objective) -> str:
    """Compact name of an objective, e.g. ``"ForwardKL"``, ``"ReverseKL(replay=0.25)"``:
    :attr:`mixforget.objectives.Objective.label`."""
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a mixforget objective, got {describe_type(objective)}")
    return objective.label


def _family(objective: Objective) -> str:
    """'forward' for forward-KL training on data (ForwardKL, SDFT(direction='forward')),
    'reverse' for the on-policy / RL objectives (everything else)."""
    if isinstance(objective, ForwardKL) or (
        isinstance(objective, SDFT) and objective.direction == "forward"
    ):
        return "forward"
    return "reverse"


@dataclass(frozen=True)
class DropGainStudy:
    """Result of :func:`drop_vs_gain`.

    With the overlap accuracies of :func:`mixforget.theory.overlap_accuracy`,
    drop(t) = acc_old(0) − acc_old(t) and gain(t) = acc_new(t) − acc_new(0) per replicate
    (:meth:`mixforget.Trajectory.drop`, :meth:`mixforget.Trajectory.gain`).

    ``rows``: one dict per (objective, learning rate, threshold g) with keys
    ``objective`` (compact label, :func:`objective_label`), ``family`` ('forward' or
    'reverse'), ``lr``, ``threshold``, ``replicates`` (replicates used: neither diverged
    nor beyond the runaway bound), ``diverged`` (those left out, :attr:`Trajectory.excluded`),
    ``reached`` / ``never_reached`` (replicates whose gain did / did not reach
    g within the run), ``drop_at_threshold_mean`` / ``_lo`` / ``_hi`` (drop at each
    reaching replicate's first recorded step with gain ≥ g: mean and 95% interval over the
    replicates that reached it; NaN when none did, the interval collapses to the mean with
    one), ``step_at_threshold_mean`` / ``_lo`` / ``_hi`` (that first step), and the run's
    end: ``final_drop_mean`` / ``_lo`` / ``_hi``, ``final_gain_mean`` / ``_lo`` / ``_hi``
    (over all replicates used; repeated on each threshold's row).

    ``paths``: one dict per (objective, learning rate) with ``objective``, ``family``,
    ``lr``, ``steps`` (n_rec,), ``drop_mean`` and ``gain_mean`` (n_rec,) — the mean drop and
    gain over the replicates used at every step (what :meth:`plot` draws).
    ``settings``: the target, the start, the objectives, the run settings and the seed.
    """

    rows: list[dict[str, Any]]
    paths: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        """One numeric column of :attr:`rows` as an array."""
        return np.array([r[name] for r in self.rows], dtype=np.float64)

    def select(
        self,
        objective: Optional[str] = None,
        lr: Optional[float] = None,
        threshold: Optional[float] = None,
    ) -> list[dict[str, Any]]:
        """The rows matching the given label / learning rate / threshold (None: any)."""
        return [
            r
            for r in self.rows
            if (objective is None or r["objective"] == objective)
            and (lr is None or r["lr"] == lr)
            and (threshold is None or r["threshold"] == threshold)
        ]

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        return _to_pandas(self.rows)

    def to_markdown(self) -> str:
        """Markdown table, one line per (objective, learning rate, threshold): drop at the first
        step with gain ≥ threshold, that step, how many replicates never reached it, and the
        final drop and gain (means with 95% intervals)."""
        header = [
            "objective",
            "lr",
            "gain ≥",
            "drop at threshold [95%]",
            "first step [95%]",
            "never reached",
            "final drop [95%]",
            "final gain [95%]",
        ]

        def ci(r: dict[str, Any], key: str) -> str:
            mean = r[f"{key}_mean"]
            if math.isnan(mean):
                return "–"
            return f"{_fmt(mean, 3)} [{_fmt(r[f'{key}_lo'], 3)}, {_fmt(r[f'{key}_hi'], 3)}]"

        lines = [
            [
                r["objective"],
                _fmt(r["lr"], 3),
                _fmt(r["threshold"], 3),
                ci(r, "drop_at_threshold"),
                ci(r, "step_at_threshold"),
                f"{r['never_reached']}/{r['replicates']}",
                ci(r, "final_drop"),
                ci(r, "final_gain"),
            ]
            for r in self.rows
        ]
        s = self.settings
        note = (
            f"\n\n{s.get('replicates')} replicates per run, {s.get('steps')} steps, batch "
            f"{s.get('batch_size')}; drop = acc_old(0) − acc_old(t), gain = acc_new(t) − "
            "acc_new(0) (overlap accuracy); intervals are normal 95% over the replicates that "
            "reached the threshold."
        )
        return _markdown(header, lines) + note

    def plot(self, ax: Any = None) -> Any:
        """The trade-off figure: drop against gain. Per (objective, learning rate) the mean
        path (gain(t), drop(t)) over the run (line); at each threshold g the mean drop
        at the first step with gain ≥ g (filled marker at x = g, 95% bar); the final
        (gain, drop) of each learning rate (hollow marker), joined across learning rates by
        a dotted line per objective. Forward objectives: warm colours and solid lines; reverse /
        on-policy ones: cool colours and dashed lines; marker shape = learning rate.
        Returns the Axes."""
        ax = _axes(ax)
        labels = list(dict.fromkeys(p["objective"] for p in self.paths))
        lrs = sorted({p["lr"] for p in self.paths})
        markers = ("o", "s", "^", "D", "v", "P", "X", "*")
        warm = ("tab:red", "tab:orange", "tab:brown", "gold", "tab:pink")
        cool = ("tab:blue", "tab:purple", "tab:cyan", "tab:green", "navy")
        colours: dict[str, str] = {}
        counts = {"forward": 0, "reverse": 0}
        for label in labels:
            fam = next(p["family"] for p in self.paths if p["objective"] == label)
            palette = warm if fam == "forward" else cool
            colours[label] = palette[counts[fam] % len(palette)]
            counts[fam] += 1
        for label in labels:
            colour = colours[label]
            runs = [p for p in self.paths if p["objective"] == label]
            style = "-" if runs[0]["family"] == "forward" else "--"
            finals = []
            for p in sorted(runs, key=lambda p: p["lr"]):
                marker = markers[lrs.index(p["lr"]) % len(markers)]
                ax.plot(p["gain_mean"], p["drop_mean"], style, color=colour, lw=1.5, alpha=0.6)
                for r in self.select(label, p["lr"]):
                    mean = r["drop_at_threshold_mean"]
                    if math.isnan(mean):
                        continue
                    err = [[max(mean - r["drop_at_threshold_lo"], 0.0)]]
                    err.append([max(r["drop_at_threshold_hi"] - mean, 0.0)])
                    ax.errorbar(
                        [r["threshold"]],
                        [mean],
                        yerr=np.array(err),
                        fmt=marker,
                        color=colour,
                        capsize=3,
                        ms=7,
                    )
                row = self.select(label, p["lr"])[0]
                finals.append((row["final_gain_mean"], row["final_drop_mean"]))
                ax.plot(
                    [row["final_gain_mean"]],
                    [row["final_drop_mean"]],
                    marker,
                    color=colour,
                    mfc="none",
                    ms=8,
                    mew=1.5,
                )
            xs, ys = zip(*finals)
            ax.plot(xs, ys, ":", color=colour, lw=1.0, alpha=0.8)
            ax.plot([], [], style, color=colour, lw=1.5, label=label)
        for i, lr in enumerate(lrs):
            ax.plot([], [], markers[i % len(markers)], color="0.4", label=f"lr = {_fmt(lr, 3)}")
        ax.plot([], [], "o", color="0.4", label="drop at first gain ≥ threshold")
        ax.plot([], [], "o", color="0.4", mfc="none", label="end of run")
        ax.axhline(0.0, color="0.7", lw=0.8, zorder=0)
        ax.set_xlabel("gain = acc_new(t) − acc_new(0)")
        ax.set_ylabel("drop = acc_old(0) − acc_old(t)")
        thr = ", ".join(_fmt(t, 3) for t in self.settings.get("thresholds", []))
        ax.set_title(f"forgetting vs learning (gain thresholds {thr})")
        ax.legend(fontsize="x-small")
        return ax


def _as_objectives(objectives: Any) -> list[Objective]:
    items = [objectives] if isinstance(objectives, Objective) else objectives
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or len(items) == 0:
        raise TypeError(
            "objectives must be a mixforget objective or a non-empty sequence of them, "
            f"got {objectives!r}"
        )
    out = list(items)
    for obj in out:
        if not isinstance(obj, Objective):
            raise TypeError(f"objectives must hold mixforget objectives, got {describe_type(obj)}")
    labels = [o.label for o in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"objectives must be distinct, got {labels}")
    return out


def _as_lr_grid(lrs: Any, n_objectives: int) -> list[list[float]]:
    """One list of learning rates per objective, from a shared list or one list each."""

    def check(values: Any) -> list[float]:
        out = []
        for v in _as_list("lrs", values):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError(f"lrs must hold numbers, got {v!r}")
            lr = float(v)
            if not (math.isfinite(lr) and lr > 0):
                raise ValueError(f"lrs must be finite numbers > 0, got {v!r}")
            out.append(lr)
        if len(set(out)) != len(out):
            raise ValueError(f"lrs must not repeat a value, got {out}")
        return out

    if isinstance(lrs, Sequence) and len(lrs) > 0 and all(isinstance(v, Sequence) for v in lrs):
        if len(lrs) != n_objectives:
            raise ValueError(
                f"lrs given per objective must have one list per objective ({n_objectives}), "
                f"got {len(lrs)}"
            )
        return [check(v) for v in lrs]
    shared = check(lrs)
    return [shared] * n_objectives


def _as_thresholds(thresholds: Any) -> list[float]:
    out = []
    for v in _as_list("thresholds", thresholds):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"thresholds must hold numbers, got {v!r}")
        g = float(v)
        if not (math.isfinite(g) and 0.0 < g <= 1.0):
            raise ValueError(f"thresholds must lie in (0, 1] (gains of accuracy), got {v!r}")
        out.append(g)
    if len(set(out)) != len(out):
        raise ValueError(f"thresholds must not repeat a value, got {out}")
    return sorted(out)


def _interval_dict(prefix: str, values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {f"{prefix}_mean": math.nan, f"{prefix}_lo": math.nan, f"{prefix}_hi": math.nan}
    mean, lo, hi = mean_interval(values)
    return {f"{prefix}_mean": float(mean), f"{prefix}_lo": float(lo), f"{prefix}_hi": float(hi)}


def _first_reaching(gain: np.ndarray, threshold: float) -> np.ndarray:
    """Index of the first record with gain ≥ threshold per replicate (rows of ``gain``,
    shape (R, n_rec)); −1 where it is never reached."""
    reached = np.asarray(gain) >= threshold
    first = np.argmax(reached, axis=1)
    return np.where(reached.any(axis=1), first, -1)


def drop_vs_gain(
    target: TwoMode,
    start: TwoMode,
    objectives: Objective | Sequence[Objective],
    lrs: Sequence[float] | Sequence[Sequence[float]] | float,
    thresholds: Sequence[float] | float = 0.9,
    *,
    steps: int = 200,
    batch_size: int = 1000,
    replicates: int = 200,
    rng: RngLike = 0,
    weight_param: str = "logit",
    lr_scale: Optional[dict[str, float]] = None,
    threads: Optional[int] = None,
    progress: bool = False,
    **simulate_kwargs: Any,
) -> DropGainStudy:
    """Forgetting against learning, the trade-off of arXiv 2510.18874 ("Retaining by Doing"):
    how much of the old task an objective has lost by the time it has learnt the new one.

    For each objective and each learning rate, :func:`mixforget.simulate` trains
    ``replicates`` copies of ``start`` for ``steps`` steps with every step recorded
    (``record_every=1``, so that "first step" is exact), and per replicate the overlap
    accuracies (:func:`mixforget.theory.overlap_accuracy`)

        acc_old = ∫ min(α* p*_old, α q_old) dx / α*,
        acc_new = ∫ min((1 − α*) p*_new, (1 − α) q_new) dx / (1 − α*)

    give drop(t) = acc_old(0) − acc_old(t) and gain(t) = acc_new(t) − acc_new(0). For each
    threshold g the drop at the first recorded step with gain ≥ g is averaged over the
    replicates that reach g (95% interval), and the replicates that never do are counted.
    Diverged and runaway replicates (:attr:`mixforget.Trajectory.excluded`) are left out and
    counted.

    Parameters
    ----------
    target, start : TwoMode
        The world p* and the start model q_0.
    objectives : Objective or sequence of Objective
        The objectives to compare (distinct); labelled by :func:`objective_label`.
    lrs : float, sequence of float, or one sequence per objective
        Learning rates: shared by every objective, or ``lrs[i]`` for ``objectives[i]``
        (e.g. ``[[0.15, 0.01], [0.01]]`` for the reference's forward and RL runs).
    thresholds : float or sequence of float in (0, 1]
        Gain thresholds g.
    steps, batch_size, replicates, rng, weight_param, lr_scale, threads, progress
        As in :func:`mixforget.simulate`; each run gets its own stream spawned from ``rng``.
    **simulate_kwargs
        Further keyword arguments of :func:`mixforget.simulate` (e.g. ``memory_limit``);
        ``record_every`` is fixed to 1.

    Returns
    -------
    DropGainStudy

    Raises
    ------
    ValueError, TypeError
        Before the first run, for any invalid argument of any run (every run's simulate
        call is checked first).
    NotImplementedError
        Before the first run, in d > 1 when a start covariance differs from the target's or
        the scales train (the overlap accuracy is implemented for d = 1 only there).
    """
    check_models(target, start)
    objs = _as_objectives(objectives)
    lr_grid = _as_lr_grid(lrs, len(objs))
    thr = _as_thresholds(thresholds)
    steps = as_positive_int("steps", steps)
    replicates = as_positive_int("replicates", replicates)
    if "record_every" in simulate_kwargs:
        raise ValueError("drop_vs_gain records every step; do not pass record_every")
    runs = [(obj, lr) for obj, lrs_obj in zip(objs, lr_grid) for lr in lrs_obj]
    shared = dict(
        steps=steps,
        batch_size=batch_size,
        replicates=replicates,
        weight_param=weight_param,
        lr_scale=lr_scale,
        threads=threads,
        progress=progress,
        **simulate_kwargs,
    )
    _check_runs(target, start, runs, shared)
    root = resolve_rng(rng)
    children = root.spawn(len(runs))
    rows: list[dict[str, Any]] = []
    paths: list[dict[str, Any]] = []
    for (obj, lr), child in zip(runs, children):
        traj = simulate(target, start, obj, lr=lr, record_every=1, rng=child, **shared)
        run_rows, path = _run_rows(traj, obj, lr, thr)
        rows.extend(run_rows)
        paths.append(path)
    settings = {
        "target": target.to_dict(),
        "start": start.to_dict(),
        "objectives": [o.as_dict() for o in objs],
        "lrs": lr_grid,
        "thresholds": thr,
        "steps": steps,
        "batch_size": int(batch_size),
        "replicates": replicates,
        "weight_param": weight_param,
        "lr_scale": lr_scale,
        "simulate_kwargs": dict(simulate_kwargs),
        "seed": seed_record(root),
    }
    return DropGainStudy(rows=rows, paths=paths, settings=settings)


_SIMULATE_KEYS = set(inspect.signature(simulate).parameters)


def _check_runs(
    target: TwoMode,
    start: TwoMode,
    runs: Sequence[tuple[Objective, float]],
    shared: dict[str, Any],
) -> None:
    """Every check of every run's simulate call, and that the overlap accuracies can be
    computed for this problem, before the first run (docs: design-reliability)."""
    unknown = sorted(set(shared) - _SIMULATE_KEYS)
    if unknown:
        raise TypeError(f"drop_vs_gain got unknown simulate keyword arguments {unknown}")
    kw = {k: v for k, v in shared.items() if k in ("backend", "device", "precision")}
    check_backend_args(kw.get("backend", "rust"), kw.get("device"), kw.get("precision", "float64"))
    for obj, lr in runs:
        check_run(
            target,
            start,
            obj,
            shared["steps"],
            shared["batch_size"],
            lr,
            shared["replicates"],
            1,
            shared["weight_param"],
            shared["lr_scale"],
            shared["threads"],
            shared["progress"],
            shared.get("memory_limit"),
            shared.get("train_scales", False),
            shared.get("scale_param", "direct"),
        )
    if target.dim == 1:
        return
    for which in ("old", "new"):
        if not np.allclose(
            start.cov_matrix(which), target.cov_matrix(which), rtol=_COV_RTOL, atol=0.0
        ):
            raise NotImplementedError(
                f"drop_vs_gain in d = {target.dim} needs the start's {which} covariance to "
                "equal the target's (the overlap accuracy with unequal covariances is "
                "implemented for d = 1 only); use the target's covariances for the start"
            )
    scale_lrs = [(shared["lr_scale"] or {}).get(k, 1.0) for k in ("old_scale", "new_scale")]
    if shared.get("train_scales", False) and any(m != 0 for m in scale_lrs):
        raise NotImplementedError(
            f"drop_vs_gain in d = {target.dim} with train_scales=True: trained scales move "
            "the model's covariances away from the target's, where the overlap accuracy is "
            "implemented for d = 1 only"
        )


def _run_rows(
    traj: Any, obj: Objective, lr: float, thresholds: list[float]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of one (objective, lr) run, one per gain threshold (the drop at the first step
    each replicate's gain reaches it, and the final drop and gain), and its mean path."""
    excluded = traj.excluded  # diverged (non-finite) or beyond the runaway bound
    keep = ~excluded
    acc = traj.overlap_accuracy()[keep]
    drop = acc[:, :1, 0] - acc[:, :, 0]
    gain = acc[:, :, 1] - acc[:, :1, 1]
    label, fam = obj.label, _family(obj)
    final = {
        **_interval_dict("final_drop", drop[:, -1]),
        **_interval_dict("final_gain", gain[:, -1]),
    }
    rows = []
    for g in thresholds:
        first = _first_reaching(gain, g)
        hit = first >= 0
        drop_at = drop[np.flatnonzero(hit), first[hit]]
        rows.append(
            {
                "objective": label,
                "family": fam,
                "lr": lr,
                "threshold": g,
                "replicates": int(keep.sum()),
                "diverged": int(excluded.sum()),
                "reached": int(hit.sum()),
                "never_reached": int((~hit).sum()),
                **_interval_dict("drop_at_threshold", drop_at),
                **_interval_dict("step_at_threshold", traj.steps[first[hit]].astype(float)),
                **final,
            }
        )
    path = {
        "objective": label,
        "family": fam,
        "lr": lr,
        "steps": traj.steps,
        "drop_mean": drop.mean(axis=0) if drop.size else np.full(traj.steps.size, np.nan),
        "gain_mean": gain.mean(axis=0) if gain.size else np.full(traj.steps.size, np.nan),
    }
    return rows, path
