"""Training objectives (MATH §4): frozen dataclasses validated at construction.

Each objective only *describes* an estimator; the estimators themselves run in Rust
(``rust/engine.rs``), all through one score-function core ĝ = Σ_i ω_i c_i s(x_i), where an
objective contributes its sampling distribution and its per-sample coefficient c_i.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

import numpy as np

from ._validate import as_choice, as_fraction, as_positive_float, as_positive_int

__all__ = [
    "OAPL",
    "REWARDS",
    "SDFT",
    "ForwardKL",
    "Objective",
    "ReverseKL",
    "TTTDiscover",
    "objective_from_dict",
]

SLOTS = ("bernoulli", "stratified")
BASELINES = ("none", "loo")
DIRECTIONS = ("reverse", "forward")
REWARDS = ("new_logpdf", "target_logpdf", "new_indicator")

# Layout of the parameter vector handed to Rust (rust/engine.rs, ObjectiveSpec::from_params).
_KIND = {"ForwardKL": 0, "ReverseKL": 1, "SDFT": 2, "TTTDiscover": 3, "OAPL": 4}
N_PARAMS = 15


class Objective:
    """Base class of the objectives; see the subclasses."""

    kind: ClassVar[str] = ""

    def params(self) -> np.ndarray:
        """The flat float64 parameter vector of the Rust engine (internal layout)."""
        p = np.zeros(N_PARAMS)
        p[0] = _KIND[type(self).__name__]
        self._fill(p)
        return p

    def _fill(self, p: np.ndarray) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form: ``{"kind": class name, **fields}``."""
        return {"kind": type(self).__name__, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    @property
    def replay_fraction(self) -> float:
        """λ, the replay fraction (0 for objectives without replay)."""
        return float(getattr(self, "replay", 0.0))

    @property
    def samples_from_model(self) -> bool:
        """True when the on-policy part of the batch is drawn from the current model."""
        return True


@dataclass(frozen=True)
class ForwardKL(Objective):
    """SFT on new-task data (MATH §4.1): loss KL(p_train ‖ q_θ), p_train = (1−λ) p_new + λ p_old.

    ĝ = −(1/B) Σ s(x_i), x_i ~ p_train. Optimum α = λ: λ = 0 gives mass forgetting.
    ``replay_slots``: 'bernoulli' (each sample is replay w.p. λ) or 'stratified' (exactly
    round(λB) replay samples per batch).
    """

    replay: float = 0.0
    replay_slots: str = "bernoulli"

    def __post_init__(self) -> None:
        object.__setattr__(self, "replay", as_fraction("replay", self.replay))
        as_choice("replay_slots", self.replay_slots, SLOTS)

    def _fill(self, p: np.ndarray) -> None:
        p[1] = self.replay
        p[2] = SLOTS.index(self.replay_slots)

    @property
    def samples_from_model(self) -> bool:
        return False


@dataclass(frozen=True)
class ReverseKL(Objective):
    """On-policy reverse KL (MATH §4.2): loss KL(q_θ ‖ p*).

    ĝ = (1/B) Σ w_i s(x_i) (log q_θ(x_i) − log p*(x_i) − b_i), x_i ~ m = (1−λ) q_θ + λ p_old,
    w_i = q_θ(x_i)/m(x_i) ≤ 1/(1−λ), optionally truncated at ``weight_cap`` (biased).
    ``baseline``: 'loo' (leave-one-out mean of the others' weighted log-ratio) or 'none'.
    Stratified slots use the realised fraction λ' = round(λB)/B in the weights.
    """

    replay: float = 0.0
    replay_slots: str = "bernoulli"
    weight_cap: Optional[float] = None
    baseline: str = "loo"

    def __post_init__(self) -> None:
        object.__setattr__(self, "replay", as_fraction("replay", self.replay))
        as_choice("replay_slots", self.replay_slots, SLOTS)
        as_choice("baseline", self.baseline, BASELINES)
        if self.weight_cap is not None:
            cap = as_positive_float("weight_cap", self.weight_cap)
            object.__setattr__(self, "weight_cap", cap)

    def _fill(self, p: np.ndarray) -> None:
        p[1] = self.replay
        p[2] = SLOTS.index(self.replay_slots)
        p[3] = math.inf if self.weight_cap is None else self.weight_cap
        p[4] = BASELINES.index(self.baseline)


@dataclass(frozen=True)
class SDFT(Objective):
    """Self-distillation fine-tuning (MATH §4.4, *model choice*).

    Teacher φ: EMA of the student (φ ← (1−τ)φ + τθ after each step) whose new mean is moved
    toward the truth by the demonstration: t = α_φ φ(·; μ_o^φ) + (1−α_φ) φ(·; (1−κ)μ_n^φ + κ μ_n*).
    direction 'reverse': KL(q_θ ‖ t), the §4.2 estimator with p* → t (LOO baseline);
    'forward': KL(t ‖ q_θ), samples from t, ĝ = −(1/B) Σ s(x_i).
    """

    ema: float = 0.02
    anchor: float = 0.5
    direction: str = "reverse"

    def __post_init__(self) -> None:
        ema = as_positive_float("ema", self.ema)
        if ema > 1.0:
            raise ValueError(f"ema must be in (0, 1], got {ema}")
        anchor = as_positive_float("anchor", self.anchor, allow_zero=True)
        if anchor > 1.0:
            raise ValueError(f"anchor must be in [0, 1], got {anchor}")
        object.__setattr__(self, "ema", ema)
        object.__setattr__(self, "anchor", anchor)
        as_choice("direction", self.direction, DIRECTIONS)

    def _fill(self, p: np.ndarray) -> None:
        p[5] = self.ema
        p[6] = self.anchor
        p[7] = DIRECTIONS.index(self.direction)
        p[4] = 1  # LOO baseline for the reverse direction

    @property
    def samples_from_model(self) -> bool:
        return self.direction == "reverse"


def _check_reward(reward: Any, radius: Any) -> float:
    as_choice("reward", reward, REWARDS)
    return as_positive_float("radius", radius)


@dataclass(frozen=True)
class TTTDiscover(Objective):
    """Entropic test-time RL (MATH §4.5). Group size G = batch size.

    e_i = exp(β(r_i − max r)), A_i = e_i / mean_{j≠i} e_j − 1 − λ (log q_θ(x_i) − log q_0(x_i)),
    ĝ = −(1/G) Σ A_i s(x_i), with q_0 the start model. ``beta='adaptive'``: bisection so that
    KL(softmax(β r) ‖ uniform_G) = ln 2 (needs G ≥ 3). Rewards: 'new_logpdf', 'target_logpdf',
    'new_indicator' (1[‖x − μ_n*‖_Σ ≤ radius]).
    """

    beta: Union[float, str] = 2.0
    kl_penalty: float = 0.0
    reward: str = "new_logpdf"
    radius: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.beta, str):
            if self.beta != "adaptive":
                raise ValueError(f"beta must be a positive number or 'adaptive', got {self.beta!r}")
        else:
            object.__setattr__(self, "beta", as_positive_float("beta", self.beta))
        object.__setattr__(
            self, "kl_penalty", as_positive_float("kl_penalty", self.kl_penalty, allow_zero=True)
        )
        object.__setattr__(self, "radius", _check_reward(self.reward, self.radius))

    @property
    def adaptive(self) -> bool:
        return self.beta == "adaptive"

    def _fill(self, p: np.ndarray) -> None:
        p[8] = 0.0 if self.adaptive else float(self.beta)  # type: ignore[arg-type]
        p[9] = 1.0 if self.adaptive else 0.0
        p[10] = self.kl_penalty
        p[11] = REWARDS.index(self.reward)
        p[12] = self.radius


