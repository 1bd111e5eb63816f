"""The starvation figure (:func:`mixforget.plot.plot_starvation`, also behind
:meth:`mixforget.studies.StarvationStudy.plot`): measured starved-batch rates against the
closed forms (docs: theory-starvation, theory-pred-starvation), against the batch size, the
old weight or the replay fraction. One reader of the columns (:func:`starvation_measurements`)
serves both callers, so the two accept the same tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from ._defaults import Z95
from ._plotting import ensure_axes, float_column, table_columns
from .theory import starvation_probability

__all__ = ["STARVATION_AXES", "plot_starvation", "starvation_measurements"]

#: what the x axis of the starvation figure can be
STARVATION_AXES = ("batch_size", "old_weight", "replay")
_LINESTYLES: tuple[Any, ...] = ("-", "--", "-.", (0, (5, 1.5, 1, 1.5, 1, 1.5)))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_REQUIRED = ("batch_size", "old_weight", "measured")
_LABELS = {"batch_size": "batch size $B$", "old_weight": r"old weight $\alpha$"}
_LABELS["replay"] = r"replay fraction $\lambda$"


def _from_study_rows(cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A StarvationStudy's rows (one per α, B, λ; on-policy and replay rates side by side) as
    measurements: one on-policy row (λ = 0) per (α, B) and one row per replay λ > 0."""
    out: dict[str, list[float]] = {k: [] for k in ("batch_size", "old_weight", "replay")}
    for k in ("measured", "predicted", "batches", "lo", "hi"):
        out[k] = []
    seen = set()
    for i in range(len(cols["measured_onpolicy"])):
        a, b, lam = (float(cols[k][i]) for k in ("old_weight", "batch_size", "replay"))
        for which, rate in (("onpolicy", 0.0), ("replay", lam)):
            if (a, b, rate) in seen or (which == "replay" and lam == 0.0):
                continue
            seen.add((a, b, rate))
            for key, value in (("old_weight", a), ("batch_size", b), ("replay", rate)):
                out[key].append(value)
            out["measured"].append(float(cols[f"measured_{which}"][i]))
            out["predicted"].append(float(cols[f"predicted_{which}"][i]))
            out["lo"].append(float(cols[f"{which}_lo"][i]))
            out["hi"].append(float(cols[f"{which}_hi"][i]))
            out["batches"].append(float(cols["batches"][i]))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def starvation_measurements(table: Any) -> dict[str, np.ndarray]:
    """The measured starvation rates of ``table`` as float columns.

    ``table``: a :class:`~mixforget.studies.StarvationStudy`, its ``rows``, or a list of
    dicts / dict of columns / DataFrame with one row per measured rate and the columns

    - ``batch_size`` — B; ``old_weight`` — α; ``replay`` — λ (default 0);
    - ``measured`` — fraction of starved batches;
    - ``batches`` (optional) — the number of batches behind ``measured``;
    - ``lo``, ``hi`` (optional) — a 95% interval of ``measured`` (else, with ``batches``,
      the normal approximation);
    - ``predicted`` (optional) — the theory value at that row.

    A study's rows (``measured_onpolicy``, ``measured_replay``, … side by side) are split
    into an on-policy row (λ = 0) per (α, B) and a row per λ > 0."""
    if hasattr(table, "rows") and hasattr(table, "settings"):  # a StarvationStudy
        table = table.rows
    cols = table_columns(table)
    if "measured_onpolicy" in cols:
        return _from_study_rows(cols)
    for name in _REQUIRED:
        if name not in cols:
            raise ValueError(
                f"table needs a {name!r} column (batch_size, old_weight, measured; "
                "optional replay, batches, lo, hi, predicted), or a StarvationStudy's rows"
            )
    out = {name: float_column(cols, name) for name in ("batch_size", "old_weight", "measured")}
    for name in ("replay", "batches", "lo", "hi", "predicted"):
        values = float_column(cols, name)
        if values is not None:
            out[name] = values
    if "replay" not in out:
        out["replay"] = np.zeros_like(out["batch_size"])
    return out  # type: ignore[return-value]


def _choose_axis(cols: Mapping[str, np.ndarray], against: Optional[str]) -> str:
    """The x axis: ``against``, else the first of batch size, old weight, replay with
    several values (replay when all three have one)."""
    if against is not None:
        if against not in STARVATION_AXES:
            raise ValueError(f"against must be one of {list(STARVATION_AXES)}, got {against!r}")
        return against
    for name in STARVATION_AXES[:2]:
        if np.unique(cols[name]).size > 1:
            return name
    return "replay"


