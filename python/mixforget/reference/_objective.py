"""What the shared core hands an objective, and the interface every objective twin implements
(docs: theory-estimators), plus the pieces several objectives share (replay slots, two-mode draws,
rewards, the log-ratio estimator).

The core (:mod:`._step`) never inspects which objective it runs: it asks the objective's
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

import functools
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Generic, Optional, TypeVar

import numpy as np

from ..mixture import TwoMode, component_scales
from ..objectives import BERNOULLI, Objective
from ..theory import stratified_replay_count
from ._averaging import Averager
from ._backend import Backend, default_backend, namespace_of
from ._densities import (
    Gauss,
    Mix,
    mix_from_param,
    mix_logpdf,
    unit_shape_and_scale,
    weight_param_of,
)

#: an objective's extra state (teacher EMA, start model, lagged model): name → Params. Plain
#: dicts of arrays so that JAX can carry them through ``lax.scan``.
Extra = dict[str, "Params"]


@dataclass
class Params:
    """The trained parameters θ with a leading replicate axis R: ``weight`` (R,) (η = logit α
    or α itself), ``old_mean`` (R, d), ``new_mean`` (R, d) and, only when the scales train,
    ``old_scale``, ``new_scale`` (R,) (σ_k itself, or log σ_k: :attr:`Context.scale_param`;
    None otherwise), arrays of any array-API namespace. The field names are the groups of
    ``lr_scale``; the update, the finiteness check, the extra states and the recording loop
    over the groups present (:meth:`groups`), so a new trainable group is one new field.
    Treated as immutable: every operation returns new arrays (JAX has no in-place updates)."""

    weight: Any
    old_mean: Any
    new_mean: Any
    old_scale: Any = None
    new_scale: Any = None

    @classmethod
    def of_model(
        cls,
        model: TwoMode,
        weight_param: str,
        replicates: Optional[int] = None,
        backend: Optional[Backend] = None,
        scale_param: Optional[str] = None,
    ) -> Params:
        """The parameters of ``model``: one row, or ``replicates`` identical rows; with a
        ``scale_param`` ('direct' or 'log') also the parameters of its component scales
        σ_k = det(Σ_k)^{1/(2d)} (σ_k or log σ_k)."""
        be = backend if backend is not None else default_backend()
        rows = 1 if replicates is None else replicates
        w = np.full(rows, weight_param_of(model.old_weight, weight_param))
        scales: list[Any] = [None, None]
        if scale_param is not None:
            for k, cov in enumerate((model.old_cov, model.new_cov)):
                sd = unit_shape_and_scale(cov, model.dim)[1]
                scales[k] = be.asarray(np.full(rows, scale_value(sd, scale_param)))
        return cls(
            be.asarray(w),
            be.asarray(np.tile(model.old_mean, (rows, 1))),
            be.asarray(np.tile(model.new_mean, (rows, 1))),
            *scales,
        )

    @classmethod
    def group_names(cls) -> tuple[str, ...]:
        """Every possible group (the scale groups exist only when the scales train)."""
        return tuple(f.name for f in fields(cls))

    def groups(self) -> dict[str, Any]:
        """The groups present: name → array."""
        return {name: v for name in self.group_names() if (v := getattr(self, name)) is not None}

    def copy(self) -> Params:
        """The same parameters (arrays are never updated in place, so sharing is safe)."""
        return Params(**self.groups())

    def finite(self) -> Any:
        """(R,) True where every parameter of the replicate is finite."""
        xp = namespace_of(self.weight)
        ok = xp.isfinite(self.weight)
        for name, v in self.groups().items():
            if name != "weight":
                ok = ok & (xp.all(xp.isfinite(v), axis=1) if v.ndim == 2 else xp.isfinite(v))
        return ok

    def where(self, keep: Any, other: Params) -> Params:
        """Per replicate: ``self`` where ``keep`` (R,) (or a scalar) is True, else
        ``other``."""
        xp = namespace_of(self.weight)
        return Params(
            **{
                name: xp.where(_rows(xp, keep, v), v, getattr(other, name))
                for name, v in self.groups().items()
            }
        )

    def mix(self, weight_param: str, scale_param: Optional[str] = None) -> Mix:
        """The model q_θ as a :class:`Mix` (with its σ_k when the scales train)."""
        so = None if self.old_scale is None else scale_sd(self.old_scale, scale_param)
        sn = None if self.new_scale is None else scale_sd(self.new_scale, scale_param)
        return mix_from_param(self.weight, self.old_mean, self.new_mean, weight_param, so, sn)


@functools.cache
def register_params_pytree() -> None:
    """Make :class:`Params` a JAX pytree (once), so that ``lax.scan`` can carry it; called
    by the twin before it jits a step."""
    import jax

    names = Params.group_names()
    jax.tree_util.register_pytree_node(
        Params,
        lambda p: (tuple(getattr(p, n) for n in names), None),
        lambda _, leaves: Params(*leaves),
    )


def scale_value(sd: float, scale_param: str) -> float:
    """The stored parameter of a component scale σ: σ itself ('direct') or log σ ('log')."""
    return math.log(sd) if scale_param == "log" else sd


def scale_sd(value: Any, scale_param: Optional[str]) -> Any:
    """σ from its stored parameter (an array): e^u for 'log', the value itself for
    'direct'."""
    return namespace_of(value).exp(value) if scale_param == "log" else value


def _rows(xp: Any, mask: Any, like: Any) -> Any:
    """A per-replicate mask (R,) shaped to broadcast against ``like`` (R, …)."""
    return xp.reshape(mask, tuple(mask.shape) + (1,) * (like.ndim - 1)) if mask.ndim else mask


@dataclass
class Context:
    """Fixed during a run: the backend, the world p* and the model covariances — fixed, or,
    when the scales train (``scale_param`` 'direct' or 'log', None otherwise), the fixed
    unit-determinant shapes S_k = Σ_k / det(Σ_k)^{1/d} that the trained σ_k² multiply."""

    weight_param: str
    dim: int
    world: Mix  # p* = α* φ(μ_o*, Σ_o*) + (1 − α*) φ(μ_n*, Σ_n*), R = 1
    world_old_cov: Gauss
    world_new_cov: Gauss
    g_o: Gauss  # model covariances Σ_o, Σ_n (from start / model), or their shapes S_o, S_n
    g_n: Gauss
    backend: Backend
    scale_param: Optional[str] = None
    # log of the target's component scales det(Σ*_k)^{1/(2d)}: the runaway rule's reference
    world_log_scale: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def build(
        cls,
        target: TwoMode,
        model: TwoMode,
        weight_param: str,
        backend: Optional[Backend] = None,
        scale_param: Optional[str] = None,
    ) -> Context:
        be = backend if backend is not None else default_backend()
        d = target.dim
        covs = [model.old_cov, model.new_cov]
        if scale_param is not None:
            covs = [unit_shape_and_scale(cov, d)[0] for cov in covs]
        return cls(
            weight_param=weight_param,
            dim=d,
            world=mix_from_param(
                be.asarray([target.old_weight]),
                be.asarray(target.old_mean[None, :]),
                be.asarray(target.new_mean[None, :]),
                "direct",
            ),
            world_old_cov=Gauss(target.old_cov, d, be),
            world_new_cov=Gauss(target.new_cov, d, be),
            g_o=Gauss(covs[0], d, be),
            g_n=Gauss(covs[1], d, be),
            backend=be,
            scale_param=scale_param,
            world_log_scale=(
                math.log(component_scales(target)[0]),
                math.log(component_scales(target)[1]),
            ),
        )

    @property
    def trains_scales(self) -> bool:
        return self.scale_param is not None

    def mix_of(self, params: Params) -> Mix:
        """The mixture of a parameter set (model, teacher EMA, start or lagged model), with
        its component scales when they train."""
        return params.mix(self.weight_param, self.scale_param)

    def sd_of(self, value: Any) -> Any:
        """σ from a stored scale parameter (σ or log σ)."""
        return scale_sd(value, self.scale_param)

    @property
    def xp(self) -> Any:
        return self.backend.xp

    def log_target(self, x: Any) -> Any:
        """log p*(x)."""
        return mix_logpdf(x, self.world, self.world_old_cov, self.world_new_cov)[2]

    def log_old_world(self, x: Any) -> Any:
        """log p_old(x) = log φ(x; μ_o*, Σ_o*), the replay distribution."""
        return self.world_old_cov.logpdf(x, self.world.mo[:, None, :])

    def log_new_world(self, x: Any) -> Any:
        """log p_new(x) = log φ(x; μ_n*, Σ_n*)."""
        return self.world_new_cov.logpdf(x, self.world.mn[:, None, :])

    def mixture_logpdf(self, x: Any, mix: Mix) -> Any:
        """log density of a mixture with the model covariances (model, teacher, q_0, lag)."""
        return mix_logpdf(x, mix, self.g_o, self.g_n)[2]

    def draw_old_world(self, z: Any) -> Any:
        """x ~ p_old from standard normals z (R, B, d)."""
        return self.world.mo[:, None, :] + self.world_old_cov.color(z)

    def draw_new_world(self, z: Any) -> Any:
        """x ~ p_new from standard normals z (R, B, d)."""
        return self.world.mn[:, None, :] + self.world_new_cov.color(z)

    def draw(self, rng: Any, state: Any, mix: Mix, z: Any) -> tuple[Any, Any, Any]:
        """From a two-mode mixture with the model covariances, given standard normals z
        (R, B, d): label old ~ Bernoulli(α) (one uniform each), then x ~ φ_label. Returns
        (random state, x (R, B, d), old (R, B) bool)."""
        xp = self.xp
        state, u = rng.uniform(state, tuple(z.shape[:2]))
        old = u < mix.alpha[:, None]
        g_o, g_n = self.g_o, self.g_n
        if g_o.same(g_n) and mix.so is None:
            means = xp.where(old[:, :, None], mix.mo[:, None, :], mix.mn[:, None, :])
            return state, g_o.color(z) + means, old
        x = xp.where(
            old[:, :, None],
            mix.mo[:, None, :] + g_o.scaled_color(z, mix.so),
            mix.mn[:, None, :] + g_n.scaled_color(z, mix.sn),
        )
        return state, x, old

    def log_new_component(self, x: Any, mix: Mix) -> Any:
        """log φ_n(x) of a mixture (its new component, with its scale when it trains)."""
        return self.g_n.scaled_logpdf(x, mix.mn[:, None, :], mix.sn)

    def draw_new_component(self, z: Any, mix: Mix) -> Any:
        """x ~ φ_n of a mixture from standard normals z (R, B, d)."""
        return mix.mn[:, None, :] + self.g_n.scaled_color(z, mix.sn)


@dataclass
class ModelDensities:
    """The model at the points x (R, N, d): its mixture, log φ_o, log φ_n and log q_θ
    (each (R, N))."""

    mix: Mix
    log_phi_old: Any
    log_phi_new: Any
    lq: Any


ObjectiveT = TypeVar("ObjectiveT", bound=Objective)


class ObjectiveTwin(Generic[ObjectiveT]):
    """One objective's part of the twin, made per run: ``batch_size`` is the group size G,
    ``None`` for the population (G → ∞) limit. The defaults are those of an on-policy
    objective without extra state: samples from q_θ.

    Methods are pure functions of their arguments (the extra state is passed in and
    returned, random state likewise), so that the step can be jitted and scanned by JAX;
    the twin object only holds what is fixed during a run."""

    #: the objective class (of :data:`mixforget.objectives.OBJECTIVES`) this twin implements
    implements: ClassVar[type[Objective]]

    def __init__(self, objective: ObjectiveT, ctx: Context, batch_size: Optional[int]) -> None:
        self.objective = objective
        self.ctx = ctx
        self.batch_size = batch_size

    # -- extra state ------------------------------------------------------------------
    def reset(self, params: Params) -> Extra:
        """The extra models set from the starting parameters (R rows, or one row)."""
        return {}

    def advance(self, step: Any, params: Params, ok: Any, extra: Extra) -> Extra:
        """The extra models after training step ``step`` (1-based; a traced scalar under
        JAX) produced ``params``; ``ok`` (R,) is False for diverged (frozen) replicates."""
        return extra

    # -- sampling source --------------------------------------------------------------
    def draw(self, rng: Any, state: Any, z: Any, model: Mix, extra: Extra) -> tuple[Any, Any, Any]:
        """One batch per replicate from the objective's sampling distribution, given the
        standard normals z (R, B, d) the core drew first and the random adapter ``rng``
        with its ``state``. Returns (state, x (R, B, d), old label (R, B)) (on-policy old
        draws and replay draws are old, docs: theory-starvation)."""
        return self.ctx.draw(rng, state, model, z)

    def sampling_logpdf(self, x: Any, model: Mix, extra: Extra) -> Any:
        """Log density at x (R, N, d) of the distribution :meth:`draw` samples from (with
        the replay fraction λ): the measure of the population expectations."""
        return self.ctx.mixture_logpdf(x, model)

    # -- per-sample value and batch coefficients --------------------------------------
    def coefficient(self, x: Any, lq: Any, avg: Averager, extra: Extra) -> Any:
        """Per-sample coefficient c_i (R, N) of ĝ = avg_i[c_i s(x_i)] at x with log q_θ(x)
        = ``lq``; leave-one-out means are full expectations under the population averager."""
        raise NotImplementedError  # pragma: no cover - every objective defines it

    def model_coefficient(self, x: Any, parts: ModelDensities, avg: Averager, extra: Extra) -> Any:
        """What the core asks for: c_i given the model's densities at x. The default is
        :meth:`coefficient` of log q_θ; an objective whose value needs a component of the
        model (NewModeREINFORCE: log((1 − α) φ_n)) overrides this instead."""
        return self.coefficient(x, parts.lq, avg, extra)


# =====================================================================================
# Pieces several objectives share
# =====================================================================================


def replay_mask(
    ctx: Context, rng: Any, state: Any, r: int, b: int, lam: float, slots: str
) -> tuple[Any, Optional[Any]]:
    """Replay slots (docs: theory-forward-kl): each w.p. λ ('bernoulli', one uniform each) or the
    first round(λB) ('stratified'); ``None`` without replay (no random numbers drawn). Returns
    (random state, mask (R, B) or None)."""
    if lam <= 0.0:
        return state, None
    if slots == BERNOULLI:
        state, u = rng.uniform(state, (r, b))
        return state, u < lam
    be = ctx.backend
    first = be.asarray(np.arange(b) < int(stratified_replay_count(lam, b)), be.bool_dtype)
    return state, ctx.xp.broadcast_to(first[None, :], (r, b))


def replay_logpdf(ctx: Context, x: Any, log_main: Any, lam: float) -> Any:
    """log((1 − λ) e^{log_main} + λ p_old), the density of a batch with replay fraction λ."""
    return ctx.xp.logaddexp(math.log1p(-lam) + log_main, math.log(lam) + ctx.log_old_world(x))


def reward(ctx: Context, x: Any, kind: str, radius: float) -> Any:
    """Built-in rewards (docs: theory-ttt-discover, theory-oapl): 'new_logpdf' log p_new(x),
    'target_logpdf' log p*(x), 'new_indicator' 1[‖x − μ_n*‖_{Σ_n*} ≤ radius] (compared as squared
    norms)."""
    if kind == "new_logpdf":
        return ctx.log_new_world(x)
    if kind == "target_logpdf":
        return ctx.log_target(x)
    inside = ctx.world_new_cov.mahal2(x - ctx.world.mn[:, None, :]) <= radius * radius
    return ctx.xp.astype(inside, x.dtype)


def log_ratio_coef(w: Any, ell: Any, avg: Averager, loo: bool) -> Any:
    """Score-function coefficient of a KL(q ‖ p) loss (docs: theory-reverse-kl): c_i = w_i (ℓ_i −
    b_i) with b_i = mean_{j≠i} w_j ℓ_j (leave-one-out) or 0."""
    wl = w * ell
    return wl - w * avg.loo(wl) if loo else wl


def select(xp: Any, cond: Any, a: Params, b: Params) -> Params:
    """``a`` if ``cond`` else ``b``: a Python branch for a Python bool, a ``where`` for a
    (traced) array scalar."""
    if isinstance(cond, (bool, np.bool_)):
        return a if cond else b
    return a.where(cond, b)
