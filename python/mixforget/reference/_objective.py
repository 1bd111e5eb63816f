"""What the shared core hands an objective, and the interface every objective twin implements
(MATH §4), plus the pieces several objectives share (replay slots, two-mode draws, rewards,
the log-ratio estimator).

The core (:mod:`._engine`) never inspects which objective it runs: it asks the objective's
:class:`ObjectiveTwin` (found by :func:`._registry.twin_for`) for

- its **sampling source** — :meth:`ObjectiveTwin.draw` (one batch, old labels kept) and
  :meth:`ObjectiveTwin.sampling_logpdf` (the density of that source, under which the
  population limit takes its expectations);
- its **per-sample value and batch coefficients** — :meth:`ObjectiveTwin.coefficient`, the
  c_i of ĝ = avg_i[c_i s(x_i)], written against an averaging operator so that one formula
  gives the finite-batch estimator and its exact G → ∞ limit;
- its **extra state** — :meth:`ObjectiveTwin.reset` (teacher, start model, lagged model set
  from the starting parameters) and :meth:`ObjectiveTwin.advance` (their update after each
  training step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Generic, Optional, TypeVar

import numpy as np

from ..mixture import TwoMode
from ..objectives import Objective
from ..theory import stratified_replay_count
from ._averaging import Averager
from ._densities import Gauss, Mix, mix_from_param, mix_logpdf, weight_param_of


@dataclass
class Params:
    """The trained parameters θ with a leading replicate axis R: ``weight`` (R,) (η = logit α
    or α itself), ``old_mean`` (R, d), ``new_mean`` (R, d). The field names are the groups of
    ``lr_scale``; the update, the finiteness check and the recording loop over them, so a new
    trainable group is one new field."""

    weight: np.ndarray
    old_mean: np.ndarray
    new_mean: np.ndarray

    @classmethod
    def of_model(
        cls, model: TwoMode, weight_param: str, replicates: Optional[int] = None
    ) -> Params:
        """The parameters of ``model``: one row, or ``replicates`` identical rows."""
        if replicates is None:
            w = np.array([weight_param_of(model.old_weight, weight_param)])
            return cls(w, model.old_mean[None, :], model.new_mean[None, :])
        return cls(
            np.full(replicates, weight_param_of(model.old_weight, weight_param)),
            np.tile(model.old_mean, (replicates, 1)),
            np.tile(model.new_mean, (replicates, 1)),
        )

    @classmethod
    def group_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def groups(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.group_names()}

    def copy(self) -> Params:
        return Params(**{name: v.copy() for name, v in self.groups().items()})

    def finite(self) -> np.ndarray:
        """(R,) True where every parameter of the replicate is finite."""
        ok = np.ones(self.weight.shape[0], dtype=bool)
        for v in self.groups().values():
            ok &= np.isfinite(v).reshape(v.shape[0], -1).all(axis=1)
        return ok

    def where(self, keep: np.ndarray, other: Params) -> Params:
        """Per replicate: ``self`` where ``keep`` (R,) is True, else ``other``."""
        return Params(
            **{
                name: np.where(_rows(keep, v), v, getattr(other, name))
                for name, v in self.groups().items()
            }
        )

    def mix(self, weight_param: str) -> Mix:
        """The model q_θ as a :class:`Mix`."""
        return mix_from_param(self.weight, self.old_mean, self.new_mean, weight_param)


def _rows(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A per-replicate mask (R,) shaped to broadcast against ``like`` (R, …)."""
    return mask.reshape(mask.shape + (1,) * (like.ndim - 1))


