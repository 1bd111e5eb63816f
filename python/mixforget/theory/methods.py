"""Closed forms of the methods with per-mode constant rewards
(docs: theory-method-closed-forms): OAPL's weight after a number of periods and
TTT-Discover's stationary weight."""

from __future__ import annotations

import math
import numbers

from .._validate import (
    as_positive_float,
    as_probability,
    as_real,
)
from ._quadrature import _logit, _sigmoid


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
