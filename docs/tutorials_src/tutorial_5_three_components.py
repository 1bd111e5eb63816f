"""
Three components: two old skills, one new task
==============================================

A model that already holds two skills (components 0 and 1) is post-trained on a third task
(component 2). This tutorial trains it with supervised fine-tuning (forward KL) without and
with replay spread over the two old skills, and on-policy (reverse KL). It draws every
component's weight and drift, puts the finite-batch runs beside the exact population flow and
the closed forms, counts starved batches per component, and measures the K-component drift
conjecture. Theory: :ref:`theory-k-components`, :ref:`theory-k-drift-measured`.
"""

# %%
# The world and the start
# -----------------------
# Target p*: old skills at −5 (weight 0.4) and 0 (0.3), the new task at 4 (0.3), unit
# variances. The start has both old skills right, and a new component that is light (0.2)
# and misplaced (at 2). ``new_components`` defaults to the last component.
import matplotlib.pyplot as plt
import numpy as np

import mixforget as mf
import mixforget.plot

target = mf.Mixture([0.4, 0.3, 0.3], [[-5.0], [0.0], [4.0]], cov=1.0)
start = target.replace(weights=[0.45, 0.35, 0.2], means=[[-5.0], [0.0], [2.0]])
print(np.round(target.bhattacharyya_matrix(), 4))
settings = dict(steps=1000, lr=0.05, record_every=10)

# %%
# Forward KL on new-task data: both old skills are forgotten
# ----------------------------------------------------------
# Supervised fine-tuning on samples of component 2 alone drives both old weights to 0 (mass
# forgetting), and the near skill at 0 also drifts toward the new task while it still holds
# mass. The dashed lines are the exact population flow.
sft = mf.simulate(
    target, start, mf.ForwardKL(), batch_size=16, replicates=200, rng=0, **settings
)
sft_flow = mf.population_flow(target, start, mf.ForwardKL(), **settings)
mixforget.plot.plot_component_forgetting(sft, population=sft_flow)
plt.tight_layout()
plt.show()

# %%
# Replay over the old skills: the optimum is (λρ_0, λρ_1, 1 − λ)
# --------------------------------------------------------------
# With replay λ = 0.3 spread as ρ = (0.5, 0.5), the forward-KL optimum gives every old skill
# λρ_j = 0.15 and the new task 1 − λ = 0.7. A longer population flow reaches it, and the
# finite-batch means follow.
replayed = mf.ForwardKL(replay=0.3, replay_mix=(0.5, 0.5))
print(
    "closed form:",
    mf.theory.forward_kl_replay_optimum(target, replay=0.3, replay_mix=(0.5, 0.5)),
)
long_flow = mf.population_flow(
    target, start, replayed, steps=6000, lr=0.05, record_every=100
)
print("population flow after 6000 steps:", np.round(long_flow.weights[0, -1], 5))
with_replay = mf.simulate(
    target, start, replayed, batch_size=16, replicates=200, rng=1, **settings
)
mixforget.plot.plot_component_forgetting(with_replay, label="λ = 0.3")
plt.tight_layout()
plt.show()

# %%
# Reverse KL: on-policy training keeps both old skills
# ----------------------------------------------------
# On-policy training toward the K-component target converges to it: the weights return to
# (0.4, 0.3, 0.3) and the drifts to 0. The near skill moves a little during the transient,
# through overlap with the moving new component.
rkl = mf.simulate(
    target, start, mf.ReverseKL(), batch_size=16, replicates=200, rng=2, **settings
)
print("near old skill, final weight:", rkl.summary()["weight_1"])
mixforget.plot.plot_component_forgetting(rkl)
plt.tight_layout()
plt.show()

# %%
# Starved batches, per component
# ------------------------------
# A batch is starved of component j when none of its samples carries label j. For on-policy
# batches drawn from fixed weights w this happens with probability (1 − w_j)^B. Here we
# count starved batches over 20 000 draws at B = 4 from a model with a light old skill
# (w_0 = 0.05) and compare with the formula. ``starved_by_component`` holds the counts.
light = target.replace(weights=[0.05, 0.65, 0.3])
counts = mf.simulate(
    light,
    light,
    mf.ReverseKL(),
    steps=1,
    lr=1e-12,
    batch_size=4,
    replicates=20_000,
    record_every=1,
    rng=3,
)
measured = counts.starved_by_component.mean(axis=0)
theory = mf.theory.component_starvation_probability(light.weights, 4)
for j in range(3):
    se = np.sqrt(theory[j] * (1 - theory[j]) / 20_000)
    print(
        f"component {j}: measured {measured[j]:.4f}, "
        f"(1 − w_j)^4 = {theory[j]:.4f} ± {se:.4f}"
    )

# %%
# The drift conjecture, at tutorial size
# --------------------------------------
# Does an old skill's sup drift fall as e^{−Δ²/8} in its separation Δ from the *moving*
# component, wherever the other old skill is? The slope of log sup drift against Δ² is
# printed with the table. The theory page stores the full-size table.
study = mf.studies.drift_vs_nearest_separation(
    [4.0, 5.0, 6.0, 7.0], (8.0,), steps=1500, record_every=5
)
print(study.to_markdown())
study.plot()
plt.show()
