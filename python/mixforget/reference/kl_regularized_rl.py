"""KLRegularizedRL — KL-regularised RL toward a reference model (docs:
theory-kl-regularized), array-API twin.

Maximise E_q[r] − β KL, x_i ~ q_θ. With the reward r_i, the KL term κ_i and the value
v_i = r_i − β κ_i:

    ĝ = −(1/B) Σ_i A_i s(x_i),   A = v ('raw'), v − mean_{j≠i} v_j ('loo'),
    (v − mean v)/sd(v) ('group', population sd; 0 when all values are equal),

κ = log q_θ − log q_ref (reverse 'exact', 'k1'), ρ − 1 − log ρ with ρ = q_ref/q_θ (reverse
'k3'), −ρ (forward, 'exact'). Reverse 'exact' under 'group' keeps the KL out of the
normalisation: c_i = −(r_i − mean r)/sd(r) + β (κ_i − mean κ).

- Sampling source: q_θ. Second density: the reference q_ref (the start model, the target, or
  the flat measure, log q_ref ≡ 0); the target's components for the label reward's responsibility.
- Extra state: the start model q_0 (fixed), when it is the reference.
- Exact limit: batch moments and leave-one-out means become expectations under q_θ.
"""

from __future__ import annotations

from typing import Any

from ..objectives import KLRegularizedRL
from ._averaging import Averager
from ._backend import namespace_of
from ._objective import Extra, ObjectiveTwin, Params


class KLRegularizedRLTwin(ObjectiveTwin[KLRegularizedRL]):
    implements = KLRegularizedRL

    def reset(self, params: Params) -> Extra:
        return {"start": params.copy()} if self.objective.reference == "start" else {}

    def reward(self, x: Any) -> Any:
        """r(x): label rewards weighted by the target's old responsibility, a log density, or
        a geometric reward (half-space, ball, bump) in the original coordinates."""
        obj, ctx = self.objective, self.ctx
        if obj.reward == "target_logpdf":
            return ctx.log_target(x)
        if obj.reward == "new_logpdf":
            return ctx.log_new_world(x)
        xp = ctx.xp
        if obj.reward in ("halfspace", "ball", "bump"):
            return _geometric_reward(obj, x, ctx.backend.asarray)
        lo = ctx.world.log_a[:, None] + ctx.log_old_world(x)
        ln = ctx.world.log_b[:, None] + ctx.log_new_world(x)
        share_old = xp.exp(lo - xp.logaddexp(lo, ln))
        return obj.reward_new + (obj.reward_old - obj.reward_new) * share_old

    def kl_term(self, x: Any, lq: Any, extra: Extra) -> Any:
        """κ(x) of the objective's KL direction and estimator."""
        obj, xp = self.objective, self.ctx.xp
        if obj.reference == "start":
            log_ref = self.ctx.mixture_logpdf(x, self.ctx.mix_of(extra["start"]))
        elif obj.reference == "target":
            log_ref = self.ctx.log_target(x)
        else:
            log_ref = xp.zeros_like(lq)
        if obj.kl == "forward":
            return -xp.exp(log_ref - lq)
        if obj.kl_estimator == "k3":
            log_rho = log_ref - lq
            return xp.expm1(log_rho) - log_rho
        return lq - log_ref

    def coefficient(self, x: Any, lq: Any, avg: Averager, extra: Extra) -> Any:
        obj = self.objective
        r, kappa = self.reward(x), self.kl_term(x, lq, extra)
        if obj.kl_estimator == "exact" and obj.advantage == "group":
            return -_standardised(r, avg) + obj.beta * (kappa - avg.mean_keep(kappa))
        v = r - obj.beta * kappa
        if obj.advantage == "raw":
            return -v
        if obj.advantage == "loo":
            return -(v - avg.loo(v))
        return -_standardised(v, avg)


def _geometric_reward(obj: KLRegularizedRL, x: Any, to_device: Any) -> Any:
    """r_new where a·x ≥ b (half-space) or ‖x − c‖ ≤ radius (ball), else r_old; the bump
    r_old + (r_new − r_old) exp(−‖x − c‖²/(2 s²)). x: (R, N, d); ``to_device`` moves the
    direction or centre to the run's backend."""
    xp = namespace_of(x)
    old, new = obj.reward_old, obj.reward_new
    if obj.reward == "halfspace":
        a = to_device(obj.reward_direction)
        inside = xp.sum(x * a, axis=-1) >= obj.reward_offset
        return xp.where(inside, new, old) + xp.zeros_like(x[..., 0])
    c = to_device(obj.reward_center)
    diff = x - c
    dist2 = xp.sum(diff * diff, axis=-1)
    if obj.reward == "ball":
        inside = dist2 <= obj.reward_radius * obj.reward_radius
        return xp.where(inside, new, old) + xp.zeros_like(dist2)
    s = obj.reward_width
    return old + (new - old) * xp.exp(-0.5 * dist2 / (s * s))


def _standardised(v: Any, avg: Averager) -> Any:
    """(v − mean v)/sd(v) under the averager (0 where the variance is 0)."""
    xp = namespace_of(v)
    mean = avg.mean_keep(v)
    var = avg.mean_keep((v - mean) * (v - mean))
    positive = var > 0.0
    inv_sd = xp.where(positive, 1.0 / xp.sqrt(xp.where(positive, var, 1.0)), 0.0)
    return (v - mean) * inv_sd
