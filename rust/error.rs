//! The kernels' error type: what went wrong, as a kind the bindings map to a Python exception
//! (`bindings::errors`), with the message shown to the user. Kept free of pyo3, like every
//! kernel.

use std::fmt;

/// Why a kernel refused or failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// An argument the kernel cannot work with (ValueError).
    InvalidArgument(String),
    /// A buffer whose size came from the user could not be allocated (MemoryError).
    OutOfMemory(String),
    /// A combination the kernels do not implement (NotImplementedError).
    NotImplemented(String),
}

/// The result of a fallible kernel.
pub type KernelResult<T> = Result<T, KernelError>;

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::InvalidArgument(m)
            | KernelError::OutOfMemory(m)
            | KernelError::NotImplemented(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for KernelError {}

/// A bare message is an invalid argument.
impl From<String> for KernelError {
    fn from(message: String) -> Self {
        KernelError::InvalidArgument(message)
    }
}

impl From<&str> for KernelError {
    fn from(message: &str) -> Self {
        KernelError::InvalidArgument(message.to_string())
    }
}
