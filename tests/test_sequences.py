"""mf.sequence (issue 21): one stage is the plain simulate call bit for bit, reproducible,
carried per-replicate states at absolute steps, the population theory at every stage, the
per-task starvation formula, replay schedules and buffers, bad sequences refused early."""

import sys

import numpy as np
import pytest

import mixforget as mf
from mixforget.sequences import (
    balanced_buffer,
    replay_schedule,
    reservoir_buffer,
    sequence,
)
from mixforget.theory.k_components import component_starvation_probability

TASKS4 = mf.Mixture([0.25] * 4, [[-6.0], [-2.0], [2.0], [6.0]], cov=1.0)
SMALL = dict(steps=40, lr=0.05, batch_size=16, replicates=8, record_every=10)


def _binomial_5sigma(count, n, p):
    return abs(count - n * p) <= 5.0 * np.sqrt(n * p * (1.0 - p)) + 1e-12


@pytest.mark.parametrize("backend", ["rust", "numpy"])
@pytest.mark.parametrize("objective", [mf.ForwardKL(replay=0.2), mf.ReverseKL()])
def test_one_stage_is_the_plain_simulate_call_bit_for_bit(backend, objective):
    tasks = mf.Mixture([0.4, 0.6], [[-2.0, 0.0], [2.0, 1.0]], cov=1.0)
    res = sequence(tasks, objective, rng=11, backend=backend, start_offset=0.5, **SMALL)
    start = mf.Mixture([0.5, 0.5], [[-2.0, 0.0], [2.5, 1.5]], cov=1.0)
    plain = mf.simulate(tasks, start, objective, rng=11, backend=backend, **SMALL)
    (stage,) = res.stages
    np.testing.assert_array_equal(stage.weights[..., 0], plain.old_weight)
    np.testing.assert_array_equal(stage.means[:, :, 0], plain.old_mean)
    np.testing.assert_array_equal(stage.means[:, :, 1], plain.new_mean)
    np.testing.assert_array_equal(stage.steps, plain.steps)


def test_same_seed_same_numbers_other_seed_other_numbers():
    runs = [sequence(TASKS4, mf.ReverseKL(replay=0.2), rng=seed, **SMALL) for seed in (5, 5, 6)]
    for a, b in zip(runs[0].stages, runs[1].stages):
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.means, b.means)
        np.testing.assert_array_equal(a.starved, b.starved)
    assert not np.array_equal(runs[0].stages[-1].weights, runs[2].stages[-1].weights)


def test_each_replicate_carries_its_state_at_absolute_steps():
    res = sequence(TASKS4, mf.ForwardKL(replay=0.1), rng=2, start_offset=0.3, **SMALL)
    assert [st.stage for st in res.stages] == [1, 2, 3]
    for prev, st in zip(res.stages, res.stages[1:]):
        k = prev.weights.shape[-1]
        e = 1.0 / (k + 1)
        assert st.steps[0] == prev.steps[-1] and st.steps[-1] == prev.steps[-1] + 40
        np.testing.assert_allclose(st.weights[:, 0, :k], (1 - e) * prev.weights[:, -1], rtol=1e-12)
        np.testing.assert_allclose(st.weights[:, 0, k], e, rtol=1e-12)
        np.testing.assert_array_equal(st.means[:, 0, :k], prev.means[:, -1])
        np.testing.assert_allclose(
            st.means[:, 0, k], np.broadcast_to(TASKS4.means[k] + 0.3, (8, 1))
        )
    # replicates differ from each other: the carry is per replicate, not a mean
    assert np.ptp(res.stages[1].weights[:, 0, 0]) > 0
    steps, weights = res.weights_over_sequence()
    assert steps[0] == 0 and steps[-1] == 120 and weights.shape == (8, steps.size, 4)
    assert np.isnan(weights[:, 0, 2:]).all() and np.isfinite(weights[:, -1]).all()
    np.testing.assert_array_equal(res.boundaries, [40, 80])


def test_forward_kl_uniform_replay_optimum_at_every_stage():
    lam = 0.3
    pop = sequence(
        TASKS4,
        mf.ForwardKL(replay=lam),
        steps=2000,
        lr=0.5,
        record_every=2000,
        schedule="uniform",
        population=True,
    )
    for st in pop.stages:
        k = st.weights.shape[-1]
        optimum = np.r_[np.full(k - 1, lam / (k - 1)), 1.0 - lam]
        np.testing.assert_allclose(st.weights[0, -1], optimum, atol=1e-6)
        np.testing.assert_allclose(st.means[0, -1], TASKS4.means[:k], atol=1e-6)
        expected = mf.theory.k_components.forward_kl_replay_optimum(
            st.target, replay=lam, replay_mix=st.objective.replay_mix
        )
        np.testing.assert_allclose(st.weights[0, -1], expected, atol=1e-6)


