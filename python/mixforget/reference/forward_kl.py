"""ForwardKL — SFT on new-task data (docs: theory-forward-kl), array-API twin.

Loss KL(p_train ‖ q_θ) with p_train = (1 − λ) p_new* + λ p_old*:

    ĝ = −(1/B) Σ_i s(x_i),   x_i ~ p_train,   s = ∇_θ log q_θ.

- Sampling source: new-task data p_new*; replay slots (each w.p. λ, 'bernoulli', or the first
  round(λB), 'stratified') draw from p_old* and are labelled old. No sample from the model.
- Second density: none. Per-sample coefficient c_i = −1. Extra state: none.
- Exact limit: the expectation of −s under p_train; its optimum is α = λ (λ = 0: mass
  forgetting).
"""

from __future__ import annotations

from typing import Any

from ..objectives import ForwardKL
from ._averaging import Averager
from ._densities import Mix
from ._objective import Extra, ObjectiveTwin, replay_logpdf, replay_mask


class ForwardKLTwin(ObjectiveTwin[ForwardKL]):
    implements = ForwardKL

    def draw(self, rng: Any, state: Any, z: Any, model: Mix, extra: Extra) -> tuple[Any, Any, Any]:
        r, b = z.shape[:2]
        obj = self.objective
        xp = self.ctx.xp
        state, rep = replay_mask(self.ctx, rng, state, r, b, obj.replay, obj.replay_slots)
        x_new = self.ctx.draw_new_world(z)
        if rep is None:
            return state, x_new, xp.zeros_like(z[:, :, 0], dtype=self.ctx.backend.bool_dtype)
        return state, xp.where(rep[:, :, None], self.ctx.draw_old_world(z), x_new), rep

    def sampling_logpdf(self, x: Any, model: Mix, extra: Extra) -> Any:
        lam = self.objective.replay
        if lam == 0.0:
            return self.ctx.log_new_world(x)
        return replay_logpdf(self.ctx, x, self.ctx.log_new_world(x), lam)

    def coefficient(self, x: Any, lq: Any, avg: Averager, extra: Extra) -> Any:
        return self.ctx.xp.full_like(lq, -1.0)
