"""The training engine's Python side: one driver that runs any stepper.

A *stepper* advances a set of replicates by some steps and hands back the states at the record
steps it crossed (:class:`Records`); the Rust finite-batch simulator, the Rust population flow
and the array-API twin (:mod:`mixforget.reference`) are steppers. Everything around the
stepping is written once here, as numpyro's ``MCMC`` runs any kernel:

- :mod:`._plan` — :class:`RunPlan`, the validated settings of one training run, and the one
  ``meta`` builder of its :class:`~mixforget.results.Trajectory`;
- :mod:`._driver` — :func:`drive`: allocate the records, plan the chunks, step, record, show
  one progress bar, build the Trajectory;
- :mod:`._rust` — the steppers of the Rust engine: the one place that constructs the
  binding's ``Simulator`` / ``PopulationFlow`` and reads what ``advance`` returns;
- K-component runs (docs: theory-k-components): :mod:`._mixture_route` sends K = 2 Mixtures
  to the two-mode engine and K ≥ 3 to the K-component one, :mod:`._mixture_plan` validates
  them (:class:`~._mixture_plan.MixturePlan`), :mod:`._mixture_records` holds their records
  (weights, means, per-component starved counts) for the driver.

The public front doors stay :func:`mixforget.simulate` and :func:`mixforget.population_flow`.
"""

from __future__ import annotations

from ._driver import ChunkPolicy, Records, Stepper, drive
from ._plan import RunPlan, check_flow, plan_of_run

__all__ = ["ChunkPolicy", "Records", "RunPlan", "Stepper", "check_flow", "drive", "plan_of_run"]
