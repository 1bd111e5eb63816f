"""Which engine a call's models go to (docs: theory-k-components): two TwoModes, or two K = 2
Mixtures (with ``new_components`` None or (1,)), run on the two-mode engine as TwoModes, bit
for bit; K ≥ 3 Mixtures go to the K-component engine. The checks here run before any work.
"""

from __future__ import annotations

from typing import Any, Optional, cast

from ..mixture import Mixture, TwoMode
from ._mixture_plan import check_update

__all__ = ["two_mode_models"]


def _components(value: Any) -> Optional[int]:
    if isinstance(value, TwoMode):
        return 2
    if isinstance(value, Mixture):
        return value.n_components
    return None


def _check_two_mode_roles(objective: Any, new_components: Any, update: Any) -> None:
    """A two-mode run: the new task is component 1, the replay mix is (1.0,), no
    per-component ``reward_labels``, the update 'sgd' or 'natural' (ValueError naming the
    argument otherwise)."""
    if new_components is not None:
        try:
            as_list = [int(j) for j in new_components]
        except TypeError:
            raise TypeError(
                f"new_components must be a sequence of component indices, got {new_components!r}"
            ) from None
        if as_list != [1]:
            raise ValueError(
                "new_components of a two-mode run (K = 2) must be None or (1,) (component 1, "
                f"the new mode, is the new task), got {new_components!r}"
            )
    mix = getattr(objective, "replay_mix", None)
    if mix is not None and len(mix) != 1:
        raise ValueError(
            "replay_mix of a two-mode run (K = 2) must be None or (1.0,) (one old component), "
            f"got {mix!r}"
        )
    if getattr(objective, "reward_labels", None) is not None:
        raise ValueError(
            "reward_labels is for K-component runs (K >= 3); a two-mode run (K = 2) takes "
            "reward_old and reward_new (the same reward r_old π*_old + r_new π*_new), got "
            f"reward_labels={objective.reward_labels!r}"
        )
    if check_update(update) == "sgd_full_softmax":
        raise ValueError(
            "update='sgd_full_softmax' is for K-component runs (K >= 3); for K = 2 it is "
            "update='sgd' with lr_scale={'weight': 2.0} (the logit difference of two free "
            "logits moves twice the gradient)"
        )


def two_mode_models(
    target: Any,
    model: Any,
    objective: Any,
    new_components: Any = None,
    update: Any = "sgd",
    model_name: str = "start",
) -> Optional[tuple[TwoMode, TwoMode]]:
    """(target, model) as TwoModes for the two-mode engine, or None for K ≥ 3 Mixtures.

    Anything that is neither a TwoMode nor a Mixture is handed through unchanged (the
    two-mode checks name it); a component-count mismatch raises ValueError naming
    ``model_name``."""
    k_target, k_model = _components(target), _components(model)
    if k_target is None or k_model is None:
        return cast(TwoMode, target), cast(TwoMode, model)
    if k_target != k_model:
        raise ValueError(
            f"{model_name} must have as many components as target: K = {k_target}, got "
            f"K = {k_model}"
        )
    if k_target != 2:
        return None
    _check_two_mode_roles(objective, new_components, update)
    as_two = [m.to_two_mode() if isinstance(m, Mixture) else m for m in (target, model)]
    return cast(TwoMode, as_two[0]), cast(TwoMode, as_two[1])
