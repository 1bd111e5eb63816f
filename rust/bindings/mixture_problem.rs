//! `MixtureProblem`: a K-component training problem (`crate::mixture_engine`) built from
//! named fields, every one checked before any work (ValueError naming the argument).

use numpy::{PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::conversions::*;
use super::errors::to_py_err;
use crate::mixture_engine::{MixtureObjective, Problem, ProblemSpec, Update};
use crate::model::mixture::Cov;
use crate::objectives::Named;

/// A K-component training problem: target, model covariances, start, objective, task roles
/// and update.
#[pyclass(module = "mixforget._core", frozen)]
pub(crate) struct MixtureProblem {
    pub(crate) inner: Problem,
}

/// The covariances of argument `name`, each one named by its index when refused.
fn covs_named(
    py: Python<'_>,
    name: &str,
    arrays: &[PyReadonlyArrayDyn<'_, f64>],
    dim: usize,
) -> PyResult<Vec<Cov>> {
    arrays
        .iter()
        .enumerate()
        .map(|(j, c)| {
            cov_from_array(c, dim)
                .map_err(|e| PyValueError::new_err(format!("{name}[{j}]: {}", e.value(py))))
        })
        .collect()
}

/// The contiguous values of a (K, d) means array, its shape checked against the target's.
fn means_named<'a>(
    name: &str,
    means: &'a PyReadonlyArray2<'_, f64>,
    shape: Option<[usize; 2]>,
) -> PyResult<&'a [f64]> {
    let got = means.shape();
    if let Some([k, d]) = shape {
        if got != [k, d] {
            return Err(PyValueError::new_err(format!(
                "{name} must be (K, d) = ({k}, {d}) like target_means, got {got:?}"
            )));
        }
    }
    means
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous float64")))
}

#[pymethods]
impl MixtureProblem {
    /// Every field by name (keyword-only): the target p* (`target_weights` (K,),
    /// `target_means` (K, d), `target_covs`), the model covariances and start θ_0
    /// (`model_covs`, `start_weights` (K,), `start_means` (K, d)), the `objective` dataclass
    /// (ForwardKL, ReverseKL or KLRegularizedRL), the task roles (`new_components`,
    /// `replay_mix` over the old components), KLRegularizedRL's `label_rewards` (K entries
    /// with reward 'labels', else empty) and the update (`lr`, `lr_weight`, `lr_means`,
    /// `update`: 'sgd', 'natural' or 'sgd_full_softmax').
    #[new]
    #[pyo3(signature = (
        *,
        target_weights,
        target_means,
        target_covs,
        model_covs,
        start_weights,
        start_means,
        objective,
        new_components,
        replay_mix,
        lr,
        lr_weight,
        lr_means,
        update,
        label_rewards = Vec::new(),
    ))]
    #[allow(clippy::too_many_arguments)] // keyword-only: each one named at the call site
    fn new(
        py: Python<'_>,
        target_weights: Vec<f64>,
        target_means: PyReadonlyArray2<'_, f64>,
        target_covs: Vec<PyReadonlyArrayDyn<'_, f64>>,
        model_covs: Vec<PyReadonlyArrayDyn<'_, f64>>,
        start_weights: Vec<f64>,
        start_means: PyReadonlyArray2<'_, f64>,
        objective: &Bound<'_, PyAny>,
        new_components: Vec<i64>,
        replay_mix: Vec<f64>,
        lr: f64,
        lr_weight: f64,
        lr_means: f64,
        update: String,
        label_rewards: Vec<f64>,
    ) -> PyResult<Self> {
        let [k, d] = [target_means.shape()[0], target_means.shape()[1]];
        if k != target_weights.len() {
            return Err(PyValueError::new_err(format!(
                "target_means must have one row per target weight ({}), got {k}",
                target_weights.len()
            )));
        }
        let tm = means_named("target_means", &target_means, None)?;
        let sm = means_named("start_means", &start_means, Some([k, d]))?;
        let update = Update::from_name(&update).ok_or_else(|| {
            PyValueError::new_err(format!(
                "update must be one of {}, got {update:?}",
                Update::choices()
            ))
        })?;
        let spec = ObjectiveReader { obj: objective }.spec()?;
        let objective = MixtureObjective::from_spec(&spec).map_err(to_py_err)?;
        let inner = Problem::new(ProblemSpec {
            dim: d,
            target_weights: &target_weights,
            target_means: tm,
            target_covs: covs_named(py, "target_covs", &target_covs, d)?,
            model_covs: covs_named(py, "model_covs", &model_covs, d)?,
            start_weights: &start_weights,
            start_means: sm,
            objective,
            new_components: &new_components,
            replay_mix: &replay_mix,
            label_rewards: &label_rewards,
            lr,
            lr_weight,
            lr_means,
            update,
        })
        .map_err(to_py_err)?;
        Ok(MixtureProblem { inner })
    }

    /// d, the dimension of the sample space.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim
    }

    /// K, the number of components.
    #[getter]
    fn n_components(&self) -> usize {
        self.inner.k
    }

    /// P = (K − 1) + K d, the entries of θ and of one gradient.
    #[getter]
    fn width(&self) -> usize {
        self.inner.width()
    }
}
