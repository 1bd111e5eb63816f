//! Typed conversions between Python values and the kernels' types: covariances, mixtures,
//! point arrays, objectives (read by attribute name into an [`ObjectiveSpec`]) and back.

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};

use crate::model::mixture::{Cov, Gaussian, Mixture};
use crate::model::params::{ScaleParam, WeightParam};
use crate::objectives::{
    Beta, ForwardKL, KLRegularizedRL, Named, NewModeREINFORCE, ObjectiveSpec, ReverseKL, Reward,
    TTTDiscover, OAPL, SDFT,
};

pub(crate) fn cov_from_array(c: &PyReadonlyArrayDyn<'_, f64>, dim: usize) -> PyResult<Cov> {
    let data = c
        .as_slice()
        .map_err(|_| PyValueError::new_err("covariance arrays must be C-contiguous float64"))?;
    let res = match c.ndim() {
        0 => Cov::scalar(data[0]),
        1 if data.len() == dim => Cov::diag(data),
        2 if data.len() == dim * dim => Cov::full(data, dim),
        _ => Err(format!("covariance must be a scalar, ({dim},) or ({dim}, {dim})").into()),
    };
    res.map_err(|e| PyValueError::new_err(format!("covs: {e}")))
}

pub(crate) fn mixture_from(
    weights: &PyReadonlyArray1<'_, f64>,
    means: &PyReadonlyArray2<'_, f64>,
    covs: &[PyReadonlyArrayDyn<'_, f64>],
) -> PyResult<Mixture> {
    let w = weights
        .as_slice()
        .map_err(|_| PyValueError::new_err("weights must be contiguous"))?;
    let shape = means.shape();
    let (k, d) = (shape[0], shape[1]);
    if w.len() != k || covs.len() != k || k == 0 || d == 0 {
        return Err(PyValueError::new_err(format!(
            "weights ({}), means ({k}, {d}) and covs ({}) must describe the same K >= 1 components",
            w.len(),
            covs.len()
        )));
    }
    let m = means
        .as_slice()
        .map_err(|_| PyValueError::new_err("means must be C-contiguous"))?;
    let comps = (0..k)
        .map(|i| {
            Ok(Gaussian::new(
                m[i * d..(i + 1) * d].to_vec(),
                cov_from_array(&covs[i], d)?,
            ))
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Mixture::new(w, comps))
}

pub(crate) fn points<'a>(x: &'a PyReadonlyArray2<'_, f64>, d: usize) -> PyResult<&'a [f64]> {
    if x.shape()[1] != d {
        return Err(PyValueError::new_err(format!(
            "x must have {d} columns, got {}",
            x.shape()[1]
        )));
    }
    x.as_slice()
        .map_err(|_| PyValueError::new_err("x must be C-contiguous float64"))
}

/// Typed extraction of an objective of python/mixforget/objectives.py, read by attribute name
/// (the frozen dataclasses stay the one user-facing definition; duck-typed objects work
/// too). The `kind` attribute picks the objective; every field is checked here again, so a
/// value that bypassed the dataclass validation is refused with a ValueError naming it.
pub(crate) struct ObjectiveReader<'a, 'py> {
    pub(crate) obj: &'a Bound<'py, PyAny>,
}

impl<'py> ObjectiveReader<'_, 'py> {
    pub(crate) fn attr(&self, name: &str) -> PyResult<Bound<'py, PyAny>> {
        self.obj.getattr(name).map_err(|_| {
            PyValueError::new_err(format!(
                "objective.{name} is missing (got an object of type {})",
                type_name(self.obj)
            ))
        })
    }

    pub(crate) fn bad(&self, name: &str, allowed: &str, value: &Bound<'py, PyAny>) -> PyErr {
        let shown = value
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "<unprintable>".into());
        PyValueError::new_err(format!("objective.{name} must be {allowed}, got {shown}"))
    }

    /// A real number (not a bool or a string) with `ok(value)`.
    pub(crate) fn number(
        &self,
        name: &str,
        allowed: &str,
        ok: impl Fn(f64) -> bool,
    ) -> PyResult<f64> {
        let value = self.attr(name)?;
        self.number_from(name, allowed, ok, &value)
    }

    pub(crate) fn number_from(
        &self,
        name: &str,
        allowed: &str,
        ok: impl Fn(f64) -> bool,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<f64> {
        if value.is_instance_of::<PyBool>() || value.is_instance_of::<PyString>() {
            return Err(self.bad(name, allowed, value));
        }
        match value.extract::<f64>() {
            Ok(v) if v.is_finite() && ok(v) => Ok(v),
            _ => Err(self.bad(name, allowed, value)),
        }
    }

    pub(crate) fn positive(&self, name: &str) -> PyResult<f64> {
        self.number(name, "a finite number > 0", |v| v > 0.0)
    }

    /// One of the names of `E`.
    pub(crate) fn choice<E: Named>(&self, name: &str) -> PyResult<E> {
        let value = self.attr(name)?;
        value
            .extract::<String>()
            .ok()
            .and_then(|s| E::from_name(&s))
            .ok_or_else(|| self.bad(name, &format!("one of {}", E::choices()), &value))
    }

    pub(crate) fn replay(&self) -> PyResult<f64> {
        self.number("replay", "a finite number in [0, 1)", |v| {
            (0.0..1.0).contains(&v)
        })
    }

    pub(crate) fn reward(&self) -> PyResult<(Reward, f64)> {
        Ok((self.choice("reward")?, self.positive("radius")?))
    }

    /// KLRegularizedRL's fields (the cross-field rules are the dataclass's, checked again).
    fn kl_regularized_rl(&self) -> PyResult<KLRegularizedRL> {
        let real = |name: &str| self.number(name, "a finite number", |_| true);
        let o = KLRegularizedRL {
            reward: self.choice("reward")?,
            reward_old: real("reward_old")?,
            reward_new: real("reward_new")?,
            beta: self.positive("beta")?,
            reference: self.choice("reference")?,
            kl: self.choice("kl")?,
            kl_estimator: self.choice("kl_estimator")?,
            advantage: self.choice("advantage")?,
        };
        o.check_fields().map_err(|(name, allowed)| {
            self.attr(name)
                .map(|v| self.bad(name, allowed, &v))
                .unwrap_or_else(|e| e)
        })?;
        Ok(o)
    }

    pub(crate) fn spec(&self) -> PyResult<ObjectiveSpec> {
        let kind_value = self.attr("kind")?;
        let kind = kind_value.extract::<String>().unwrap_or_default();
        Ok(match kind.as_str() {
            "ForwardKL" => ObjectiveSpec::ForwardKL(ForwardKL {
                replay: self.replay()?,
                replay_slots: self.choice("replay_slots")?,
            }),
            "ReverseKL" => {
                let cap = self.attr("weight_cap")?;
                ObjectiveSpec::ReverseKL(ReverseKL {
                    replay: self.replay()?,
                    replay_slots: self.choice("replay_slots")?,
                    weight_cap: if cap.is_none() {
                        None
                    } else {
                        Some(self.number_from(
                            "weight_cap",
                            "None or a finite number > 0",
                            |v| v > 0.0,
                            &cap,
                        )?)
                    },
                    baseline: self.choice("baseline")?,
                })
            }
            "SDFT" => ObjectiveSpec::SDFT(SDFT {
                ema: self.number("ema", "a finite number in (0, 1]", |v| v > 0.0 && v <= 1.0)?,
                anchor: self.number("anchor", "a finite number in [0, 1]", |v| {
                    (0.0..=1.0).contains(&v)
                })?,
                direction: self.choice("direction")?,
            }),
            "TTTDiscover" => {
                let beta = self.attr("beta")?;
                let beta = match beta.extract::<String>() {
                    Ok(s) if s == "adaptive" => Beta::Adaptive,
                    _ => Beta::Fixed(self.number_from(
                        "beta",
                        "a finite number > 0 or 'adaptive'",
                        |v| v > 0.0,
                        &beta,
                    )?),
                };
                let (reward, radius) = self.reward()?;
                ObjectiveSpec::TTTDiscover(TTTDiscover {
                    beta,
                    kl_penalty: self.number("kl_penalty", "a finite number >= 0", |v| v >= 0.0)?,
                    reward,
                    radius,
                })
            }
            "OAPL" => {
                let lag = self.attr("lag")?;
                let lag = match lag.extract::<i64>() {
                    Ok(v) if v >= 1 && !lag.is_instance_of::<PyBool>() => v as usize,
                    _ => return Err(self.bad("lag", "an integer >= 1", &lag)),
                };
                let (reward, radius) = self.reward()?;
                ObjectiveSpec::OAPL(OAPL {
                    beta1: self.positive("beta1")?,
                    beta2: self.positive("beta2")?,
                    lag,
                    reward,
                    radius,
                })
            }
            "NewModeREINFORCE" => ObjectiveSpec::NewModeREINFORCE(NewModeREINFORCE {
                beta: self.positive("beta")?,
                advantage: self.choice("advantage")?,
            }),
            "KLRegularizedRL" => ObjectiveSpec::KLRegularizedRL(self.kl_regularized_rl()?),
            _ => {
                let kinds: Vec<String> = ObjectiveSpec::KINDS
                    .iter()
                    .map(|k| format!("'{k}'"))
                    .collect();
                return Err(self.bad(
                    "kind",
                    &format!("one of [{}]", kinds.join(", ")),
                    &kind_value,
                ));
            }
        })
    }
}

pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The objective's fields as Python sees them: {"kind": class name, **fields}, the form of
/// `Objective.as_dict()` (the round trip of the binding is tested against it).
pub(crate) fn objective_dict<'py>(
    py: Python<'py>,
    spec: &ObjectiveSpec,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("kind", spec.kind())?;
    match spec {
        ObjectiveSpec::ForwardKL(o) => {
            d.set_item("replay", o.replay)?;
            d.set_item("replay_slots", o.replay_slots.name())?;
        }
        ObjectiveSpec::ReverseKL(o) => {
            d.set_item("replay", o.replay)?;
            d.set_item("replay_slots", o.replay_slots.name())?;
            d.set_item("weight_cap", o.weight_cap)?;
            d.set_item("baseline", o.baseline.name())?;
        }
        ObjectiveSpec::SDFT(o) => {
            d.set_item("ema", o.ema)?;
            d.set_item("anchor", o.anchor)?;
            d.set_item("direction", o.direction.name())?;
        }
        ObjectiveSpec::TTTDiscover(o) => {
            match o.beta {
                Beta::Fixed(b) => d.set_item("beta", b)?,
                Beta::Adaptive => d.set_item("beta", "adaptive")?,
            }
            d.set_item("kl_penalty", o.kl_penalty)?;
            d.set_item("reward", o.reward.name())?;
            d.set_item("radius", o.radius)?;
        }
        ObjectiveSpec::OAPL(o) => {
            d.set_item("beta1", o.beta1)?;
            d.set_item("beta2", o.beta2)?;
            d.set_item("lag", o.lag)?;
            d.set_item("reward", o.reward.name())?;
            d.set_item("radius", o.radius)?;
        }
        ObjectiveSpec::NewModeREINFORCE(o) => {
            d.set_item("beta", o.beta)?;
            d.set_item("advantage", o.advantage.name())?;
        }
        ObjectiveSpec::KLRegularizedRL(o) => {
            d.set_item("reward", o.reward.name())?;
            d.set_item("reward_old", o.reward_old)?;
            d.set_item("reward_new", o.reward_new)?;
            d.set_item("beta", o.beta)?;
            d.set_item("reference", o.reference.name())?;
            d.set_item("kl", o.kl.name())?;
            d.set_item("kl_estimator", o.kl_estimator.name())?;
            d.set_item("advantage", o.advantage.name())?;
        }
    }
    Ok(d)
}