def test_forward_kl_without_replay_old_weights_fall_stage_by_stage():
    pop = sequence(TASKS4, mf.ForwardKL(), steps=500, lr=0.5, record_every=500, population=True)
    ends = [st.weights[0, -1] for st in pop.stages]
    for s, w in enumerate(ends, start=1):
        assert w[:s].sum() < 0.05  # the old tasks' mass is (nearly) gone at each stage's end
    for s in range(1, len(ends)):
        assert np.all(ends[s][:s] < ends[s - 1][:s])  # each old task's weight fell again
    summary = pop.summary("weight")
    assert summary["bwt"] < -0.8 and summary["mean_forgetting"] > 0.8


def test_reverse_kl_reaches_the_target_at_every_stage():
    pop = sequence(
        TASKS4,
        mf.ReverseKL(),
        steps=2000,
        lr=0.5,
        record_every=2000,
        population=True,
        start_offset=0.5,
    )
    for st in pop.stages:
        np.testing.assert_allclose(st.weights[0, -1], st.target.weights, atol=1e-6)
        np.testing.assert_allclose(st.means[0, -1], st.target.means, atol=1e-6)
    a = pop.matrix("weight")
    np.testing.assert_allclose(a[np.tril_indices(4)], 1.0, atol=1e-6)
    assert abs(pop.summary("weight")["bwt"]) < 1e-6


def test_per_task_starvation_matches_the_formula():
    lam, batch = 0.3, 6
    res = sequence(
        TASKS4,
        mf.ForwardKL(replay=lam),
        steps=400,
        lr=0.02,
        batch_size=batch,
        replicates=50,
        record_every=400,
        rng=4,
        schedule="recency",
        recency=0.5,
    )
    checked = 0
    for st in res.stages[1:]:  # the K-component twin counts every component
        p = component_starvation_probability(
            st.target,
            batch,
            replay=lam,
            replay_mix=st.objective.replay_mix,
            objective="forward_kl",
            new_components=(st.stage,),
        )
        counts = st.starved[:, -1].sum(axis=0)
        n = 400 * 50
        for j in range(counts.size):
            assert _binomial_5sigma(counts[j], n, p[j]), (st.stage, j, counts[j] / n, p[j])
            checked += 1
    first = res.stages[0]  # the two-mode engine counts the old mode: P = (1 − λ)^B
    assert _binomial_5sigma(first.starved[:, -1, 0].sum(), 400 * 50, (1 - lam) ** batch)
    assert checked == 3 + 4
    freq = res.starvation()
    assert freq.shape == (3, 4) and np.isnan(freq[0, 1])


def test_replay_schedules_by_hand():
    assert replay_schedule("uniform", [0.1, 0.3, 0.2]) == pytest.approx((1 / 3,) * 3)
    assert replay_schedule("proportional", [0.1, 0.3, 0.2]) == pytest.approx((1 / 6, 1 / 2, 1 / 3))
    # γ = 0.5: weights 1/4, 1/2, 1 over ages 2, 1, 0, normalised by 7/4
    assert replay_schedule("recency", [0.1, 0.3, 0.2], recency=0.5) == pytest.approx(
        (1 / 7, 2 / 7, 4 / 7)
    )
    res = sequence(TASKS4, mf.ForwardKL(replay=0.2), schedule="recency", recency=0.5, **SMALL)
    assert [st.objective.replay_mix for st in res.stages] == [
        pytest.approx((1.0,)),
        pytest.approx((1 / 3, 2 / 3)),
        pytest.approx((1 / 7, 2 / 7, 4 / 7)),
    ]


def test_reservoir_inclusion_probability_is_m_over_n():
    n_items, memory, trials = 40, 10, 4000
    rng = np.random.default_rng(0)
    hits = np.zeros(n_items)
    for _ in range(trials):
        kept = reservoir_buffer(n_items, memory, rng)
        assert kept.size == memory and np.unique(kept).size == memory
        hits[kept] += 1
    for count in hits:
        assert _binomial_5sigma(count, trials, memory / n_items)
    assert hits[:memory].sum() < trials * memory  # the first items are not always kept


