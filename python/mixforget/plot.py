"""Figures (optional extra 'plot': matplotlib, imported lazily).

Trajectories
    :func:`plot_trajectory` — mean old weight with its 95% band against steps, drift on a
    twin axis (used by :meth:`mixforget.Trajectory.plot`);
    :func:`plot_forgetting` — old weight and drift of several runs with 95% bands, population
    flows overlaid; :func:`plot_densities` — model densities over training against the target
    (1-D); :func:`plot_component_forgetting` — every component's weight and drift of a
    K-component run (docs: theory-k-components), population flow overlaid.
Theory checks (tables: a list of dicts or a pandas DataFrame)
    :func:`plot_drift_vs_separation` — log sup drift against Δ² with an e^{−Δ²/8} reference
    (docs: theory-pred-drift); :func:`plot_starvation` — starved-batch rate against batch size
    (or α, or λ) with the (1−α)^B and ((1−λ)(1−α))^B curves (docs: theory-starvation,
    theory-pred-starvation); it also draws a :class:`mixforget.studies.StarvationStudy` (the
    study's ``plot`` is it).

Every function takes an optional ``ax`` (or ``axes``) and returns what it drew on; with
``ax=None`` a new figure is made through ``matplotlib.pyplot``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from ._mixture_trajectory import MixtureTrajectory
from ._plotting import DRIFT_LABEL, WEIGHT_LABEL, ensure_axes, kept_replicates
from ._plotting import float_column as _float_column
from ._plotting import plot_trajectory as plot_trajectory
from ._plotting import require_matplotlib as require_matplotlib
from ._plotting import table_columns as _columns
from ._starvation_plot import plot_starvation as plot_starvation
from ._stats import mean_interval
from .results import Trajectory

__all__ = [
    "plot_component_forgetting",
    "plot_densities",
    "plot_drift_vs_separation",
    "plot_forgetting",
    "plot_starvation",
    "plot_trajectory",
    "require_matplotlib",
]

#: band modes of plot_forgetting: 95% interval of the mean, central 95% of the replicates,
#: or both (the replicates' band lighter, the mean's darker)
BAND_MODES = ("mean", "replicates", "both")
_SPREAD_ALPHA = 0.12
_MEAN_BAND_ALPHA = 0.4
#: styles that keep overlapping runs apart: line style, marker (every run its own)
_LINESTYLES: tuple[Any, ...] = ("-", "--", "-.", (0, (5, 1.5, 1, 1.5, 1, 1.5)))  # not ":"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _replicate_band(
    ax: Any, steps: np.ndarray, values: np.ndarray, colour: Any, alpha: float
) -> None:
    """Central 95% of the replicates (2.5% and 97.5% quantiles per record)."""
    if values.shape[0] > 1:
        lo, hi = np.quantile(values, [0.025, 0.975], axis=0)
        ax.fill_between(steps, lo, hi, color=colour, alpha=alpha, linewidth=0)


def plot_forgetting(
    trajectories: Mapping[str, Trajectory],
    flows: Optional[Mapping[str, Trajectory]] = None,
    axes: Optional[Sequence[Any]] = None,
    band: str = "both",
) -> Sequence[Any]:
    """Two panels, old weight α_t and drift D_t against steps, one curve per labelled run
    (the replicate mean).

    Every run has its own colour, line style and markers (placed at staggered steps), so runs
    whose curves coincide — e.g. reverse KL with and without replay — stay visible. The
    population flow of the same label (exact expected-gradient flow), if given, is drawn
    dotted on top, in a darker shade of its run's colour, with its own legend entry. Both
    panels carry a legend.

    Parameters
    ----------
    trajectories : mapping of label -> Trajectory
        Finite-batch runs.
    flows : mapping of label -> Trajectory, optional
        Population flows (:func:`mixforget.population_flow`), matched by label.
    axes : two matplotlib axes, optional
        Where to draw (a new 1 x 2 figure through ``matplotlib.pyplot`` if omitted).
    band : {'both', 'mean', 'replicates'}
        Shading: 'mean' the 95% interval of the replicate mean (mean ± 1.96 s/√R, narrow
        for many replicates), 'replicates' the central 95% of the replicates (2.5% to 97.5%
        quantiles: where single runs lie), 'both' (default) the two, the replicates' band
        lighter.

    Returns
    -------
    The two axes.
    """
    if band not in BAND_MODES:
        raise ValueError(f"band must be one of {list(BAND_MODES)}, got {band!r}")
    if axes is None:
        require_matplotlib()
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    from matplotlib.patches import Patch

    ax_w, ax_d = axes[0], axes[1]
    flows = flows or {}
    runs = list(trajectories.items())
    for k, (label, traj) in enumerate(runs):
        keep = kept_replicates(traj)
        n_rec = traj.steps.size
        every = max(len(runs), n_rec // 8)  # >= one step of offset per run
        style = {
            "label": label,
            "linestyle": _LINESTYLES[k % len(_LINESTYLES)],
            "marker": _MARKERS[k % len(_MARKERS)],
            "markersize": 5,
            "markevery": (k * every // max(1, len(runs)), every),
            "linewidth": 1.6,
            "color": f"C{k % 10}",
        }
        for ax, values in ((ax_w, traj.old_weight[keep]), (ax_d, traj.drift[keep])):
            mean, lo, hi = mean_interval(values, axis=0)
            ax.plot(traj.steps, mean, **style)
            if band in ("replicates", "both"):
                _replicate_band(ax, traj.steps, values, style["color"], _SPREAD_ALPHA)
            if band in ("mean", "both") and values.shape[0] > 1:
                ax.fill_between(
                    traj.steps, lo, hi, color=style["color"], alpha=_MEAN_BAND_ALPHA, linewidth=0
                )
        flow = flows.get(label)
        if flow is not None:
            for ax, values in ((ax_w, flow.old_weight[0]), (ax_d, flow.drift[0])):
                ax.plot(flow.steps, values, label=f"{label}: population flow", **_flow_style(k))
    extra = []
    if band in ("replicates", "both"):
        extra.append((Patch(color="0.5", alpha=_SPREAD_ALPHA), "central 95% of replicates"))
    if band in ("mean", "both"):
        extra.append((Patch(color="0.5", alpha=_MEAN_BAND_ALPHA), "95% CI of the mean"))
    first = runs[0][1] if runs else None
    if first is not None:
        ax_w.axhline(first.target.old_weight, color="grey", linewidth=0.8, linestyle=":")
        ax_w.annotate(
            r"$\alpha^*$",
            (first.steps[-1], first.target.old_weight),
            textcoords="offset points",
            xytext=(-14, 4),
            color="grey",
        )
    for ax, ylabel, title in (
        (ax_w, WEIGHT_LABEL, "mass forgetting: old weight"),
        (ax_d, DRIFT_LABEL, "old-component drift"),
    ):
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles + [h for h, _ in extra], labels + [t for _, t in extra], fontsize="small")
    return axes


def _flow_style(k: int) -> dict[str, Any]:
    """The population flow of run ``k``: its colour, darkened so that the dotted line shows on
    top of a finite-batch curve it coincides with, drawn above the runs."""
    from matplotlib.colors import to_rgb

    colour = tuple(0.6 * c for c in to_rgb(f"C{k % 10}"))
    return {"color": colour, "linestyle": ":", "linewidth": 2.0, "zorder": 4}


def _normal_pdf_1d(x: np.ndarray, mean: float, var: float) -> np.ndarray:
    return np.exp(-0.5 * (x - mean) ** 2 / var) / math.sqrt(2.0 * math.pi * var)


def _mixture_pdf_1d(
    x: np.ndarray, alpha: float, mo: float, mn: float, vo: float, vn: float
) -> np.ndarray:
    return alpha * _normal_pdf_1d(x, mo, vo) + (1.0 - alpha) * _normal_pdf_1d(x, mn, vn)


def plot_densities(
    trajectories: Mapping[str, Trajectory],
    snapshots: Optional[Sequence[int]] = None,
    axes: Optional[Sequence[Any]] = None,
    x: Optional[np.ndarray] = None,
) -> Sequence[Any]:
    """One panel per labelled run (1-D problems): the model density q_θ at several steps,
    drawn with the replicate-mean parameters (mean α, mean μ_o, mean μ_n over non-diverged
    replicates), over the target density p* (grey fill). ForwardKL runs also show their
    training distribution p_train = (1−λ) p_new + λ p_old (docs: theory-forward-kl, black dotted).
    ``snapshots``: steps to draw (nearest records); default 0, 5%, 15%, 40% and 100% of the
    run. All panels share one density scale (the largest peak of any panel), so heights
    compare across runs. Returns the axes."""
    runs = list(trajectories.items())
    if not runs:
        raise ValueError("trajectories must not be empty")
    if any(t.target.dim != 1 for _, t in runs):
        raise ValueError("plot_densities draws 1-D problems only (target.dim == 1)")
    if axes is None:
        require_matplotlib()
        import matplotlib.pyplot as plt

        _, grid = plt.subplots(
            1, len(runs), figsize=(4.5 * len(runs), 3.6), squeeze=False, sharey=True
        )
        axes = list(grid[0])
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    for ax, (label, traj) in zip(axes, runs):
        tgt = traj.target
        vo, vn = float(tgt.cov_matrix("old")[0, 0]), float(tgt.cov_matrix("new")[0, 0])
        mo_t, mn_t = float(tgt.old_mean[0]), float(tgt.new_mean[0])
        keep = kept_replicates(traj)
        w = traj.old_weight[keep].mean(axis=0)
        mo = traj.old_mean[keep, :, 0].mean(axis=0)
        mn = traj.new_mean[keep, :, 0].mean(axis=0)
        if x is None:
            lo = min(mo_t, mn_t, float(mo.min()), float(mn.min())) - 4.0 * math.sqrt(max(vo, vn))
            hi = max(mo_t, mn_t, float(mo.max()), float(mn.max())) + 4.0 * math.sqrt(max(vo, vn))
            xs = np.linspace(lo, hi, 600)
        else:
            xs = np.asarray(x, dtype=np.float64)
        ax.fill_between(
            xs,
            _mixture_pdf_1d(xs, tgt.old_weight, mo_t, mn_t, vo, vn),
            color="0.85",
            label=r"target $p^*$",
            linewidth=0,
        )
        objective = traj.meta.get("objective", {})
        if objective.get("kind") == "ForwardKL":
            lam = float(objective.get("replay", 0.0))
            ax.plot(
                xs,
                _mixture_pdf_1d(xs, lam, mo_t, mn_t, vo, vn),
                color="black",
                linestyle=":",
                linewidth=1.0,
                label=r"$p_{\mathrm{train}}$",
            )
        if snapshots is None:
            last = int(traj.steps[-1])
            wanted = [0, round(0.05 * last), round(0.15 * last), round(0.4 * last), last]
        else:
            wanted = list(snapshots)
        idx = sorted({int(np.argmin(np.abs(traj.steps - s))) for s in wanted})
        for j, k in enumerate(idx):
            colour = cmap(j / max(1, len(idx) - 1) * 0.9)
            alpha = float(np.clip(w[k], 0.0, 1.0))
            ax.plot(
                xs,
                _mixture_pdf_1d(xs, alpha, mo[k], mn[k], vo, vn),
                color=colour,
                label=f"step {int(traj.steps[k])}",
            )
        ax.set_title(label)
        ax.set_xlabel("x")
        ax.set_ylabel("density")
        ax.legend(fontsize="x-small")
    drawn = list(axes)[: len(runs)]
    top = 1.05 * max(float(ax.dataLim.y1) for ax in drawn)
    for ax in drawn:  # one density scale for every panel
        ax.set_ylim(0.0, top)
    return axes


def _log_slope(x2: np.ndarray, y: np.ndarray, fit_points: int) -> float:
    """Least-squares slope of log y against Δ² over the ``fit_points`` largest Δ (NaN with
    fewer than two points)."""
    if x2.size < 2:
        return math.nan
    order = np.argsort(x2)[-fit_points:]
    if order.size < 2:
        return math.nan
    slope, _ = np.polyfit(x2[order], np.log(y[order]), 1)
    return float(slope)


def plot_drift_vs_separation(
    table: Any, ax: Any = None, by: Optional[str] = None, fit_points: int = 4
) -> Any:
    """log sup_t D_t against Δ², each series with its fitted slope, beside the theory's
    slope −1/8 (docs: theory-pred-drift: sup_t D_t ≤ C·e^{−Δ²/8} when the new mean approaches the
    old mode no closer than Δ, so the slope of log sup drift against Δ² approaches −1/8 as Δ
    grows).

    ``table``: list of dicts, dict of columns or DataFrame (e.g. :func:`mixforget.sweep`'s
    result with ``grid={"separation": …}``) with columns

    - ``separation`` — Δ (required);
    - ``sup_drift_mean`` (and optionally ``sup_drift_lo``, ``sup_drift_hi``) — finite-batch
      mean of the per-replicate sup drift with its 95% interval: markers with error bars;
    - ``sup_drift_population`` — the population flow's sup drift: a black line;
    - ``bhattacharyya`` — BC; defaults to e^{−Δ²/8} (equal covariance).

    At least one of ``sup_drift_mean`` and ``sup_drift_population`` is needed. ``by``: a
    column whose values split the rows into labelled series (e.g. ``"batch_size"``); the
    population flow does not depend on a batch size, so series whose population values are
    equal are drawn (and listed) once. Each legend entry gives the series' least-squares
    slope of log sup drift against Δ² over its ``fit_points`` largest Δ. The reference line
    C·BC (slope −1/8) is anchored on the population flow (or the first series) at its
    largest Δ. Non-positive values are left out (log scale). Returns the axes.
    """
    ax = ensure_axes(ax)
    cols = _columns(table)
    sep = _float_column(cols, "separation")
    if sep is None:
        raise ValueError("table needs a 'separation' column (Δ)")
    mean = _float_column(cols, "sup_drift_mean")
    pop = _float_column(cols, "sup_drift_population")
    if mean is None and pop is None:
        raise ValueError("table needs 'sup_drift_mean' and/or 'sup_drift_population'")
    lo, hi = _float_column(cols, "sup_drift_lo"), _float_column(cols, "sup_drift_hi")
    bc = _float_column(cols, "bhattacharyya")
    if bc is None:
        bc = np.exp(-(sep**2) / 8.0)
    if by is not None and by not in cols:
        raise ValueError(f"by={by!r} is not a column of the table")
    fit_points = int(fit_points)
    if fit_points < 2:
        raise ValueError(f"fit_points must be an integer >= 2, got {fit_points}")
    groups = [None] if by is None else list(dict.fromkeys(cols[by].tolist()))
    anchor: Optional[tuple[float, float, float]] = None
    drawn_population: list[tuple[np.ndarray, np.ndarray]] = []
    population_lines = []
    for k, g in enumerate(groups):
        sel = np.ones(sep.size, dtype=bool) if by is None else (cols[by] == g)
        order = np.argsort(sep[sel])
        x2 = (sep[sel] ** 2)[order]
        suffix = "" if g is None else f"{by}={g}: "
        if pop is not None:
            y = pop[sel][order]
            ok = np.isfinite(y) & (y > 0)
            line = _population_series(ax, x2[ok], y[ok], drawn_population, fit_points)
            if line is not None:
                population_lines.append((line, suffix))
                if anchor is None:
                    anchor = (float(x2[ok][-1]), float(y[ok][-1]), float(bc[sel][order][ok][-1]))
        if mean is not None:
            y = mean[sel][order]
            ok = np.isfinite(y) & (y > 0)
            yerr = None
            if lo is not None and hi is not None:
                yerr = np.vstack([y - lo[sel][order], hi[sel][order] - y])[:, ok]
            slope = _log_slope(x2[ok], y[ok], fit_points)
            ax.errorbar(
                x2[ok],
                y[ok],
                yerr=yerr,
                fmt=_MARKERS[(k + 1) % len(_MARKERS)] + "-",
                linewidth=0.8,
                markersize=4,
                capsize=2,
                color=f"C{k % 10}",
                label=f"{suffix}finite batch, mean sup drift (slope {slope:.3f})",
            )
            if anchor is None and ok.any():
                anchor = (float(x2[ok][-1]), float(y[ok][-1]), float(bc[sel][order][ok][-1]))
    # one population curve: no series name; several: name each by its group
    for line, suffix in population_lines:
        name = "" if len(population_lines) == 1 else f" ({suffix.rstrip(': ')})"
        line.set_label(line.get_label().format(name))
    if anchor is not None:
        _theory_line(ax, sep, anchor)
    ax.set_yscale("log")
    ax.set_xlabel(r"$\Delta^2$ (squared Mahalanobis separation)")
    ax.set_ylabel(r"$\sup_t \Vert\mu_o(t) - \mu_o^*\Vert_\Sigma$")
    ax.set_title("old-mode drift is gated by overlap")
    ax.legend(fontsize="small")
    return ax


def _population_series(
    ax: Any,
    x2: np.ndarray,
    y: np.ndarray,
    drawn: list[tuple[np.ndarray, np.ndarray]],
    fit_points: int,
) -> Any:
    """Draw one population-flow series (log sup drift against Δ², with its fitted slope)
    unless it is empty or equal to one already ``drawn``; the line, or None. The label keeps
    a ``{}`` for the series name, filled in once all series are known."""
    same = any(
        a.shape == x2.shape and np.allclose(a, x2) and np.allclose(b, y, rtol=1e-9, atol=0)
        for a, b in drawn
    )
    if not x2.size or same:
        return None
    drawn.append((x2, y))
    slope = _log_slope(x2, y, fit_points)
    (line,) = ax.plot(
        x2,
        y,
        color="black",
        marker="o",
        markersize=4,
        linestyle=_LINESTYLES[(len(drawn) - 1) % len(_LINESTYLES)],
        label=f"population flow{{}} (slope {slope:.3f})",
    )
    return line


def _theory_line(ax: Any, sep: np.ndarray, anchor: tuple[float, float, float]) -> None:
    """The theory's C·BC = C·e^{−Δ²/8} (slope −1/8), through ``anchor`` = (Δ², drift, BC)."""
    xs = np.linspace(float(np.nanmin(sep)) ** 2, float(np.nanmax(sep)) ** 2, 200)
    c = anchor[1] / anchor[2]
    ax.plot(
        xs,
        c * np.exp(-xs / 8.0),
        color="0.45",
        linestyle="--",
        linewidth=1.0,
        label=r"theory: slope $-1/8$ ($\propto e^{-\Delta^2/8}$ = BC)",
    )


