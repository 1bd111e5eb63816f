"""Which array library the twin runs on: the namespace (array API standard), the device, the
float precision and the random-number adapter (:mod:`._random`), resolved once per call.

Backends: ``"numpy"`` (NumPy ≥ 2 is itself array-API compliant, so no extra package is
needed; NumPy 1.x goes through array-api-compat), ``"array_api_strict"`` (the standard's
strict reference implementation: a test of the twin's compliance, not of speed), ``"torch"``
and ``"cupy"`` (through array-api-compat), ``"jax"`` (``jax.numpy``; float64 runs inside
``jax.enable_x64``, steps are jitted and scanned). A library that is not installed raises
ImportError naming the extra to install; an unknown backend, device or precision raises
ValueError naming the argument.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from . import _random

#: every backend of :func:`mixforget.simulate`; the first runs the Rust engine
BACKENDS = ("rust", "numpy", "torch", "cupy", "jax", "array_api_strict")
#: the backends that run this twin
ARRAY_BACKENDS = BACKENDS[1:]
PRECISIONS = ("float64", "float32")
#: backend → the ``mixforget[...]`` extra that installs its library
EXTRAS = {
    "numpy": "array",
    "array_api_strict": "array",
    "torch": "torch",
    "cupy": "cupy",
    "jax": "jax",
}
_MODULES = {
    "numpy": "numpy",
    "array_api_strict": "array_api_strict",
    "torch": "torch",
    "cupy": "cupy",
    "jax": "jax",
}


def check_backend_args(backend: Any, device: Any, precision: Any) -> tuple[str, Any, str]:
    """Validate the names (no import): ValueError naming the argument and the allowed values.
    ``device`` must be None for ``backend="rust"``, and ``precision`` float64."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if backend == "rust":
        if precision != "float64":
            raise ValueError(
                "precision must be 'float64' for backend='rust' (the Rust engine computes in "
                f"float64); got {precision!r}: choose an array backend for float32"
            )
        if device is not None and device != "cpu":
            raise ValueError(
                f"device must be None or 'cpu' for backend='rust', got {device!r}: choose "
                "backend='torch', 'cupy' or 'jax' to run on an accelerator"
            )
    elif device is not None and not isinstance(device, (str, int)) and backend != "jax":
        raise ValueError(f"device must be None, a str or an int, got {type(device).__name__}")
    return backend, device, precision


def _import(name: str) -> Any:
    module = _MODULES[name]
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(
            f"backend={name!r} needs the {module!r} package: pip install "
            f"'mixforget[{EXTRAS[name]}]'"
        ) from exc


def _compat(name: str) -> Any:
    """array-api-compat's wrapped namespace for ``name``."""
    try:
        return importlib.import_module(f"array_api_compat.{name}")
    except ImportError as exc:
        raise ImportError(
            f"backend={name!r} needs array-api-compat: pip install 'mixforget[{EXTRAS[name]}]'"
        ) from exc


_NUMPY2 = int(np.__version__.split(".")[0]) >= 2
#: array type → its namespace (the lookup is per type, so it is done once per type)
_NAMESPACES: dict[type, Any] = {}


def namespace_of(*arrays: Any) -> Any:
    """The array-API namespace of ``arrays`` (all of one library): NumPy itself for NumPy ≥ 2
    arrays, the array's own ``__array_namespace__()`` for JAX (arrays and tracers) and
    array-api-strict, array-api-compat's wrapped namespace otherwise (torch, CuPy, NumPy
    1.x). Cached per array type: this runs for most operations of a step."""
    kind = type(arrays[0])
    ns = _NAMESPACES.get(kind)
    if ns is None:
        ns = _NAMESPACES[kind] = _lookup_namespace(arrays[0])
    return ns


def _lookup_namespace(x: Any) -> Any:
    if _NUMPY2 and isinstance(x, (np.ndarray, np.generic)):
        return np
    own = getattr(x, "__array_namespace__", None)
    library = type(x).__module__.split(".")[0]
    if own is not None and library in ("jax", "jaxlib", "array_api_strict"):
        return own()
    try:
        from array_api_compat import array_namespace
    except ImportError as exc:
        if own is not None:
            return own()
        raise ImportError(
            f"arrays of type {type(x).__name__} need array-api-compat: pip install "
            "'mixforget[array]'"
        ) from exc
    return array_namespace(x)


