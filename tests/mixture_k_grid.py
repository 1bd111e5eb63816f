"""An independent population gradient for the K-component tests: the expectations of the
engine's estimators as dense trapezoid sums on a grid over all of R^d (d = 1, 2), written
from the formulas of KMIX_SPEC without any of the package's K-component code."""

from __future__ import annotations

import math

import numpy as np

import mixforget as mf


def _gauss(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    d = mean.size
    prec = np.linalg.inv(cov)
    diff = x - mean
    quad = np.einsum("ni,ij,nj->n", diff, prec, diff)
    return np.exp(-0.5 * quad) / math.sqrt((2 * math.pi) ** d * np.linalg.det(cov))


def grid(d: int, half_width: float = 14.0, step: float = 0.04) -> tuple[np.ndarray, float]:
    """Points (n, d) of a square grid and the volume of one cell."""
    axis = np.arange(-half_width, half_width + step / 2, step)
    mesh = np.meshgrid(*([axis] * d), indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1), step**d


def grid_gradient(
    target: mf.Mixture, model: mf.Mixture, objective, new: list[int], rho: np.ndarray
) -> np.ndarray:
    """The flat gradient [η_0 … η_{K−2}, μ_0, …, μ_{K−1}] by a dense grid."""
    k, d = target.n_components, target.dim
    x, cell = grid(d)
    old = [j for j in range(k) if j not in new]
    phi = np.stack([_gauss(x, model.means[j], model.cov_matrix(j)) for j in range(k)])
    phi_star = np.stack([_gauss(x, target.means[j], target.cov_matrix(j)) for j in range(k)])
    w = model.weights
    q = w @ phi
    p_star = target.weights @ phi_star
    p_old = sum(r * phi_star[j] for r, j in zip(rho, old))
    resp = w[:, None] * phi / q
    s_eta = resp[:-1] - w[:-1, None]
    s_mu = [
        resp[j][:, None] * (x - model.means[j]) @ np.linalg.inv(model.cov_matrix(j))
        for j in range(k)
    ]
    lam = objective.replay
    if isinstance(objective, mf.ForwardKL):
        wn = target.weights[new] / target.weights[new].sum()
        p_new = sum(c * phi_star[j] for c, j in zip(wn, new))
        density = (1 - lam) * p_new + lam * p_old
        coef = -np.ones_like(q)
    else:
        density = (1 - lam) * q + lam * p_old
        iw = q / density
        if objective.weight_cap is not None:
            iw = np.minimum(iw, objective.weight_cap)
        value = iw * (np.log(q) - np.log(p_star))
        if objective.baseline == "loo":
            value = value - iw * np.sum(density * value) * cell
        coef = value
    mass = density * coef * cell
    g_eta = s_eta @ mass
    g_mu = np.concatenate([mass @ s for s in s_mu])
    return np.concatenate([g_eta, g_mu])
