"""Training objectives (docs: theory-estimators) and the registry of them: frozen dataclasses
validated at construction, and :data:`OBJECTIVES`, the one list that every other place reads.

Each objective only *describes* an estimator; the estimators themselves run in Rust, one
module per class of the same name (``rust/objectives/``), and in the array-API twin
(``mixforget/reference/``), all through one score-function core ĝ = Σ_i ω_i c_i s(x_i), where
an objective contributes its sampling distribution and its per-sample coefficient c_i. A
dataclass here is the one definition of its objective's fields, their defaults, their
validation (``__post_init__``) and its text (:attr:`Objective.label`): the Rust binding
reads it by attribute name with ``kind`` (the class name) naming the objective, TOML
configurations (:mod:`mixforget.config`) construct it, the twin's registry is keyed by its
``kind``. Adding an objective: see CONTRIBUTING.md, "Adding an objective".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

from ._defaults import REPLAY_SLOTS
from ._validate import as_choice, as_fraction, as_positive_float, as_positive_int, as_real

__all__ = [
    "ADVANTAGES",
    "OAPL",
    "OBJECTIVES",
    "REWARDS",
    "SDFT",
    "ForwardKL",
    "KLRegularizedRL",
    "NewModeREINFORCE",
    "Objective",
    "ReverseKL",
    "TTTDiscover",
    "objective_class",
    "objective_from_dict",
]

#: replay slot rules (one definition: ``_defaults.REPLAY_SLOTS``); the first is the default
SLOTS = REPLAY_SLOTS
BERNOULLI, STRATIFIED = REPLAY_SLOTS
BASELINES = ("none", "loo")
DIRECTIONS = ("reverse", "forward")
REWARDS = ("new_logpdf", "target_logpdf", "new_indicator")
ADVANTAGES = ("raw", "normalised")
#: KLRegularizedRL's choices (docs: theory-kl-regularized); the first of each is its default
KL_REWARDS = ("labels", "target_logpdf", "new_logpdf", "halfspace", "ball", "bump")
#: Most entries of a geometric reward's direction or centre (rust: MAX_REWARD_DIM).
MAX_REWARD_DIM = 16
KL_REFERENCES = ("start", "target", "flat")
KL_ESTIMATORS = ("exact", "k1", "k3")
KL_ADVANTAGES = ("loo", "group", "raw")
#: Most entries of ``reward_labels`` (one per component; rust: MAX_COMPONENTS).
MAX_LABEL_REWARDS = 255


class Objective:
    """Base class of the objectives; see the subclasses."""

    #: The objective's name, the class name (the Rust binding, the twin's registry and TOML
    #: ``kind`` dispatch on it); set from the class name for every direct subclass (a
    #: subclass of an objective keeps its parent's kind, as the binding runs the parent).
    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if Objective in cls.__bases__:
            cls.kind = cls.__name__

    def min_batch_size(self) -> tuple[int, str]:
        """The smallest batch size the estimator is defined for.

        Returns
        -------
        (minimum, needed_by)
            The minimum (1: any batch) and the text naming the objective and the reason, for
            the message of every entry point that refuses a smaller batch.
        """
        return 1, type(self).__name__

    def check_dimension(self, dim: int) -> None:
        """Refuse (ValueError naming the field) fields whose dimension is not the problem's
        ``dim``; nothing to check by default."""

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form: ``{"kind": class name, **fields}``."""
        return {"kind": type(self).__name__, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    @property
    def label(self) -> str:
        """Compact text of the objective for tables, legends and sweep columns: the class name
        and the fields that differ from their defaults, e.g. ``"ForwardKL"`` or
        ``"ReverseKL(replay=0.25)"`` (``repr`` lists every field). The one definition of an
        objective's short name."""
        changed = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            changed.append(f"{f.name}={value!r}")
        name = type(self).__name__
        return f"{name}({', '.join(changed)})" if changed else name


def as_replay_mix(value: Any) -> Optional[tuple[float, ...]]:
    """None, or a replay mix ρ as a tuple of floats: nonempty, finite, entries >= 0, summing
    to 1 within 1e-9 (its length is checked against the old components at run time)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise TypeError(f"replay_mix must be None or a sequence of floats, got {value!r}")
    entries = tuple(as_real(f"replay_mix[{i}]", v) for i, v in enumerate(value))
    if not entries:
        raise ValueError("replay_mix must have one entry per old component, got none")
    if any(v < 0.0 for v in entries):
        raise ValueError(f"replay_mix entries must be >= 0, got {list(entries)}")
    total = math.fsum(entries)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"replay_mix must sum to 1 (within 1e-9), got sum {total!r}")
    return entries


@dataclass(frozen=True)
class ForwardKL(Objective):
    """SFT on new-task data (docs: theory-forward-kl): loss KL(p_train ‖ q_θ), p_train = (1−λ) p_new
    + λ p_old.

    ĝ = −(1/B) Σ s(x_i), x_i ~ p_train. Optimum α = λ: λ = 0 gives mass forgetting.
    ``replay_slots``: 'bernoulli' (each sample is replay w.p. λ) or 'stratified' (exactly
    round(λB) replay samples per batch).
    ``replay_mix``: for K-component mixtures (docs: theory-k-components), the mix ρ of the
    replay over the old components in increasing index order (None: proportional to the
    target's old weights); a two-mode run allows only None or (1.0,).
    """

    replay: float = 0.0
    replay_slots: str = BERNOULLI
    replay_mix: Optional[tuple[float, ...]] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "replay", as_fraction("replay", self.replay))
        as_choice("replay_slots", self.replay_slots, SLOTS)
        object.__setattr__(self, "replay_mix", as_replay_mix(self.replay_mix))


@dataclass(frozen=True)
class ReverseKL(Objective):
    """On-policy reverse KL (docs: theory-reverse-kl): loss KL(q_θ ‖ p*).

    ĝ = (1/B) Σ w_i s(x_i) (log q_θ(x_i) − log p*(x_i) − b_i), x_i ~ m = (1−λ) q_θ + λ p_old,
    w_i = q_θ(x_i)/m(x_i) ≤ 1/(1−λ), optionally truncated at ``weight_cap`` (biased).
    ``baseline``: 'loo' (leave-one-out mean of the others' weighted log-ratio) or 'none'.
    Stratified slots use the realised fraction λ' = round(λB)/B in the weights.
    ``replay_mix``: as for :class:`ForwardKL`, the replay's mix over the old components.
    """

    replay: float = 0.0
    replay_slots: str = BERNOULLI
    weight_cap: Optional[float] = None
    baseline: str = "loo"
    replay_mix: Optional[tuple[float, ...]] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "replay", as_fraction("replay", self.replay))
        as_choice("replay_slots", self.replay_slots, SLOTS)
        object.__setattr__(self, "replay_mix", as_replay_mix(self.replay_mix))
        as_choice("baseline", self.baseline, BASELINES)
        if self.weight_cap is not None:
            cap = as_positive_float("weight_cap", self.weight_cap)
            object.__setattr__(self, "weight_cap", cap)


@dataclass(frozen=True)
class SDFT(Objective):
    """Self-distillation fine-tuning (docs: theory-sdft, *model choice*).

    Teacher φ: EMA of the student (φ ← (1−τ)φ + τθ after each step) whose new mean is moved
    toward the truth by the demonstration: t = α_φ φ(·; μ_o^φ) + (1−α_φ) φ(·; (1−κ)μ_n^φ + κ μ_n*).
    direction 'reverse': KL(q_θ ‖ t), the docs: theory-reverse-kl estimator with p* → t (LOO
    baseline); 'forward': KL(t ‖ q_θ), samples from t, ĝ = −(1/B) Σ s(x_i).
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


def _check_reward(reward: Any, radius: Any) -> float:
    as_choice("reward", reward, REWARDS)
    return as_positive_float("radius", radius)


#: Why a group-relative estimator needs two samples per group: with one, the advantage (an
#: entropic weight over an empty leave-one-out mean; r_1 − V̂ = 0) carries no signal.
_GROUP_OF_TWO = (
    "(the group is the batch; with one sample the group-relative gradient is identically 0)"
)


@dataclass(frozen=True)
class TTTDiscover(Objective):
    """Entropic test-time RL (docs: theory-ttt-discover). Group size G = batch size.

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

    def min_batch_size(self) -> tuple[int, str]:
        if self.adaptive:
            return 3, "TTTDiscover(beta='adaptive') (KL = ln 2 needs G >= 3)"
        return 2, f"{type(self).__name__} {_GROUP_OF_TWO}"


@dataclass(frozen=True)
class OAPL(Objective):
    """Off-policy regression to the optimal policy (docs: theory-oapl). Group size G = batch size.

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

    def min_batch_size(self) -> tuple[int, str]:
        return 2, f"{type(self).__name__} {_GROUP_OF_TWO}"


@dataclass(frozen=True)
class NewModeREINFORCE(Objective):
    """The RL estimator of the "Retaining by Doing" simulation (arXiv 2510.18874, its public
    code's ``fit_reinforce``): REINFORCE on the model's new component.

    Per step the B samples come from the model's *new component* φ_n only. With the
    importance ratio ρ(x) = q_θ(x) / ((1 − α) φ_n(x)) and the reward

        r(x) = log p*_new(x) − log((1 − α) φ_n(x)) − log β,

    the step ascends the batch mean of A·ρ·∇log q_θ(x), i.e. descends
    ĝ = −(1/B) Σ_i ρ_i A_i s(x_i), with no baseline. ``advantage='raw'``: A = r (the
    reference code); ``'normalised'``: r centred and divided by its batch standard deviation
    (population sd; A = 0 when all rewards are equal), what the reference's docstring
    describes; it needs ``batch_size`` >= 2 (one centred reward is 0: a run at
    ``batch_size=1`` is refused before any work).

    What it estimates: for 'raw', E_{x~φ_n}[ρ r s] = (1/(1 − α)) ∫ q_θ(x) r(x) s(x) dx — the
    policy gradient of E_q[r] with the reward held fixed (r depends on θ, and its own
    derivative is not followed), scaled by 1/(1 − α). For 'normalised' the batch mean and sd
    become those of r under φ_n in the large-batch limit (finite batches differ by O(1/B)).
    :func:`mixforget.population_gradient` returns these limits.

    Where it differs from :class:`ReverseKL` (loss KL(q_θ ‖ p*), samples from the whole
    model, coefficient log q_θ − log p* minus a baseline): the reward compares the weighted
    new component alone with p*_new, so no log-ratio of the old component enters it (the old
    mode is seen only through ρ and the responsibilities at points drawn near the new mode);
    the samples come from the new component only, corrected by the importance ratio ρ; and
    there is no baseline. ``beta`` > 0 shifts every reward by −log β.
    """

    beta: float = 0.1
    advantage: str = "raw"

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", as_positive_float("beta", self.beta))
        as_choice("advantage", self.advantage, ADVANTAGES)

    def min_batch_size(self) -> tuple[int, str]:
        if self.advantage == "normalised":
            # one reward, centred on its own batch mean: A = 0 and the gradient is identically 0
            return 2, (
                "NewModeREINFORCE(advantage='normalised') (the advantage is centred on the "
                "batch mean: with one sample it is identically 0)"
            )
        return 1, type(self).__name__


@dataclass(frozen=True)
class KLRegularizedRL(Objective):
    """KL-regularised RL toward a reference model (docs: theory-kl-regularized): maximise
    E_q[r] − β KL, KL = KL(q_θ ‖ q_ref) (``kl='reverse'``) or KL(q_ref ‖ q_θ) ('forward'),
    on-policy samples x_i ~ q_θ, as RLHF/GRPO post-training runs it.

    Per sample a value v_i = r_i − β κ_i, and ĝ = −(1/B) Σ_i A_i s(x_i) with the advantage
    A_i of v: 'raw' A = v, 'loo' A_i = v_i − mean_{j≠i} v_j, 'group' (GRPO)
    A = (v − mean v)/sd(v) (batch moments, sd the population one; A = 0 when all are equal).
    The KL term κ_i (``kl_estimator``):

    - reverse, 'exact': the KL's own score coefficient log q_θ − log q_ref (unbiased for
      ∇KL); under 'group' it is kept out of the normalisation (a separate loss term with its
      batch-mean baseline, as GRPO puts the KL in the loss), otherwise it is the same as 'k1';
    - reverse, 'k1': log q_θ/q_ref in the reward (reward shaping; unbiased);
    - reverse, 'k3': ρ − 1 − log ρ, ρ = q_ref/q_θ, in the reward. E_q[k3] = KL(q ‖ q_ref) but
      the score-function estimator with k3 as a reward estimates
      ∇KL(q ‖ q_ref) − ∇KL(q_ref ‖ q): biased by −∇KL(q_ref ‖ q), zero only at q = q_ref;
    - forward (only 'exact'): ∇KL(q_ref ‖ q) = −E_{q_ref}[s] = −E_q[ρ s], importance-weighted
      on the on-policy samples: κ_i = −ρ_i (exact in expectation; ρ is large where q_θ ≪ q_ref).

    Rewards (``reward``): 'labels' r(x) = r_old π*_old(x) + r_new (1 − π*_old(x)) with π*_old
    the target's old-component responsibility — the task the point belongs to, a fixed
    function of x, equal to r_k on well-separated components; 'target_logpdf' log p*(x);
    'new_logpdf' log p_new*(x); geometric rewards in the original coordinates (docs:
    theory-kl-rewards), as data: 'halfspace' r_new where a·x ≥ b else r_old
    (a = ``reward_direction``, nonzero, b = ``reward_offset``), 'ball' r_new where
    ‖x − c‖ ≤ ``reward_radius`` else r_old (c = ``reward_center``), 'bump'
    r_old + (r_new − r_old) exp(−‖x − c‖²/(2 s²)) (s = ``reward_width``); the vector has
    the target's dimension (at most 16) and is None for the rewards that do not use it.
    ``reference``: 'start' (the run's start model, kept as the
    objective's extra state), 'target' (p*: a fixed reference away from the model, with which
    :func:`~mixforget.population_gradient` shows the estimators' bias where q_θ ≠ q_ref), or
    'flat' (log q_ref ≡ 0, the Lebesgue measure: β KL becomes −β H(q), so reward
    'target_logpdf', β = 1, reverse gives ReverseKL's estimator bit for bit; reverse, k1 or
    exact only). Replay is not offered.

    K-component mixtures (docs: theory-k-components): the 'labels' reward is
    r(x) = Σ_j r_j π*_j(x) with the target's responsibilities π*_j (for K = 2 the formula
    above); ``reward_labels`` gives r_j per component (K entries, reward 'labels' only,
    reward_old/reward_new left at their defaults); None gives r_new on the run's
    ``new_components`` and r_old on the others. A two-mode run (K = 2) takes reward_old and
    reward_new only.
    """

    reward: str = "labels"
    reward_old: float = 0.0
    reward_new: float = 1.0
    beta: float = 1.0
    reference: str = "start"
    kl: str = "reverse"
    kl_estimator: str = "exact"
    advantage: str = "loo"
    reward_direction: Optional[tuple[float, ...]] = None
    reward_offset: float = 0.0
    reward_center: Optional[tuple[float, ...]] = None
    reward_radius: float = 1.0
    reward_width: float = 1.0
    reward_labels: Optional[tuple[float, ...]] = None

    def __post_init__(self) -> None:
        as_choice("reward", self.reward, KL_REWARDS)
        self._check_geometry()
        object.__setattr__(self, "reward_old", as_real("reward_old", self.reward_old))
        object.__setattr__(self, "reward_new", as_real("reward_new", self.reward_new))
        object.__setattr__(self, "reward_labels", self._checked_labels())
        object.__setattr__(self, "beta", as_positive_float("beta", self.beta))
        as_choice("reference", self.reference, KL_REFERENCES)
        as_choice("kl", self.kl, DIRECTIONS)
        as_choice("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        as_choice("advantage", self.advantage, KL_ADVANTAGES)
        if self.kl == "forward" and self.kl_estimator != "exact":
            raise ValueError(
                "kl_estimator must be 'exact' with kl='forward' (k1 and k3 estimate the "
                f"reverse KL), got {self.kl_estimator!r}"
            )
        if self.reference == "flat" and (self.kl == "forward" or self.kl_estimator == "k3"):
            raise ValueError(
                "reference must be 'start' with kl='forward' or kl_estimator='k3' (under the "
                f"flat measure the ratio q_ref/q has no mean), got {self.reference!r}"
            )

    def _check_geometry(self) -> None:
        """The geometric rewards' fields: a nonzero ``reward_direction`` with 'halfspace', a
        ``reward_center`` with 'ball' and 'bump' (each None otherwise), finite
        ``reward_offset``, ``reward_radius`` and ``reward_width`` > 0."""
        uses = {"reward_direction": ("halfspace",), "reward_center": ("ball", "bump")}
        for name, kinds in uses.items():
            value = getattr(self, name)
            if value is None:
                if self.reward in kinds:
                    raise ValueError(f"{name} must be given with reward={self.reward!r}")
                continue
            if self.reward not in kinds:
                raise ValueError(
                    f"{name} is used only with reward in {list(kinds)}, got reward="
                    f"{self.reward!r} and {name}={value!r} (set it to None)"
                )
            object.__setattr__(self, name, _reward_vector(name, value))
        if self.reward_direction is not None and not any(self.reward_direction):
            raise ValueError(f"reward_direction must be nonzero, got {self.reward_direction}")
        object.__setattr__(self, "reward_offset", as_real("reward_offset", self.reward_offset))
        for name in ("reward_radius", "reward_width"):
            object.__setattr__(self, name, as_positive_float(name, getattr(self, name)))

    def _checked_labels(self) -> Optional[tuple[float, ...]]:
        """``reward_labels`` as a tuple of 2 to 255 finite floats, with reward 'labels' only
        and with ``reward_old``, ``reward_new`` at their defaults (they would be ignored)."""
        value = self.reward_labels
        if value is None:
            return None
        if self.reward != "labels":
            raise ValueError(
                f"reward_labels is used only with reward='labels', got reward={self.reward!r} "
                "(set reward_labels to None)"
            )
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise TypeError(f"reward_labels must be None or a sequence of floats, got {value!r}")
        out = tuple(as_real(f"reward_labels[{i}]", v) for i, v in enumerate(value))
        if not 2 <= len(out) <= MAX_LABEL_REWARDS:
            raise ValueError(
                f"reward_labels must have one entry per component (2 to {MAX_LABEL_REWARDS}), "
                f"got {len(out)}"
            )
        if (self.reward_old, self.reward_new) != (0.0, 1.0):
            raise ValueError(
                "reward_old and reward_new must keep their defaults (0.0, 1.0) when "
                "reward_labels is given (the labels replace them), got "
                f"({self.reward_old!r}, {self.reward_new!r})"
            )
        return out

    def label_rewards(self, k: int, new_components: tuple[int, ...]) -> tuple[float, ...]:
        """r_j of each of K components for the 'labels' reward: ``reward_labels`` (checked
        to have K entries, ValueError naming it otherwise), or ``reward_new`` on the new
        components and ``reward_old`` on the others."""
        if self.reward_labels is None:
            new = set(new_components)
            return tuple(self.reward_new if j in new else self.reward_old for j in range(k))
        if len(self.reward_labels) != k:
            raise ValueError(
                f"reward_labels must have one entry per component (K = {k}), got "
                f"{len(self.reward_labels)}"
            )
        return self.reward_labels

    def reward_dim(self) -> Optional[int]:
        """The dimension of the reward's geometry (None for the rewards without one)."""
        vector = self.reward_direction if self.reward_direction is not None else self.reward_center
        return None if vector is None else len(vector)

    def check_dimension(self, dim: int) -> None:
        """A geometric reward's direction or centre must have the problem's dimension."""
        own = self.reward_dim()
        if own is not None and own != dim:
            name = "reward_direction" if self.reward == "halfspace" else "reward_center"
            raise ValueError(
                f"{name} has {own} entries but the target has dimension {dim}: the reward's "
                "geometry must live in the target's space"
            )

    def min_batch_size(self) -> tuple[int, str]:
        if self.advantage == "group":
            return 2, (
                "KLRegularizedRL(advantage='group') (a group of one has no spread to "
                "normalise by: the gradient is identically 0)"
            )
        return 1, type(self).__name__


def _reward_vector(name: str, value: Any) -> tuple[float, ...]:
    """A direction or centre as a tuple of 1 to MAX_REWARD_DIM finite floats."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ValueError(f"{name} must be a sequence of numbers, got {value!r}")
    out = tuple(as_real(f"{name}[{i}]", v) for i, v in enumerate(value))
    if not 1 <= len(out) <= MAX_REWARD_DIM:
        raise ValueError(f"{name} must have 1 to {MAX_REWARD_DIM} entries, got {len(out)}")
    return out


#: The registry: every objective, one line each. Everything that knows the objectives (the
#: package's exports, the twin's registry, TOML kinds, the Rust binding's kinds) is checked
#: against it by ``tests/test_objective_registry.py``.
OBJECTIVES: tuple[type[Objective], ...] = (
    ForwardKL,
    ReverseKL,
    SDFT,
    TTTDiscover,
    OAPL,
    NewModeREINFORCE,
    KLRegularizedRL,
)

_BY_KIND: dict[str, type[Objective]] = {cls.kind: cls for cls in OBJECTIVES}


def objective_class(kind: Any) -> type[Objective]:
    """The objective class named ``kind`` (ValueError listing the kinds otherwise)."""
    if not isinstance(kind, str) or kind not in _BY_KIND:
        raise ValueError(f"objective kind must be one of {list(_BY_KIND)}, got {kind!r}")
    return _BY_KIND[kind]


def objective_from_dict(data: dict[str, Any]) -> Objective:
    """Inverse of :meth:`Objective.as_dict`."""
    data = dict(data)
    cls = objective_class(data.pop("kind", None))
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(
            f"unknown field(s) {sorted(unknown)} for {cls.kind}; allowed: {sorted(names)}"
        )
    obj: Objective = cls(**data)
    return obj