def _is_jax(xp: Any) -> bool:
    return getattr(xp, "__name__", "").startswith("jax")


def while_loop(
    cond: Callable[[Any], Any],
    body: Callable[[Any], Any],
    state: Any,
    xp: Any,
    max_iter: Optional[int] = None,
) -> Any:
    """``while cond(state): state = body(state)``, at most ``max_iter`` times: a Python loop
    on eager libraries (one host read of ``cond`` per iteration), ``jax.lax.while_loop`` on
    JAX so that data-dependent iterations (TTT-Discover's adaptive β) can be jitted."""
    if _is_jax(xp):
        import jax

        limit = np.iinfo(np.int32).max if max_iter is None else max_iter

        def jcond(carry: Any) -> Any:
            i, s = carry
            return (i < limit) & cond(s)

        def jbody(carry: Any) -> Any:
            i, s = carry
            return i + 1, body(s)

        return jax.lax.while_loop(jcond, jbody, (0, state))[1]
    i = 0
    while (max_iter is None or i < max_iter) and bool(cond(state)):
        state = body(state)
        i += 1
    return state


@dataclass
class Backend:
    """One resolved backend: namespace ``xp``, device, float ``dtype`` (``precision``),
    ``int_dtype`` (int64) and the random adapter factory."""

    name: str
    xp: Any
    device: Any
    precision: str
    dtype: Any
    int_dtype: Any
    bool_dtype: Any
    _make_random: Callable[[np.random.SeedSequence], Any] = field(repr=False)
    jit: bool = False

    def random(self, seq: np.random.SeedSequence) -> Any:
        """The random adapter seeded from ``seq`` (see :mod:`._random`)."""
        return self._make_random(seq)

    def asarray(self, value: Any, dtype: Any = None) -> Any:
        """A host value as an array of this backend (float ``dtype`` unless given)."""
        host = np.asarray(value)
        if dtype is None:
            dtype = self.dtype if host.dtype.kind in "fiu" else None
        if self.name == "jax":
            import jax

            return jax.device_put(self.xp.asarray(host, dtype=dtype), self.device)
        if self.device is None:
            return self.xp.asarray(host, dtype=dtype)
        return self.xp.asarray(host, dtype=dtype, device=self.device)

    def to_numpy(self, a: Any) -> np.ndarray:
        """Copy an array of this backend to the host (a device sync)."""
        if self.name == "torch":
            return a.detach().cpu().numpy()
        if self.name == "cupy":
            return a.get()
        return np.asarray(a)

    def context(self) -> Any:
        """The context a run executes in: 64-bit types enabled for JAX (int64 counts; float64
        when asked), the selected CuPy device; NumPy's floating-point warnings silenced
        (divergence and log 0 are handled explicitly)."""
        stack = contextlib.ExitStack()
        stack.enter_context(np.errstate(all="ignore"))
        if self.name == "jax":
            import jax

            stack.enter_context(jax.enable_x64(True))
        elif self.name == "cupy" and self.device is not None:
            stack.enter_context(self.device)
        return stack

    def compile(self, fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        """``jax.jit(fn)`` on JAX; ``fn`` unchanged elsewhere."""
        if self.name == "jax":
            import jax

            return jax.jit(fn, **kwargs)
        return fn


def _numpy_backend(precision: str, device: Any) -> Backend:
    if device not in (None, "cpu"):
        raise ValueError(f"device must be None or 'cpu' for backend='numpy', got {device!r}")
    if _NUMPY2:
        xp: Any = np  # NumPy ≥ 2 implements the array API standard in its main namespace
    else:
        xp = _compat("numpy")
    dtype = getattr(np, precision)
    return Backend(
        "numpy",
        xp,
        None,
        precision,
        dtype,
        np.int64,
        np.bool_,
        lambda seq: _random.NumpyRandom(seq, dtype),
    )


def _strict_backend(precision: str, device: Any) -> Backend:
    xs = _import("array_api_strict")
    if device not in (None, "cpu", "CPU_DEVICE"):
        raise ValueError(
            f"device must be None or 'cpu' for backend='array_api_strict', got {device!r}"
        )
    np_dtype = getattr(np, precision)
    return Backend(
        "array_api_strict",
        xs,
        None,
        precision,
        getattr(xs, precision),
        xs.int64,
        xs.bool,
        lambda seq: _random.NumpyRandom(seq, np_dtype, convert=xs.asarray),
    )


def _torch_backend(precision: str, device: Any) -> Backend:
    torch = _import("torch")
    xp = _compat("torch")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device name: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r}: torch sees no CUDA device (torch.cuda.is_available() is "
            "False); install a CUDA build of torch (pip install 'mixforget[torch]') or use "
            "device='cpu'"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device={device!r}: torch sees {torch.cuda.device_count()} CUDA device(s)"
        )
    dtype = getattr(torch, precision)
    return Backend(
        "torch",
        xp,
        dev,
        precision,
        dtype,
        torch.int64,
        torch.bool,
        lambda seq: _random.TorchRandom(seq, dtype, dev),
    )


