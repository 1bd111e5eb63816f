"""The K = 3 selection study (docs: theory-kl-selection): its arms behave as the proven
statements say, its finite-batch means track the flows, its table and figure are complete,
and the table stored in the docs is what the code gives."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from mixforget import studies

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "kl_selection", ROOT / "scripts" / "kl_selection.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small():
    return studies.selection_among_correct_modes(
        steps=200, record_every=20, replicates=64, batch_size=16, rng=2
    )


def test_arms_behave_as_proven(small):
    rows = {r["arm"]: r for r in small.rows}
    assert list(rows) == [arm for arm, _, _ in studies.selection.ARMS]
    assert rows["natural"]["max_ratio_gap"] < 1e-9
    assert rows["plain, all logits"]["ratio"] > 1.5 + 0.5
    assert rows["plain, pinned logit"]["ratio"] > rows["plain, all logits"]["ratio"]
    kl = rows["KL-regularised"]
    assert kl["max_ratio_gap"] > 1e-3 and kl["theory"] == pytest.approx(1.5, abs=1e-12)
    # the anchor keeps old mass the arms without it lose
    assert kl["old_weight"] > 2 * rows["plain, all logits"]["old_weight"]
    for arm in ("plain, all logits", "plain, pinned logit", "natural"):
        # the flows follow their logit ODEs (Euler steps at lr 0.05 against RK4)
        assert abs(rows[arm]["theory"] - rows[arm]["ratio"]) < 0.01 * rows[arm]["ratio"], arm
    for arm, r in rows.items():
        assert abs(r["batch_ratio"] - r["ratio"]) <= 5 * r["batch_ratio_se"] + 1e-9, arm
        assert r["diverged"] == 0


def test_finite_batches_track_the_flows_over_training(small):
    for arm, curve in small.curves.items():
        assert curve["steps"][0] == 0 and curve["steps"][-1] == 200
        z = (curve["batch_ratio"] - curve["ratio"])[1:] / curve["batch_ratio_se"][1:]
        assert np.max(np.abs(z)) < 5.0, (arm, z)
        if arm != "natural":  # natural: the starved old component leaves the flow (docs)
            se = curve["batch_old_weight_se"][1:]
            z_old = (curve["batch_old_weight"] - curve["old_weight"])[1:] / se
            assert np.max(np.abs(z_old)) < 5.0, (arm, z_old)


def test_table_and_figure(small):
    text = small.to_markdown()
    assert text.count("\n") == 1 + len(small.rows)
    assert all(line.count("|") == 10 for line in text.splitlines())
    frame = small.to_pandas()
    assert list(frame["arm"]) == [r["arm"] for r in small.rows]
    left, right = small.plot()
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert len(labels) == 1 + 3 * len(small.rows)  # start ratio, then flow/theory/batches per arm
    assert len(right.get_legend().get_texts()) == len(small.rows) and right.get_yscale() == "log"


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="reference_weights"):
        studies.selection_among_correct_modes(reference_weights=(0.5, 0.5))
    with pytest.raises(ValueError, match="beta"):
        studies.selection_among_correct_modes(beta=0.0)


def test_stored_table_is_what_the_code_gives():
    script = _script()
    stored = script.stored_table(script.PAGE.read_text())
    assert stored == studies.selection_among_correct_modes().to_markdown()
