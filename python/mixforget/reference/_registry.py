"""The one place that maps an objective to its twin: a sixth objective is one module and one
entry here."""

from __future__ import annotations

from typing import Any, Optional

from ..objectives import Objective
from ._objective import Context, ObjectiveTwin
from .forward_kl import ForwardKLTwin
from .new_mode_reinforce import NewModeREINFORCETwin
from .oapl import OAPLTwin
from .reverse_kl import ReverseKLTwin
from .sdft import SDFTTwin
from .ttt_discover import TTTDiscoverTwin

#: objective class name (``Objective.as_dict()["kind"]``) → its twin
TWINS: dict[str, type[ObjectiveTwin[Any]]] = {
    twin.kind: twin
    for twin in (
        ForwardKLTwin,
        ReverseKLTwin,
        SDFTTwin,
        TTTDiscoverTwin,
        OAPLTwin,
        NewModeREINFORCETwin,
    )
}


def twin_for(objective: Objective, ctx: Context, batch_size: Optional[int]) -> ObjectiveTwin[Any]:
    """A fresh twin of ``objective`` for one run (``batch_size`` None: population limit)."""
    kind = type(objective).__name__
    if kind not in TWINS:
        raise TypeError(f"objective must be one of {sorted(TWINS)}, got {kind}")
    return TWINS[kind](objective, ctx, batch_size)
