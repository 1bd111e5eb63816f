"""Bad inputs to the public API, each with the exception it must raise and a pattern that
the message must contain (the argument's name). Run by tests/test_reliability.py in a
subprocess, so that an input that aborts the interpreter is a failure, not a crash of the
test run.

Each case: (id, Python expression, exception class name, regex searched in the message).
The expression runs in the namespace of :data:`SETUP`.
"""

from __future__ import annotations

SETUP = """
import os
import numpy as np
import mixforget as mf
from mixforget import kernels, studies, theory
from mixforget.sweeps import sweep

TMP = os.environ["MF_CASES_TMP"]
T = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, cov=1.0)
S = T.replace(new_mean=[0.5])
T2 = mf.TwoMode(old_mean=[0.0, 0.0], new_mean=[3.0, 0.0], old_weight=0.75, cov=1.0)
O = mf.ReverseKL()


def sim(**kw):
    args = dict(steps=10, batch_size=8, replicates=2, record_every=1)
    args.update(kw)
    target = args.pop("target", T)
    start = args.pop("start", S)
    objective = args.pop("objective", O)
    return mf.simulate(target, start, objective, **args)


def grad(**kw):
    args = dict(batch_size=8, batches=10)
    args.update(kw)
    target = args.pop("target", T)
    model = args.pop("model", S)
    objective = args.pop("objective", O)
    return mf.estimate_gradient(target, model, objective, **args)


def flow(**kw):
    args = dict(steps=10, record_every=1)
    args.update(kw)
    target = args.pop("target", T)
    start = args.pop("start", S)
    objective = args.pop("objective", O)
    return mf.population_flow(target, start, objective, **args)


BASE = dict(target=T, start=S, objective=O, steps=10, batch_size=8, replicates=2, record_every=5)


def run_sweep(**kw):
    args = dict(base=BASE, grid={"lr": [0.05]}, db=os.path.join(TMP, "cases.sqlite"))
    args.update(kw)
    return sweep(**args)


def text_file():
    path = os.path.join(TMP, "text.npz")
    with open(path, "w") as fh:
        fh.write("this is not an npz archive")
    return path


NORMALISED = mf.NewModeREINFORCE(advantage="normalised")
# a backend whose library is missing, whatever is installed here
from mixforget.reference import _backend

_backend._MODULES["cupy"] = "mixforget_missing_library"
S2 = T2.replace(new_mean=[1.0, 0.0], cov=2.0)


def refused_sweep(population=False, **base):
    # a sweep refused for one base value: its store must not exist afterwards
    db = os.path.join(TMP, "refused.sqlite")
    try:
        return run_sweep(base={**BASE, **base}, db=db, population=population)
    finally:
        assert not os.path.exists(db), "a refused sweep left its store"


def gain_study(**kw):
    args = dict(objectives=[mf.ReverseKL()], lrs=[0.1], steps=5, replicates=2)
    args.update(kw)
    return studies.drop_vs_gain(args.pop("target", T), args.pop("start", S), **args)
"""

V, T_ = "ValueError", "TypeError"
BIG = "2**64"

CASES: list[tuple[str, str, str, str]] = []


def _add(prefix: str, call: str, arg: str, values: list[tuple[str, str]], match: str) -> None:
    for value, exc in values:
        CASES.append((f"{prefix}-{arg}={value}", f"{call}({arg}={value})", exc, match))


_COUNT_BAD = [
    ("0", V),
    ("-1", V),
    ("1.5", T_),
    ("'10'", T_),
    ("None", T_),
    ("True", T_),
    (BIG, V),
    ("10**30", V),
]

