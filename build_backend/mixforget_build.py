"""The PEP 517 build backend of mixforget: maturin's, after one check.

A source build (``pip install .`` or the sdist) compiles the Rust core, so it needs
``cargo``. Without it maturin fails deep inside its own output (or tries to download a
toolchain); this backend stops first, with one line saying what to do: install Rust with
rustup, or install the prebuilt wheel. The hooks are maturin's own, unchanged otherwise.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import maturin

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

NO_CARGO = (
    "mixforget: building from source needs Rust >= 1.89, and cargo is not on PATH: install "
    "it with rustup (https://rustup.rs), or install the prebuilt wheel (no Rust needed: "
    "pip install dist/mixforget-*.whl, built by scripts/build-wheels)"
)


def _require_cargo() -> None:
    """Stop with :data:`NO_CARGO` when no cargo can be run."""
    cargo = os.environ.get("CARGO") or "cargo"
    if shutil.which(cargo) is None:
        raise SystemExit(NO_CARGO)


def _checked(hook: Any) -> Any:
    def run(*args: Any, **kwargs: Any) -> Any:
        _require_cargo()
        return hook(*args, **kwargs)

    run.__name__ = run.__qualname__ = hook.__name__
    run.__doc__ = hook.__doc__
    return run


build_wheel = _checked(maturin.build_wheel)
build_editable = _checked(maturin.build_editable)
build_sdist = _checked(maturin.build_sdist)
# maturin asks for a downloadable toolchain here when cargo is missing: check first
get_requires_for_build_wheel = _checked(maturin.get_requires_for_build_wheel)
get_requires_for_build_editable = _checked(maturin.get_requires_for_build_editable)
get_requires_for_build_sdist = _checked(maturin.get_requires_for_build_sdist)
prepare_metadata_for_build_wheel = _checked(maturin.prepare_metadata_for_build_wheel)
prepare_metadata_for_build_editable = _checked(maturin.prepare_metadata_for_build_editable)
