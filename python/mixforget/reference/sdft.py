"""SDFT — self-distillation fine-tuning (docs: theory-sdft, *model choice*), array-API
twin.

Teacher t: the EMA φ of the student (φ ← (1 − τ) φ + τ θ after each step, τ = ``ema``) with
its new mean moved toward the truth by the demonstration (κ = ``anchor``):

    t = α_φ φ(·; μ_o^φ, Σ_o) + (1 − α_φ) φ(·; (1 − κ) μ_n^φ + κ μ_n*, Σ_n).

- direction 'reverse': KL(q_θ ‖ t), the docs: theory-reverse-kl estimator with p* → t: samples from
  q_θ, c_i = ℓ_i − mean_{j≠i} ℓ_j, ℓ = log q_θ − log t (second density: t);
- direction 'forward': KL(t ‖ q_θ): samples from t, c_i = −1.
- Extra state: the EMA parameters φ (start: the start model; frozen with a diverged replicate),
  the scale parameters (σ or log σ) included when they train.
- Exact limit: with the teacher equal to the model (one-step studies), κ = 0 makes t = q_θ and
  the gradient zero.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..objectives import SDFT
from ._averaging import Averager
from ._densities import Mix
from ._objective import Context, Extra, ObjectiveTwin, Params, log_ratio_coef


def teacher_mix(ctx: Context, anchor: float, ema_params: Params) -> Mix:
    """The teacher t from the EMA parameters φ, the new mean anchored:
    (1 − κ) μ_n^φ + κ μ_n*; with trainable scales its σ_k come from the EMA of the scale
    parameters (σ or log σ, as the Rust engine)."""
    kappa = float(anchor)
    p = ema_params
    anchored = (1.0 - kappa) * p.new_mean + kappa * ctx.world.mn
    return replace(ctx.mix_of(p), mn=anchored)


class SDFTTwin(ObjectiveTwin[SDFT]):
    implements = SDFT

    def reset(self, params: Params) -> Extra:
        return {"ema": params.copy()}

    def advance(self, step: Any, params: Params, ok: Any, extra: Extra) -> Extra:
        tau = float(self.objective.ema)
        ema = extra["ema"]
        blended = Params(
            **{
                name: (1.0 - tau) * v + tau * getattr(params, name)
                for name, v in ema.groups().items()
            }
        )
        return {"ema": blended.where(ok, ema)}

    def teacher(self, extra: Extra) -> Mix:
        return teacher_mix(self.ctx, self.objective.anchor, extra["ema"])

    @property
    def forward(self) -> bool:
        return self.objective.direction == "forward"

    def draw(self, rng: Any, state: Any, z: Any, model: Mix, extra: Extra) -> tuple[Any, Any, Any]:
        return self.ctx.draw(rng, state, self.teacher(extra) if self.forward else model, z)

    def sampling_logpdf(self, x: Any, model: Mix, extra: Extra) -> Any:
        return self.ctx.mixture_logpdf(x, self.teacher(extra) if self.forward else model)

    def coefficient(self, x: Any, lq: Any, avg: Averager, extra: Extra) -> Any:
        if self.forward:
            return self.ctx.xp.full_like(lq, -1.0)
        ell = lq - self.ctx.mixture_logpdf(x, self.teacher(extra))
        return log_ratio_coef(1.0, ell, avg, True)