# -- simulate -------------------------------------------------------------------------------------
_add("simulate", "sim", "steps", _COUNT_BAD, "steps")
_add(
    "simulate",
    "sim",
    "record_every",
    [("0", V), ("3", V), ("11", V), ("2.0", T_), (BIG, V), ("'1'", T_)],
    "record_every",
)
_add(
    "simulate",
    "sim",
    "batch_size",
    [("0", V), ("-5", V), ("2.0", T_), (BIG, V), ("'8'", T_), ("None", T_)],
    "batch_size",
)
_add(
    "simulate",
    "sim",
    "lr",
    [("0", V), ("-1", V), ("float('nan')", V), ("float('inf')", V), ("'0.1'", T_), ("None", T_)],
    "lr",
)
_add("simulate", "sim", "replicates", [("0", V), (BIG, V), ("1.5", T_), ("-3", V)], "replicates")
_add("simulate", "sim", "weight_param", [("'x'", V), ("None", V), ("1", V)], "weight_param")
# a start below the update's documented floors is refused, never moved silently (issue 24)
CASES += [
    (
        f"{name}-start-below-{floor}",
        f"{call}(start=S.replace({change}), {kwargs})",
        V,
        match,
    )
    for name, call in (("simulate", "sim"), ("flow", "flow"))
    for floor, change, kwargs, match in (
        ("direct-weight-clamp", "old_weight=1e-4", "weight_param='direct'", "old_weight"),
        ("scale-floor", "cov=1e-8", "train_scales=True", "scale.*0.001"),
    )
]
_add(
    "simulate",
    "sim",
    "lr_scale",
    [
        ("'x'", T_),
        ("{'foo': 1.0}", V),
        ("{'weight': -1.0}", V),
        ("{'weight': float('nan')}", V),
        ("{'old_mean': 'a'}", V),
    ],
    "lr_scale",
)
_add(
    "simulate",
    "sim",
    "threads",
    [("0", V), ("-1", V), ("1.5", T_), ("10**6", V), (BIG, V)],
    "threads",
)
_add("simulate", "sim", "progress", [("'yes'", T_), ("1", T_)], "progress")
_add("simulate", "sim", "memory_limit", [("0", V), ("-1", V), ("'x'", T_)], "memory_limit")
_add("simulate", "sim", "rng", [("'seed'", T_), ("-1", V), ("1.5", T_)], "rng")
_add("simulate", "sim", "target", [("None", T_), ("'T'", T_)], "target")
_add("simulate", "sim", "start", [("None", T_), ("T2", V)], "start")
_add("simulate", "sim", "objective", [("None", T_), ("'ReverseKL'", T_)], "objective")
CASES += [
    ("simulate-memory-batch", "sim(batch_size=10**12)", V, "memory limit"),
    (
        "simulate-memory-batch-steps",
        "sim(batch_size=10**12, steps=10**12, record_every=10**12)",
        V,
        "memory limit",
    ),
    ("simulate-memory-replicates", "sim(replicates=10**9)", V, "memory limit"),
    (
        "simulate-memory-records",
        "sim(steps=10**9, record_every=1, replicates=10)",
        V,
        "memory limit",
    ),
    (
        "simulate-memory-limit-arg",
        "sim(replicates=1000, steps=1000, memory_limit=2**16)",
        V,
        "memory limit",
    ),
    ("simulate-ttt-b1", "sim(objective=mf.TTTDiscover(), batch_size=1)", V, "batch_size"),
    (
        "simulate-ttt-adaptive-b2",
        "sim(objective=mf.TTTDiscover(beta='adaptive'), batch_size=2)",
        V,
        "batch_size",
    ),
    ("simulate-oapl-b1", "sim(objective=mf.OAPL(), batch_size=1)", V, "batch_size"),
]