def _theory(a: Any, b: Any, lam: Any, slots: str) -> np.ndarray:
    return np.asarray(starvation_probability(a, b, lam, slots=slots), dtype=np.float64)


def _curve(x_name: str, xs: np.ndarray, fixed: dict[str, float], slots: str) -> tuple[Any, Any]:
    """The theory along the x axis (integer B; α and λ on a fine grid), the others fixed."""
    lo, hi = float(xs.min()), float(xs.max())
    if x_name == "batch_size":
        grid = np.arange(int(lo), int(hi) + 1).astype(np.float64)
    elif x_name == "replay":  # from on-policy (λ = 0) to past the largest λ measured
        grid = np.linspace(0.0, min(0.95, max(0.25, 2.0 * hi)), 200)
    else:
        grid = np.linspace(lo, hi, 200) if hi > lo else np.array([lo])
    args: dict[str, Any] = {**fixed, x_name: grid}
    b = np.rint(np.broadcast_to(args["batch_size"], grid.shape)).astype(np.int64)
    y = _theory(np.broadcast_to(args["old_weight"], grid.shape), b, args["replay"], slots)
    ok = y > 0
    return grid[ok], y[ok]


def _error_bars(cols: Mapping[str, np.ndarray], sel: np.ndarray, ms: np.ndarray) -> Any:
    """The 95% error bars of the rows ``sel`` (given intervals, else normal from batches)."""
    if "lo" in cols and "hi" in cols:
        return np.vstack([ms - cols["lo"][sel], cols["hi"][sel] - ms])
    if "batches" in cols:
        half = Z95 * np.sqrt(np.clip(ms * (1 - ms), 0, None) / cols["batches"][sel])
        return np.vstack([np.minimum(half, ms * 0.999), half])
    return None


def _series(cols: Mapping[str, np.ndarray], x_name: str) -> list[tuple[dict[str, float], Any]]:
    """One series per combination of the two parameters that are not on the x axis."""
    others = [n for n in STARVATION_AXES if n != x_name]
    keys = sorted({tuple(float(cols[n][i]) for n in others) for i in range(cols[x_name].size)})
    out = []
    for key in keys:
        sel = np.ones(cols[x_name].size, dtype=bool)
        for n, v in zip(others, key):
            sel &= cols[n] == v
        out.append((dict(zip(others, key)), sel))
    return out


def plot_starvation(
    table: Any, ax: Any = None, slots: str = "bernoulli", against: Optional[str] = None
) -> Any:
    """Starved-batch rate (docs: theory-starvation, theory-pred-starvation): measured rates as
    markers with 95% bars, the predicted P = ((1−λ)(1−α))^B as curves (λ = 0: (1−α)^B;
    ``slots='stratified'``: 0 once round(λB) ≥ 1), log y scale.

    ``table``: see :func:`starvation_measurements` — a
    :class:`~mixforget.studies.StarvationStudy` or its rows, or one row per measured rate
    with ``batch_size``, ``old_weight``, ``measured`` and optionally ``replay``, ``batches``,
    ``lo``/``hi``, ``predicted``. ``against``: the x axis (``"batch_size"``,
    ``"old_weight"`` or ``"replay"``); by default the batch size when the table has several,
    else the old weight when it has several, else the replay fraction — so a table at one
    batch size still draws the theory as a curve.

    Against B: one colour per α and one line style (and marker) per λ; otherwise one colour
    and marker per series of the two other parameters. The legend names each once, followed
    by any artist already labelled on ``ax`` (draw extra measurements with a ``label``
    first). Measured rates of 0 cannot be drawn on the log scale and are left out; the y
    axis stops at 0.2 / max(batches) (or 1e-9), below what was measurable. Returns the axes."""
    ax = ensure_axes(ax)
    cols = starvation_measurements(table)
    x_name = _choose_axis(cols, against)
    from matplotlib.lines import Line2D

    if x_name == "batch_size":
        handles, labels = _draw_against_batch_size(ax, cols, slots, Line2D)
    else:
        handles, labels = _draw_against_parameter(ax, cols, slots, x_name, Line2D)
    _finish_axes(ax, cols, x_name)
    # artists the caller labelled on these axes (e.g. other measurements) join the legend
    own, own_labels = ax.get_legend_handles_labels()
    ax.legend([*handles, *own], [*labels, *own_labels], fontsize="x-small")
    return ax


