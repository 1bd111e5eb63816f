//! Functions of a training problem: the one-step gradient study and the replay importance
//! weights.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::conversions::*;
use super::pools::*;
use super::problem::*;
use crate::buffers::try_zeroed;
use crate::model::mixture;
use crate::objectives::{Objective, ObjectiveSpec};

/// estimate_gradient(problem, batch_size, batches, key, threads, first_stream=0)
/// -> (gradients (batches, 1+2d [+2 scale entries]), old counts): the c-th run of BATCHES_PER_STREAM batches
/// uses stream (key, first_stream + c), so a study cut at multiples of BATCHES_PER_STREAM
/// reproduces one call.
#[pyfunction]
#[pyo3(signature = (problem, batch_size, batches, key, threads, first_stream=0))]
#[allow(clippy::type_complexity)]
pub(crate) fn estimate_gradient<'py>(
    py: Python<'py>,
    problem: &TrainingProblem,
    batch_size: usize,
    batches: usize,
    key: (u64, u64),
    threads: usize,
    first_stream: u64,
) -> PyResult<(Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<i64>>)> {
    if batch_size == 0 {
        return Err(PyValueError::new_err("batch_size must be >= 1"));
    }
    let p = &problem.inner;
    let width = p.grad_width();
    let (grads, counts) = run(py, threads, || {
        let mut grads = try_zeroed(&[batches, width], "the gradient estimates")?;
        let mut counts = try_zeroed(&[batches], "the old counts")?;
        crate::engine::training::estimate_gradient(
            p,
            batch_size,
            [key.0, key.1],
            first_stream,
            &mut grads,
            &mut counts,
        )?;
        Ok((grads, counts))
    })?;
    Ok((
        grads.into_pyarray(py).reshape([batches, width])?,
        counts.into_pyarray(py),
    ))
}

/// replay_weights(problem, x, threads) -> (n,) the bounded importance weights min(c, q/m)
/// of the problem's ReverseKL objective at the start model, for points x (n, d).
#[pyfunction]
pub(crate) fn replay_weights<'py>(
    py: Python<'py>,
    problem: &TrainingProblem,
    x: PyReadonlyArray2<'py, f64>,
    threads: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let p = &problem.inner;
    let objective = match p.objective {
        ObjectiveSpec::ReverseKL(o) => o,
        _ => {
            return Err(PyValueError::new_err(
                "replay_weights needs a ReverseKL objective",
            ))
        }
    };
    let (replay, cap) = (objective.replay().0, objective.cap());
    let xs = points(&x, p.dim)?;
    let models = p.models_at(&objective, &p.new_replicate([0, 0], 0));
    let out = run(py, threads, || {
        use rayon::prelude::*;
        let mut out = try_zeroed(&[xs.len() / p.dim], "the replay weights")?;
        out.par_chunks_mut(mixture::CHUNK)
            .zip(xs.par_chunks(mixture::CHUNK * p.dim))
            .for_each(|(o, xc)| {
                let mut scratch = vec![0.0; p.dim];
                for (w, x) in o.iter_mut().zip(xc.chunks(p.dim)) {
                    let log_q = models.model.logpdf(x, &mut scratch);
                    *w = if replay > 0.0 {
                        crate::objectives::reverse_kl::replay_weight(
                            log_q,
                            models.target.old.logpdf(x, &mut scratch),
                            replay,
                            cap,
                        )
                    } else {
                        1.0f64.min(cap)
                    };
                }
            });
        Ok(out)
    })?;
    Ok(out.into_pyarray(py))
}