# -- estimate_gradient -----------------------------------------------------------------
_add(
    "gradient",
    "grad",
    "batches",
    [("1", V), ("0", V), (BIG, V), ("'x'", T_), ("2.5", T_)],
    "batches",
)
_add("gradient", "grad", "batch_size", [("0", V), (BIG, V), ("1.0", T_)], "batch_size")
_add("gradient", "grad", "model", [("None", T_), ("T2", V)], "model")
_add("gradient", "grad", "target", [("None", T_)], "target")
_add("gradient", "grad", "weight_param", [("'logistic'", V)], "weight_param")
_add("gradient", "grad", "threads", [("0", V), ("'4'", T_)], "threads")
_add("gradient", "grad", "rng", [("'x'", T_)], "rng")
CASES += [
    ("gradient-memory-batch", "grad(batch_size=10**12, batches=2)", V, "memory limit"),
    ("gradient-memory-batches", "grad(batches=10**15)", V, "memory limit"),
    ("gradient-ttt-b1", "grad(objective=mf.TTTDiscover(beta=1.0), batch_size=1)", V, "batch_size"),
    ("gradient-oapl-b1", "grad(objective=mf.OAPL(), batch_size=1)", V, "batch_size"),
]

# -- population_flow / population_gradient ---------------------------------------------------
_add("flow", "flow", "steps", [("0", V), (BIG, V), ("1.5", T_)], "steps")
_add("flow", "flow", "record_every", [("3", V), ("0", V)], "record_every")
_add("flow", "flow", "lr", [("0", V), ("float('nan')", V)], "lr")
_add("flow", "flow", "weight_param", [("'x'", V)], "weight_param")
_add("flow", "flow", "lr_scale", [("{'x': 1}", V)], "lr_scale")
_add("flow", "flow", "objective", [("None", T_)], "objective")
_add("flow", "flow", "target", [("None", T_)], "target")
CASES += [
    ("flow-memory-steps", "flow(steps=10**12, record_every=1)", V, "memory limit"),
    ("flow-memory-limit", "(mf.set_memory_limit(2**20), flow())", V, "memory limit"),
    ("popgrad-model", "mf.population_gradient(T, None, O)", T_, "model"),
    ("popgrad-objective", "mf.population_gradient(T, S, 3)", T_, "objective"),
    (
        "popgrad-weight_param",
        "mf.population_gradient(T, S, O, weight_param='x')",
        V,
        "weight_param",
    ),
]

# -- TwoMode and geometry -------------------------------------------------------------------
CASES += [
    ("twomode-weight-0", "mf.TwoMode([0.0], [1.0], 0.0)", V, "old_weight"),
    ("twomode-weight-1", "mf.TwoMode([0.0], [1.0], 1.0)", V, "old_weight"),
    ("twomode-weight-nan", "mf.TwoMode([0.0], [1.0], float('nan'))", V, "old_weight"),
    ("twomode-weight-str", "mf.TwoMode([0.0], [1.0], 'x')", T_, "old_weight"),
    ("twomode-weight-neg", "mf.TwoMode([0.0], [1.0], -0.5)", V, "old_weight"),
    ("twomode-mean-empty", "mf.TwoMode([], [], 0.5)", V, "old_mean"),
    ("twomode-mean-str", "mf.TwoMode('abc', [1.0], 0.5)", T_, "old_mean"),
    ("twomode-mean-nan", "mf.TwoMode([float('nan')], [1.0], 0.5)", V, "old_mean"),
    ("twomode-mean-dims", "mf.TwoMode([0.0], [1.0, 2.0], 0.5)", V, "new_mean"),
    ("twomode-cov-neg", "mf.TwoMode([0.0], [1.0], 0.5, cov=-1.0)", V, "cov"),
    ("twomode-cov-nan", "mf.TwoMode([0.0], [1.0], 0.5, cov=float('nan'))", V, "cov"),
    ("twomode-cov-shape", "mf.TwoMode([0.0, 0.0], [1.0, 1.0], 0.5, cov=[1.0, 1.0, 1.0])", V, "cov"),
    (
        "twomode-cov-notspd",
        "mf.TwoMode([0.0, 0.0], [1.0, 1.0], 0.5, cov=[[1.0, 2.0], [2.0, 1.0]])",
        V,
        "cov",
    ),
    (
        "twomode-cov-asym",
        "mf.TwoMode([0.0, 0.0], [1.0, 1.0], 0.5, cov=[[1.0, 0.5], [0.0, 1.0]])",
        V,
        "cov",
    ),
    ("twomode-old_cov-alone", "mf.TwoMode([0.0], [1.0], 0.5, old_cov=1.0)", V, "old_cov"),
    (
        "twomode-cov-and-old_cov",
        "mf.TwoMode([0.0], [1.0], 0.5, cov=1.0, old_cov=1.0, new_cov=1.0)",
        V,
        "cov",
    ),
    ("twomode-replace-unknown", "T.replace(foo=1)", T_, "foo"),
    ("mahalanobis-shape", "T2.mahalanobis([1.0, 2.0, 3.0])", V, "delta"),
    ("mahalanobis-which", "T.mahalanobis([1.0], which='x')", V, "which"),
]

