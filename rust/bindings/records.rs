//! The records of a chunk of steps, as Python receives them: a [`RecordChunk`] with one named
//! array per recorded quantity (replicates × records leading).

use numpy::{IntoPyArray, PyArray2, PyArray3, PyArrayMethods};
use pyo3::prelude::*;

use crate::buffers::try_zeroed;
use crate::engine::training::Records;
use crate::error::KernelResult;

/// The records of one `advance` call: R replicates × n records (R = 1 for the population
/// flow), at the absolute step counts that are multiples of `record_every`.
#[pyclass(module = "mixforget._core", frozen, get_all)]
pub(crate) struct RecordChunk {
    /// (R, n) old weight α.
    weight: Py<PyArray2<f64>>,
    /// (R, n, d) old mean μ_o.
    old_mean: Py<PyArray3<f64>>,
    /// (R, n, d) new mean μ_n.
    new_mean: Py<PyArray3<f64>>,
    /// (R, n) cumulative count of starved batches (no old-labelled sample).
    starved: Py<PyArray2<i64>>,
    /// (R, n, 2) component scales (σ_o, σ_n).
    scale: Py<PyArray3<f64>>,
}

/// The kernels' record buffers of a chunk, filled without the GIL.
pub(crate) struct RecordBuffers {
    weight: Vec<f64>,
    old: Vec<f64>,
    new: Vec<f64>,
    starved: Vec<i64>,
    scale: Vec<f64>,
    shape: (usize, usize, usize),
}

impl RecordBuffers {
    pub(crate) fn new(replicates: usize, n_rec: usize, d: usize) -> KernelResult<Self> {
        let what = "the records";
        Ok(RecordBuffers {
            weight: try_zeroed(&[replicates, n_rec], what)?,
            old: try_zeroed(&[replicates, n_rec, d], what)?,
            new: try_zeroed(&[replicates, n_rec, d], what)?,
            starved: try_zeroed(&[replicates, n_rec], what)?,
            scale: try_zeroed(&[replicates, n_rec, 2], what)?,
            shape: (replicates, n_rec, d),
        })
    }

    pub(crate) fn records(&mut self) -> Records<'_> {
        Records {
            weight: &mut self.weight,
            old: &mut self.old,
            new: &mut self.new,
            starved: &mut self.starved,
            scale: &mut self.scale,
        }
    }

    pub(crate) fn into_chunk(self, py: Python<'_>) -> PyResult<RecordChunk> {
        let (r, n, d) = self.shape;
        Ok(RecordChunk {
            weight: self.weight.into_pyarray(py).reshape([r, n])?.unbind(),
            old_mean: self.old.into_pyarray(py).reshape([r, n, d])?.unbind(),
            new_mean: self.new.into_pyarray(py).reshape([r, n, d])?.unbind(),
            starved: self.starved.into_pyarray(py).reshape([r, n])?.unbind(),
            scale: self.scale.into_pyarray(py).reshape([r, n, 2])?.unbind(),
        })
    }
}