def test_balanced_buffer_keeps_equal_shares():
    labels = np.repeat([0, 1, 2], [50, 5, 30])
    kept = balanced_buffer(labels, 11, np.random.default_rng(1))
    # ⌊11/3⌋ = 3 each, the remainder 2 to tasks 1 and 2
    np.testing.assert_array_equal(np.bincount(labels[kept], minlength=3), [3, 4, 4])
    kept = balanced_buffer(labels, 30, np.random.default_rng(1))
    np.testing.assert_array_equal(np.bincount(labels[kept], minlength=3), [10, 5, 10])


def test_accuracy_matrices_and_tables():
    res = sequence(TASKS4, mf.ForwardKL(replay=0.2), **SMALL)
    for kind in ("weight", "mean_error", "log_likelihood"):
        a = res.matrix(kind)
        assert a.shape == (4, 4)
        assert np.isfinite(a[np.tril_indices(4)]).all() and np.isnan(a[np.triu_indices(4, 1)]).all()
    assert res.matrix("weight")[0, 0] == 1.0
    # E log q of one unit Gaussian at the task's mean: −(log 2π + 1)/2
    assert res.matrix("log_likelihood")[0, 0] == pytest.approx(
        -0.5 * (np.log(2 * np.pi) + 1), abs=1e-10
    )
    table = res.to_pandas()
    assert len(table) == 10 and set(table.columns) >= {"stage", "task", "weight", "log_likelihood"}
    assert "BWT" in res.to_markdown("mean_error")
    with pytest.raises(ValueError, match="kind"):
        res.matrix("accuracy")


def test_expected_log_likelihood_against_monte_carlo():
    from mixforget.sequences.quadrature import expected_log_likelihood

    cov = np.array([[1.0, 0.3, 0.0], [0.3, 1.5, 0.2], [0.0, 0.2, 0.8]])
    weights = np.array([[0.2, 0.5, 0.3]])
    means = np.array([[[0.0, 0.0, 0.0], [1.0, -1.0, 0.5], [2.0, 1.0, -1.0]]])
    task_mean = np.array([0.5, 0.2, 0.1])
    quad = expected_log_likelihood(task_mean, cov, weights, means, [cov] * 3)[0]
    model = mf.Mixture(weights[0], means[0], cov=cov)
    x = np.random.default_rng(3).multivariate_normal(task_mean, cov, size=400_000)
    values = model.logpdf(x)
    assert abs(quad - values.mean()) < 5 * values.std() / np.sqrt(values.size)


def _no_work(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the checks")

    monkeypatch.setattr(sys.modules["mixforget.simulate"], "simulate", refuse)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(steps=[]), "steps"),
        (dict(steps=[40, 40]), "steps"),
        (dict(schedule=[]), "schedule"),
        (dict(schedule="lifo"), "schedule"),
        (dict(schedule=[(1.0,), (0.5, 0.4), (0.2, 0.3, 0.5)]), "schedule"),
        (dict(schedule=[(1.0,), (0.5, 0.5)]), "schedule"),
        (dict(schedule="recency", recency=0.0), "recency"),
        (dict(start_offset=[1.0, 2.0]), "start_offset"),
        (dict(start=mf.Mixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], cov=1.0)), "start"),
        (dict(stage_weights=[(0.5, 0.5)]), "stage_weights"),
        (dict(stage_weights=[(0.5, 0.5), (0.2, 0.2, 0.2), (0.25,) * 4]), "stage_weights"),
        (dict(entry_weight=1.0), "entry_weight"),
        (dict(record_every=7), "record_every"),
    ],
)
def test_bad_sequences_are_refused_before_any_work(monkeypatch, kwargs, name):
    _no_work(monkeypatch)
    settings = {**SMALL, **kwargs}
    with pytest.raises(ValueError, match=name):
        sequence(TASKS4, mf.ForwardKL(replay=0.2), **settings)


def test_bad_tasks_and_memory(monkeypatch):
    _no_work(monkeypatch)
    with pytest.raises(TypeError, match="tasks"):
        sequence(mf.TwoMode([0.0], [1.0], 0.5, cov=1.0), mf.ForwardKL(), **SMALL)
    with pytest.raises(NotImplementedError, match="ForwardKL and ReverseKL"):
        sequence(TASKS4, mf.SDFT(), **SMALL)
    for memory in (0, -3):
        with pytest.raises(ValueError, match="memory"):
            reservoir_buffer(10, memory, np.random.default_rng(0))
        with pytest.raises(ValueError, match="memory"):
            balanced_buffer([0, 1], memory, np.random.default_rng(0))