# -- objectives -----------------------------------------------------------------------------------
CASES += [
    ("reversekl-replay-1", "mf.ReverseKL(replay=1.0)", V, "replay"),
    ("reversekl-replay-neg", "mf.ReverseKL(replay=-0.1)", V, "replay"),
    ("reversekl-cap-0", "mf.ReverseKL(weight_cap=0.0)", V, "weight_cap"),
    ("reversekl-baseline", "mf.ReverseKL(baseline='x')", V, "baseline"),
    ("reversekl-slots", "mf.ReverseKL(replay_slots='x')", V, "replay_slots"),
    ("forwardkl-replay", "mf.ForwardKL(replay=2.0)", V, "replay"),
    ("ttt-beta-0", "mf.TTTDiscover(beta=0.0)", V, "beta"),
    ("ttt-beta-str", "mf.TTTDiscover(beta='x')", V, "beta"),
    ("ttt-kl-neg", "mf.TTTDiscover(kl_penalty=-1.0)", V, "kl_penalty"),
    ("ttt-reward", "mf.TTTDiscover(reward='x')", V, "reward"),
    ("ttt-radius", "mf.TTTDiscover(reward='new_indicator', radius=0.0)", V, "radius"),
    ("oapl-lag-0", "mf.OAPL(lag=0)", V, "lag"),
    ("oapl-lag-float", "mf.OAPL(lag=1.5)", T_, "lag"),
    ("oapl-beta1", "mf.OAPL(beta1=0.0)", V, "beta1"),
    ("oapl-beta2", "mf.OAPL(beta2=-1.0)", V, "beta2"),
    ("sdft-ema-0", "mf.SDFT(ema=0.0)", V, "ema"),
    ("sdft-ema-2", "mf.SDFT(ema=2.0)", V, "ema"),
    ("sdft-anchor", "mf.SDFT(anchor=1.5)", V, "anchor"),
    ("sdft-direction", "mf.SDFT(direction='x')", V, "direction"),
]

