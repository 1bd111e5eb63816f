"""The one driver (mixforget.engine.drive): one record loop, one chunking, one progress bar
and one meta for every stepper (Rust simulator, Rust population flow, the twin)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import mixforget as mf
from mixforget._rng import resolve_rng
from mixforget.engine import ChunkPolicy, Records, RunPlan, drive

TARGET = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75)
START = TARGET.replace(new_mean=[0.5])
KW = dict(steps=40, record_every=10, lr=0.05)


class CountingStepper:
    """A fake stepper whose state after t steps is t (weight t/1000, means ±t, t starved)."""

    implementation = "fake"

    def __init__(self, replicates: int, chunks: ChunkPolicy) -> None:
        self.r, self.chunks, self.done, self.calls = replicates, chunks, 0, []

    def first_record(self):
        return None

    def advance(self, steps: int, record_every: int) -> Records:
        self.calls.append(steps)
        ts = [t for t in range(self.done + 1, self.done + steps + 1) if t % record_every == 0]
        self.done += steps
        t = np.tile(np.array(ts, dtype=float), (self.r, 1))
        return Records(t / 1000, -t[:, :, None], t[:, :, None], t.astype(np.int64))

    def diverged(self):
        return np.zeros(self.r, dtype=bool)


def _plan(steps: int = 600, record_every: int = 6) -> RunPlan:
    return RunPlan(
        target=TARGET,
        start=START,
        objective=mf.ReverseKL(),
        steps=steps,
        record_every=record_every,
        lr=0.05,
        weight_param="logit",
        lr_scale={"weight": 1.0, "old_mean": 1.0, "new_mean": 1.0},
        train_scales=False,
        scale_param="direct",
        replicates=3,
        batch_size=8,
        threads=1,
        seed=resolve_rng(0),
    )


@pytest.mark.parametrize(
    "policy", [ChunkPolicy(first=1), ChunkPolicy(first=7, quantum=7), ChunkPolicy(60, 60, 60)]
)
def test_records_sit_at_absolute_steps_whatever_the_chunks(policy):
    plan = _plan()
    stepper = CountingStepper(3, policy)
    traj = drive(plan, lambda: stepper)
    steps = np.arange(0, 601, 6)
    np.testing.assert_array_equal(traj.steps, steps)
    np.testing.assert_array_equal(traj.old_weight[:, 1:], np.tile(steps[1:] / 1000, (3, 1)))
    np.testing.assert_array_equal(traj.new_mean[:, 1:, 0], np.tile(steps[1:], (3, 1)))
    np.testing.assert_array_equal(traj.starved[:, 0], 0)
    # record 0 is the start model when the stepper has no first record
    assert np.all(traj.old_weight[:, 0] == START.old_weight)
    assert np.all(traj.new_mean[:, 0, 0] == 0.5)
    assert sum(stepper.calls) == 600
    q = policy.quantum
    if q <= 600 // 20:  # at most 1/20 of the run per call, unless the quantum is larger
        assert len(stepper.calls) >= 20
    assert all(n % q == 0 for n in stepper.calls[:-1])
    if policy.most is not None:
        assert max(stepper.calls) <= policy.most


def test_the_stepper_is_opened_after_the_records_are_allocated():
    order = []

    def open_stepper():
        order.append("open")
        return CountingStepper(3, ChunkPolicy(first=1))

    with pytest.raises((MemoryError, ValueError)):
        # 10^15 records cannot be allocated: the stepper is never made
        drive(_plan(steps=6 * 10**15, record_every=6), open_stepper)
    assert order == []


def _runs():
    rust = mf.simulate(TARGET, START, mf.SDFT(), replicates=4, batch_size=8, **KW)
    twin = mf.simulate(TARGET, START, mf.SDFT(), replicates=4, batch_size=8, backend="numpy", **KW)
    flow = mf.population_flow(TARGET, START, mf.SDFT(), **KW)
    return rust, twin, flow


def test_one_meta_for_every_stepper():
    rust, twin, flow = _runs()
    assert set(twin.meta) - set(rust.meta) == {"backend", "device", "precision"}
    assert set(rust.meta) - set(flow.meta) == {"batch_size", "replicates", "seed", "threads"}
    assert set(flow.meta) - set(rust.meta) == {"population"}
    for key in set(flow.meta) & set(rust.meta) - {"wall_time", "implementation"}:
        assert rust.meta[key] == twin.meta[key] == flow.meta[key], key
    assert rust.meta["implementation"] == flow.meta["implementation"] == "rust"
    assert twin.meta["implementation"] == twin.meta["backend"] == "numpy"
    assert flow.meta["population"] is True and "population" not in rust.meta
    for run in (rust, twin, flow):
        assert run.meta["wall_time"] >= 0 and run.steps.tolist() == [0, 10, 20, 30, 40]


@pytest.mark.parametrize("backend, desc", [("rust", "mixforget:"), ("numpy", "mixforget (numpy):")])
def test_one_progress_bar_without_tqdm(backend, desc, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    mf.simulate(TARGET, START, mf.ForwardKL(), replicates=2, progress=True, backend=backend, **KW)
    err = capsys.readouterr().err
    assert f"{desc} 40/40 steps" in err
