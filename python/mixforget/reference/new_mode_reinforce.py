"""NewModeREINFORCE — the RL estimator of 2510.18874's simulation (REINFORCE on the model's
new component), array-API twin.

Samples from the model's new component φ_n only. With the importance ratio
ρ(x) = q_θ(x) / ((1 − α) φ_n(x)) and the reward r(x) = log p_new*(x) − log((1 − α) φ_n(x))
− log β:

    ĝ = −(1/B) Σ_i ρ_i A_i s(x_i),   x_i ~ φ_n,

with A_i = r_i ('raw') or (r_i − r̄)/sd(r) over the batch ('normalised', population standard
deviation; A = 0 when every reward is equal). No baseline.

- Sampling source: φ_n of the current model (its trained scale included); no old-labelled
  sample, so every batch is starved.
- Second density: p_new* (in the reward); the model's own weighted new part (1 − α) φ_n.
- Extra state: none.
- Exact limit: the expectation under φ_n; 'raw' gives (1/(1 − α)) ∫ q_θ r s dx, 'normalised'
  uses the mean and standard deviation of r under φ_n.
"""

from __future__ import annotations

import math
from typing import Any

from ..objectives import NewModeREINFORCE
from ._averaging import Averager
from ._densities import Mix
from ._objective import Extra, ModelDensities, ObjectiveTwin


class NewModeREINFORCETwin(ObjectiveTwin[NewModeREINFORCE]):
    implements = NewModeREINFORCE

    def draw(self, rng: Any, state: Any, z: Any, model: Mix, extra: Extra) -> tuple[Any, Any, Any]:
        xp = self.ctx.xp
        old = xp.zeros_like(z[:, :, 0], dtype=self.ctx.backend.bool_dtype)
        return state, self.ctx.draw_new_component(z, model), old

    def sampling_logpdf(self, x: Any, model: Mix, extra: Extra) -> Any:
        return self.ctx.log_new_component(x, model)

    def model_coefficient(self, x: Any, parts: ModelDensities, avg: Averager, extra: Extra) -> Any:
        """c_i = −ρ_i A_i. The reward needs log((1 − α) φ_n) of the model, hence this hook
        rather than :meth:`~._objective.ObjectiveTwin.coefficient`."""
        xp = self.ctx.xp
        log_new_part = parts.mix.log_b[:, None] + parts.log_phi_new  # log (1 − α) φ_n(x)
        r = self.ctx.log_new_world(x) - log_new_part - math.log(self.objective.beta)
        rho = xp.exp(parts.lq - log_new_part)
        if self.objective.advantage == "normalised":
            mean = avg.mean_keep(r)
            var = avg.mean_keep((r - mean) * (r - mean))
            positive = var > 0.0
            inv_sd = xp.where(positive, 1.0 / xp.sqrt(xp.where(positive, var, 1.0)), 0.0)
            r = (r - mean) * inv_sd
        return -rho * r
