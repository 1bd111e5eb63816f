//! `PopulationFlow` (the infinite-batch flow) and the exact population gradient.

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

use super::pools::*;
use super::problem::*;
use super::records::{RecordBuffers, RecordChunk};
use super::simulator::check_chunk;
use crate::population;

/// The population flow (exact gradients), advanced call by call; call `advance` chunk by
/// chunk.
#[pyclass(module = "mixforget._core")]
pub(crate) struct PopulationFlow {
    inner: population::Flow,
}

#[pymethods]
impl PopulationFlow {
    #[new]
    fn new(problem: &TrainingProblem) -> Self {
        PopulationFlow {
            inner: population::Flow::new(problem.inner.clone()),
        }
    }

    /// Advance by `steps` >= 1; returns the records at the absolute step counts in
    /// (steps_done, steps_done + steps] that are multiples of `record_every` (old weight
    /// (1, n), old mean (1, n, d), new mean (1, n, d), starved (1, n), all 0).
    fn advance<'py>(
        &mut self,
        py: Python<'py>,
        steps: u64,
        record_every: u64,
    ) -> PyResult<RecordChunk> {
        check_chunk(self.inner.steps_done(), steps, record_every)?;
        let d = self.inner.problem.dim;
        let n_rec =
            crate::engine::training::records_in(self.inner.steps_done(), steps, record_every);
        let flow = &mut self.inner;
        let buf = run(py, 0, || {
            let mut buf = RecordBuffers::new(1, n_rec, d)?;
            flow.advance(steps, record_every, buf.records())?;
            Ok(buf)
        })?;
        buf.into_chunk(py)
    }

    /// Steps run so far.
    #[getter]
    fn steps_done(&self) -> u64 {
        self.inner.steps_done()
    }

    /// Whether the flow stopped: a non-finite parameter or the runaway bound.
    fn diverged(&self) -> bool {
        self.inner.rep.diverged
    }
}

/// population_gradient(problem) -> (1 + 2d [+ 2],) exact gradient at the start state (the two
/// scale entries when scales train).
#[pyfunction]
pub(crate) fn population_gradient<'py>(
    py: Python<'py>,
    problem: &TrainingProblem,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let p = &problem.inner;
    let out = run(py, 0, || {
        let g = population::exact_gradient(p, &p.new_replicate([0, 0], 0))?;
        let mut flat = vec![0.0; p.grad_width()];
        g.write_flat(&mut flat);
        Ok(flat)
    })?;
    Ok(out.into_pyarray(py))
}
