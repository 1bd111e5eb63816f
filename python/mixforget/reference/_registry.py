"""The twin's registry: which :class:`~._objective.ObjectiveTwin` runs each objective, keyed by
the objective's ``kind`` from :data:`mixforget.objectives.OBJECTIVES` (each twin names the
dataclass it ``implements``). A new objective is its twin module plus one line here;
``tests/test_objective_registry.py`` checks that every registered objective has its twin."""

from __future__ import annotations

from typing import Any, Optional

from ..objectives import Objective
from ._objective import Context, ObjectiveTwin
from .forward_kl import ForwardKLTwin
from .kl_regularized_rl import KLRegularizedRLTwin
from .new_mode_reinforce import NewModeREINFORCETwin
from .oapl import OAPLTwin
from .reverse_kl import ReverseKLTwin
from .sdft import SDFTTwin
from .ttt_discover import TTTDiscoverTwin

#: objective kind (``Objective.kind``, the class name) → its twin
TWINS: dict[str, type[ObjectiveTwin[Any]]] = {
    twin.implements.kind: twin
    for twin in (
        ForwardKLTwin,
        ReverseKLTwin,
        SDFTTwin,
        TTTDiscoverTwin,
        OAPLTwin,
        NewModeREINFORCETwin,
        KLRegularizedRLTwin,
    )
}


def twin_for(objective: Objective, ctx: Context, batch_size: Optional[int]) -> ObjectiveTwin[Any]:
    """A fresh twin of ``objective`` for one run (``batch_size`` None: population limit)."""
    twin = TWINS.get(type(objective).kind)
    if twin is None:
        raise TypeError(f"objective must be one of {list(TWINS)}, got {type(objective).__name__}")
    return twin(objective, ctx, batch_size)
