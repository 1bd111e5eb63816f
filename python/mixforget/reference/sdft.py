"""SDFT — self-distillation fine-tuning (MATH §4.4, *model choice*), NumPy twin.

Teacher t: the EMA φ of the student (φ ← (1 − τ) φ + τ θ after each step, τ = ``ema``) with
its new mean moved toward the truth by the demonstration (κ = ``anchor``):

    t = α_φ φ(·; μ_o^φ, Σ_o) + (1 − α_φ) φ(·; (1 − κ) μ_n^φ + κ μ_n*, Σ_n).

- direction 'reverse': KL(q_θ ‖ t), the §4.2 estimator with p* → t: samples from q_θ,
  c_i = ℓ_i − mean_{j≠i} ℓ_j, ℓ = log q_θ − log t (second density: t);
- direction 'forward': KL(t ‖ q_θ): samples from t, c_i = −1.
- Extra state: the EMA parameters φ (start: the start model; frozen with a diverged replicate).
- Exact limit: with the teacher equal to the model (one-step studies), κ = 0 makes t = q_θ and
  the gradient zero.
"""

from __future__ import annotations

import numpy as np

from ..objectives import SDFT
from ._averaging import Averager
from ._densities import Mix, mix_from_param
from ._objective import Context, ObjectiveTwin, Params, log_ratio_coef


def teacher_mix(ctx: Context, anchor: float, ema_params: Params) -> Mix:
    """The teacher t from the EMA parameters φ, the new mean anchored:
    (1 − κ) μ_n^φ + κ μ_n*."""
    kappa = float(anchor)
    p = ema_params
    anchored = (1.0 - kappa) * p.new_mean + kappa * ctx.world.mn
    return mix_from_param(p.weight, p.old_mean, anchored, ctx.weight_param)


class SDFTTwin(ObjectiveTwin[SDFT]):
    kind = "SDFT"

    def reset(self, params: Params) -> None:
        self.ema_params = params.copy()
        self.teacher = teacher_mix(self.ctx, self.objective.anchor, self.ema_params)

    def advance(self, step: int, params: Params, ok: np.ndarray) -> None:
        tau = float(self.objective.ema)
        blended = Params(
            **{
                name: (1.0 - tau) * v + tau * getattr(params, name)
                for name, v in self.ema_params.groups().items()
            }
        )
        self.ema_params = blended.where(ok, self.ema_params)
        self.teacher = teacher_mix(self.ctx, self.objective.anchor, self.ema_params)

    @property
    def forward(self) -> bool:
        return self.objective.direction == "forward"

    def draw(
        self, gen: np.random.Generator, z: np.ndarray, model: Mix
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.ctx.draw(gen, self.teacher if self.forward else model, z)

    def sampling_logpdf(self, x: np.ndarray, model: Mix) -> np.ndarray:
        return self.ctx.mixture_logpdf(x, self.teacher if self.forward else model)

    def coefficient(self, x: np.ndarray, lq: np.ndarray, avg: Averager) -> np.ndarray:
        if self.forward:
            return np.full_like(lq, -1.0)
        return log_ratio_coef(1.0, lq - self.ctx.mixture_logpdf(x, self.teacher), avg, True)
