//! `TrainingProblem`: a training problem built from named fields.

use numpy::{PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::conversions::*;
use crate::engine::problem::{Problem, Scales};
use crate::model::mixture::Gaussian;
use crate::model::params::{Params, ScaleParam, WeightParam};
use crate::model::two_mode::Mix2;

/// A training problem: target, model covariances, start, objective and update settings.
#[pyclass(module = "mixforget._core", frozen)]
pub(crate) struct TrainingProblem {
    pub(crate) inner: Problem,
}

#[pymethods]
impl TrainingProblem {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        target_weight: f64,
        target_means: PyReadonlyArray2<'_, f64>,
        target_covs: Vec<PyReadonlyArrayDyn<'_, f64>>,
        model_covs: Vec<PyReadonlyArrayDyn<'_, f64>>,
        start_weight: f64,
        start_means: PyReadonlyArray2<'_, f64>,
        objective: &Bound<'_, PyAny>,
        weight_param: &str,
        lr: f64,
        lr_scale: (f64, f64, f64),
        train_scales: bool,
        scale_param: &str,
        scale_lr_scale: (f64, f64),
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
        let wp = match weight_param {
            "logit" => WeightParam::Logit,
            "direct" => WeightParam::Direct,
            other => {
                return Err(PyValueError::new_err(format!(
                    "weight_param must be 'logit' or 'direct', got {other:?}"
                )))
            }
        };
        let scale_param = match scale_param {
            "direct" => ScaleParam::Direct,
            "log" => ScaleParam::Log,
            other => {
                return Err(PyValueError::new_err(format!(
                    "scale_param must be 'direct' or 'log', got {other:?}"
                )))
            }
        };
        let objective = ObjectiveReader { obj: objective }.spec()?;
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
                lr_scale: [scale_lr_scale.0, scale_lr_scale.1],
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
            lr_scale: [lr_scale.0, lr_scale.1, lr_scale.2],
            scales,
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