# -- kernels --------------------------------------------------------------------------------------
_MIX = "[0.5, 0.5], [[0.0], [1.0]], 1.0"
CASES += [
    ("resp-x-nan", f"kernels.responsibilities([[float('nan')]], {_MIX})", V, "x"),
    ("resp-x-str", f"kernels.responsibilities('x', {_MIX})", T_, "x"),
    ("resp-x-cols", f"kernels.responsibilities(np.zeros((3, 2)), {_MIX})", V, "x"),
    (
        "resp-weights-sum",
        "kernels.responsibilities([[0.0]], [0.5, 0.6], [[0.0], [1.0]], 1.0)",
        V,
        "weights",
    ),
    ("resp-means-shape", "kernels.responsibilities([[0.0]], [0.5, 0.5], [[0.0]], 1.0)", V, "means"),
    (
        "resp-covs-count",
        "kernels.responsibilities([[0.0]], [0.5, 0.5], [[0.0], [1.0]], [1.0, 1.0, 1.0])",
        V,
        "covs",
    ),
    ("resp-threads", f"kernels.responsibilities([[0.0]], {_MIX}, threads=0)", V, "threads"),
    (
        "resp-memory",
        f"(mf.set_memory_limit(1000), kernels.responsibilities(np.zeros((100, 1)), {_MIX}))",
        V,
        "memory limit",
    ),
    ("logpdf-x-none", f"kernels.mixture_logpdf(None, {_MIX})", T_, "x"),
    (
        "logpdf-memory",
        f"(mf.set_memory_limit(100), kernels.mixture_logpdf(np.zeros((100, 1)), {_MIX}))",
        V,
        "memory limit",
    ),
    ("sample-n-0", f"kernels.sample_mixture(0, {_MIX})", V, "n"),
    ("sample-n-big", f"kernels.sample_mixture({BIG}, {_MIX})", V, "n"),
    ("sample-n-float", f"kernels.sample_mixture(2.0, {_MIX})", T_, "n"),
    ("sample-memory", f"kernels.sample_mixture(10**12, {_MIX})", V, "memory limit"),
    ("sample-rng", f"kernels.sample_mixture(10, {_MIX}, rng='x')", T_, "rng"),
    ("starve-weight-0", "kernels.starvation_counts(0.0, 8, 10)", V, "old_weight"),
    ("starve-weight-str", "kernels.starvation_counts('a', 8, 10)", T_, "old_weight"),
    ("starve-batch-0", "kernels.starvation_counts(0.5, 0, 10)", V, "batch_size"),
    ("starve-batch-big", f"kernels.starvation_counts(0.5, {BIG}, 10)", V, "batch_size"),
    ("starve-batches-big", f"kernels.starvation_counts(0.5, 8, {BIG})", V, "batches"),
    ("starve-memory", "kernels.starvation_counts(0.5, 8, 10**12)", V, "memory limit"),
    ("starve-replay", "kernels.starvation_counts(0.5, 8, 10, replay=1.0)", V, "replay"),
    ("starve-slots", "kernels.starvation_counts(0.5, 8, 10, slots='x')", V, "slots"),
    ("replayw-x", "kernels.replay_weights(np.zeros((3, 2)), S, T, 0.25)", V, "x"),
    ("replayw-replay", "kernels.replay_weights(np.zeros((3, 1)), S, T, 1.5)", V, "replay"),
    ("memory-limit-0", "mf.set_memory_limit(0)", V, "nbytes"),
    ("memory-limit-str", "mf.set_memory_limit('1GB')", T_, "nbytes"),
]

