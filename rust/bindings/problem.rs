//! `TrainingProblem`: a training problem built from named fields.

use numpy::{PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::conversions::*;
use crate::engine::problem::{Problem, Scales, Update};
use crate::model::mixture::Gaussian;
use crate::model::params::Params;
use crate::model::two_mode::Mix2;
use crate::objectives::{with_objective, Objective};

/// A training problem: target, model covariances, start, objective and update settings.
#[pyclass(module = "mixforget._core", frozen)]
pub(crate) struct TrainingProblem {
    pub(crate) inner: Problem,
}

#[pymethods]
impl TrainingProblem {
    /// Every field by name (keyword-only): the target p* (`target_weight`, `target_means`
    /// (2, d), `target_covs`), the model covariances and start state θ_0 (`model_covs`,
    /// `start_weight`, `start_means` (2, d)), the `objective` dataclass, and the update:
    /// `weight_param`, `lr`, `lr_scale` (the dict of learning-rate multipliers per group,
    /// [`LrScale`]), `train_scales`, `scale_param` and `update` ('sgd', the default, or
    /// 'natural').
    #[new]
    #[pyo3(signature = (
        *,
        target_weight,
        target_means,
        target_covs,
        model_covs,
        start_weight,
        start_means,
        objective,
        weight_param,
        lr,
        lr_scale,
        train_scales,
        scale_param,
        update = UpdateArg(Update::Sgd),
    ))]
    #[allow(clippy::too_many_arguments)] // keyword-only: each one named at the call site
    fn new(
        target_weight: f64,
        target_means: PyReadonlyArray2<'_, f64>,
        target_covs: Vec<PyReadonlyArrayDyn<'_, f64>>,
        model_covs: Vec<PyReadonlyArrayDyn<'_, f64>>,
        start_weight: f64,
        start_means: PyReadonlyArray2<'_, f64>,
        objective: &Bound<'_, PyAny>,
        weight_param: WeightParamArg,
        lr: f64,
        lr_scale: LrScale,
        train_scales: bool,
        scale_param: ScaleParamArg,
        update: UpdateArg,
    ) -> PyResult<Self> {
        let shape = target_means.shape();
        if shape[0] != 2
            || start_means.shape() != shape
            || target_covs.len() != 2
            || model_covs.len() != 2
        {
            return Err(PyValueError::new_err(
                "target_means and start_means must both be (2, d), with two covariances each",
            ));
        }
        let d = shape[1];
        let tm = target_means
            .as_slice()
            .map_err(|_| PyValueError::new_err("target_means must be contiguous"))?;
        let sm = start_means
            .as_slice()
            .map_err(|_| PyValueError::new_err("start_means must be contiguous"))?;
        for (name, a) in [
            ("target_weight", target_weight),
            ("start_weight", start_weight),
        ] {
            if !(a > 0.0 && a < 1.0) {
                return Err(PyValueError::new_err(format!(
                    "{name} must be in (0, 1), got {a}"
                )));
            }
        }
        if !(lr.is_finite() && lr > 0.0) {
            return Err(PyValueError::new_err(format!("lr must be > 0, got {lr}")));
        }
        let wp = weight_param.0;
        let scale_param = scale_param.0;
        let objective = ObjectiveReader { obj: objective }.spec()?;
        with_objective!(objective, o => o.check_dimension(d)).map_err(PyValueError::new_err)?;
        let target = Mix2::new(
            target_weight,
            Gaussian::new(tm[..d].to_vec(), cov_from_array(&target_covs[0], d)?),
            Gaussian::new(tm[d..].to_vec(), cov_from_array(&target_covs[1], d)?),
        );
        let model_old_cov = cov_from_array(&model_covs[0], d)?;
        let model_new_cov = cov_from_array(&model_covs[1], d)?;
        // σ_k = det(Σ_k)^{1/(2d)}; S_k = Σ_k / σ_k² (unit determinant).
        let sd = [model_old_cov.scale(d), model_new_cov.scale(d)];
        let mut start = Params::from_alpha(start_weight, sm[..d].to_vec(), sm[d..].to_vec(), wp);
        let scales = if train_scales {
            start.scale = sd.map(|s| scale_param.value(s));
            Some(Scales {
                param: scale_param,
                lr_scale: [lr_scale.old_scale, lr_scale.new_scale],
                shape: [
                    model_old_cov.scaled(1.0 / sd[0]),
                    model_new_cov.scaled(1.0 / sd[1]),
                ],
            })
        } else {
            start.scale = sd;
            None
        };
        let inner = Problem {
            dim: d,
            target,
            model_old_cov,
            model_new_cov,
            start,
            objective,
            weight_param: wp,
            lr,
            lr_scale: [lr_scale.weight, lr_scale.old_mean, lr_scale.new_mean],
            scales,
            update: update.0,
        };
        Ok(TrainingProblem { inner })
    }

    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim
    }

    /// The objective as the kernels received it, in the form of `Objective.as_dict()`.
    fn objective_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        objective_dict(py, &self.inner.objective)
    }
}
