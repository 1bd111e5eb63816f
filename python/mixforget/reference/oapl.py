"""OAPL — off-policy regression to the optimal policy (docs: theory-oapl), array-API twin. Group
size G = batch size.

With the lagged model q_lag (θ_lag ← θ after every ``lag``-th step) and rewards r_i:

    V̂ = β1 log mean_i exp(r_i / β1),   Δ_i = log q_θ(x_i) − log q_lag(x_i),
    ĝ = (2β2/G) Σ_i (β2 Δ_i − (r_i − V̂)) s(x_i),   x_i ~ q_lag.

- Sampling source: q_lag. Second density: q_lag (in Δ).
- Extra state: the lagged parameters (start: the start model).
- Exact limit: V̂ → β1 log E_lag[e^{r/β1}] under the expectation over q_lag (= q_θ in
  one-step studies, so Δ = 0).
"""

from __future__ import annotations

from typing import Any

from ..objectives import OAPL
from ._averaging import Averager
from ._densities import Mix
from ._objective import Extra, ObjectiveTwin, Params, reward, select


class OAPLTwin(ObjectiveTwin[OAPL]):
    implements = OAPL

    def reset(self, params: Params) -> Extra:
        return {"lag": params.copy()}

    def advance(self, step: Any, params: Params, ok: Any, extra: Extra) -> Extra:
        refresh = step % self.objective.lag == 0
        return {"lag": select(self.ctx.xp, refresh, params, extra["lag"])}

    def lagged(self, extra: Extra) -> Mix:
        return self.ctx.mix_of(extra["lag"])

    def draw(self, rng: Any, state: Any, z: Any, model: Mix, extra: Extra) -> tuple[Any, Any, Any]:
        return self.ctx.draw(rng, state, self.lagged(extra), z)

    def sampling_logpdf(self, x: Any, model: Mix, extra: Extra) -> Any:
        return self.ctx.mixture_logpdf(x, self.lagged(extra))

    def coefficient(self, x: Any, lq: Any, avg: Averager, extra: Extra) -> Any:
        obj = self.objective
        r = reward(self.ctx, x, obj.reward, obj.radius)
        value = obj.beta1 * avg.log_mean_exp(r / obj.beta1)
        delta = lq - self.ctx.mixture_logpdf(x, self.lagged(extra))
        return 2.0 * obj.beta2 * (obj.beta2 * delta - (r - value))