@dataclass
class Context:
    """Fixed during a run: the world p* and the (fixed) model covariances."""

    weight_param: str
    dim: int
    world: Mix  # p* = α* φ(μ_o*, Σ_o*) + (1 − α*) φ(μ_n*, Σ_n*), R = 1
    wg_o: Gauss
    wg_n: Gauss
    g_o: Gauss  # model covariances Σ_o, Σ_n (from start / model)
    g_n: Gauss

    @classmethod
    def build(cls, target: TwoMode, model: TwoMode, weight_param: str) -> Context:
        d = target.dim
        return cls(
            weight_param=weight_param,
            dim=d,
            world=mix_from_param(
                np.array([target.old_weight]),
                target.old_mean[None, :],
                target.new_mean[None, :],
                "direct",
            ),
            wg_o=Gauss(target.old_cov, d),
            wg_n=Gauss(target.new_cov, d),
            g_o=Gauss(model.old_cov, d),
            g_n=Gauss(model.new_cov, d),
        )

    def log_target(self, x: np.ndarray) -> np.ndarray:
        """log p*(x)."""
        return mix_logpdf(x, self.world, self.wg_o, self.wg_n)[2]

    def log_old_world(self, x: np.ndarray) -> np.ndarray:
        """log p_old(x) = log φ(x; μ_o*, Σ_o*), the replay distribution."""
        return self.wg_o.logpdf(x, self.world.mo[:, None, :])

    def log_new_world(self, x: np.ndarray) -> np.ndarray:
        """log p_new(x) = log φ(x; μ_n*, Σ_n*)."""
        return self.wg_n.logpdf(x, self.world.mn[:, None, :])

    def mixture_logpdf(self, x: np.ndarray, mix: Mix) -> np.ndarray:
        """log density of a mixture with the model covariances (model, teacher, q_0, lag)."""
        return mix_logpdf(x, mix, self.g_o, self.g_n)[2]

    def draw_old_world(self, z: np.ndarray) -> np.ndarray:
        """x ~ p_old from standard normals z (R, B, d)."""
        return self.world.mo[:, None, :] + self.wg_o.color(z)

    def draw_new_world(self, z: np.ndarray) -> np.ndarray:
        """x ~ p_new from standard normals z (R, B, d)."""
        return self.world.mn[:, None, :] + self.wg_n.color(z)

    def draw(
        self, gen: np.random.Generator, mix: Mix, z: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """From a two-mode mixture with the model covariances, given standard normals z
        (R, B, d): label old ~ Bernoulli(α), then x ~ φ_label. Returns (x (R, B, d),
        old (R, B) bool)."""
        old = gen.random(z.shape[:2]) < mix.alpha[:, None]
        g_o, g_n = self.g_o, self.g_n
        if g_o.same(g_n):
            means = np.where(old[..., None], mix.mo[:, None, :], mix.mn[:, None, :])
            return g_o.color(z) + means, old
        x = np.where(
            old[..., None], mix.mo[:, None, :] + g_o.color(z), mix.mn[:, None, :] + g_n.color(z)
        )
        return x, old


ObjectiveT = TypeVar("ObjectiveT", bound=Objective)


class ObjectiveTwin(Generic[ObjectiveT]):
    """One objective's part of the twin, made per run: ``batch_size`` is the group size G,
    ``None`` for the population (G → ∞) limit. The defaults are those of an on-policy
    objective without extra state: samples from q_θ."""

    #: the objective class name (``Objective.as_dict()["kind"]``) this twin implements
    kind: ClassVar[str] = ""

    def __init__(self, objective: ObjectiveT, ctx: Context, batch_size: Optional[int]) -> None:
        self.objective = objective
        self.ctx = ctx
        self.batch_size = batch_size

    # -- extra state ------------------------------------------------------------------
    def reset(self, params: Params) -> None:
        """Set the extra models from the starting parameters (R rows, or one row)."""

    def advance(self, step: int, params: Params, ok: np.ndarray) -> None:
        """Update the extra models after training step ``step`` (1-based) produced
        ``params``; ``ok`` (R,) is False for diverged (frozen) replicates."""

    # -- sampling source --------------------------------------------------------------
    def draw(
        self, gen: np.random.Generator, z: np.ndarray, model: Mix
    ) -> tuple[np.ndarray, np.ndarray]:
        """One batch per replicate from the objective's sampling distribution, given the
        standard normals z (R, B, d) the core drew first. Returns x (R, B, d) and the old
        label (R, B) (on-policy old draws and replay draws are old, MATH §4.3)."""
        return self.ctx.draw(gen, model, z)

    def sampling_logpdf(self, x: np.ndarray, model: Mix) -> np.ndarray:
        """Log density at x (R, N, d) of the distribution :meth:`draw` samples from (with
        the replay fraction λ): the measure of the population expectations."""
        return self.ctx.mixture_logpdf(x, model)

    # -- per-sample value and batch coefficients --------------------------------------
    def coefficient(self, x: np.ndarray, lq: np.ndarray, avg: Averager) -> np.ndarray:
        """Per-sample coefficient c_i (R, N) of ĝ = avg_i[c_i s(x_i)] at x with log q_θ(x)
        = ``lq``; leave-one-out means are full expectations under the population averager."""
        raise NotImplementedError  # pragma: no cover - every objective defines it


# =====================================================================================
# Pieces several objectives share
# =====================================================================================


def replay_mask(
    gen: np.random.Generator, r: int, b: int, lam: float, slots: str
) -> Optional[np.ndarray]:
    """Replay slots (MATH §4.1): each w.p. λ ('bernoulli') or the first round(λB)
    ('stratified'); ``None`` without replay (no random numbers drawn)."""
    if lam <= 0.0:
        return None
    if slots == "bernoulli":
        return gen.random((r, b)) < lam
    return np.broadcast_to(np.arange(b) < int(stratified_replay_count(lam, b)), (r, b))


def replay_logpdf(ctx: Context, x: np.ndarray, log_main: np.ndarray, lam: float) -> np.ndarray:
    """log((1 − λ) e^{log_main} + λ p_old), the density of a batch with replay fraction λ."""
    return np.logaddexp(math.log1p(-lam) + log_main, math.log(lam) + ctx.log_old_world(x))


def reward(ctx: Context, x: np.ndarray, kind: str, radius: float) -> np.ndarray:
    """Built-in rewards (MATH §4.5–4.6): 'new_logpdf' log p_new(x), 'target_logpdf' log p*(x),
    'new_indicator' 1[‖x − μ_n*‖_{Σ_n*} ≤ radius] (compared as squared norms)."""
    if kind == "new_logpdf":
        return ctx.log_new_world(x)
    if kind == "target_logpdf":
        return ctx.log_target(x)
    return (ctx.wg_n.mahal2(x - ctx.world.mn[:, None, :]) <= radius * radius).astype(np.float64)


def log_ratio_coef(w: Any, ell: np.ndarray, avg: Averager, loo: bool) -> np.ndarray:
    """Score-function coefficient of a KL(q ‖ p) loss (MATH §4.2): c_i = w_i (ℓ_i − b_i) with
    b_i = mean_{j≠i} w_j ℓ_j (leave-one-out) or 0."""
    wl = w * ell
    return wl - w * avg.loo(wl) if loo else wl