def _cupy_backend(precision: str, device: Any) -> Backend:
    cupy = _import("cupy")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver or runtime missing: report, not crash
        raise ValueError(
            f"backend='cupy' found no usable CUDA device ({exc}); check the CUDA install "
            "(pip install 'mixforget[cupy]')"
        ) from exc
    if isinstance(device, str):
        if device.startswith("cuda:") and device[5:].isdigit():
            device = int(device[5:])
        elif device in ("cuda", "gpu"):
            device = None
        else:
            raise ValueError(f"device must be None, 'cuda', 'cuda:N' or N for cupy, got {device!r}")
    if device is not None and not 0 <= device < count:
        raise ValueError(f"device={device!r}: cupy sees {count} CUDA device(s)")
    dev = None if device is None else cupy.cuda.Device(device)
    xp = _compat("cupy")
    dtype = getattr(cupy, precision)
    return Backend(
        "cupy",
        xp,
        dev,
        precision,
        dtype,
        cupy.int64,
        cupy.bool_,
        lambda seq: _random.CupyRandom(seq, dtype),
    )


def _jax_device(jax: Any, device: Any) -> Any:
    if device is None:
        return jax.devices()[0]
    if not isinstance(device, (str, int)):
        return device  # a jax.Device
    if isinstance(device, int):
        platform, index = None, device
    else:
        platform, _, idx = device.partition(":")
        platform = {"cuda": "gpu"}.get(platform, platform)
        if platform not in ("cpu", "gpu", "tpu") or (idx and not idx.isdigit()):
            raise ValueError(
                f"device must be None, 'cpu', 'gpu', 'gpu:N', 'tpu' or a jax.Device for "
                f"backend='jax', got {device!r}"
            )
        index = int(idx) if idx else 0
    try:
        devices = jax.devices(platform) if platform else jax.devices()
    except RuntimeError as exc:
        raise ValueError(
            f"device={device!r}: jax has no such device ({exc}); install a GPU build of "
            "jax (pip install 'mixforget[jax]' plus jax[cuda12]) or use device='cpu'"
        ) from exc
    if index >= len(devices):
        raise ValueError(f"device={device!r}: jax sees {len(devices)} such device(s)")
    return devices[index]


def _jax_backend(precision: str, device: Any) -> Backend:
    jax = _import("jax")
    import jax.numpy as jnp

    dev = _jax_device(jax, device)
    dtype = getattr(jnp, precision)
    return Backend(
        "jax",
        jnp,
        dev,
        precision,
        dtype,
        jnp.int64,
        jnp.bool_,
        lambda seq: _random.JaxRandom(seq, dtype, dev),
        jit=True,
    )


_FACTORIES = {
    "numpy": _numpy_backend,
    "array_api_strict": _strict_backend,
    "torch": _torch_backend,
    "cupy": _cupy_backend,
    "jax": _jax_backend,
}


def get_backend(name: str = "numpy", device: Any = None, precision: str = "float64") -> Backend:
    """Resolve an array backend: ValueError for bad names or an unavailable device,
    ImportError (naming the ``mixforget[...]`` extra) for a missing library."""
    check_backend_args(name, device, precision)
    if name == "rust":
        raise ValueError(
            f"backend='rust' does not run the array twin; choose one of {list(ARRAY_BACKENDS)}"
        )
    if name == "numpy" and device is None and precision == "float64":
        return default_backend()
    return _FACTORIES[name](precision, device)


@functools.cache
def default_backend() -> Backend:
    """NumPy, CPU, float64: the twin's default."""
    return _numpy_backend("float64", None)