# -- studies and theory ---------------------------------------------------------------------------
_ST = "studies.starvation([0.1], [4], [0.25], batches=100"
CASES += [
    ("starvation-separation-neg", f"{_ST}, separation=-4.0)", V, "separation"),
    ("starvation-separation-0", f"{_ST}, separation=0.0)", V, "separation"),
    ("starvation-separation-nan", f"{_ST}, separation=float('nan'))", V, "separation"),
    ("starvation-separation-str", f"{_ST}, separation='4')", T_, "separation"),
    ("starvation-offset-nan", f"{_ST}, old_mean_offset=float('nan'))", V, "old_mean_offset"),
    ("starvation-batches-1", "studies.starvation([0.1], [4], [0.25], batches=1)", V, "batches"),
    ("starvation-weights-str", "studies.starvation(['a'], [4], batches=100)", T_, "old_weights"),
    ("starvation-weights-1.5", "studies.starvation([1.5], [4], batches=100)", V, "old_weights"),
    ("starvation-weights-text", "studies.starvation('0.1', [4], batches=100)", T_, "old_weights"),
    ("starvation-sizes-0", "studies.starvation([0.1], [0], batches=100)", V, "batch_sizes"),
    ("starvation-sizes-str", "studies.starvation([0.1], ['a'], batches=100)", T_, "batch_sizes"),
    ("starvation-sizes-frac", "studies.starvation([0.1], [1.5], batches=100)", T_, "batch_sizes"),
    ("starvation-replay", "studies.starvation([0.1], [4], [1.0], batches=100)", V, "replay"),
    ("starvation-replay-str", "studies.starvation([0.1], [4], ['x'], batches=100)", T_, "replay"),
    ("starvation-slots", f"{_ST}, slots='x')", V, "slots"),
    ("starvation-objective", f"{_ST}, objective=mf.ForwardKL())", T_, "objective"),
    ("starvation-dim", f"{_ST}, dim=0)", V, "dim"),
    (
        "drift-fit-1",
        "studies.drift_vs_separation([2.0, 3.0, 4.0], fit_points=1, replicates=0, steps=10)",
        V,
        "fit_points",
    ),
    (
        "drift-fit-2",
        "studies.drift_vs_separation([2.0, 3.0, 4.0], fit_points=2, replicates=0, steps=10)",
        V,
        "fit_points",
    ),
    ("drift-separations-empty", "studies.drift_vs_separation([], replicates=0)", V, "separations"),
    (
        "drift-separations-neg",
        "studies.drift_vs_separation([-1.0, 2.0, 3.0], replicates=0)",
        V,
        "separations",
    ),
    (
        "drift-separations-order",
        "studies.drift_vs_separation([3.0, 2.0, 4.0], replicates=0)",
        V,
        "separations",
    ),
    (
        "drift-replicates",
        "studies.drift_vs_separation([2.0, 3.0, 4.0], replicates=-1)",
        V,
        "replicates",
    ),
    (
        "drift-offset",
        "studies.drift_vs_separation([2.0, 3.0, 4.0], start_offset=float('nan'), replicates=0)",
        V,
        "start_offset",
    ),
    ("drift-dim", "studies.drift_vs_separation([2.0, 3.0, 4.0], dim=0, replicates=0)", V, "dim"),
    (
        "drift-objective",
        "studies.drift_vs_separation([2.0, 3.0, 4.0], objective='x', replicates=0)",
        T_,
        "objective",
    ),
    (
        "theory-expected-path",
        "theory.expected_starved_batches([0.5, 2.0], 8)",
        V,
        "path_or_trajectory",
    ),
    ("theory-expected-batch", "theory.expected_starved_batches([0.5, 0.4], 0)", V, "batch_size"),
    ("theory-starvation-weight", "theory.starvation_probability(2.0, 8)", V, "old_weight"),
    ("theory-starvation-slots", "theory.starvation_probability(0.5, 8, slots='x')", V, "slots"),
]

# -- sweep and files ------------------------------------------------------------------------------
CASES += [
    ("sweep-population", "run_sweep(population='no')", T_, "population"),
    ("sweep-progress", "run_sweep(progress='yes')", T_, "progress"),
    ("sweep-executor", "run_sweep(executor=object())", T_, "executor"),
    ("sweep-db-missing-dir", "run_sweep(db=os.path.join(TMP, 'no', 'such', 'x.sqlite'))", V, "db"),
    ("sweep-db-type", "run_sweep(db=123)", T_, "db"),
    ("sweep-db-text", "run_sweep(db=text_file())", V, "db"),
    ("sweep-db-directory", "run_sweep(db=TMP)", V, "db"),
    ("sweep-keep-type", "run_sweep(keep_trajectories=123)", T_, "keep_trajectories"),
    ("sweep-base-type", "run_sweep(base=[1, 2])", T_, "base"),
    ("sweep-grid-key", "run_sweep(grid={'nope': [1]})", V, "grid key"),
    ("sweep-grid-empty", "run_sweep(grid={'lr': []})", V, "lr"),
    ("sweep-grid-bad-value", "run_sweep(grid={'lr': [-1.0]})", V, "lr"),
    ("sweep-separation-mode", "run_sweep(separation_mode='x')", V, "separation_mode"),
    ("load-text", "mf.Trajectory.load(text_file())", V, "not a trajectory file"),
]

