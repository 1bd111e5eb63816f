//! `MixtureSimulator` (finite-batch training of many replicates of a K-component problem),
//! its records (`MixtureRecordChunk`) and the one-step study `mixture_estimate_gradient`.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArray3, PyArray4, PyArrayMethods};
use pyo3::prelude::*;

use super::errors::*;
use super::mixture_problem::MixtureProblem;
use super::pools::*;
use super::simulator::check_chunk;
use crate::buffers::try_zeroed;
use crate::engine::training::records_in;
use crate::mixture_engine::{estimate_gradient, MixtureRecords, Simulation};

/// The records of one `advance` call: R replicates × n records, at the absolute step counts
/// that are multiples of `record_every`.
#[pyclass(module = "mixforget._core", frozen, get_all)]
pub(crate) struct MixtureRecordChunk {
    /// (R, n, K) component weights w_j.
    weights: Py<PyArray3<f64>>,
    /// (R, n, K, d) component means μ_j.
    means: Py<PyArray4<f64>>,
    /// (R, n, K) cumulative count of batches without a sample of component j.
    starved: Py<PyArray3<i64>>,
}

/// Finite-batch training of many K-component replicates; call `advance` chunk by chunk.
#[pyclass(module = "mixforget._core")]
pub(crate) struct MixtureSimulator {
    inner: Simulation,
    threads: usize,
}

#[pymethods]
impl MixtureSimulator {
    #[new]
    fn new(
        problem: &MixtureProblem,
        batch_size: usize,
        replicates: usize,
        key: (u64, u64),
        threads: usize,
    ) -> PyResult<Self> {
        let inner = Simulation::new(
            problem.inner.clone(),
            batch_size,
            replicates,
            [key.0, key.1],
        )
        .map_err(to_py_err)?;
        Ok(MixtureSimulator { inner, threads })
    }

    /// Advance all replicates by `steps` >= 1; the records at the absolute step counts in
    /// (steps_done, steps_done + steps] that are multiples of `record_every`.
    fn advance(
        &mut self,
        py: Python<'_>,
        steps: u64,
        record_every: u64,
    ) -> PyResult<MixtureRecordChunk> {
        let done = self.inner.steps_done;
        check_chunk(done, steps, record_every)?;
        let (r, k, d) = (
            self.inner.replicates.len(),
            self.inner.problem.k,
            self.inner.problem.dim,
        );
        let n = records_in(done, steps, record_every);
        let sim = &mut self.inner;
        let (weights, means, starved) = run(py, self.threads, || {
            let what = "the records";
            let mut weights = try_zeroed(&[r, n, k], what)?;
            let mut means = try_zeroed(&[r, n, k, d], what)?;
            let mut starved = try_zeroed(&[r, n, k], what)?;
            sim.advance(
                steps,
                record_every,
                MixtureRecords {
                    weights: &mut weights,
                    means: &mut means,
                    starved: &mut starved,
                },
            )?;
            Ok((weights, means, starved))
        })?;
        Ok(MixtureRecordChunk {
            weights: weights.into_pyarray(py).reshape([r, n, k])?.unbind(),
            means: means.into_pyarray(py).reshape([r, n, k, d])?.unbind(),
            starved: starved.into_pyarray(py).reshape([r, n, k])?.unbind(),
        })
    }

    /// Steps run so far.
    #[getter]
    fn steps_done(&self) -> u64 {
        self.inner.steps_done
    }

    /// (R,) bool: replicates stopped because θ became non-finite or left the runaway bound
    /// (RUNAWAY_DISTANCE, RUNAWAY_WEIGHT).
    fn diverged<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<bool>> {
        self.inner.diverged().into_pyarray(py)
    }
}

/// mixture_estimate_gradient(problem, batch_size, replicates, key, threads) -> (grads (R, P),
/// starved (R, K), old_count (R,)): row r the one-step finite-batch ĝ at the start from stream
/// (key, r) (replicate r's first batch in a MixtureSimulator with the same key), P = (K−1) + K d
/// in the flat order [η_0 … η_{K−2}, μ_0 … μ_{K−1}]; starved[r, j] when the batch has no sample
/// labelled j; old_count the samples labelled with an old component.
#[pyfunction]
pub(crate) fn mixture_estimate_gradient<'py>(
    py: Python<'py>,
    problem: &MixtureProblem,
    batch_size: usize,
    replicates: usize,
    key: (u64, u64),
    threads: usize,
) -> PyResult<GradientStudy<'py>> {
    let p = &problem.inner;
    let (width, k) = (p.width(), p.k);
    let (grads, starved, old_counts) = run(py, threads, || {
        let mut grads = try_zeroed(&[replicates, width], "the gradient estimates")?;
        let mut starved = try_zeroed(&[replicates, k], "the starved flags")?;
        let mut old_counts = try_zeroed(&[replicates], "the old-sample counts")?;
        estimate_gradient(
            p,
            batch_size,
            [key.0, key.1],
            &mut grads,
            &mut starved,
            &mut old_counts,
        )?;
        Ok((grads, starved, old_counts))
    })?;
    Ok((
        grads.into_pyarray(py).reshape([replicates, width])?,
        starved.into_pyarray(py).reshape([replicates, k])?,
        old_counts.into_pyarray(py),
    ))
}

/// The arrays of `mixture_estimate_gradient`: gradients, starved flags, old-sample counts.
type GradientStudy<'py> = (
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray2<bool>>,
    Bound<'py, PyArray1<i64>>,
);