def _draw_points(ax: Any, cols: Any, x_name: str, sel: Any, **style: Any) -> None:
    order = np.argsort(cols[x_name][sel])
    idx = np.flatnonzero(sel)[order]
    xs, ms = cols[x_name][idx], cols["measured"][idx]
    keep = np.isfinite(ms) & (ms > 0)
    mask = np.zeros_like(sel)
    mask[idx[keep]] = True
    yerr = _error_bars(cols, mask, ms[keep]) if keep.any() else None
    ax.errorbar(xs[keep], ms[keep], yerr=yerr, markersize=4, capsize=2, **style)


def _draw_against_batch_size(ax: Any, cols: Any, slots: str, line2d: Any) -> tuple[list, list]:
    """Against B: colour per α, line style and marker per λ."""
    alphas = sorted(set(cols["old_weight"].tolist()))
    replays = sorted(set(cols["replay"].tolist()))
    colour = {a: f"C{i % 10}" for i, a in enumerate(alphas)}
    linestyle = {v: _LINESTYLES[i % len(_LINESTYLES)] for i, v in enumerate(replays)}
    marker = {v: _MARKERS[i % len(_MARKERS)] for i, v in enumerate(replays)}
    for a in alphas:
        for v in replays:
            sel = (cols["old_weight"] == a) & (cols["replay"] == v)
            if not sel.any():
                continue
            xs, ys = _curve(
                "batch_size", cols["batch_size"][sel], {"old_weight": a, "replay": v}, slots
            )
            ax.plot(xs, ys, linestyle=linestyle[v], linewidth=1.2, color=colour[a])
            _draw_points(ax, cols, "batch_size", sel, fmt=marker[v], color=colour[a])
    handles = [line2d([], [], color=colour[a], linewidth=6) for a in alphas]
    labels = [rf"$\alpha = {a:g}$" for a in alphas]
    for v in replays:
        handles.append(
            line2d([], [], color="black", linestyle=linestyle[v], marker=marker[v], markersize=4)
        )
        formula = r"$(1-\alpha)^B$" if v == 0 else r"$((1-\lambda)(1-\alpha))^B$"
        labels.append(rf"$\lambda = {v:g}$: theory {formula}, measured")
    return handles, labels


def _draw_against_parameter(
    ax: Any, cols: Any, slots: str, x_name: str, line2d: Any
) -> tuple[list, list]:
    """Against α or λ: one colour, marker and line style per series of the other two."""
    handles, labels = [], []
    names = {"old_weight": r"\alpha", "batch_size": "B", "replay": r"\lambda"}
    for k, (fixed, sel) in enumerate(_series(cols, x_name)):
        style = {"color": f"C{k % 10}", "linestyle": _LINESTYLES[k % len(_LINESTYLES)]}
        xs, ys = _curve(x_name, cols[x_name][sel], fixed, slots)
        ax.plot(xs, ys, linewidth=1.2, **style)
        marker = _MARKERS[k % len(_MARKERS)]
        _draw_points(ax, cols, x_name, sel, fmt=marker, color=style["color"])
        handles.append(line2d([], [], marker=marker, markersize=4, **style))
        given = ", ".join(f"${names[n]} = {v:g}$" for n, v in fixed.items())
        labels.append(f"{given}: theory $((1-\\lambda)(1-\\alpha))^B$, measured")
    return handles, labels


def _finish_axes(ax: Any, cols: Mapping[str, np.ndarray], x_name: str) -> None:
    measured = cols["measured"]
    ax.set_yscale("log")
    positive = measured[np.isfinite(measured) & (measured > 0)]
    floor = 0.2 / float(np.nanmax(cols["batches"])) if "batches" in cols else 1e-9
    if positive.size:
        floor = min(floor, 0.5 * float(positive.min()))
    ax.set_ylim(bottom=floor, top=1.5)
    x = cols[x_name]
    if x_name == "batch_size" and x.min() > 0 and x.max() / x.min() >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(_LABELS[x_name])
    ax.set_ylabel("fraction of starved batches")
    fixed = [n for n in ("batch_size",) if n != x_name and np.unique(cols[n]).size == 1]
    at = f" at $B = {cols['batch_size'][0]:g}$" if fixed else ""
    ax.set_title(f"old-mode starvation{at}")