# -- issue 24: refusals before any work or file; silently accepted inputs; unclear messages --
_REFUSED_BASE = [
    ("backend='nope'", V, "backend"),
    ("backend='cupy'", "ImportError", "cupy"),
    ("precision='float32'", V, "precision"),
    ("precision='half'", V, "precision"),
    ("device='cuda'", V, "device"),
    ("train_scales='yes'", T_, "train_scales"),
    ("scale_param='exp'", V, "scale_param"),
    ("threads=0", V, "threads"),
    ("memory_limit=-1", V, "memory_limit"),
    ("memory_limit=1000", V, "memory limit"),
    ("replicates=10**9", V, "memory limit"),
    ("objective=NORMALISED, batch_size=1", V, "batch_size"),
    ("population=True, target=T2, start=S2", "NotImplementedError", "unequal covariances"),
    ("population=True, target=T2, start=T2, train_scales=True", "NotImplementedError", "d = 1"),
    ("population=True, steps=10**12, record_every=1, memory_limit=10**15", V, "memory limit"),
]
CASES += [(f"sweep-refused-{a}", f"refused_sweep({a})", exc, m) for a, exc, m in _REFUSED_BASE]
CASES += [
    ("simulate-normalised-b1", "sim(objective=NORMALISED, batch_size=1)", V, "batch_size"),
    (
        "simulate-normalised-b1-numpy",
        "sim(objective=NORMALISED, batch_size=1, backend='numpy')",
        V,
        "batch_size",
    ),
    ("gradient-normalised-b1", "grad(objective=NORMALISED, batch_size=1)", V, "batch_size"),
    (
        "gradient-normalised-b1-numpy",
        "grad(objective=NORMALISED, batch_size=1, backend='numpy')",
        V,
        "batch_size",
    ),
    (
        "gain-normalised-b1",
        "gain_study(objectives=[NORMALISED], batch_size=1)",
        V,
        "batch_size",
    ),
    ("sweep-grid-repeated", "run_sweep(grid={'lr': [0.1, 0.1]})", V, "repeats"),
    ("sweep-grid-repeated-int-float", "run_sweep(grid={'lr': [1, 1.0]})", V, r"grid\['lr'\]"),
    (
        "sweep-grid-repeated-objective",
        "run_sweep(grid={'objective': [mf.ForwardKL(), mf.ForwardKL(replay=0)]})",
        V,
        "objective",
    ),
    ("sweep-grid-no-keys", "run_sweep(grid={})", V, "grid"),
    ("sweep-keep-is-a-file", "run_sweep(keep_trajectories=text_file())", V, "keep_trajectories"),
    ("sweep-wait-timeout-0", "run_sweep(wait_timeout=0)", V, "wait_timeout"),
    ("sweep-wait-timeout-str", "run_sweep(wait_timeout='1')", T_, "wait_timeout"),
    ("load-sweep-none", "mf.load_sweep(None)", T_, "db"),
    ("gain-d2-covariance", "gain_study(target=T2, start=S2)", "NotImplementedError", "covariance"),
    (
        "gain-d2-scales",
        "gain_study(target=T2, start=T2, train_scales=True)",
        "NotImplementedError",
        "train_scales",
    ),
    ("gain-later-run-bad", "gain_study(objectives=[O, mf.OAPL()], batch_size=1)", V, "batch_size"),
    ("gain-unknown-kwarg", "gain_study(colour=1)", T_, "colour"),
    ("drift-separations-text", "studies.drift_vs_separation(['a'], replicates=0)", T_, "separ"),
    ("drift-separations-none", "studies.drift_vs_separation([None], replicates=0)", T_, "separ"),
    (
        "memory-message-in-bytes",
        "sim(memory_limit=1000)",
        V,
        r"over the memory limit 1000 bytes",
    ),
]
