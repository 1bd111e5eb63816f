//! The kernels' errors as Python exceptions.

use pyo3::exceptions::{PyMemoryError, PyNotImplementedError, PyValueError};
use pyo3::prelude::*;

use crate::buffers::{self};

pub(crate) fn to_py_err(msg: String) -> PyErr {
    if let Some(rest) = msg.strip_prefix(buffers::MEMORY_ERROR) {
        return PyMemoryError::new_err(rest.to_string());
    }
    match msg.strip_prefix("NotImplemented: ") {
        Some(rest) => PyNotImplementedError::new_err(rest.to_string()),
        None => PyValueError::new_err(msg),
    }
}