def test_buffers_in_training_store_and_replay_only_stored_items():
    from mixforget.sequences.buffer import ReplayBuffers

    rng = np.random.default_rng(0)
    chol = np.eye(1)
    balanced = ReplayBuffers.empty("balanced", 10, 5, 1)
    reservoir = ReplayBuffers.empty("reservoir", 10, 2000, 1)
    for task in range(3):
        balanced.add_task(task, TASKS4.means[task], chol, 100, rng)
        reservoir.add_task(task, TASKS4.means[task], chol, 100, rng)
    # balanced: ⌊10/3⌋ = 3 each, the remainder to the most recent task
    for row in balanced.labels:
        np.testing.assert_array_equal(np.bincount(row, minlength=3), [3, 3, 4])
    np.testing.assert_allclose(balanced.composition(), [0.3, 0.3, 0.4])
    # reservoir: every item kept with probability M/N, so a task's share is 1/3 on average
    assert reservoir.points.shape == (2000, 10, 1)
    share = (reservoir.labels == 0).mean()
    sd = np.sqrt((1 / 3) * (2 / 3) / 10 / 2000) * 1.2  # hypergeometric, below the binomial
    assert abs(share - 1 / 3) < 5 * sd
    np.testing.assert_allclose(reservoir.composition(), [1 / 3] * 3)
    # stored points come from their task's distribution
    assert np.all(np.abs(balanced.points[..., 0] - TASKS4.means[balanced.labels, 0]) < 6)


def test_forward_kl_old_means_follow_the_buffer_as_memory_falls():
    """FKL's old component fits its m stored points: in 1-D its mean error → |x̄_m − μ*|,
    E = sqrt(2/(π m)) (balanced buffer, m = M/2 per old task at the last stage)."""
    tasks = mf.Mixture([1 / 3] * 3, [[-8.0], [0.0], [8.0]], cov=1.0)
    settings = dict(steps=300, lr=0.3, batch_size=64, replicates=100, record_every=300, rng=2)
    errors = {}
    for memory in (2, 32):
        res = sequence(
            tasks, mf.ForwardKL(replay=0.5), buffer="balanced", memory=memory, **settings
        )
        err = res.per_replicate_matrix("mean_error")[:, -1, 0]
        predicted = np.sqrt(2.0 / (np.pi * (memory // 2)))
        assert abs(err.mean() - predicted) < 5 * err.std() / 10 + 0.03, (memory, err.mean())
        errors[memory] = err.mean()
        # replay draws come from the buffer only: its labels are the old tasks
        assert np.all(res.stages[-1].starved[:, -1, 2] == 0)
    assert errors[2] > 3 * errors[32]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(memory=10), "memory"),
        (dict(buffer="fifo", memory=10), "buffer"),
        (dict(buffer="reservoir"), "memory"),
        (dict(buffer="reservoir", memory=0), "memory"),
        (dict(buffer="reservoir", memory=-1), "memory"),
        (dict(buffer="balanced", memory=5, stream=0), "stream"),
        (dict(buffer="balanced", memory=5, population=True), "buffer"),
    ],
)
def test_bad_buffers_are_refused_before_any_work(monkeypatch, kwargs, name):
    _no_work(monkeypatch)
    with pytest.raises(ValueError, match=name):
        sequence(TASKS4, mf.ForwardKL(replay=0.2), **{**SMALL, **kwargs})


def test_figures_have_every_task_and_the_stage_boundaries():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = sequence(TASKS4, mf.ForwardKL(replay=0.2), **SMALL)
    fig, axes = plt.subplots(1, 2)
    res.plot_weights(ax=axes[0])
    labels = [line.get_label() for line in axes[0].get_lines()]
    assert [lab for lab in labels if lab.startswith("task")] == [f"task {j}" for j in range(4)]
    boundaries = [
        line.get_xdata()[0] for line in axes[0].get_lines() if line.get_linestyle() == "--"
    ]
    assert boundaries == [40, 80]
    res.plot_matrix("weight", ax=axes[1])
    assert len(axes[1].texts) == 10
    plt.close(fig)


def _rkl_plan(model, baseline="none"):
    from mixforget.engine._mixture_plan import plan_mixture_run

    target = mf.Mixture([1 / 3] * 3, [[-4.0], [0.0], [4.0]], cov=1.0)
    objective = mf.ReverseKL(replay=0.3, baseline=baseline)
    settings = dict(steps=1, record_every=1, lr=0.1, lr_scale=None, update="sgd")
    return target, plan_mixture_run(target, model, objective, new_components=None, **settings)


