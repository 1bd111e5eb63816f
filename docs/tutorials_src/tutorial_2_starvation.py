"""
Old-mode starvation and replay
==============================

A finite batch drawn from the model misses the old mode altogether with probability
(1 − α)^B. Such a *starved* batch gives the old component a gradient built from new-mode
points only. This tutorial measures starvation against the closed forms, shows what replay
does to the variance of the old-mean gradient, and counts starved batches along a training
run. Theory: :ref:`theory-starvation`, :ref:`theory-replay`.
"""

# %%
# On your own problem
# -------------------
# 10 000 batches of B = 8 with replay 0.1, on a problem of yours, and the figure. What makes
# a batch starve is the old weight α of the model the batches come from
# (``start.old_weight``): here α = 0.05, so (1 − 0.05)^8 ≈ 66% of the on-policy batches hold
# no old-mode sample. (At the docs' default α = 0.75 it would be 1.5e-5: starvation is a
# small-α, small-B effect.) At one batch size the figure is drawn against the replay
# fraction λ, with the theory ((1 − λ)(1 − α))^B as a curve; the on-policy rate is its
# point at λ = 0.
import matplotlib.pyplot as plt
import numpy as np

import mixforget as mf

target = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.05, cov=1.0)
start = target.replace(new_mean=[0.5])
study = mf.studies.starvation(target=target, start=start, batch_sizes=8,
                              replay=0.1, replicates=10_000)
print(study.to_markdown())
study.plot()
plt.show()

# %%
# Closed forms
# ------------

for slots in ("bernoulli", "stratified"):
    p = mf.theory.starvation_probability(0.05, 32, replay=0.25, slots=slots)
    print(f"α = 0.05, B = 32, replay 0.25 ({slots}): P(starved) = {float(p):.3g}")
print(f"on-policy: {float(mf.theory.starvation_probability(0.05, 32)):.4f}")

# %%
# Measured against predicted
# --------------------------
# Without ``target``, :func:`mixforget.studies.starvation` builds a problem per old weight α:
# a model whose old mean is slightly off (so that the old-mean gradient is not zero). With
# and without Bernoulli replay λ = 0.25, it compares the starved fraction with the closed
# form.
study = mf.studies.starvation(
    old_weights=[0.02, 0.1], batch_sizes=[4, 8, 16, 32], replay=0.25,
    replicates=20_000, rng=1,
)
for r in study.rows:
    print(
        f"α={r['old_weight']:<5} B={r['batch_size']:<3} "
        f"starved {r['measured_onpolicy']:.4f} (theory {r['predicted_onpolicy']:.4f}, "
        f"z = {r['z_onpolicy']:+.1f}); with replay {r['measured_replay']:.2e} "
        f"(theory {r['predicted_replay']:.2e}); "
        f"variance ratio {r['variance_ratio']:.1f}"
    )

# %%
# Replay leaves the exact (population) gradient of reverse KL unchanged — the importance
# weights q/m undo the change of sampling distribution — and cuts the variance of its
# estimate where starvation is likely:
print(
    "max |∇L_replay − ∇L_on-policy| over all settings:",
    f"{max(r['population_max_abs_diff'] for r in study.rows):.1e}",
)
study.plot()
plt.show()

# %%
# Starved batches along a run
# ---------------------------
# Over a training run the expected number of starved batches is Σ_t P(α_t). A reverse-KL run
# on a target whose old mode holds only 5% of the mass, with small batches:
target = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.05, cov=1.0)
start = target.replace(new_mean=[0.5])
runs = {
    f"replay {lam}": mf.simulate(
        target,
        start,
        mf.ReverseKL(replay=lam),
        steps=300,
        batch_size=16,
        lr=0.05,
        replicates=400,
        record_every=1,
        rng=2,
    )
    for lam in (0.0, 0.25)
}
for label, traj in runs.items():
    expected = mf.theory.expected_starved_batches(traj)
    measured = traj.starved[:, -1]
    print(
        f"{label}: starved batches per run {measured.mean():.1f} "
        f"± {1.96 * measured.std(ddof=1) / np.sqrt(len(measured)):.1f} (95%), "
        f"expected Σ_t P(α_t) = {expected.mean():.1f}"
    )

# %%
# Without replay about 44% of the batches (0.95^16) miss the old mode; Bernoulli replay at
# λ = 0.25 multiplies the per-draw miss probability by 0.75, so starvation falls to
# (0.75 · 0.95)^16 ≈ 0.4%.
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
for (label, traj), style in zip(runs.items(), ("-", "--")):
    lam = traj.meta["objective"]["replay"]
    alpha_path = traj.old_weight.mean(axis=0)[:-1]  # the state each batch is drawn from
    theory = np.cumsum(mf.theory.starvation_probability(alpha_path, 16, replay=lam))
    mean_starved = traj.starved.mean(axis=0)[1:]
    ax.plot(traj.steps[1:], mean_starved, style, lw=2, label=f"{label}: measured")
    ax.plot(traj.steps[1:], theory, ":", color="black")
ax.plot([], [], ":", color="black", label=r"$\sum_t P(\alpha_t)$, theory")
ax.set(xlabel="step", ylabel="starved batches per run", yscale="log")
ax.legend()
plt.show()
