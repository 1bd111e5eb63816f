"""The KL-regularised RL studies (docs: theory-kl-studies): small, fast runs whose tables must
agree with the closed forms within their stated standard errors."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from mixforget import studies
from mixforget.theory import kl_regularized_old_weight


def test_old_weight_against_beta_matches_the_closed_forms():
    study = studies.kl_old_weight_vs_beta(betas=(0.5, 2.0), steps=300, replicates=16, rng=3)
    assert [(r["kl"], r["beta"]) for r in study.rows] == [
        ("reverse", 0.5), ("reverse", 2.0), ("forward", 0.5), ("forward", 2.0)
    ]  # fmt: skip
    for r in study.rows:
        assert r["closed_form"] == kl_regularized_old_weight(0.75, 1.0, r["beta"], r["kl"])
        assert abs(r["population"] - r["closed_form"]) < 1e-6
        assert abs(r["batch_mean"] - r["closed_form"]) <= 5 * r["batch_se"] + 1e-6
        assert r["batch_lo"] <= r["batch_mean"] <= r["batch_hi"] and r["diverged"] == 0
    # the directions differ where the table says they do
    rev, fwd = study.rows[0]["closed_form"], study.rows[2]["closed_form"]
    assert abs(rev - fwd) > 0.02
    text = study.to_markdown()
    assert text.count("\n") == 1 + len(study.rows) and "forward" in text
    ax = study.plot()
    assert len(ax.get_lines()) >= 4 and ax.get_xscale() == "log"


def test_estimator_table_is_consistent_with_the_exact_gradients():
    study = studies.kl_estimator_bias(batch_sizes=(2, 8), batches=6000, rng=5)
    rows = {(r["kl_estimator"], r["advantage"], r["batch_size"]): r for r in study.rows}
    assert len(rows) == 10
    for b in (2, 8):
        # exact and k1 with a leave-one-out baseline: unbiased for the true gradient at any B
        for est in ("exact", "k1"):
            assert abs(rows[est, "loo", b]["z"]) < 5.0
        # k3: unbiased for its own limit, which is not the true gradient
        k3 = rows["k3", "loo", b]
        assert abs(k3["finite_batch_bias"]) < 5 * k3["se"]
        assert abs(k3["limit"] - k3["true"]) > 0.1 * abs(k3["true"])
    # ... and the batch means tell it from the true gradient
    assert abs(rows["k3", "loo", 8]["z"]) > 4.0
    # group normalisation: a finite-B bias against its own limit, largest at B = 2
    small, large = rows["exact", "group", 2], rows["exact", "group", 8]
    assert abs(small["finite_batch_bias"]) > 10 * small["se"]
    assert abs(small["finite_batch_bias"]) > abs(large["finite_batch_bias"])
    # variance falls with B
    assert rows["exact", "loo", 8]["total_variance"] < rows["exact", "loo", 2]["total_variance"]
    assert "k3" in study.to_markdown()


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: studies.kl_old_weight_vs_beta(betas=(0.0,)), "betas"),
        (lambda: studies.kl_old_weight_vs_beta(kls=("sideways",)), "kls"),
        (lambda: studies.kl_old_weight_vs_beta(reference_weight=1.5), "reference_weight"),
        (lambda: studies.kl_estimator_bias(batch_sizes=(0,)), "batch_sizes"),
        (lambda: studies.kl_estimator_bias(batches=1), "batches"),
    ],
)
def test_bad_arguments_name_themselves(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_rows_are_plain_numbers():
    study = studies.kl_estimator_bias(batch_sizes=(4,), estimators=(("exact", "loo"),), batches=200)
    assert all(isinstance(v, (str, int, float)) for v in study.rows[0].values())
    assert np.isfinite(study.rows[0]["variance"])