def test_buffer_replay_biases_reverse_kl_given_the_buffer_at_rate_one_over_sqrt_m():
    """Given the buffer, ReverseKL's expected estimate differs from the p_old gradient by
    λ (E_p̂ − E_p_old)[w v s]: zero mean over buffer draws, RMS ∝ 1/√M; zero at the target."""
    from mixforget._mixture_population import mixture_population_gradient
    from mixforget.reference.mixture_engine import Components, MixtureParams, TargetSources
    from mixforget.sequences.buffer import buffer_replay_gradient

    model = mf.Mixture([0.3, 0.3, 0.4], [[-3.5], [0.5], [4.5]], cov=1.0)
    target, plan = _rkl_plan(model)
    params = MixtureParams.of(model, 1)
    g_eta, g_mu = mixture_population_gradient(
        plan, params, Components.of(model), TargetSources(plan)
    )
    exact = np.concatenate([g_eta.ravel(), g_mu.ravel()])
    rng = np.random.default_rng(0)
    rms = {}
    for memory in (10, 160):
        diffs = []
        for _ in range(200):
            labels = rng.integers(0, 2, memory)  # the old tasks 0 and 1, ρ = (1/2, 1/2)
            points = target.means[labels] + rng.standard_normal((memory, 1))
            b_eta, b_mu = buffer_replay_gradient(plan, params, points)
            diffs.append(np.concatenate([b_eta.ravel(), b_mu.ravel()]) - exact)
        diffs = np.array(diffs)
        se = diffs.std(axis=0) / np.sqrt(len(diffs))
        assert np.all(np.abs(diffs.mean(axis=0)) < 5 * se)  # unbiased over buffer draws
        assert np.all(diffs.std(axis=0) > 0)  # ... but not given one buffer
        rms[memory] = np.sqrt(np.mean(np.sum(diffs**2, axis=1)))
    assert 0.18 < rms[160] / rms[10] < 0.35  # 1/√16 = 0.25
    _, at_target = _rkl_plan(target, baseline="loo")
    b_eta, b_mu = buffer_replay_gradient(at_target, MixtureParams.of(target, 1), points)
    assert np.all(b_eta == 0.0) and np.all(b_mu == 0.0)


def test_any_thread_count_gives_the_same_numbers():
    a, b = (sequence(TASKS4, mf.ReverseKL(replay=0.2), rng=9, threads=t, **SMALL) for t in (1, 2))
    for sa, sb in zip(a.stages, b.stages):
        np.testing.assert_array_equal(sa.weights, sb.weights)
        np.testing.assert_array_equal(sa.means, sb.means)


SEQUENCE_TOML = """
[sequence]
steps = [40, 40, 40]
lr = 0.05
batch_size = 16
replicates = 8
record_every = 10
rng = 5
schedule = "recency"
recency = 0.5

[sequence.tasks]
weights = [0.25, 0.25, 0.25, 0.25]
means = [[-6.0], [-2.0], [2.0], [6.0]]
cov = 1.0

[sequence.objective]
kind = "ReverseKL"
replay = 0.2
"""


def test_sequence_section_of_a_toml_file(tmp_path):
    from mixforget.sequences.config import load_sequence_config

    path = tmp_path / "seq.toml"
    path.write_text(SEQUENCE_TOML, encoding="utf-8")
    config = load_sequence_config(path)
    assert config.tasks == TASKS4 and config.objective == mf.ReverseKL(replay=0.2)
    res = config.run()
    direct = sequence(
        TASKS4, mf.ReverseKL(replay=0.2), schedule="recency", recency=0.5, rng=5, **SMALL
    )
    np.testing.assert_array_equal(res.stages[-1].weights, direct.stages[-1].weights)


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ('schedule = "recency"', 'schedule = "lifo"', "schedule"),
        ("rng = 5", "seed = 5", "sequence.seed"),
        ("cov = 1.0", "cov = 1.0\nsigma = 2", "sequence.tasks.sigma"),
        ('kind = "ReverseKL"', 'kind = "SDFT"', "SDFT"),
        ("steps = [40, 40, 40]", "steps = [40, 40]", "steps"),
    ],
)
def test_bad_sequence_sections_name_the_key(old, new, name):
    import tomllib

    from mixforget.config import ConfigError
    from mixforget.sequences.config import parse_sequence_config

    with pytest.raises(ConfigError, match=name):
        parse_sequence_config(tomllib.loads(SEQUENCE_TOML.replace(old, new)))
