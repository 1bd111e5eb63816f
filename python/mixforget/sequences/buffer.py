"""Finite replay buffers inside a sequence (docs: theory-sequences): per-replicate stores of
past task samples, memory M, filled by reservoir sampling or class-balanced, and the target
side of a K-component run whose replay draws come from the buffer.

Each task contributes a stream of ``stream`` samples x ~ p_j (its training data) when its
stage ends (task 0 before stage 1). 'reservoir': algorithm R over the concatenated streams
(every item seen so far is stored with probability M/N); 'balanced': ⌊M/n⌋ items of each of
the n tasks seen (the remainder to the most recent), a uniform subset of each stream.
Stream items are independent draws, so an item is drawn when it is stored.

Replay from the buffer samples a stored item uniformly: the replay distribution is the
buffer's empirical measure p̂_M, not p_old. ReverseKL's importance weights keep the density
p_old = Σ ρ_j φ*_j (ρ the buffer's expected task composition), so its estimator is biased
for the p_old objective (docs: theory-sequences); ForwardKL fits the old components to the
stored points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..reference.mixture_engine import TargetSources

__all__ = ["BUFFERS", "BufferSources", "ReplayBuffers", "buffer_replay_gradient"]

#: the buffer filling rules
BUFFERS = ("reservoir", "balanced")


@dataclass
class ReplayBuffers:
    """The buffers of R replicates: ``points`` (R, m, d), ``labels`` (R, m) task indices
    (m ≤ M), ``seen`` (n_tasks,) stream lengths so far."""

    kind: str
    memory: int
    points: np.ndarray
    labels: np.ndarray
    seen: list[int]

    @classmethod
    def empty(cls, kind: str, memory: int, replicates: int, dim: int) -> ReplayBuffers:
        return cls(
            kind, memory, np.empty((replicates, 0, dim)), np.empty((replicates, 0), np.intp), []
        )

    def composition(self) -> np.ndarray:
        """(n_tasks,) the expected share of each task seen: stream lengths (reservoir) or
        the balanced quotas, over M (the ρ of the replay weights)."""
        if self.kind == "reservoir":
            seen = np.array(self.seen, dtype=np.float64)
            return seen / seen.sum()
        quotas = _quotas(min(self.memory, sum(self.seen)), len(self.seen), self.seen)
        return quotas / quotas.sum()

    def add_task(
        self, task: int, mean: np.ndarray, chol: np.ndarray, stream: int, rng: np.random.Generator
    ) -> None:
        """Task ``task``'s stream of ``stream`` samples N(mean, chol cholᵀ) arrives."""
        if self.kind == "reservoir":
            self._reservoir(task, mean, chol, stream, rng)
        else:
            self._balanced(task, mean, chol, stream, rng)
        self.seen.append(stream)

    def _draw(self, shape: tuple[int, int], mean, chol, rng) -> np.ndarray:
        return mean + rng.standard_normal((*shape, mean.size)) @ chol.T

    def _reservoir(self, task, mean, chol, stream, rng) -> None:
        r = self.points.shape[0]
        fill = min(stream, self.memory - self.points.shape[1])
        if fill > 0:
            self.points = np.concatenate(
                [self.points, self._draw((r, fill), mean, chol, rng)], axis=1
            )
            self.labels = np.concatenate([self.labels, np.full((r, fill), task, np.intp)], axis=1)
        t0 = sum(self.seen) + fill
        rows = np.arange(r)
        for t in range(t0, sum(self.seen) + stream):
            slot = rng.integers(0, t + 1, size=r)
            hit = slot < self.memory
            self.points[rows[hit], slot[hit]] = self._draw((int(hit.sum()), 1), mean, chol, rng)[
                :, 0
            ]
            self.labels[rows[hit], slot[hit]] = task

    def _balanced(self, task, mean, chol, stream, rng) -> None:
        seen = [*self.seen, stream]
        quotas = _quotas(min(self.memory, sum(seen)), len(seen), seen)
        r = self.points.shape[0]
        keep_p, keep_l = [], []
        for old in range(len(self.seen)):
            members = self.labels[0] == old  # every replicate stores the same quota per task
            keep_p.append(self.points[:, members][:, : quotas[old]])
            keep_l.append(self.labels[:, members][:, : quotas[old]])
        keep_p.append(self._draw((r, int(quotas[-1])), mean, chol, rng))
        keep_l.append(np.full((r, int(quotas[-1])), task, np.intp))
        self.points, self.labels = np.concatenate(keep_p, axis=1), np.concatenate(keep_l, axis=1)


def _quotas(memory: int, n: int, available: list[int]) -> np.ndarray:
    """⌊M/n⌋ per task, the remainder one each to the most recent, capped by availability."""
    share, extra = divmod(memory, n)
    quotas = np.array([share + (1 if i >= n - extra else 0) for i in range(n)])
    return np.minimum(quotas, np.array(available))


class BufferSources(TargetSources):
    """The target side of a K-component twin run whose replay draws are stored items of the
    replicate's buffer (uniformly); new-task data and every density stay the true ones."""

    def __init__(self, plan, buffers: ReplayBuffers) -> None:
        super().__init__(plan)
        self.buffers = buffers

    def draw(self, mix, shape, rng):
        if mix is not self.old_mix:
            return super().draw(mix, shape, rng)
        idx = rng.integers(0, self.buffers.points.shape[1], size=shape)
        points = np.take_along_axis(self.buffers.points, idx[..., None], axis=1)
        return points, np.take_along_axis(self.buffers.labels, idx, axis=1)


def buffer_replay_gradient(plan, params, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(g_η (1, K−1), g_μ (1, K, d)): the expected ReverseKL estimate at θ (``params``, one
    replicate) when the replay draws are the stored ``points`` (M, d), uniformly, and the
    importance weights keep the density p_old: E over m̂ = (1−λ) q_θ + λ p̂_M of the same
    coefficients as the population gradient (b̄ = E_m̂[v] for 'loo'). The on-policy part is
    the Gauss–Hermite rule of :mod:`mixforget._mixture_population`, the buffer part the
    exact finite sum. Compare with ``mixture_population_gradient`` (p_old itself)."""
    from .._mixture_population import _nodes, _reverse_kl_coefficients
    from ..reference.mixture_engine import Components, scores

    comps = Components.of(plan.start)
    target = TargetSources(plan)
    lam = float(plan.objective.replay)
    x_on, w_on = _nodes(plan, params, params.means[0], comps.chol)
    on_weights = ((1.0 - lam) * params.weights[0][:, None] * w_on[None, :]).ravel()
    x = np.concatenate([x_on.reshape(-1, x_on.shape[-1]), points])[None]
    weights = np.concatenate([on_weights, np.full(points.shape[0], lam / points.shape[0])])
    s_eta, s_mu, log_q = scores(x, params, comps)
    coef = _reverse_kl_coefficients(plan, x, log_q, weights, target)
    g_eta = np.einsum("n,rn,rnk->rk", weights, coef, s_eta)
    g_mu = np.einsum("n,rn,rnkd->rkd", weights, coef, s_mu)
    return g_eta, g_mu
