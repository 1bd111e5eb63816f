"""OAPL — off-policy regression to the optimal policy (MATH §4.6), NumPy twin. Group size
G = batch size.

With the lagged model q_lag (θ_lag ← θ after every ``lag``-th step) and rewards r_i:

    V̂ = β1 log mean_i exp(r_i / β1),   Δ_i = log q_θ(x_i) − log q_lag(x_i),
    ĝ = (2β2/G) Σ_i (β2 Δ_i − (r_i − V̂)) s(x_i),   x_i ~ q_lag.

- Sampling source: q_lag. Second density: q_lag (in Δ).
- Extra state: the lagged parameters (start: the start model).
- Exact limit: V̂ → β1 log E_lag[e^{r/β1}] under the expectation over q_lag (= q_θ in
  one-step studies, so Δ = 0).
"""

from __future__ import annotations

import numpy as np

from ..objectives import OAPL
from ._averaging import Averager
from ._densities import Mix
from ._objective import ObjectiveTwin, Params, reward


class OAPLTwin(ObjectiveTwin[OAPL]):
    kind = "OAPL"

    def reset(self, params: Params) -> None:
        self.lagged: Mix = params.copy().mix(self.ctx.weight_param)

    def advance(self, step: int, params: Params, ok: np.ndarray) -> None:
        if step % self.objective.lag == 0:
            self.lagged = params.copy().mix(self.ctx.weight_param)

    def draw(
        self, gen: np.random.Generator, z: np.ndarray, model: Mix
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.ctx.draw(gen, self.lagged, z)

    def sampling_logpdf(self, x: np.ndarray, model: Mix) -> np.ndarray:
        return self.ctx.mixture_logpdf(x, self.lagged)

    def coefficient(self, x: np.ndarray, lq: np.ndarray, avg: Averager) -> np.ndarray:
        obj = self.objective
        r = reward(self.ctx, x, obj.reward, obj.radius)
        value = obj.beta1 * avg.log_mean_exp(r / obj.beta1)
        delta = lq - self.ctx.mixture_logpdf(x, self.lagged)
        return 2.0 * obj.beta2 * (obj.beta2 * delta - (r - value))
