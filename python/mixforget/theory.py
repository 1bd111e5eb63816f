"""Closed forms and quadratures of the theory (docs: theory-geometry, theory-forward-kl,
theory-starvation, theory-fisher, theory-check-values, theory-method-closed-forms).

Pure NumPy + :mod:`math` (no SciPy): Φ is computed with :func:`math.erfc`, Gaussian
expectations with a trapezoid rule on the whole line whose step is chosen from the width of
the strip of analyticity of the integrand (exponentially convergent; ~1e-13 relative for the
equal-covariance misassignment at any separation), or, for unequal covariances in d = 1,
with step halving until two successive rules agree to 1e-13.

Public names: bhattacharyya, misassignment, starvation_probability, expected_starved_batches,
replay_weight_bound, forward_kl_optimum, fisher, local_rate, oapl_period_weight,
tttdiscover_stationary_weight, stratified_replay_count, overlap_accuracy,
overlap_accuracy_records, gaussian_overlap.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Optional, Union

import numpy as np

from ._defaults import REPLAY_SLOTS
from ._overlap import (
    _check_model,
    _cov_full,
    gaussian_overlap,
    overlap_accuracy,
    overlap_accuracy_records,
)
from ._validate import (
    as_choice,
    as_float_array,
    as_fraction,
    as_positive_float,
    as_probability,
    as_real,
)
from .mixture import TwoMode, log_bhattacharyya
from .objectives import objective_from_dict
from .results import Trajectory

__all__ = [
    "bhattacharyya",
    "expected_starved_batches",
    "fisher",
    "forward_kl_optimum",
    "gaussian_overlap",
    "local_rate",
    "misassignment",
    "oapl_period_weight",
    "overlap_accuracy",
    "overlap_accuracy_records",
    "replay_weight_bound",
    "starvation_probability",
    "stratified_replay_count",
    "tttdiscover_stationary_weight",
]

_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_WEIGHT_PARAMS = ("logit", "direct")


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------
def _norm_cdf(z: float) -> float:
    """Φ(z) = ½ erfc(−z/√2), accurate in both tails."""
    return 0.5 * math.erfc(-z / _SQRT2)


def _norm_sf(z: float) -> float:
    """1 − Φ(z) = ½ erfc(z/√2)."""
    return 0.5 * math.erfc(z / _SQRT2)


def _interval_prob(lo: float, hi: float, mean: float, sd: float) -> float:
    """P[lo < X < hi] for X ~ N(mean, sd²), without cancellation in the tails."""
    if not hi > lo:
        return 0.0
    a = (lo - mean) / sd
    b = (hi - mean) / sd
    if a >= 0.0:
        return max(_norm_sf(a) - _norm_sf(b), 0.0)
    if b <= 0.0:
        return max(_norm_cdf(b) - _norm_cdf(a), 0.0)
    return max(1.0 - _norm_cdf(a) - _norm_sf(b), 0.0)


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _sigmoid(z: float) -> float:
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _log_sigmoid(u: np.ndarray) -> np.ndarray:
    """log σ(u) = −log(1 + e^{−u}), stable for any u."""
    return -np.logaddexp(0.0, -u)


def _sigmoid_arr(u: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(u))


def _trapezoid_step(delta: float) -> float:
    """Trapezoid step for E_{z~N(0,1)}[g(σ(a + Δ z)) · poly(z)].

    The integrand is analytic in the strip |Im z| < π/Δ (poles of σ); the trapezoid error is
    ≲ exp(−π²/(Δ h)) from σ and ≲ exp(−2π²/h²) from the Gaussian factor. h = min(0.5, 0.25/Δ)
    makes both ≤ e^{−39} ≈ 1e-17 (relative to the integrand's scale)."""
    return min(0.5, 0.25 / delta) if delta > 0.0 else 0.5


def _line_nodes(lo: float, hi: float, h: float) -> np.ndarray:
    n = math.ceil((hi - lo) / h)
    return lo + h * np.arange(n + 1)


def _log_expect_sigmoid(a: float, delta: float) -> float:
    """log E_{z~N(0,1)}[σ(a + Δ z)], computed in log space (relative accuracy ~1e-13).

    log of the integrand, log σ(a + Δz) − z²/2, is concave with curvature ≥ 1 and peaks at
    z* = Δ σ(−a − Δz*) ∈ (0, Δ), so the range [−Δ − 13, Δ + 13] loses at most e^{−84} of the
    mass."""
    h = _trapezoid_step(delta)
    z = _line_nodes(-delta - 13.0, delta + 13.0, h)
    logf = _log_sigmoid(a + delta * z) - 0.5 * z * z - _LOG_SQRT_2PI
    m = float(logf.max())
    return m + math.log(float(np.exp(logf - m).sum()) * h)


def _trapezoid_converged(
    func: Callable[[np.ndarray], np.ndarray],
    lo: float,
    hi: float,
    h0: float = 0.25,
    rtol: float = 1e-13,
    atol: float = 1e-300,
    min_h: float = 1e-5,
) -> np.ndarray:
    """∫_lo^hi func(z) dz (func vectorised, returning (..., n) for n nodes) by trapezoid
    with step halving until two successive rules agree to rtol (relative) or atol."""
    n = math.ceil((hi - lo) / h0)
    h = (hi - lo) / n
    z = lo + h * np.arange(n + 1)
    vals = func(z)
    total = vals.sum(axis=-1) - 0.5 * (vals[..., 0] + vals[..., -1])  # sum with end weights ½
    est = total * h
    while True:
        mid = z[:-1] + 0.5 * h
        total = total + func(mid).sum(axis=-1)
        z = np.sort(np.concatenate([z, mid]))
        h *= 0.5
        new = total * h
        err = np.max(np.abs(new - est))
        scale = np.max(np.abs(new))
        if err <= max(rtol * scale, atol) or h < min_h:
            return np.asarray(new)
        est = new


def _equal_cov(model: TwoMode) -> bool:
    """Σ_o = Σ_n as matrices (whatever form each was given in)."""
    return bool(np.array_equal(model.cov_matrix("old"), model.cov_matrix("new")))


def _variances_1d(model: TwoMode) -> tuple[float, float]:
    return float(model.cov_matrix("old")[0, 0]), float(model.cov_matrix("new")[0, 0])


def _log_ratio_coeffs_1d(model: TwoMode) -> tuple[float, float, float]:
    """g(x) = logit α + log φ_o(x) − log φ_n(x) = A x² + B x + C (d = 1, unequal variances);
    r_o(x) = σ(g(x))."""
    vo, vn = _variances_1d(model)
    mo, mn = float(model.old_mean[0]), float(model.new_mean[0])
    c = _logit(model.old_weight)
    a = 0.5 * (1.0 / vn - 1.0 / vo)
    b = mo / vo - mn / vn
    cc = c - 0.5 * math.log(vo / vn) - 0.5 * mo * mo / vo + 0.5 * mn * mn / vn
    return a, b, cc


# ---------------------------------------------------------------------------------------
# docs: theory-geometry geometry
# ---------------------------------------------------------------------------------------
def bhattacharyya(mean_a: Any, mean_b: Any = None, cov_a: Any = 1.0, cov_b: Any = None) -> float:
    """Bhattacharyya coefficient BC = ∫ sqrt(φ_a φ_b) = exp(−D_B) (docs: theory-geometry).

    D_B = ⅛ δᵀ Σ̄⁻¹ δ + ½ ln(det Σ̄ / sqrt(det Σ_a det Σ_b)), δ = μ_a − μ_b,
    Σ̄ = (Σ_a + Σ_b)/2. With ``cov_b=None`` the covariances are equal (Σ_b = Σ_a) and
    BC = exp(−Δ²/8), Δ = ‖μ_a − μ_b‖_Σ (e.g. BC(Δ=4) = e^{−2} = 0.1353353).

    Call forms: ``bhattacharyya(mean_a, mean_b, cov_a=1.0, cov_b=None)`` with means of
    shape (d,) (scalars for d = 1) and covariances scalar, (d,) diagonal or (d, d) SPD; or
    ``bhattacharyya(model)`` with a :class:`~mixforget.TwoMode` (its two components).
    """
    if isinstance(mean_a, TwoMode):
        if (
            mean_b is not None
            or cov_b is not None
            or not (isinstance(cov_a, float) and cov_a == 1.0)
        ):
            raise TypeError("bhattacharyya(model) takes no further arguments")
        return mean_a.bhattacharyya
    if mean_b is None:
        raise TypeError("bhattacharyya needs two means (mean_a, mean_b) or one TwoMode")
    ma = as_float_array("mean_a", mean_a, ndim=(0, 1)).reshape(-1)
    mb = as_float_array("mean_b", mean_b, ndim=(0, 1)).reshape(-1)
    if ma.size == 0:
        raise ValueError("mean_a must have at least one coordinate")
    if ma.shape != mb.shape:
        raise ValueError(
            f"mean_a and mean_b must have the same dimension, got {ma.shape} and {mb.shape}"
        )
    d = ma.size
    sa = _cov_full("cov_a", cov_a, d)
    sb = sa if cov_b is None else _cov_full("cov_b", cov_b, d)
    return float(math.exp(log_bhattacharyya(ma - mb, sa, sb)))


def misassignment(model: TwoMode, kind: str = "hard") -> dict[str, float]:
    """Misassignment rates of the model's own responsibilities (docs: theory-geometry, check values
    docs: theory-check-values).

    With c = logit α, Δ = ‖μ_o − μ_n‖_Σ and ℓ(x) = (μ_o−μ_n)ᵀΣ⁻¹(x − (μ_o+μ_n)/2), so that
    r_o(x) = σ(c + ℓ(x)) and ℓ ~ N(+Δ²/2, Δ²) under φ_o, N(−Δ²/2, Δ²) under φ_n:

    ``kind="hard"`` (Bayes rule of the model):
        new_to_old = P_{x∼φ_n}[r_o(x) > ½] = Φ(c/Δ − Δ/2),
        old_to_new = P_{x∼φ_o}[r_o(x) < ½] = Φ(−c/Δ − Δ/2);
        the bounds returned are the Chernoff bounds P_{φ_n}[r_o > ½] ≤ sqrt(α/(1−α))·BC and
        P_{φ_o}[r_o < ½] ≤ sqrt((1−α)/α)·BC (twice the soft bounds).
    ``kind="soft"``:
        new_to_old = ε_{n→o} = E_{x∼φ_n}[r_o(x)] = E_{z∼N(0,1)}[σ(c − Δ²/2 + Δz)],
        old_to_new = ε_{o→n} = E_{x∼φ_o}[r_n(x)] = E_{z∼N(0,1)}[σ(−c − Δ²/2 + Δz)],
        1-D integrals evaluated by a trapezoid rule in log space (relative error ~1e-13 at
        any Δ); bounds new_to_old_bound = ½ sqrt(α/(1−α))·BC, old_to_new_bound =
        ½ sqrt((1−α)/α)·BC (from a/(a+b) ≤ ½ sqrt(a/b)). Symmetry:
        α·ε_{o→n} = (1−α)·ε_{n→o}.

    Δ = 0 (coinciding means): hard rates follow the strict inequalities (r_o ≡ α: new_to_old
    = 1[α > ½], old_to_new = 1[α < ½]); soft rates are α and 1 − α.

    Unequal covariances (d = 1 only): r_o = σ(g(x)) with g quadratic. Hard rates are exact
    Gaussian probabilities of the set {g > 0} (roots of the quadratic, Φ via erfc); soft
    rates are 1-D integrals by trapezoid with step halving (converged to 1e-13 relative).
    The bounds use the general BC of docs: theory-geometry (the inequalities hold for any
    covariances). d > 1 with unequal covariances raises NotImplementedError.

    Returns a dict with float values: new_to_old, old_to_new, new_to_old_bound,
    old_to_new_bound.
    """
    model = _check_model(model)
    as_choice("kind", kind, ("hard", "soft"))
    alpha = model.old_weight
    c = _logit(alpha)
    bc = model.bhattacharyya
    odds = math.sqrt(alpha / (1.0 - alpha))
    factor = 1.0 if kind == "hard" else 0.5
    out = {
        "new_to_old_bound": factor * odds * bc,
        "old_to_new_bound": factor * bc / odds,
    }
    if _equal_cov(model):
        delta = model.separation
        if kind == "hard":
            if delta == 0.0:
                n2o, o2n = float(alpha > 0.5), float(alpha < 0.5)
            else:
                n2o = _norm_cdf(c / delta - 0.5 * delta)
                o2n = _norm_cdf(-c / delta - 0.5 * delta)
        else:
            half = 0.5 * delta * delta
            n2o = math.exp(_log_expect_sigmoid(c - half, delta))
            o2n = math.exp(_log_expect_sigmoid(-c - half, delta))
    else:
        if model.dim != 1:
            raise NotImplementedError(
                "misassignment with unequal covariances is implemented for d = 1 only "
                f"(got d = {model.dim})"
            )
        n2o, o2n = _misassignment_unequal_1d(model, kind)
    out["new_to_old"] = float(n2o)
    out["old_to_new"] = float(o2n)
    return {k: out[k] for k in ("new_to_old", "old_to_new", "new_to_old_bound", "old_to_new_bound")}


def _misassignment_unequal_1d(model: TwoMode, kind: str) -> tuple[float, float]:
    vo, vn = _variances_1d(model)
    so, sn = math.sqrt(vo), math.sqrt(vn)
    mo, mn = float(model.old_mean[0]), float(model.new_mean[0])
    a, b, c = _log_ratio_coeffs_1d(model)
    if kind == "hard":
        # S = {g > 0}; A ≠ 0 here (unequal variances).
        disc = b * b - 4.0 * a * c
        if disc <= 0.0:
            roots: Optional[tuple[float, float]] = None
        else:
            q = -0.5 * (b + math.copysign(math.sqrt(disc), b))
            r1 = q / a
            r2 = c / q if q != 0.0 else -r1
            roots = (min(r1, r2), max(r1, r2))
        inf = math.inf
        if a > 0.0:  # g → +∞ at both ends: S = R \ [r1, r2]
            if roots is None:
                s_set, comp = [(-inf, inf)], []
            else:
                s_set, comp = [(-inf, roots[0]), (roots[1], inf)], [roots]
        else:  # g → −∞ at both ends: S = (r1, r2)
            if roots is None:
                s_set, comp = [], [(-inf, inf)]
            else:
                s_set, comp = [roots], [(-inf, roots[0]), (roots[1], inf)]
        n2o = sum(_interval_prob(lo, hi, mn, sn) for lo, hi in s_set)
        o2n = sum(_interval_prob(lo, hi, mo, so) for lo, hi in comp)
        return n2o, o2n

    def integrand(mean: float, sd: float, sign: float) -> Callable[[np.ndarray], np.ndarray]:
        def f(z: np.ndarray) -> np.ndarray:
            x = mean + sd * z
            g = (a * x + b) * x + c
            return np.exp(_log_sigmoid(sign * g) - 0.5 * z * z - _LOG_SQRT_2PI)

        return f

    n2o = float(_trapezoid_converged(integrand(mn, sn, 1.0), -14.0, 14.0))
    o2n = float(_trapezoid_converged(integrand(mo, so, -1.0), -14.0, 14.0))
    return n2o, o2n


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


# ---------------------------------------------------------------------------------------
# docs: theory-fisher local geometry
# ---------------------------------------------------------------------------------------
def _fisher_moments_equal(alpha: float, delta: float) -> dict[str, float]:
    """1-D moments along the mean difference. t = uᵀ(y − m) in whitened coordinates, so
    ℓ = Δ t, r_o = σ(c + Δ t), t ~ N(+Δ/2, 1) under φ_o and N(−Δ/2, 1) under φ_n."""
    c = _logit(alpha)
    h = _trapezoid_step(delta)
    z = _line_nodes(-14.0, 14.0, h)
    w = h * np.exp(-0.5 * z * z - _LOG_SQRT_2PI)
    out = dict.fromkeys(("ee", "eo", "en", "aoo", "boo", "aon", "bon", "ann", "bnn"), 0.0)
    for mix, centre in ((alpha, 0.5 * delta), (1.0 - alpha, -0.5 * delta)):
        t = centre + z
        u = c + delta * t
        ro, rn = _sigmoid_arr(u), _sigmoid_arr(-u)
        so_ = t - 0.5 * delta  # (x − μ_o) along u
        sn_ = t + 0.5 * delta  # (x − μ_n) along u
        dw = ro - alpha
        terms = {
            "ee": dw * dw,
            "eo": dw * ro * so_,
            "en": dw * rn * sn_,
            "aoo": (ro * so_) ** 2,
            "boo": ro * ro,
            "aon": ro * rn * so_ * sn_,
            "bon": ro * rn,
            "ann": (rn * sn_) ** 2,
            "bnn": rn * rn,
        }
        for k, v in terms.items():
            out[k] += mix * float(np.dot(w, v))
    return out


def fisher(model: TwoMode, weight_param: str = "logit") -> np.ndarray:
    """Fisher information F = E_{x∼q}[s(x) s(x)ᵀ] of the two-mode model (docs: theory-scores,
    theory-fisher).

    Parameters ordered (weight, μ_o[0..d], μ_n[0..d]) as in the gradients; the weight is
    η = logit α (``weight_param="logit"``, score r_o − α) or α (``"direct"``, score
    (r_o − α)/(α(1−α)), so F_direct = J F_logit J with J = diag(1/(α(1−α)), I, I)).
    At the target this is the Hessian of the reverse-KL (and forward-KL) loss.

    Equal covariance, any d (exact reduction): in whitened coordinates y = L⁻¹x write
    y = m + t u + w with u the unit vector along L⁻¹(μ_o − μ_n), w ⊥ u. The responsibilities
    depend on t only (r_o = σ(c + Δt)), w ~ N(0, I − uuᵀ) independently of t under both
    components. With v = Σ⁻¹(μ_o − μ_n)/Δ and E = E_q over t (mixture of N(±Δ/2, 1)):

        F_ηη = E[(r_o − α)²],
        F_η,μo = E[(r_o − α) r_o (t − Δ/2)] v,    F_η,μn = E[(r_o − α) r_n (t + Δ/2)] v,
        F_μaμb = b_ab Σ⁻¹ + (a_ab − b_ab) v vᵀ,  a_ab = E[r_a r_b t_a t_b], b_ab = E[r_a r_b],
        t_o = t − Δ/2, t_n = t + Δ/2.

    Orthogonal to the mean difference the μ blocks are E_q[r_o²]Σ⁻¹, E_q[r_o r_n]Σ⁻¹ and
    E_q[r_n²]Σ⁻¹ — they tend to αΣ⁻¹, 0, (1−α)Σ⁻¹ only as Δ → ∞, where
    F → diag(α(1−α), αΣ⁻¹, (1−α)Σ⁻¹). The 1-D moments use a trapezoid rule (error ~1e-15).
    Unequal covariance: d = 1 by 1-D quadrature (step halving), otherwise NotImplementedError.
    """
    model = _check_model(model)
    as_choice("weight_param", weight_param, _WEIGHT_PARAMS)
    alpha = model.old_weight
    d = model.dim
    if _equal_cov(model):
        sig = model.cov_matrix("old")
        sinv = np.linalg.inv(sig)
        sinv = 0.5 * (sinv + sinv.T)
        delta_vec = model.old_mean - model.new_mean
        delta = model.separation
        v = sinv @ delta_vec / delta if delta > 0.0 else np.zeros(d)
        m = _fisher_moments_equal(alpha, delta)
        f = np.empty((1 + 2 * d, 1 + 2 * d))
        o, n = slice(1, 1 + d), slice(1 + d, 1 + 2 * d)
        vv = np.outer(v, v)
        f[0, 0] = m["ee"]
        f[0, o] = f[o, 0] = m["eo"] * v
        f[0, n] = f[n, 0] = m["en"] * v
        f[o, o] = m["boo"] * sinv + (m["aoo"] - m["boo"]) * vv
        f[n, n] = m["bnn"] * sinv + (m["ann"] - m["bnn"]) * vv
        f[o, n] = m["bon"] * sinv + (m["aon"] - m["bon"]) * vv
        f[n, o] = f[o, n].T
    else:
        if d != 1:
            raise NotImplementedError(
                f"fisher with unequal covariances is implemented for d = 1 only (got d = {d})"
            )
        f = _fisher_unequal_1d(model)
    if weight_param == "direct":
        scale = 1.0 / (alpha * (1.0 - alpha))
        f[0, :] *= scale
        f[:, 0] *= scale
    return f


def _fisher_unequal_1d(model: TwoMode) -> np.ndarray:
    alpha = model.old_weight
    vo, vn = _variances_1d(model)
    mo, mn = float(model.old_mean[0]), float(model.new_mean[0])
    a, b, c = _log_ratio_coeffs_1d(model)
    total = np.zeros((3, 3))
    for mix, mean, var in ((alpha, mo, vo), (1.0 - alpha, mn, vn)):
        sd = math.sqrt(var)

        def f(z: np.ndarray, mean: float = mean, sd: float = sd) -> np.ndarray:
            x = mean + sd * z
            g = (a * x + b) * x + c
            ro, rn = _sigmoid_arr(g), _sigmoid_arr(-g)
            s = np.stack([ro - alpha, ro * (x - mo) / vo, rn * (x - mn) / vn])
            dens = np.exp(-0.5 * z * z - _LOG_SQRT_2PI)
            return (s[:, None, :] * s[None, :, :]) * dens

        total += mix * _trapezoid_converged(f, -14.0, 14.0, rtol=1e-12)
    return total


def local_rate(
    model: TwoMode,
    lr: float,
    weight_param: str = "logit",
    lr_scale: Optional[dict[str, float]] = None,
) -> float:
    """Asymptotic per-step contraction factor of the population flow near its fixed point
    (docs: theory-fisher): 1 − lr·λ_min(F), F = :func:`fisher` of ``model`` (taken as the fixed
    point, e.g. the target for ReverseKL, where the loss Hessian equals F).

    The linearised update is e ← (I − lr·M F) e with M = diag of the per-group multipliers
    ``lr_scale`` (keys weight, old_mean, new_mean; missing keys = 1); the eigenvalues of M F
    are those of M^{1/2} F M^{1/2}. Returned: the spectral radius
    max_i ``|1 − lr·λ_i(M^{1/2} F M^{1/2})|``, which equals 1 − lr·λ_min when
    lr·(λ_min + λ_max) ≤ 2 (the usual, non-oscillating regime); a value ≥ 1 means no
    contraction (a frozen or unidentified direction gives exactly 1).
    """
    lr = as_positive_float("lr", lr)
    f = fisher(model, weight_param)
    d = model.dim
    scale = {"weight": 1.0, "old_mean": 1.0, "new_mean": 1.0}
    if lr_scale is not None:
        if not isinstance(lr_scale, dict):
            raise TypeError(
                f"lr_scale must be a dict with keys weight, old_mean, new_mean, got {lr_scale!r}"
            )
        unknown = set(lr_scale) - set(scale)
        if unknown:
            raise ValueError(
                f"lr_scale has unknown key(s) {sorted(unknown)}; allowed: {sorted(scale)}"
            )
        for k, val in lr_scale.items():
            scale[k] = as_positive_float(f"lr_scale[{k!r}]", val, allow_zero=True)
    msqrt = np.sqrt(
        np.concatenate(
            [[scale["weight"]], np.full(d, scale["old_mean"]), np.full(d, scale["new_mean"])]
        )
    )
    sym = msqrt[:, None] * f * msqrt[None, :]
    eig = np.linalg.eigvalsh(0.5 * (sym + sym.T))
    return float(np.max(np.abs(1.0 - lr * eig)))


# ---------------------------------------------------------------------------------------
# docs: theory-method-closed-forms methods with per-mode constant rewards
# ---------------------------------------------------------------------------------------
def oapl_period_weight(alpha_lag: float, delta_r: float, beta: float, periods: int = 1) -> float:
    """Old weight after exact minimisation over lag periods of OAPL (docs: theory-oapl,
    theory-method-closed-forms).

    Well-separated modes, per-mode constant rewards, Δr = r_n − r_o, β1 = β2 = β: the
    per-period optimum q_lag e^{r/β}/Z gives logit α_{k+1} = logit α_k − Δr/β, so after
    ``periods`` periods α = σ(logit α_lag − periods·Δr/β).
    Check: α_lag = 0.6, β = 0.5, Δr = 1 → 0.168747.
    """
    alpha = as_probability("alpha_lag", alpha_lag)
    dr = as_real("delta_r", delta_r)
    beta = as_positive_float("beta", beta)
    if isinstance(periods, bool) or not isinstance(periods, numbers.Integral) or periods < 0:
        raise ValueError(f"periods must be an integer >= 0, got {periods!r}")
    return _sigmoid(_logit(alpha) - int(periods) * dr / beta)


def tttdiscover_stationary_weight(
    alpha0: float, beta: float, r_old: float, r_new: float, kl_penalty: float
) -> float:
    """Stationary old weight of the TTT-Discover population flow (docs: theory-ttt-discover,
    theory-method-closed-forms).

    Well-separated modes with per-mode constant rewards r_o, r_n; stationary point of
    log E_q e^{βR} − λ KL(q ‖ q_0)::

        logit α_∞ = logit α_0 + (e^{β r_o} − e^{β r_n}) / (λ Z(α_∞)),
        Z(α) = α e^{β r_o} + (1 − α) e^{β r_n}.

    The right-hand side minus the left is strictly monotone in α, so the root is unique;
    it is found by bisection on η = logit α (rewards are shifted by max(r_o, r_n) first,
    which leaves the equation unchanged and avoids overflow).
    λ = 0: no stationary interior point; returns the limit 0 if r_n > r_o, 1 if r_o > r_n,
    α_0 if equal. Check: α_0 = 0.6, β = 0.5, r_n − r_o = 1, λ = 1 → 0.4801.
    """
    a0 = as_probability("alpha0", alpha0)
    beta = as_positive_float("beta", beta)
    ro = as_real("r_old", r_old)
    rn = as_real("r_new", r_new)
    lam = as_positive_float("kl_penalty", kl_penalty, allow_zero=True)
    top = max(ro, rn)
    ea, eb = math.exp(beta * (ro - top)), math.exp(beta * (rn - top))
    diff = ea - eb
    if diff == 0.0:
        return a0
    if lam == 0.0:
        return 0.0 if diff < 0.0 else 1.0
    eta0 = _logit(a0)

    def f(eta: float) -> float:
        al = _sigmoid(eta)
        z = al * ea + (1.0 - al) * eb
        return eta - eta0 - diff / (lam * z)

    small = min(ea, eb)
    width = abs(diff) / (lam * small) if small > 0.0 else math.inf
    width = min(width, 800.0) + 1.0
    lo, hi = eta0 - width, eta0 + width
    flo = f(lo)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        fm = f(mid)
        if fm == 0.0:
            lo = hi = mid
            break
        if (fm < 0.0) == (flo < 0.0):
            lo, flo = mid, fm
        else:
            hi = mid
        if hi - lo <= 1e-15 * max(1.0, abs(mid)):
            break
    return _sigmoid(0.5 * (lo + hi))
