//! The kernels' errors as Python exceptions: one arm per [`KernelError`] kind, plus the
//! binding's own failure (a caught panic). Nothing parses messages.

use pyo3::exceptions::{PyMemoryError, PyNotImplementedError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::error::KernelError;

/// What a binding call can fail with, each kind raised as its own Python exception.
#[derive(Debug)]
pub(crate) enum BindingError {
    /// An error of a kernel.
    Kernel(KernelError),
    /// A Rust panic, caught instead of aborting the interpreter (never expected).
    Panicked,
}

impl From<KernelError> for BindingError {
    fn from(e: KernelError) -> Self {
        BindingError::Kernel(e)
    }
}

impl From<BindingError> for PyErr {
    fn from(e: BindingError) -> PyErr {
        match e {
            BindingError::Kernel(KernelError::InvalidArgument(m)) => PyValueError::new_err(m),
            BindingError::Kernel(KernelError::OutOfMemory(m)) => PyMemoryError::new_err(m),
            BindingError::Kernel(KernelError::NotImplemented(m)) => {
                PyNotImplementedError::new_err(m)
            }
            BindingError::Panicked => PyRuntimeError::new_err(
                "internal error in the mixforget kernel (a Rust panic was caught); please report it",
            ),
        }
    }
}

/// A kernel error as its Python exception.
pub(crate) fn to_py_err(e: KernelError) -> PyErr {
    BindingError::Kernel(e).into()
}