@dataclass(frozen=True)
class OAPL(Objective):
    """Off-policy regression to the optimal policy (MATH §4.6). Group size G = batch size.

    θ_lag ← θ every ``lag`` steps; x_i ~ q_lag; V̂ = β1 log mean_i exp(r_i/β1);
    ĝ = (2β2/G) Σ (β2 Δ_i − (r_i − V̂)) s(x_i), Δ_i = log q_θ(x_i) − log q_lag(x_i).
    """

    beta1: float = 1.0
    beta2: float = 1.0
    lag: int = 10
    reward: str = "new_logpdf"
    radius: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta1", as_positive_float("beta1", self.beta1))
        object.__setattr__(self, "beta2", as_positive_float("beta2", self.beta2))
        object.__setattr__(self, "lag", as_positive_int("lag", self.lag))
        object.__setattr__(self, "radius", _check_reward(self.reward, self.radius))

    def _fill(self, p: np.ndarray) -> None:
        p[11] = REWARDS.index(self.reward)
        p[12] = self.radius
        p[13] = self.beta1
        p[14] = self.beta2
        p[5] = float(self.lag)

    @property
    def samples_from_model(self) -> bool:
        return False


_CLASSES = {cls.__name__: cls for cls in (ForwardKL, ReverseKL, SDFT, TTTDiscover, OAPL)}


def objective_from_dict(data: dict[str, Any]) -> Objective:
    """Inverse of :meth:`Objective.as_dict`."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in _CLASSES:
        raise ValueError(f"objective kind must be one of {sorted(_CLASSES)}, got {kind!r}")
    names = {f.name for f in dataclasses.fields(_CLASSES[kind])}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for {kind}; allowed: {sorted(names)}")
    obj: Objective = _CLASSES[kind](**data)
    return obj


def is_objective(value: Any) -> bool:
    return isinstance(value, Objective)
