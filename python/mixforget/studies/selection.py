"""Selection among correct modes (docs: theory-kl-selection, issue 22): a K = 3 model whose
old skill (component 1) earns reward 0 and whose two other components earn the same reward
1 — two correct answers — trained by KL-regularised RL on label rewards. Which correct
answer does training favour, and does the old mass survive?

Four arms, each a population flow beside finite-batch means over replicates:

- *plain, all logits* (``update='sgd_full_softmax'``, no KL: β → 0): plain policy-gradient
  steps on all K softmax logits, dη_k/dt = w_k (r_k − E r) — rich-get-richer, w_2/w_3 grows;
- *plain, pinned logit* (``update='sgd'``, no KL): the engine's K − 1 free logits, the last
  held at 0 — the free rewarded component gains on the pinned one, whichever is larger;
- *natural* (``update='natural'``, no KL): the Fisher of the softmax makes every logit move by
  r_k − E r, so w_2/w_3 stays at its start exactly;
- *KL-regularised* (plain steps on all logits with a reverse-KL anchor β to the start): the
  ratio leaves its start on the way and returns to it, since the optimum
  w_k ∝ w_ref,k e^{r_k/β} keeps the reference's ratio among equally rewarded components.

"No KL" is ``KLRegularizedRL(beta=NO_KL)`` with β = 1e-9: the registry refuses β = 0 (β is
a KL weight > 0), and a KL term of 1e-9 × |log w/w_ref| moves no number shown here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validate import as_positive_float, as_positive_int
from ..mixture import Mixture
from ..objectives import KLRegularizedRL
from ..theory import policy_gradient_logit_flow, reverse_kl_regularized_weights
from ._shared import _fmt, _markdown, _to_pandas

__all__ = ["NO_KL", "SelectionStudy", "selection_among_correct_modes"]

#: the β of the arms without a KL anchor (the registry's β > 0; see the module docstring)
NO_KL = 1e-9
#: separation of the components (σ units): misassignment Φ(−SEPARATION/2) ≈ 1e-23
SEPARATION = 20.0
#: (name, update, with the KL anchor) of each arm, in table and legend order
ARMS = (
    ("plain, all logits", "sgd_full_softmax", False),
    ("plain, pinned logit", "sgd", False),
    ("natural", "natural", False),
    ("KL-regularised", "sgd_full_softmax", True),
)


@dataclass(frozen=True)
class SelectionStudy:
    """Result of :func:`selection_among_correct_modes`. ``rows``: one per arm with
    ``arm``, ``update``, ``beta``, the population flow's final ``ratio`` w_2/w_3 and
    ``old_weight`` w_1, the ``theory`` ratio at the end (the logit ODE for the arms without
    KL, the closed-form optimum for the KL arm), ``max_ratio_gap`` (the flow's largest
    ``|w_2/w_3 − start ratio|`` over training), and the finite-batch ``batch_ratio`` /
    ``batch_old_weight`` means with standard errors ``*_se`` over the replicates
    (``diverged`` replicates, frozen by the runaway rule, excluded). ``curves``: per arm,
    arrays over the records: ``steps``, ``ratio``, ``old_weight``, ``theory_ratio``,
    ``batch_ratio``, ``batch_ratio_se``, ``batch_old_weight``, ``batch_old_weight_se``."""

    rows: list[dict[str, Any]]
    curves: dict[str, dict[str, np.ndarray]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_pandas(self) -> Any:
        return _to_pandas(self.rows)

    def to_markdown(self) -> str:
        header = [
            "arm",
            "update",
            "β",
            "w₂/w₃ (flow)",
            "theory",
            "max gap to start w₂/w₃",
            "w₂/w₃ (batches ± SE)",
            "w₁ (flow)",
            "w₁ (batches ± SE)",
        ]
        lines = [
            [
                r["arm"],
                r["update"],
                _fmt(r["beta"], 3),
                _fmt(r["ratio"], 6),
                _fmt(r["theory"], 6),
                _fmt(r["max_ratio_gap"], 3),
                f"{_fmt(r['batch_ratio'], 4)} ± {_fmt(r['batch_ratio_se'], 2)}",
                _fmt(r["old_weight"], 4),
                f"{_fmt(r['batch_old_weight'], 4)} ± {_fmt(r['batch_old_weight_se'], 2)}",
            ]
            for r in self.rows
        ]
        return _markdown(header, lines)

    def plot(self, axes: Any = None) -> Any:
        """Two panels over training steps: w_2/w_3 (left) and the old weight w_1 (right,
        log scale). Per arm one colour: the population flow as a line, the theory (logit
        ODE or closed-form optimum) dotted, finite-batch means ± 2 SE as error bars; the
        start ratio as a grey line. Returns the two Axes."""
        axes = _two_axes(axes)
        left, right = axes
        start_ratio = self.settings["start_ratio"]
        left.axhline(start_ratio, color="0.6", lw=0.8, label=f"start ratio {start_ratio:g}")
        for i, (arm, curve) in enumerate(self.curves.items()):
            colour = f"C{i}"
            t = curve["steps"]
            left.plot(t, curve["ratio"], "-", color=colour, label=f"{arm}: population flow")
            left.plot(t, curve["theory_ratio"], ":", color=colour, lw=2,
                      label=f"{arm}: theory")  # fmt: skip
            left.errorbar(t, curve["batch_ratio"], yerr=2 * curve["batch_ratio_se"], fmt="o",
                          ms=3, color=colour, label=f"{arm}: batches ± 2 SE")  # fmt: skip
            right.plot(t, curve["old_weight"], "-", color=colour, label=arm)
            right.errorbar(t, curve["batch_old_weight"], yerr=2 * curve["batch_old_weight_se"],
                           fmt="o", ms=3, color=colour)  # fmt: skip
        left.set_xlabel("training step")
        left.set_ylabel("w₂ / w₃ (two equally rewarded components)")
        left.set_title("which correct mode training selects")
        left.legend(fontsize=6, ncol=2)
        right.set_yscale("log")
        right.set_xlabel("training step")
        right.set_ylabel("old weight w₁ (reward 0)")
        right.set_title("old mass (markers: batches ± 2 SE)")
        right.legend(fontsize=7)
        return axes


def _two_axes(axes: Any) -> Any:
    if axes is not None:
        return axes
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError("plot() needs matplotlib: pip install 'mixforget[plot]'") from exc
    _, axes = plt.subplots(1, 2, figsize=(12.0, 4.5))
    return axes


def _check_weights(reference_weights: Any) -> np.ndarray:
    w = np.asarray(reference_weights, dtype=float)
    if w.shape != (3,) or not np.all(np.isfinite(w) & (w > 0.0)) or abs(w.sum() - 1.0) > 1e-9:
        raise ValueError(
            "reference_weights must be 3 finite weights > 0 summing to 1, got "
            f"{np.asarray(reference_weights).tolist()}"
        )
    return w


def _theory_ratio(w_ref: np.ndarray, update: str, steps: np.ndarray, lr: float) -> np.ndarray:
    """w_2/w_3 of the logit ODE of an arm without KL at time lr·step."""
    if update == "natural":
        return np.full(steps.shape, w_ref[1] / w_ref[2])
    logits = "all" if update == "sgd_full_softmax" else "pinned"
    rewards = (0.0, 1.0, 1.0)
    out = [w_ref[1] / w_ref[2]]
    for t in steps[1:]:
        w = policy_gradient_logit_flow(
            w_ref, rewards, lr * float(t), steps=max(10, int(t)), logits=logits
        )
        out.append(w[1] / w[2])
    return np.array(out)


def _mean_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = values.shape[0]
    se = values.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros(values.shape[1:])
    return values.mean(axis=0), se


def _run_arm(
    mixture: Mixture, update: str, beta: float, settings: dict[str, Any]
) -> dict[str, Any]:
    """One arm: population flow and finite-batch training; the curves and the row values."""
    from ..population import population_flow
    from ..simulate import simulate

    objective = KLRegularizedRL(reward_labels=(0.0, 1.0, 1.0), beta=beta)
    common = dict(steps=settings["steps"], lr=settings["lr"], record_every=settings["record_every"])
    flow = population_flow(mixture, mixture, objective, update=update, **common)
    runs = simulate(
        mixture,
        mixture,
        objective,
        update=update,
        batch_size=settings["batch_size"],
        replicates=settings["replicates"],
        rng=settings["rng"],
        backend=settings["backend"],
        **common,
    )
    kept = runs.weights[~runs.diverged]
    ratio, ratio_se = _mean_se(kept[:, :, 1] / kept[:, :, 2])
    old, old_se = _mean_se(kept[:, :, 0])
    w = flow.weights[0]
    return dict(
        steps=np.asarray(flow.steps),
        ratio=w[:, 1] / w[:, 2],
        old_weight=w[:, 0],
        batch_ratio=ratio,
        batch_ratio_se=ratio_se,
        batch_old_weight=old,
        batch_old_weight_se=old_se,
        diverged=int(runs.diverged.sum()),
    )


def selection_among_correct_modes(
    reference_weights: Any = (0.5, 0.3, 0.2),
    beta: float = 0.5,
    steps: int = 1000,
    lr: float = 0.05,
    record_every: int = 50,
    batch_size: int = 16,
    replicates: int = 400,
    rng: int = 0,
    backend: str = "rust",
) -> SelectionStudy:
    """w_2/w_3 and the old weight w_1 over training under plain, natural and
    KL-regularised policy gradients (docs: theory-kl-selection).

    The target and start are the same K = 3 mixture in d = 1, unit variances, means
    SEPARATION = 20 apart (−20, 0, 20) with ``reference_weights``; the label rewards are
    (0, 1, 1); every arm starts from it (the KL arm's reference is that start). Population
    flows by :func:`mixforget.population_flow`, finite batches by :func:`mixforget.simulate`.

    Parameters
    ----------
    reference_weights : sequence of 3 floats
        (w_1, w_2, w_3) at the start, > 0, summing to 1.
    beta : float
        β of the KL-regularised arm (> 0); the others use :data:`NO_KL`.
    steps, lr, record_every
        The runs' length, step size and record interval (theory at time lr·step).
    batch_size, replicates, rng, backend
        The finite-batch runs (``backend`` 'rust' or 'numpy').
    """
    w_ref = _check_weights(reference_weights)
    beta = as_positive_float("beta", beta)
    settings: dict[str, Any] = dict(
        steps=as_positive_int("steps", steps),
        lr=as_positive_float("lr", lr),
        record_every=as_positive_int("record_every", record_every),
        batch_size=as_positive_int("batch_size", batch_size),
        replicates=as_positive_int("replicates", replicates, minimum=2),
        rng=rng,
        backend=backend,
        beta=beta,
        reference_weights=w_ref.tolist(),
        start_ratio=float(w_ref[1] / w_ref[2]),
    )
    mixture = Mixture(w_ref, [[-SEPARATION], [0.0], [SEPARATION]], 1.0)
    optimum = reverse_kl_regularized_weights(w_ref, (0.0, 1.0, 1.0), beta)
    rows, curves = [], {}
    for arm, update, anchored in ARMS:
        arm_beta = beta if anchored else NO_KL
        curve = _run_arm(mixture, update, arm_beta, settings)
        diverged = curve.pop("diverged")
        if anchored:
            curve["theory_ratio"] = np.full(curve["steps"].shape, optimum[1] / optimum[2])
        else:
            curve["theory_ratio"] = _theory_ratio(w_ref, update, curve["steps"], settings["lr"])
        curves[arm] = curve
        rows.append(
            dict(
                arm=arm,
                update=update,
                beta=arm_beta,
                ratio=float(curve["ratio"][-1]),
                theory=float(curve["theory_ratio"][-1]),
                max_ratio_gap=float(np.max(np.abs(curve["ratio"] - settings["start_ratio"]))),
                old_weight=float(curve["old_weight"][-1]),
                batch_ratio=float(curve["batch_ratio"][-1]),
                batch_ratio_se=float(curve["batch_ratio_se"][-1]),
                batch_old_weight=float(curve["batch_old_weight"][-1]),
                batch_old_weight_se=float(curve["batch_old_weight_se"][-1]),
                diverged=diverged,
            )
        )
    return SelectionStudy(rows, curves, settings)
