//! `Simulator` (finite-batch training of many replicates) and the named records a chunk of
//! steps returns.

use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::errors::*;
use super::pools::*;
use super::problem::*;
use super::records::{RecordBuffers, RecordChunk};
use crate::engine::training::Simulation;

/// Finite-batch training of many replicates; call `advance` chunk by chunk.
#[pyclass(module = "mixforget._core")]
pub(crate) struct Simulator {
    inner: Simulation,
    threads: usize,
}

#[pymethods]
impl Simulator {
    #[new]
    fn new(
        problem: &TrainingProblem,
        batch_size: usize,
        replicates: usize,
        key: (u64, u64),
        threads: usize,
    ) -> PyResult<Self> {
        if batch_size == 0 || replicates == 0 {
            return Err(PyValueError::new_err(
                "batch_size and replicates must be >= 1",
            ));
        }
        let inner = Simulation::new(
            problem.inner.clone(),
            batch_size,
            replicates,
            [key.0, key.1],
        )
        .map_err(to_py_err)?;
        Ok(Simulator { inner, threads })
    }

    /// Advance all replicates by `steps` >= 1; returns the records (a [`RecordChunk`]) at
    /// the absolute step counts in (steps_done, steps_done + steps] that are multiples of
    /// `record_every`, so a run cut into calls of any length records the same.
    fn advance<'py>(
        &mut self,
        py: Python<'py>,
        steps: u64,
        record_every: u64,
    ) -> PyResult<RecordChunk> {
        check_chunk(self.inner.steps_done, steps, record_every)?;
        let (r, d, n_rec) = (
            self.inner.replicates.len(),
            self.inner.problem.dim,
            self.inner.records_in(steps, record_every),
        );
        let sim = &mut self.inner;
        let buffers = run(py, self.threads, || {
            let mut buf = RecordBuffers::new(r, n_rec, d)?;
            sim.advance(steps, record_every, buf.records())?;
            Ok(buf)
        })?;
        buffers.into_chunk(py)
    }

    /// Steps run so far.
    #[getter]
    fn steps_done(&self) -> u64 {
        self.inner.steps_done
    }

    /// (R,) bool: replicates stopped because a parameter became non-finite or left the
    /// runaway bound (RUNAWAY_DISTANCE, RUNAWAY_WEIGHT).
    fn diverged<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<bool>> {
        self.inner
            .replicates
            .iter()
            .map(|r| r.diverged)
            .collect::<Vec<_>>()
            .into_pyarray(py)
    }
}

/// A chunk of `steps` after `done`: both sizes >= 1 and the step count representable.
pub(crate) fn check_chunk(done: u64, steps: u64, record_every: u64) -> PyResult<()> {
    if steps == 0 || record_every == 0 {
        return Err(PyValueError::new_err(format!(
            "steps and record_every must be >= 1, got steps={steps}, record_every={record_every}"
        )));
    }
    if done.checked_add(steps).is_none() {
        return Err(PyValueError::new_err(format!(
            "steps={steps} after {done} steps overflows the step count"
        )));
    }
    Ok(())
}