/// The learning-rate multipliers per parameter group, from the dict `lr_scale` (keys
/// `weight`, `old_mean`, `new_mean`, and `old_scale`, `new_scale` when the scales train;
/// absent scale keys are 1). Each must be a finite number >= 0 (0 freezes its group).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LrScale {
    pub(crate) weight: f64,
    pub(crate) old_mean: f64,
    pub(crate) new_mean: f64,
    pub(crate) old_scale: f64,
    pub(crate) new_scale: f64,
}

impl<'a, 'py> FromPyObject<'a, 'py> for LrScale {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let dict = ob
            .cast::<PyDict>()
            .map_err(|_| PyValueError::new_err("lr_scale must be a dict"))?;
        const KEYS: [&str; 5] = ["weight", "old_mean", "new_mean", "old_scale", "new_scale"];
        for key in dict.keys() {
            let name: String = key.extract()?;
            if !KEYS.contains(&name.as_str()) {
                return Err(PyValueError::new_err(format!(
                    "lr_scale key must be one of {KEYS:?}, got {name:?}"
                )));
            }
        }
        let get = |key: &str, required: bool| -> PyResult<f64> {
            let value = match dict.get_item(key)? {
                Some(v) => v.extract::<f64>()?,
                None if required => {
                    return Err(PyValueError::new_err(format!(
                        "lr_scale needs the key {key:?}"
                    )))
                }
                None => 1.0,
            };
            if !(value.is_finite() && value >= 0.0) {
                return Err(PyValueError::new_err(format!(
                    "lr_scale[{key:?}] must be a finite number >= 0, got {value}"
                )));
            }
            Ok(value)
        };
        Ok(LrScale {
            weight: get("weight", true)?,
            old_mean: get("old_mean", true)?,
            new_mean: get("new_mean", true)?,
            old_scale: get("old_scale", false)?,
            new_scale: get("new_scale", false)?,
        })
    }
}

/// `weight_param`, from its name ('logit' or 'direct').
pub(crate) struct WeightParamArg(pub(crate) WeightParam);

impl<'a, 'py> FromPyObject<'a, 'py> for WeightParamArg {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match ob.extract::<String>()?.as_str() {
            "logit" => Ok(WeightParamArg(WeightParam::Logit)),
            "direct" => Ok(WeightParamArg(WeightParam::Direct)),
            other => Err(PyValueError::new_err(format!(
                "weight_param must be 'logit' or 'direct', got {other:?}"
            ))),
        }
    }
}

/// `scale_param`, from its name ('direct' or 'log').
pub(crate) struct ScaleParamArg(pub(crate) ScaleParam);

impl<'a, 'py> FromPyObject<'a, 'py> for ScaleParamArg {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match ob.extract::<String>()?.as_str() {
            "direct" => Ok(ScaleParamArg(ScaleParam::Direct)),
            "log" => Ok(ScaleParamArg(ScaleParam::Log)),
            other => Err(PyValueError::new_err(format!(
                "scale_param must be 'direct' or 'log', got {other:?}"
            ))),
        }
    }
}