def plot_component_forgetting(
    trajectory: Any,
    axes: Any = None,
    population: Any = None,
    label: Optional[str] = None,
) -> Any:
    """Per-component forgetting of a K-component run (docs: theory-k-components): left, the
    mean weight w_j(t) of every component with its 95% band and the target's w_j* dotted;
    right, the mean drift ‖μ_j(t) − μ_j*‖ (Mahalanobis, the target's Σ_j) with its band. One
    colour per component, the legend naming each (old/new role and target weight). Replicates
    that diverged or ran away (:attr:`~mixforget.results.MixtureTrajectory.excluded`) are left
    out and counted in the title. ``population``: a population-flow MixtureTrajectory of the
    same problem, drawn dashed in the same colours. Returns the two axes.

    ``trajectory`` is a :class:`mixforget.results.MixtureTrajectory` (from
    :func:`mixforget.simulate` with :class:`mixforget.Mixture` models)."""
    from ._plotting import band

    if not isinstance(trajectory, MixtureTrajectory):
        raise TypeError(
            "trajectory must be a MixtureTrajectory (a run with mixforget.Mixture models), got "
            f"{type(trajectory).__name__}"
        )
    if axes is None:
        require_matplotlib()
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax_w, ax_d = axes
    keep = ~np.asarray(trajectory.excluded, dtype=bool)
    shown = keep if keep.any() else np.ones_like(keep)
    new = set(trajectory.meta.get("new_components", []))
    drift = trajectory.drift
    prefix = f"{label}: " if label else ""
    for j in range(trajectory.n_components):
        colour = f"C{j}"
        role = "new" if j in new else "old"
        w_star = float(trajectory.target.weights[j])
        name = f"{prefix}component {j} ({role}), target w = {w_star:.3g}"
        band(ax_w, trajectory.steps, trajectory.weights[shown, :, j], color=colour, label=name)
        ax_w.axhline(w_star, color=colour, linestyle=":", linewidth=1)
        band(ax_d, trajectory.steps, drift[shown, :, j], color=colour, label=name)
        if population is not None:
            ax_w.plot(population.steps, population.weights[0, :, j], "--", color=colour,
                      label=f"component {j}, population flow")  # fmt: skip
            ax_d.plot(population.steps, population.drift[0, :, j], "--", color=colour,
                      label=f"component {j}, population flow")  # fmt: skip
    ax_w.set_xlabel("step")
    ax_w.set_ylabel(r"component weight $w_j(t)$ (dotted: target $w_j^*$)")
    ax_d.set_xlabel("step")
    ax_d.set_ylabel(r"drift $\|\mu_j(t) - \mu_j^*\|_{\Sigma_j}$")
    excluded = int((~keep).sum())
    title = f"{int(shown.sum())} replicates (95% bands)"
    if excluded:
        title += f", {excluded} diverged or runaway left out"
    ax_w.set_title(title, fontsize="small")
    ax_w.legend(fontsize="x-small")
    ax_d.legend(fontsize="x-small")
    return axes
