"""ReverseKL — on-policy reverse KL with replay (docs: theory-reverse-kl), array-API twin.

Loss KL(q_θ ‖ p*). With ℓ = log q_θ − log p*, samples from m = (1 − λ') q_θ + λ' p_old*:

    ĝ = (1/B) Σ_i w_i (ℓ_i − b_i) s(x_i),   w_i = min(q_θ(x_i)/m(x_i), cap) ≤ 1/(1 − λ'),
    b_i = mean_{j≠i} w_j ℓ_j ('loo') or 0 ('none').

- Sampling source: q_θ (label old ~ Bernoulli(α), then x ~ φ_label); replay slots draw from
  p_old* and are labelled old.
- Second density: p* (the loss), and p_old* inside m. λ' = λ for 'bernoulli' slots and in
  the population limit, round(λB)/B for 'stratified' slots.
- Extra state: none.
- Exact limit: m-expectation of w (ℓ − E_m[wℓ]) s; uncapped, this is the on-policy gradient
  whatever λ (the weights undo the replay); a cap truncates it (biased).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from .._kernels import as_points
from .._problem import check_models
from .._validate import resolve_threads
from ..mixture import TwoMode
from ..objectives import STRATIFIED, ReverseKL
from ..theory import stratified_replay_count
from ._averaging import Averager
from ._densities import Mix
from ._objective import Context, Extra, ObjectiveTwin, log_ratio_coef, replay_logpdf, replay_mask
from .kernels import mixture_logpdf


def effective_replay(objective: ReverseKL, batch_size: Optional[int]) -> float:
    """λ' in the weights: λ (bernoulli slots, population) or round(λB)/B (stratified)."""
    if objective.replay > 0.0 and objective.replay_slots == STRATIFIED and batch_size is not None:
        return int(stratified_replay_count(objective.replay, batch_size)) / batch_size
    return objective.replay


def replay_weight(ctx: Context, x: Any, lq: Any, lam: float, cap: Optional[float]) -> Any:
    """w = min(q/m, cap), m = (1 − λ') q + λ' p_old (docs: theory-reverse-kl); w = 1 without replay
    (the cap only applies to replay weights, as in the Rust engine)."""
    if lam <= 0.0:
        return 1.0
    xp = ctx.xp
    with np.errstate(divide="ignore"):
        lm = xp.logaddexp(math.log1p(-lam) + lq, math.log(lam) + ctx.log_old_world(x))
    w = xp.exp(lq - lm)
    return w if cap is None else xp.minimum(w, xp.full_like(w, cap))


class ReverseKLTwin(ObjectiveTwin[ReverseKL]):
    implements = ReverseKL

    def __init__(self, objective: ReverseKL, ctx: Context, batch_size: Optional[int]) -> None:
        super().__init__(objective, ctx, batch_size)
        self.lam_eff = effective_replay(objective, batch_size)

    def draw(self, rng: Any, state: Any, z: Any, model: Mix, extra: Extra) -> tuple[Any, Any, Any]:
        r, b = z.shape[:2]
        obj = self.objective
        state, rep = replay_mask(self.ctx, rng, state, r, b, obj.replay, obj.replay_slots)
        state, x, old = self.ctx.draw(rng, state, model, z)
        if rep is None:
            return state, x, old
        return state, self.ctx.xp.where(rep[:, :, None], self.ctx.draw_old_world(z), x), old | rep

    def sampling_logpdf(self, x: Any, model: Mix, extra: Extra) -> Any:
        lq = self.ctx.mixture_logpdf(x, model)
        if self.lam_eff > 0.0:
            return replay_logpdf(self.ctx, x, lq, self.lam_eff)
        return lq

    def coefficient(self, x: Any, lq: Any, avg: Averager, extra: Extra) -> Any:
        obj = self.objective
        w = replay_weight(self.ctx, x, lq, self.lam_eff, obj.weight_cap)
        return log_ratio_coef(w, lq - self.ctx.log_target(x), avg, obj.baseline == "loo")


def replay_weights(
    x: Any,
    model: TwoMode,
    target: TwoMode,
    replay: float,
    weight_cap: Optional[float] = None,
    threads: Optional[int] = None,
) -> np.ndarray:
    """NumPy twin of :func:`mixforget.kernels.replay_weights` (docs: theory-reverse-kl):
    w = min(c, q_θ/m), m = (1−λ) q_θ + λ p_old, written as 1 / ((1−λ) + λ p_old/q_θ)."""
    check_models(target, model, "model")
    objective = ReverseKL(replay=replay, weight_cap=weight_cap)
    resolve_threads(threads)
    pts = as_points(x, model.dim)
    log_q = mixture_logpdf(
        pts,
        [model.old_weight, 1.0 - model.old_weight],
        np.stack([model.old_mean, model.new_mean]),
        [model.old_cov, model.new_cov],
    )
    cap = math.inf if objective.weight_cap is None else objective.weight_cap
    lam = objective.replay
    if lam == 0.0:
        return np.minimum(np.ones(len(pts)), cap)
    log_old = mixture_logpdf(pts, [1.0], target.old_mean[None, :], [target.old_cov])
    return np.minimum(1.0 / ((1.0 - lam) + lam * np.exp(log_old - log_q)), cap)
