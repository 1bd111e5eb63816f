"""Starvation and replay (docs: theory-starvation, theory-forward-kl): the probability that a
batch holds no old-mode sample, the expected starved batches of a run, the stratified replay
count, the replay importance-weight bound and the forward-KL optimum under replay."""

from __future__ import annotations

import numbers
from typing import Any, Optional, Union

import numpy as np

from .._defaults import REPLAY_SLOTS
from .._validate import (
    as_choice,
    as_float_array,
    as_fraction,
)
from ..objectives import objective_from_dict
from ..results import Trajectory


# ---------------------------------------------------------------------------------------
# docs: theory-starvation starvation
# ---------------------------------------------------------------------------------------
def _as_batch_sizes(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"batch_size must be an integer (or an array of integers) >= 1, got {value!r}"
        )
    if np.any(arr < 1):
        raise ValueError(f"batch_size must be >= 1, got {value!r}")
    return arr.astype(np.float64)


def _as_prob_array(name: str, value: Any, upper_open: bool) -> np.ndarray:
    arr = as_float_array(name, value).reshape(np.shape(value))  # keep 0-d inputs 0-d
    if upper_open:
        if np.any(arr < 0.0) or np.any(arr >= 1.0):
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    elif np.any(arr < 0.0) or np.any(arr > 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return arr


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """round(x) for x ≥ 0 with ties away from zero (Rust's f64::round), exactly."""
    fl = np.floor(x)
    return fl + (x - fl >= 0.5)


def stratified_replay_count(replay: Any, batch_size: Any) -> Union[int, np.ndarray]:
    """Number of replay slots of a stratified batch, k = round(λB), ties away from zero
    (the Rust kernels' convention; e.g. λ = 0.25, B = 2 gives k = 1) (docs: theory-forward-kl,
    theory-starvation).

    ``replay`` ∈ [0, 1) and ``batch_size`` (integers ≥ 1) broadcast; an int is returned for
    scalar inputs."""
    lam = _as_prob_array("replay", replay, upper_open=True)
    b = _as_batch_sizes(batch_size)
    k = _round_half_away(lam * b).astype(np.int64)
    return int(k) if k.ndim == 0 else k


def starvation_probability(
    old_weight: Any, batch_size: Any, replay: Any = 0.0, slots: str = "bernoulli"
) -> Union[float, np.ndarray]:
    """Probability that a batch holds no old-labelled sample (docs: theory-starvation).

    - on-policy (λ = 0): P = (1 − α)^B;
    - ``slots="bernoulli"`` (each sample is a replay sample w.p. λ): P = ((1 − λ)(1 − α))^B;
    - ``slots="stratified"`` (exactly k = round(λB) replay samples, ties away from zero as in
      the Rust kernels): P = 0 if k ≥ 1, else (1 − α)^B.

    Here α is the probability that an on-policy draw carries the old label (the model's old
    weight for on-policy objectives). Check values: α = 0.05, B = 32: 0.193711; with
    bernoulli replay λ = 0.25: 1.946e-5.

    Vectorised: ``old_weight`` ∈ [0, 1], ``batch_size`` (integers ≥ 1) and ``replay`` ∈ [0, 1)
    broadcast together; a float is returned when all three are scalars.
    """
    as_choice("slots", slots, REPLAY_SLOTS)
    alpha = _as_prob_array("old_weight", old_weight, upper_open=False)
    b = _as_batch_sizes(batch_size)
    lam = _as_prob_array("replay", replay, upper_open=True)
    try:
        alpha, b, lam = np.broadcast_arrays(alpha, b, lam)
    except ValueError:
        raise ValueError(
            f"old_weight, batch_size and replay must broadcast together, got shapes "
            f"{np.shape(old_weight)}, {np.shape(batch_size)}, {np.shape(replay)}"
        ) from None
    with np.errstate(divide="ignore"):
        log_on = np.log1p(-alpha)
        if slots == "bernoulli":
            p = np.exp(b * (np.log1p(-lam) + log_on))
        else:
            k = _round_half_away(lam * b)
            p = np.where(k >= 1.0, 0.0, np.exp(b * log_on))
    if p.ndim == 0:
        return float(p)
    return p


def _onpolicy_index(steps_total: int, record_steps: np.ndarray, lag: Optional[int]) -> np.ndarray:
    """For every step t = 0..T−1, the index of the record whose old weight is used."""
    t = np.arange(steps_total)
    if lag is not None:
        t = lag * (t // lag)
    idx = np.searchsorted(record_steps, t, side="right") - 1
    return idx


def expected_starved_batches(
    path_or_trajectory: Any,
    batch_size: Optional[int] = None,
    replay: Optional[float] = None,
    slots: Optional[str] = None,
    cumulative: bool = False,
) -> Union[float, np.ndarray]:
    """Expected number of starved batches along a path, Σ_t P(α_t) (docs: theory-starvation).

    P is :func:`starvation_probability`. Two input forms:

    **Array of old weights** (shape (..., T), one α_t per step at which a batch is drawn):
    returns Σ_t P(α_t, B, λ) over the last axis (a float for a 1-D path). ``batch_size`` is
    required; ``replay`` defaults to 0 and ``slots`` to "bernoulli". With
    ``cumulative=True`` returns the running sums (..., T): entry t = Σ_{s ≤ t} P(α_s).

    **A** :class:`~mixforget.Trajectory` (from ``mf.simulate``): returns an (R,) array, one
    expected count per replicate, comparable with ``traj.starved[:, -1]``. What it does:

    - B = ``meta["batch_size"]`` unless ``batch_size`` is given; λ and the slot rule are the
      objective's ``replay`` / ``replay_slots`` from ``meta["objective"]`` (0 and
      "bernoulli" for objectives without replay) unless ``replay`` / ``slots`` are given.
    - The batch of update t + 1 (t = 0 … T − 1, T = ``steps[-1]``) is drawn from the state
      after t updates. The trajectory only holds records at ``steps`` = 0, k, 2k, …, so α_t
      is approximated as step-wise constant between records: α_t ≈ old_weight at the last
      record ≤ t. The result is Σ_j (steps[j+1] − steps[j]) · P(α_{steps[j]}); it is exact
      when ``record_every`` = 1.
    - The probability that one on-policy draw is old depends on the objective:
      ReverseKL, TTTDiscover, SDFT(direction="reverse") sample from the model: α_t.
      OAPL samples from the lagged model (θ_lag ← θ at steps 0, L, 2L, …): α at step
      L⌊t/L⌋, taken from the last record ≤ L⌊t/L⌋ (exact when record_every divides L).
      SDFT(direction="forward") samples from the EMA teacher, whose weight is not recorded:
      approximated by α_t. ForwardKL's non-replay samples are new-task data, never old:
      the old probability is 0, so P = (1 − λ)^B (bernoulli) — every batch is starved
      when λ = 0.
    - Diverged replicates are computed from their stored records like the others (their
      simulation stopped, so compare only ``~traj.diverged``).
    - ``cumulative=True`` returns (R, n_rec), the expected cumulative count at each record
      (entry 0 is 0), the layout of ``traj.starved``.
    """
    if slots is not None:
        as_choice("slots", slots, REPLAY_SLOTS)
    if not isinstance(cumulative, bool):
        raise TypeError(f"cumulative must be a bool, got {cumulative!r}")
    if isinstance(path_or_trajectory, Trajectory):
        return _expected_starved_trajectory(
            path_or_trajectory, batch_size, replay, slots, cumulative
        )
    if batch_size is None:
        raise ValueError("batch_size is required when the path is an array of old weights")
    path = as_float_array("path_or_trajectory", path_or_trajectory).reshape(
        np.shape(path_or_trajectory)
    )
    if path.ndim == 0:
        raise ValueError(
            "path_or_trajectory must have at least one dimension (one old weight per step)"
        )
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool):
        raise TypeError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    lam = 0.0 if replay is None else as_fraction("replay", replay)
    if np.any((path < 0.0) | (path > 1.0)):
        raise ValueError(
            "path_or_trajectory must hold old weights in [0, 1], got values in "
            f"[{path.min()}, {path.max()}]"
        )
    p = np.asarray(starvation_probability(path, batch_size, lam, slots or "bernoulli"))
    if cumulative:
        return np.cumsum(p, axis=-1)
    total = p.sum(axis=-1)
    return float(total) if total.ndim == 0 else total


def _expected_starved_trajectory(
    traj: Any,
    batch_size: Optional[int],
    replay: Optional[float],
    slots: Optional[str],
    cumulative: bool,
) -> np.ndarray:
    meta = traj.meta or {}
    if batch_size is None:
        if "batch_size" not in meta:
            raise ValueError("the trajectory's meta has no 'batch_size'; pass batch_size=")
        batch_size = int(meta["batch_size"])
    if (
        not isinstance(batch_size, numbers.Integral)
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    objective = objective_from_dict(meta["objective"]) if "objective" in meta else None
    kind = type(objective).__name__ if objective is not None else None
    lam = (
        float(getattr(objective, "replay", 0.0))
        if replay is None
        else as_fraction("replay", replay)
    )
    rule = slots if slots is not None else str(getattr(objective, "replay_slots", "bernoulli"))

    steps = np.asarray(traj.steps, dtype=np.int64)
    if steps.ndim != 1 or steps.size < 1 or steps[0] != 0 or np.any(np.diff(steps) <= 0):
        raise ValueError("trajectory steps must start at 0 and increase strictly")
    weights = np.asarray(traj.old_weight, dtype=np.float64)  # (R, n_rec)
    n_steps = int(steps[-1])
    lag = int(objective.lag) if kind == "OAPL" else None  # type: ignore[union-attr]
    idx = _onpolicy_index(n_steps, steps, lag)  # (T,) record index used at each step
    if kind == "ForwardKL":
        alpha = np.zeros_like(weights)
    else:
        alpha = np.clip(weights, 0.0, 1.0)
    p = np.asarray(starvation_probability(alpha, batch_size, lam, rule))  # (R, n_rec)
    per_step = p[:, idx]  # (R, T)
    if not cumulative:
        return per_step.sum(axis=1)
    run = np.concatenate([np.zeros((p.shape[0], 1)), np.cumsum(per_step, axis=1)], axis=1)
    return run[:, steps]


# ---------------------------------------------------------------------------------------
# docs: theory-forward-kl replay
# ---------------------------------------------------------------------------------------
def replay_weight_bound(replay: float) -> float:
    """Upper bound of the replay importance weight w = q/m ≤ 1/(1 − λ) (docs: theory-reverse-kl),
    m = (1 − λ) q + λ p_old, λ ∈ [0, 1)."""
    lam = as_fraction("replay", replay)
    return 1.0 / (1.0 - lam)


def forward_kl_optimum(replay: float) -> float:
    """Population optimum of ForwardKL(replay=λ) for the old weight: α = λ
    (docs: theory-forward-kl), since the optimum is q_θ = p_train = (1 − λ) p_new + λ p_old (means
    at the truth). λ = 0 gives α → 0 (mass forgetting)."""
    return as_fraction("replay", replay)
