"""The settings of one K-component training run (docs: theory-k-components), validated before
any work, and the ``meta`` record built from them.

:class:`MixturePlan` is to the K-component engine what :class:`~._plan.RunPlan` is to the
two-mode one: the models (two :class:`~mixforget.mixture.Mixture` of the same K and d), the
objective (ForwardKL, ReverseKL or KLRegularizedRL), the task roles (``new_components``, the
resolved replay mix ρ over the old components; KLRegularizedRL's label reward per
component), the schedule, the update and, for finite-batch runs, the batch, the replicates,
the threads and the seed. Every stepper of K components (the NumPy twin, the population
flow, the Rust ``MixtureSimulator``) is built from one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from .._problem import check_lr, check_steps
from .._rng import seed_record
from .._validate import as_positive_float, as_positive_int, check_output_size, resolve_threads
from ..mixture import Mixture
from ..objectives import ForwardKL, KLRegularizedRL, Objective, ReverseKL

__all__ = [
    "MIXTURE_OBJECTIVES",
    "UPDATES",
    "MixturePlan",
    "check_mixture_models",
    "check_mixture_objective",
    "check_new_components",
    "check_update",
    "resolve_replay_mix",
]

#: the objectives the K-component engine runs (docs: theory-k-components)
MIXTURE_OBJECTIVES: tuple[type[Objective], ...] = (ForwardKL, ReverseKL, KLRegularizedRL)
#: the objectives with data or replay from the target (task sequences run these only)
DATA_OBJECTIVES: tuple[type[Objective], ...] = (ForwardKL, ReverseKL)
#: an objective the K-component engine runs
MixtureObjective = Union[ForwardKL, ReverseKL, KLRegularizedRL]
#: the update rules: plain gradient steps on the K−1 free logits, the complete-data natural
#: gradient, or plain steps on all K logits of the softmax (docs: theory-kl-selection)
UPDATES = ("sgd", "natural", "sgd_full_softmax")
#: the lr_scale groups of a K-component run: all logits, all means
MIXTURE_LR_GROUPS = ("weight", "means")


@dataclass(frozen=True)
class MixturePlan:
    """Validated settings of one K-component run. Population runs have one replicate and no
    batch, threads or seed (``batch_size``, ``threads``, ``seed`` are None)."""

    target: Mixture
    start: Mixture
    objective: MixtureObjective
    new_components: tuple[int, ...]
    replay_mix: np.ndarray  #: (n_old,) ρ over the old components, in increasing index order
    steps: int
    record_every: int
    lr: float
    lr_scale: dict[str, float]
    update: str
    replicates: int = 1
    batch_size: Optional[int] = None
    threads: Optional[int] = None
    seed: Optional[np.random.SeedSequence] = None
    #: (K,) r_j of KLRegularizedRL's 'labels' reward (None for the other objectives)
    label_rewards: Optional[np.ndarray] = None

    @property
    def population(self) -> bool:
        """True for the population (infinite-batch) flow."""
        return self.batch_size is None

    @property
    def n_records(self) -> int:
        """Records at steps 0, record_every, …, steps."""
        return self.steps // self.record_every + 1

    @property
    def n_components(self) -> int:
        """K."""
        return self.target.n_components

    @property
    def old_components(self) -> tuple[int, ...]:
        """The target components not in the new task, in increasing order."""
        new = set(self.new_components)
        return tuple(j for j in range(self.n_components) if j not in new)

    def meta(
        self, wall_time: float, implementation: str, extra: Optional[Mapping[str, Any]] = None
    ) -> dict[str, Any]:
        """``Trajectory.meta`` of a K-component run: the keys of the two-mode plan's meta
        (``weight_param`` is 'logit', ``train_scales`` False) plus ``n_components``,
        ``new_components``, ``replay_mix`` (resolved) and ``update``."""
        meta: dict[str, Any] = {
            "objective": self.objective.as_dict(),
            "start": self.start.to_dict(),
            "n_components": self.n_components,
            "new_components": list(self.new_components),
            "replay_mix": self.replay_mix.tolist(),
            "steps": self.steps,
        }
        if not self.population:
            meta["batch_size"] = self.batch_size
        meta["lr"] = self.lr
        if not self.population:
            meta["replicates"] = self.replicates
        meta.update(
            record_every=self.record_every,
            weight_param="logit",
            lr_scale=self.lr_scale,
            train_scales=False,
            update=self.update,
        )
        if self.population:
            meta["population"] = True
        if self.seed is not None:
            meta["seed"] = seed_record(self.seed)
        meta["wall_time"] = wall_time
        if self.threads is not None:
            meta["threads"] = self.threads
        meta["implementation"] = implementation
        meta.update(extra or {})
        return meta


def check_mixture_models(target: Any, model: Any, model_name: str = "start") -> None:
    """Both Mixtures, of the same K and d (ValueError naming ``model_name`` otherwise)."""
    for name, value in (("target", target), (model_name, model)):
        if not isinstance(value, Mixture):
            raise TypeError(f"{name} must be a Mixture, got {type(value).__name__}")
    if model.n_components != target.n_components:
        raise ValueError(
            f"{model_name} must have as many components as target: K = "
            f"{target.n_components}, got K = {model.n_components}"
        )
    if model.dim != target.dim:
        raise ValueError(
            f"{model_name} must have the target's dimension d = {target.dim}, got d = {model.dim}"
        )


def check_mixture_objective(
    objective: Any, allowed: tuple[type[Objective], ...] = DATA_OBJECTIVES, what: str = ""
) -> Any:
    """One of ``allowed`` (by default ForwardKL or ReverseKL, what task sequences run);
    NotImplementedError naming any other objective and ``what`` refuses it (default: the
    K-component engine)."""
    if isinstance(objective, allowed):
        return objective
    if isinstance(objective, Objective):
        *most, last = [cls.__name__ for cls in allowed]
        names = f"{', '.join(most)} and {last}" if most else last
        raise NotImplementedError(
            f"{type(objective).__name__} is not implemented for K >= 3 components: "
            f"{what or 'the K-component engine'} supports {names}"
        )
    raise TypeError(f"objective must be a mixforget Objective, got {type(objective).__name__}")


def check_new_components(value: Any, k: int) -> tuple[int, ...]:
    """``new_components`` as a sorted tuple: None → (K−1,); else unique component indices,
    nonempty and not all K (ValueError naming the argument)."""
    if value is None:
        return (k - 1,)
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"new_components must be a sequence of component indices, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"new_components entries must be integers, got {item!r}")
        if not 0 <= int(item) < k:
            raise ValueError(
                f"new_components entries must be component indices in [0, {k - 1}], got {item}"
            )
        out.append(int(item))
    if not out:
        raise ValueError("new_components must name at least one component, got none")
    if len(set(out)) != len(out):
        raise ValueError(f"new_components must not repeat a component, got {list(value)}")
    if len(out) == k:
        raise ValueError(f"new_components must leave at least one old component, got all K = {k}")
    return tuple(sorted(out))


def resolve_replay_mix(objective: Objective, target: Mixture, new: tuple[int, ...]) -> np.ndarray:
    """ρ over the old components: the objective's ``replay_mix`` (one entry per old
    component, ValueError naming it otherwise) or, when None, the target's old weights
    renormalised."""
    old = [j for j in range(target.n_components) if j not in set(new)]
    given = getattr(objective, "replay_mix", None)
    if given is None:
        weights = target.weights[old]
        return weights / weights.sum()
    if len(given) != len(old):
        raise ValueError(
            f"replay_mix must have one entry per old component ({len(old)}: components "
            f"{old}), got {len(given)}"
        )
    return np.array(given, dtype=np.float64)


def _check_kl_rl(
    objective: Any, target: Mixture, new: tuple[int, ...], batch: Optional[tuple[Any, ...]]
) -> Optional[np.ndarray]:
    """KLRegularizedRL's checks against the problem (its geometric reward's dimension, its
    label rewards' length K, its smallest batch) and the label reward per component; None
    for the other objectives."""
    if not isinstance(objective, KLRegularizedRL):
        return None
    objective.check_dimension(target.dim)
    labels = np.array(objective.label_rewards(target.n_components, new), dtype=np.float64)
    if batch is not None:
        minimum, needed_by = objective.min_batch_size()
        size = as_positive_int("batch_size", batch[0])
        if size < minimum:
            raise ValueError(f"batch_size must be >= {minimum} with {needed_by}, got {size}")
    return labels


def check_update(update: Any) -> str:
    """'sgd' or 'natural' (ValueError naming ``update``)."""
    if not isinstance(update, str) or update not in UPDATES:
        raise ValueError(f"update must be one of {list(UPDATES)}, got {update!r}")
    return update


def _check_mixture_lr_scale(lr_scale: Any) -> dict[str, float]:
    out = dict.fromkeys(MIXTURE_LR_GROUPS, 1.0)
    if lr_scale is None:
        return out
    if not isinstance(lr_scale, Mapping):
        raise TypeError(f"lr_scale must be a mapping or None, got {type(lr_scale).__name__}")
    for key, value in lr_scale.items():
        if key not in out:
            raise ValueError(
                f"lr_scale keys of a K-component run must be among {list(MIXTURE_LR_GROUPS)}, "
                f"got {key!r}"
            )
        out[key] = as_positive_float(f"lr_scale[{key!r}]", value, allow_zero=True)
    return out


def _check_two_mode_only(weight_param: Any, train_scales: Any) -> None:
    if weight_param != "logit":
        raise NotImplementedError(
            f"weight_param={weight_param!r} is not implemented for K >= 3 components: the "
            "K-component engine trains softmax logits ('logit')"
        )
    if train_scales is not False:
        raise NotImplementedError(
            "train_scales=True is not implemented for K >= 3 components (the covariances stay "
            "fixed)"
        )


def plan_mixture_run(
    target: Any,
    start: Any,
    objective: Any,
    *,
    new_components: Any,
    steps: Any,
    record_every: Any,
    lr: Any,
    lr_scale: Any,
    update: Any,
    weight_param: Any = "logit",
    train_scales: Any = False,
    batch: Optional[tuple[Any, Any, Any, np.random.SeedSequence]] = None,
    memory_limit: Optional[int] = None,
) -> MixturePlan:
    """Every check of a K-component run, before any work; ``batch`` = (batch_size,
    replicates, threads, seed) for finite-batch runs, None for the population flow;
    ``memory_limit`` bounds the records (None: :func:`mixforget.get_memory_limit`)."""
    check_mixture_models(target, start)
    objective = check_mixture_objective(objective, MIXTURE_OBJECTIVES)
    _check_two_mode_only(weight_param, train_scales)
    new = check_new_components(new_components, target.n_components)
    rho = resolve_replay_mix(objective, target, new)
    labels = _check_kl_rl(objective, target, new, batch)
    steps, record_every = check_steps(steps, record_every)
    finite: dict[str, Any] = {}
    if batch is not None:
        batch_size, replicates, threads, seed = batch
        finite = {
            "batch_size": as_positive_int("batch_size", batch_size),
            "replicates": as_positive_int("replicates", replicates),
            "threads": resolve_threads(threads),
            "seed": seed,
        }
    plan = MixturePlan(
        target=target,
        start=start,
        objective=objective,
        new_components=new,
        replay_mix=rho,
        steps=steps,
        record_every=record_every,
        lr=check_lr(lr),
        lr_scale=_check_mixture_lr_scale(lr_scale),
        update=check_update(update),
        label_rewards=labels,
        **finite,
    )
    k, d = plan.n_components, target.dim
    check_output_size(
        "the recorded weights, means and starved counts",
        8 * plan.replicates * plan.n_records * (2 * k + k * d),
        f"raise record_every (now {plan.record_every}) or lower replicates or steps",
        memory_limit,
    )
    return plan


def plan_mixture_gradient(
    target: Any,
    model: Any,
    objective: Any,
    *,
    new_components: Any,
    weight_param: Any = "logit",
    train_scales: Any = False,
    batch: Optional[tuple[Any, Any, Any, np.random.SeedSequence]] = None,
) -> MixturePlan:
    """The plan of a one-step gradient study at ``model`` (one step, lr 1, no multipliers,
    plain update): the exact gradient without ``batch``, the finite-batch study with it."""
    return plan_mixture_run(
        target,
        model,
        objective,
        new_components=new_components,
        steps=1,
        record_every=1,
        lr=1.0,
        lr_scale=None,
        update="sgd",
        weight_param=weight_param,
        train_scales=train_scales,
        batch=batch,
    )
