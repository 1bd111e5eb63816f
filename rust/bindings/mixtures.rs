//! Functions on mixtures and batches that need no training problem: responsibilities, log
//! densities, sampling and starvation counts.

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::conversions::*;
use super::pools::*;
use crate::buffers::try_zeroed;
use crate::random::starvation;
use crate::random::starvation::Slots;

/// responsibilities(x, weights, means, covs, threads) -> (n, K)
#[pyfunction]
pub(crate) fn responsibilities<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    weights: PyReadonlyArray1<'py, f64>,
    means: PyReadonlyArray2<'py, f64>,
    covs: Vec<PyReadonlyArrayDyn<'py, f64>>,
    threads: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let mix = mixture_from(&weights, &means, &covs)?;
    let xs = points(&x, mix.dim())?;
    let (n, k) = (x.shape()[0], mix.components.len());
    let out = run(py, threads, || {
        let mut out = try_zeroed(&[n, k], "the responsibilities")?;
        mix.responsibilities(xs, &mut out);
        Ok(out)
    })?;
    out.into_pyarray(py).reshape([n, k])
}

/// mixture_logpdf(x, weights, means, covs, threads) -> (n,)
#[pyfunction]
pub(crate) fn mixture_logpdf<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    weights: PyReadonlyArray1<'py, f64>,
    means: PyReadonlyArray2<'py, f64>,
    covs: Vec<PyReadonlyArrayDyn<'py, f64>>,
    threads: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let mix = mixture_from(&weights, &means, &covs)?;
    let xs = points(&x, mix.dim())?;
    let n = x.shape()[0];
    let out = run(py, threads, || {
        let mut out = try_zeroed(&[n], "the log densities")?;
        mix.logpdf_many(xs, &mut out);
        Ok(out)
    })?;
    Ok(out.into_pyarray(py))
}

/// sample_mixture(n, weights, means, covs, key, threads, first_stream=0)
/// -> (x (n, d), labels (n,)); the c-th run of SAMPLES_PER_STREAM points uses stream
/// (key, first_stream + c).
#[pyfunction]
#[pyo3(signature = (n, weights, means, covs, key, threads, first_stream=0))]
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub(crate) fn sample_mixture<'py>(
    py: Python<'py>,
    n: usize,
    weights: PyReadonlyArray1<'py, f64>,
    means: PyReadonlyArray2<'py, f64>,
    covs: Vec<PyReadonlyArrayDyn<'py, f64>>,
    key: (u64, u64),
    threads: usize,
    first_stream: u64,
) -> PyResult<(Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<i64>>)> {
    let mix = mixture_from(&weights, &means, &covs)?;
    let d = mix.dim();
    let (x, labels) = run(py, threads, || {
        let mut x = try_zeroed(&[n, d], "the samples")?;
        let mut labels = try_zeroed(&[n], "the sample labels")?;
        mix.sample([key.0, key.1], first_stream, &mut x, &mut labels);
        Ok((x, labels))
    })?;
    Ok((x.into_pyarray(py).reshape([n, d])?, labels.into_pyarray(py)))
}

/// starvation_counts(old_weight, batch_size, batches, replay, stratified, key, threads,
/// first_stream=0) -> (batches,); the c-th run of SAMPLES_PER_STREAM batches uses stream
/// (key, first_stream + c).
#[pyfunction]
#[pyo3(signature = (old_weight, batch_size, batches, replay, stratified, key, threads, first_stream=0))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn starvation_counts<'py>(
    py: Python<'py>,
    old_weight: f64,
    batch_size: usize,
    batches: usize,
    replay: f64,
    stratified: bool,
    key: (u64, u64),
    threads: usize,
    first_stream: u64,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let slots = if stratified {
        Slots::Stratified
    } else {
        Slots::Bernoulli
    };
    let out = run(py, threads, || {
        let mut out = try_zeroed(&[batches], "the starvation counts")?;
        starvation::starvation_counts(
            old_weight,
            batch_size,
            replay,
            slots,
            [key.0, key.1],
            first_stream,
            &mut out,
        )?;
        Ok(out)
    })?;
    Ok(out.into_pyarray(py))
}
