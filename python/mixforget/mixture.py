"""The model values: the two-mode Gaussian mixture q = α N(μ_o, Σ_o) + (1−α) N(μ_n, Σ_n)
(:class:`TwoMode`, docs: theory-model, theory-geometry) and the K-component mixture
(:class:`Mixture`, docs: theory-k-components).

Over ~600 lines on purpose: the two values convert into each other (``to_mixture``,
``to_two_mode``) and share the scale-safe geometry helpers, so they live in one module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _kernels
from ._rng import RngLike
from ._validate import as_cov, as_float_array, as_probability, cov_matrix

__all__ = ["Mixture", "TwoMode", "as_mixture"]

_UNSET: Any = object()


class TwoMode:
    """Two-mode Gaussian mixture, the model and the world of docs: theory-model.

    ``q(x) = α φ(x; μ_o, Σ_o) + (1 − α) φ(x; μ_n, Σ_n)``.

    Parameters
    ----------
    old_mean, new_mean : array_like (d,)
        Means of the old-task and new-task components.
    old_weight : float in (0, 1)
        α, the weight of the old component.
    cov : scalar, (d,) or (d, d)
        Covariance shared by both components (isotropic, diagonal or full SPD).
    old_cov, new_cov : optional
        Give both instead of ``cov`` for unequal covariances.

    Instances are immutable; use :meth:`replace` to derive a changed copy.
    """

    __slots__ = ("_new_cov", "_new_mean", "_old_cov", "_old_mean", "_old_weight")
    _old_mean: np.ndarray
    _new_mean: np.ndarray
    _old_weight: float
    _old_cov: np.ndarray
    _new_cov: np.ndarray

    def __init__(
        self,
        old_mean: Any,
        new_mean: Any,
        old_weight: float,
        cov: Any = _UNSET,
        *,
        old_cov: Any = None,
        new_cov: Any = None,
    ) -> None:
        om = as_float_array("old_mean", old_mean, ndim=(0, 1)).reshape(-1)
        nm = as_float_array("new_mean", new_mean, ndim=(0, 1)).reshape(-1)
        if om.size == 0:
            raise ValueError("old_mean must have at least one coordinate")
        if om.shape != nm.shape:
            raise ValueError(
                f"old_mean and new_mean must have the same dimension, got {om.shape} and {nm.shape}"
            )
        d = om.size
        alpha = as_probability("old_weight", old_weight)
        if old_cov is not None or new_cov is not None:
            if cov is not _UNSET:
                raise ValueError("give either cov (shared) or both old_cov and new_cov, not both")
            if old_cov is None or new_cov is None:
                raise ValueError("old_cov and new_cov must be given together")
            oc, nc = as_cov("old_cov", old_cov, d), as_cov("new_cov", new_cov, d)
        else:
            shared = as_cov("cov", 1.0 if cov is _UNSET else cov, d)
            oc = nc = shared
        for arr in (om, nm, oc, nc):
            arr.setflags(write=False)
        object.__setattr__(self, "_old_mean", om)
        object.__setattr__(self, "_new_mean", nm)
        object.__setattr__(self, "_old_weight", alpha)
        object.__setattr__(self, "_old_cov", oc)
        object.__setattr__(self, "_new_cov", nc)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("TwoMode is immutable; use .replace(...)")

    # -- parameters ---------------------------------------------------------------------
    @property
    def old_mean(self) -> np.ndarray:
        """μ_o, shape (d,)."""
        return self._old_mean

    @property
    def new_mean(self) -> np.ndarray:
        """μ_n, shape (d,)."""
        return self._new_mean

    @property
    def old_weight(self) -> float:
        """α, the old component's weight."""
        return self._old_weight

    @property
    def old_cov(self) -> np.ndarray:
        """Σ_o as given (0-d scalar, (d,) diagonal or (d, d))."""
        return self._old_cov

    @property
    def new_cov(self) -> np.ndarray:
        """Σ_n as given (0-d scalar, (d,) diagonal or (d, d))."""
        return self._new_cov

    @property
    def equal_cov(self) -> bool:
        """True when Σ_o = Σ_n (the theory's case and the fast path)."""
        return self._old_cov.shape == self._new_cov.shape and bool(
            np.array_equal(self._old_cov, self._new_cov)
        )

    @property
    def cov(self) -> np.ndarray:
        """The shared covariance; ValueError for unequal covariances."""
        if not self.equal_cov:
            raise ValueError("this TwoMode has unequal covariances; use old_cov / new_cov")
        return self._old_cov

    @property
    def dim(self) -> int:
        """d, the dimension of the sample space."""
        return int(self._old_mean.size)

    def cov_matrix(self, which: str = "old") -> np.ndarray:
        """Full (d, d) covariance of component ``which`` ('old' or 'new')."""
        if which not in ("old", "new"):
            raise ValueError(f"which must be 'old' or 'new', got {which!r}")
        return cov_matrix(self._old_cov if which == "old" else self._new_cov, self.dim)

    def mahalanobis(self, delta: Any, which: str = "old") -> np.ndarray:
        """‖δ‖_Σ = sqrt(δᵀ Σ⁻¹ δ) along the last axis (shape (..., d)), with Σ of component
        ``which``; computed in whitened coordinates scaled to avoid overflow and underflow."""
        arr = np.asarray(delta, dtype=np.float64)
        if arr.ndim == 0 or arr.shape[-1] != self.dim:
            raise ValueError(
                f"delta must have shape (..., {self.dim}) (last axis = dim), got {arr.shape}"
            )
        return _whitened_norm(self.cov_matrix(which), arr)

    # -- geometry (docs: theory-geometry)
    # -------------------------------------------------------------
    @property
    def separation(self) -> float:
        """Δ = ‖μ_o − μ_n‖ in the Mahalanobis metric of Σ̄ = (Σ_o + Σ_n)/2 (= Σ when equal).

        Scale-safe: Σ̄ and δ are divided by Σ̄'s largest diagonal entry s before whitening,
        Δ = ‖L⁻¹ (δ/√s)‖ with L L^T = Σ̄/s, so covariances from 1e-320 to 1e308 work; means
        whose difference overflows (e.g. ∓1e308) are divided by their largest entry first, so
        Δ is finite whenever it is representable, and ``inf`` only when Δ itself exceeds the
        largest float64 (e.g. ``TwoMode([-1e308], [1e308], 0.75).separation``: Δ = 2e308)."""
        delta, factor = self._mean_difference()
        return factor * float(_whitened_norm(self._avg_cov(), delta))

    def _mean_difference(self) -> tuple[np.ndarray, float]:
        """(δ', c) with μ_o − μ_n = c·δ': c = 1 (δ' exact) unless the difference overflows,
        then c = the means' largest |entry| (δ' finite, of order 1)."""
        with np.errstate(over="ignore", invalid="ignore"):
            delta = self._old_mean - self._new_mean
        if np.all(np.isfinite(delta)):
            return delta, 1.0
        factor = float(max(np.max(np.abs(self._old_mean)), np.max(np.abs(self._new_mean))))
        return self._old_mean / factor - self._new_mean / factor, factor

    def _avg_cov(self) -> np.ndarray:
        # 0.5·a + 0.5·b, not 0.5·(a + b): the sum overflows for entries near 1e308
        return 0.5 * self.cov_matrix("old") + 0.5 * self.cov_matrix("new")

    @property
    def log_bhattacharyya(self) -> float:
        """ln BC = −D_B (docs: theory-geometry), finite even where BC underflows to 0 (Δ ≳ 77)."""
        delta, factor = self._mean_difference()
        return log_bhattacharyya(delta, self.cov_matrix("old"), self.cov_matrix("new"), factor)

    @property
    def bhattacharyya(self) -> float:
        """Bhattacharyya coefficient BC = ∫ sqrt(φ_o φ_n) = exp(−D_B) (docs: theory-geometry).

        D_B = ⅛ δᵀ Σ̄⁻¹ δ + ½ ln(det Σ̄ / sqrt(det Σ_o det Σ_n)); equal covariance: exp(−Δ²/8).
        Computed in the log domain (:attr:`log_bhattacharyya`); underflows to 0 only where
        BC < 1e-308."""
        return float(math.exp(self.log_bhattacharyya))

    # -- densities and samples (Rust kernels) ---------------------------------------------
    def _kernel_args(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        weights = np.array([self._old_weight, 1.0 - self._old_weight])
        means = np.stack([self._old_mean, self._new_mean])
        return weights, means, [self._old_cov, self._new_cov]

    def responsibilities(self, x: Any, threads: int | None = None) -> np.ndarray:
        """(n, 2) array [r_o, r_n] with r_o(x) = α φ_o(x) / q(x) (docs: theory-geometry)."""
        return _kernels.responsibilities(self._as_points(x), *self._kernel_args(), threads=threads)

    def logpdf(self, x: Any, threads: int | None = None) -> np.ndarray:
        """log q(x) for each row of x (n, d), log-sum-exp stable."""
        return _kernels.mixture_logpdf(self._as_points(x), *self._kernel_args(), threads=threads)

    def sample(
        self, n: int, rng: RngLike = None, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw n points: label k ~ Bernoulli(α) (0 = old, 1 = new), then x ~ φ_k.

        Returns (x (n, d), labels (n,) int8 with 0 = old)."""
        return _kernels.sample_mixture(n, *self._kernel_args(), rng=rng, threads=threads)

    def _as_points(self, x: Any) -> np.ndarray:
        arr = as_float_array("x", x, ndim=(0, 1, 2))
        if arr.ndim < 2:
            if self.dim == 1:
                arr = arr.reshape(-1, 1)
            elif arr.ndim == 1 and arr.size == self.dim:
                arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {np.shape(x)}")
        return arr

    # -- copies -------------------------------------------------------------------------
    def replace(self, **changes: Any) -> TwoMode:
        """A copy with some fields changed: old_mean, new_mean, old_weight, cov, old_cov,
        new_cov."""
        allowed = {"old_mean", "new_mean", "old_weight", "cov", "old_cov", "new_cov"}
        unknown = set(changes) - allowed
        if unknown:
            raise TypeError(
                f"replace() got unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        args: dict[str, Any] = {
            "old_mean": changes.get("old_mean", self._old_mean),
            "new_mean": changes.get("new_mean", self._new_mean),
            "old_weight": changes.get("old_weight", self._old_weight),
        }
        if "cov" in changes:
            if "old_cov" in changes or "new_cov" in changes:
                raise ValueError("give either cov or old_cov/new_cov")
            args["cov"] = changes["cov"]
        elif "old_cov" in changes or "new_cov" in changes:
            args["old_cov"] = changes.get("old_cov", self._old_cov)
            args["new_cov"] = changes.get("new_cov", self._new_cov)
        elif self.equal_cov:
            args["cov"] = self._old_cov
        else:
            args["old_cov"], args["new_cov"] = self._old_cov, self._new_cov
        return TwoMode(**args)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (lists), for configs and storage."""
        out: dict[str, Any] = {
            "old_mean": self._old_mean.tolist(),
            "new_mean": self._new_mean.tolist(),
            "old_weight": self._old_weight,
        }
        if self.equal_cov:
            out["cov"] = self._old_cov.tolist()
        else:
            out["old_cov"], out["new_cov"] = self._old_cov.tolist(), self._new_cov.tolist()
        return out

    def to_mixture(self) -> Mixture:
        """The same model as a K = 2 :class:`Mixture`: weights (α, 1 − α), means (μ_o, μ_n)."""
        weights = [self._old_weight, 1.0 - self._old_weight]
        means = np.stack([self._old_mean, self._new_mean])
        if self.equal_cov:
            return Mixture(weights, means, self._old_cov)
        return Mixture(weights, means, covs=[self._old_cov, self._new_cov])

    def __reduce__(self) -> tuple[Any, ...]:
        # Immutable with __slots__: pickle (multiprocessing, Dask) rebuilds from plain data.
        return (_from_dict, (self.to_dict(),))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TwoMode):
            return NotImplemented
        return (
            self._old_weight == other._old_weight
            and np.array_equal(self._old_mean, other._old_mean)
            and np.array_equal(self._new_mean, other._new_mean)
            and self._old_cov.shape == other._old_cov.shape
            and np.array_equal(self._old_cov, other._old_cov)
            and self._new_cov.shape == other._new_cov.shape
            and np.array_equal(self._new_cov, other._new_cov)
        )

    def __hash__(self) -> int:
        return hash((self._old_weight, self._old_mean.tobytes(), self._new_mean.tobytes()))

    def __repr__(self) -> str:
        covs = (
            f"cov={self._old_cov.tolist()}"
            if self.equal_cov
            else (f"old_cov={self._old_cov.tolist()}, new_cov={self._new_cov.tolist()}")
        )
        return (
            f"TwoMode(old_mean={self._old_mean.tolist()}, new_mean={self._new_mean.tolist()}, "
            f"old_weight={self._old_weight}, {covs})"
        )


def _from_dict(data: dict[str, Any]) -> TwoMode:
    return TwoMode(**data)


def _whitened_norm(cov: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """sqrt(δᵀ Σ⁻¹ δ) along the last axis of ``delta``, scale-safe: with s = max diag Σ,
    ‖L⁻¹ (δ/√s)‖ where L L^T = Σ/s (entries of order 1, no overflow or underflow)."""
    scale = float(np.max(np.diag(cov)))
    chol = np.linalg.cholesky(cov / scale)
    flat = delta.reshape(-1, cov.shape[0]) / math.sqrt(scale)
    white = np.linalg.solve(chol, flat.T).T
    # the norm of white/m, times m (m = largest entry): no overflow of the squares
    big = np.max(np.abs(white), axis=-1, keepdims=True)
    safe = np.where(big > 0, big, 1.0)
    norm = safe[..., 0] * np.sqrt(np.sum((white / safe) ** 2, axis=-1))
    return norm.reshape(delta.shape[:-1])


def log_bhattacharyya(
    delta: np.ndarray, cov_a: np.ndarray, cov_b: np.ndarray, factor: float = 1.0
) -> float:
    """ln BC = −D_B of two Gaussians whose means differ by factor·δ (docs: theory-geometry):
    D_B = ⅛ δᵀ Σ̄⁻¹ δ + ½ ln(det Σ̄ / sqrt(det Σ_a det Σ_b)), Σ̄ = (Σ_a + Σ_b)/2. Scale-safe:
    Σ̄ = ½Σ_a + ½Σ_b (no overflow near 1e308), the norm whitened after rescaling
    (:func:`_whitened_norm`), the log-determinants of the matrices divided by Σ̄'s largest
    diagonal entry (the scale cancels in the difference)."""
    avg = 0.5 * cov_a + 0.5 * cov_b
    scale = float(np.max(np.diag(avg)))
    _, ld_avg = np.linalg.slogdet(avg / scale)
    _, ld_a = np.linalg.slogdet(cov_a / scale)
    _, ld_b = np.linalg.slogdet(cov_b / scale)
    norm = factor * float(_whitened_norm(avg, delta))
    return -(0.125 * norm * norm + 0.5 * (ld_avg - 0.5 * (ld_a + ld_b)))


def unit_shape_and_scale(cov: np.ndarray) -> tuple[np.ndarray, float]:
    """(S, σ) of a (d, d) covariance Σ = σ²·S: the unit-determinant shape
    S = Σ / det(Σ)^{1/d} and the scale σ = det(Σ)^{1/(2d)} (the standard deviation when
    d = 1), the parametrisation of trainable scales (docs: theory-scales)."""
    dim = cov.shape[0]
    logdet = float(np.linalg.slogdet(cov)[1])
    scale = math.sqrt(float(cov[0, 0])) if dim == 1 else math.exp(logdet / (2.0 * dim))
    return cov / math.exp(logdet / dim), scale


def component_scales(model: TwoMode) -> tuple[float, float]:
    """(σ_o, σ_n), σ_k = det(Σ_k)^{1/(2d)}: the scales that trainable covariances σ_k²·S_k,
    S_k = Σ_k / det(Σ_k)^{1/d}, start from (the standard deviations when d = 1); see
    :func:`unit_shape_and_scale`."""
    return (
        unit_shape_and_scale(model.cov_matrix("old"))[1],
        unit_shape_and_scale(model.cov_matrix("new"))[1],
    )


class Mixture:
    """A K-component Gaussian mixture, K ≥ 2, in any dimension d (docs: theory-k-components).

    ``q(x) = Σ_k w_k φ(x; μ_k, Σ_k)``.

    Parameters
    ----------
    weights : array_like (K,)
        Component weights, each in (0, 1), summing to 1 (to 1e-9; stored renormalised).
    means : array_like (K, d), or (K,) for d = 1
        Component means.
    cov : scalar, (d,) or (d, d)
        Covariance shared by every component (isotropic, diagonal or full SPD).
    covs : sequence of K covariances, optional
        Give instead of ``cov`` for per-component covariances (each scalar, (d,) or (d, d)).

    Instances are immutable; :meth:`replace` derives a changed copy. A K = 2 mixture is the
    same model as :class:`TwoMode` with component 0 the old and component 1 the new one
    (:meth:`to_two_mode`, :meth:`TwoMode.to_mixture`); the engine runs it as that TwoMode, so
    its numbers are the TwoMode's bit for bit.
    """

    __slots__ = ("_covs", "_means", "_weights")
    _weights: np.ndarray
    _means: np.ndarray
    _covs: tuple[np.ndarray, ...]

    def __init__(self, weights: Any, means: Any, cov: Any = _UNSET, *, covs: Any = None) -> None:
        w = as_float_array("weights", weights, ndim=1)
        k = w.size
        if k < 2:
            raise ValueError(f"weights must have K >= 2 entries (components), got K = {k}")
        if np.any(w <= 0.0) or np.any(w >= 1.0):
            raise ValueError(f"weights must each be in the open interval (0, 1), got {w.tolist()}")
        total = float(np.sum(w))
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"weights must sum to 1 (within 1e-9), got sum {total!r}")
        # renormalise only beyond rounding, so that a stored mixture rebuilt from its own
        # weights (pickle, to_dict, replace) is the same value bit for bit
        if abs(total - 1.0) > 4.0 * k * np.finfo(np.float64).eps:
            w = w / total
        m = as_float_array("means", means, ndim=(1, 2))
        if m.ndim == 1:
            m = m.reshape(-1, 1)
        if m.shape[0] != k:
            raise ValueError(
                f"means must have one row per component: shape ({k}, d), got {m.shape}"
            )
        dim = m.shape[1]
        if dim == 0:
            raise ValueError("means must have at least one coordinate (d >= 1)")
        if covs is not None:
            if cov is not _UNSET:
                raise ValueError("give either cov (shared) or covs (one per component), not both")
            if (isinstance(covs, np.ndarray) and covs.ndim >= 1) or isinstance(covs, (list, tuple)):
                cov_list = list(covs)
            else:
                raise TypeError("covs must be a sequence of K covariances")
            if len(cov_list) != k:
                raise ValueError(f"covs must have K = {k} entries, got {len(cov_list)}")
            cov_tuple = tuple(as_cov(f"covs[{j}]", c, dim) for j, c in enumerate(cov_list))
        else:
            shared = as_cov("cov", 1.0 if cov is _UNSET else cov, dim)
            cov_tuple = (shared,) * k
        for arr in (w, m, *cov_tuple):
            arr.setflags(write=False)
        object.__setattr__(self, "_weights", w)
        object.__setattr__(self, "_means", m)
        object.__setattr__(self, "_covs", cov_tuple)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Mixture is immutable; use .replace(...)")

    # -- parameters ---------------------------------------------------------------------
    @property
    def weights(self) -> np.ndarray:
        """w, shape (K,)."""
        return self._weights

    @property
    def means(self) -> np.ndarray:
        """μ, shape (K, d)."""
        return self._means

    @property
    def covs(self) -> tuple[np.ndarray, ...]:
        """The K covariances as given (0-d scalar, (d,) diagonal or (d, d))."""
        return self._covs

    @property
    def n_components(self) -> int:
        """K, the number of components."""
        return int(self._weights.size)

    @property
    def dim(self) -> int:
        """d, the dimension of the sample space."""
        return int(self._means.shape[1])

    @property
    def equal_cov(self) -> bool:
        """True when every component has the same covariance."""
        first = self._covs[0]
        return all(c.shape == first.shape and np.array_equal(c, first) for c in self._covs[1:])

    def cov_matrix(self, component: int) -> np.ndarray:
        """Full (d, d) covariance of component ``component`` (0 ≤ component < K)."""
        j = self._component_index("component", component)
        return cov_matrix(self._covs[j], self.dim)

    def _component_index(self, name: str, value: Any) -> int:
        k = self.n_components
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer component index, got {value!r}")
        if not 0 <= int(value) < k:
            raise ValueError(f"{name} must be a component index in [0, {k - 1}], got {value}")
        return int(value)

    # -- geometry (docs: theory-k-components) ----------------------------------------------
    def log_bhattacharyya_matrix(self) -> np.ndarray:
        """(K, K) matrix of ln BC_jk = −D_B(φ_j, φ_k) (docs: theory-geometry), 0 on the
        diagonal; finite where BC underflows."""
        k = self.n_components
        out = np.zeros((k, k))
        for a in range(k):
            for b in range(a + 1, k):
                delta = self._means[a] - self._means[b]
                value = log_bhattacharyya(delta, self.cov_matrix(a), self.cov_matrix(b))
                out[a, b] = out[b, a] = value
        return out

    def bhattacharyya_matrix(self) -> np.ndarray:
        """(K, K) pairwise Bhattacharyya coefficients BC_jk = ∫ sqrt(φ_j φ_k), 1 on the
        diagonal; equal covariances: exp(−Δ_jk²/8)."""
        return np.exp(self.log_bhattacharyya_matrix())

    def separation_matrix(self) -> np.ndarray:
        """(K, K) Mahalanobis separations Δ_jk = ‖μ_j − μ_k‖ in the metric of
        (Σ_j + Σ_k)/2."""
        k = self.n_components
        out = np.zeros((k, k))
        for a in range(k):
            for b in range(a + 1, k):
                avg = 0.5 * self.cov_matrix(a) + 0.5 * self.cov_matrix(b)
                out[a, b] = out[b, a] = float(_whitened_norm(avg, self._means[a] - self._means[b]))
        return out

    # -- densities and samples (Rust kernels) ---------------------------------------------
    def _kernel_args(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        return self._weights, self._means, list(self._covs)

    def responsibilities(self, x: Any, threads: int | None = None) -> np.ndarray:
        """(n, K) array r_k(x) = w_k φ_k(x) / q(x) (docs: theory-geometry)."""
        return _kernels.responsibilities(self._as_points(x), *self._kernel_args(), threads=threads)

    def logpdf(self, x: Any, threads: int | None = None) -> np.ndarray:
        """log q(x) for each row of x (n, d), log-sum-exp stable."""
        return _kernels.mixture_logpdf(self._as_points(x), *self._kernel_args(), threads=threads)

    def sample(
        self, n: int, rng: RngLike = None, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw n points: label k ~ Categorical(w), then x ~ φ_k.

        Returns (x (n, d), labels (n,) int8, the component indices)."""
        return _kernels.sample_mixture(n, *self._kernel_args(), rng=rng, threads=threads)

    def _as_points(self, x: Any) -> np.ndarray:
        arr = as_float_array("x", x, ndim=(0, 1, 2))
        if arr.ndim < 2:
            if self.dim == 1:
                arr = arr.reshape(-1, 1)
            elif arr.ndim == 1 and arr.size == self.dim:
                arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {np.shape(x)}")
        return arr

    # -- conversions and copies ---------------------------------------------------------
    def to_two_mode(self) -> TwoMode:
        """The K = 2 mixture as :class:`TwoMode` (component 0 old, component 1 new);
        ValueError for K ≠ 2."""
        if self.n_components != 2:
            raise ValueError(
                f"to_two_mode needs K = 2 components, this mixture has K = {self.n_components}"
            )
        if self.equal_cov:
            return TwoMode(self._means[0], self._means[1], float(self._weights[0]), self._covs[0])
        return TwoMode(
            self._means[0],
            self._means[1],
            float(self._weights[0]),
            old_cov=self._covs[0],
            new_cov=self._covs[1],
        )

    def replace(self, **changes: Any) -> Mixture:
        """A copy with some fields changed: weights, means, cov, covs."""
        allowed = {"weights", "means", "cov", "covs"}
        unknown = set(changes) - allowed
        if unknown:
            raise TypeError(
                f"replace() got unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        weights = changes.get("weights", self._weights)
        means = changes.get("means", self._means)
        if "cov" in changes and "covs" in changes:
            raise ValueError("give either cov or covs")
        if "cov" in changes:
            return Mixture(weights, means, changes["cov"])
        if "covs" in changes:
            return Mixture(weights, means, covs=changes["covs"])
        if self.equal_cov:
            return Mixture(weights, means, self._covs[0])
        return Mixture(weights, means, covs=self._covs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (lists), for configs and storage."""
        out: dict[str, Any] = {"weights": self._weights.tolist(), "means": self._means.tolist()}
        if self.equal_cov:
            out["cov"] = self._covs[0].tolist()
        else:
            out["covs"] = [c.tolist() for c in self._covs]
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return (_mixture_from_dict, (self.to_dict(),))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mixture):
            return NotImplemented
        return (
            np.array_equal(self._weights, other._weights)
            and self._means.shape == other._means.shape
            and np.array_equal(self._means, other._means)
            and all(
                a.shape == b.shape and np.array_equal(a, b) for a, b in zip(self._covs, other._covs)
            )
        )

    def __hash__(self) -> int:
        return hash((self._weights.tobytes(), self._means.tobytes()))

    def __repr__(self) -> str:
        covs = (
            f"cov={self._covs[0].tolist()}"
            if self.equal_cov
            else f"covs={[c.tolist() for c in self._covs]}"
        )
        return f"Mixture(weights={self._weights.tolist()}, means={self._means.tolist()}, {covs})"


def _mixture_from_dict(data: dict[str, Any]) -> Mixture:
    return Mixture(**data)


def as_mixture(value: TwoMode | Mixture) -> Mixture:
    """``value`` as a :class:`Mixture` (a TwoMode becomes its K = 2 mixture)."""
    if isinstance(value, Mixture):
        return value
    if isinstance(value, TwoMode):
        return value.to_mixture()
    raise TypeError(f"expected a TwoMode or a Mixture, got {type(value).__name__}")
