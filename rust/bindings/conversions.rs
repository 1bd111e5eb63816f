//! Typed conversions between Python values and the kernels' types: covariances, mixtures,
//! point arrays, objectives (read by attribute name into an [`ObjectiveSpec`], each objective
//! reading its own fields) and back.

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};

use crate::engine::problem::Update;
use crate::model::mixture::{Cov, Gaussian, Mixture};
use crate::model::params::{ScaleParam, WeightParam};
use crate::objectives::fields::{FieldReader, FieldWriter};
use crate::objectives::{Named, ObjectiveSpec};

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
/// too). The `kind` attribute picks the objective, which reads its own fields through this
/// [`FieldReader`] (`Objective::read`); every field is checked here again, so a value that
/// bypassed the dataclass validation is refused with a ValueError naming it.
pub(crate) struct ObjectiveReader<'a, 'py> {
    pub(crate) obj: &'a Bound<'py, PyAny>,
}

impl<'py> ObjectiveReader<'_, 'py> {
    fn attr(&self, name: &str) -> PyResult<Bound<'py, PyAny>> {
        self.obj.getattr(name).map_err(|_| {
            PyValueError::new_err(format!(
                "objective.{name} is missing (got an object of type {})",
                type_name(self.obj)
            ))
        })
    }

    fn bad(&self, name: &str, allowed: &str, value: &Bound<'py, PyAny>) -> PyErr {
        let shown = value
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "<unprintable>".into());
        PyValueError::new_err(format!("objective.{name} must be {allowed}, got {shown}"))
    }

    fn number_from(
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

    /// The objective of the object's `kind`.
    pub(crate) fn spec(&self) -> PyResult<ObjectiveSpec> {
        let kind_value = self.attr("kind")?;
        let kind = kind_value.extract::<String>().unwrap_or_default();
        ObjectiveSpec::read(&kind, self).unwrap_or_else(|| {
            let kinds: Vec<String> = ObjectiveSpec::KINDS
                .iter()
                .map(|k| format!("'{k}'"))
                .collect();
            Err(self.bad(
                "kind",
                &format!("one of [{}]", kinds.join(", ")),
                &kind_value,
            ))
        })
    }
}

impl FieldReader for ObjectiveReader<'_, '_> {
    type Error = PyErr;

    fn number(&self, name: &str, allowed: &str, ok: impl Fn(f64) -> bool) -> PyResult<f64> {
        let value = self.attr(name)?;
        self.number_from(name, allowed, ok, &value)
    }

    fn optional_number(
        &self,
        name: &str,
        allowed: &str,
        ok: impl Fn(f64) -> bool,
    ) -> PyResult<Option<f64>> {
        let value = self.attr(name)?;
        if value.is_none() {
            return Ok(None);
        }
        self.number_from(name, allowed, ok, &value).map(Some)
    }

    fn number_or_word(
        &self,
        name: &str,
        word: &str,
        allowed: &str,
        ok: impl Fn(f64) -> bool,
    ) -> PyResult<Option<f64>> {
        let value = self.attr(name)?;
        match value.extract::<String>() {
            Ok(s) if s == word => Ok(None),
            _ => self.number_from(name, allowed, ok, &value).map(Some),
        }
    }

    fn integer(&self, name: &str, allowed: &str, ok: impl Fn(i64) -> bool) -> PyResult<i64> {
        let value = self.attr(name)?;
        match value.extract::<i64>() {
            Ok(v) if ok(v) && !value.is_instance_of::<PyBool>() => Ok(v),
            _ => Err(self.bad(name, allowed, &value)),
        }
    }

    fn optional_vector(
        &self,
        name: &str,
        allowed: &str,
        max_len: usize,
    ) -> PyResult<Option<Vec<f64>>> {
        let value = self.attr(name)?;
        if value.is_none() {
            return Ok(None);
        }
        let items: Option<Vec<f64>> = value
            .try_iter()
            .ok()
            .filter(|_| !value.is_instance_of::<PyString>())
            .and_then(|it| {
                it.map(|item| {
                    item.ok()
                        .filter(|v| !v.is_instance_of::<PyBool>())
                        .and_then(|v| v.extract::<f64>().ok())
                        .filter(|v| v.is_finite())
                })
                .collect()
            });
        match items {
            Some(v) if (1..=max_len).contains(&v.len()) => Ok(Some(v)),
            _ => Err(self.bad(name, allowed, &value)),
        }
    }

    fn choice<E: Named>(&self, name: &str) -> PyResult<E> {
        let value = self.attr(name)?;
        value
            .extract::<String>()
            .ok()
            .and_then(|s| E::from_name(&s))
            .ok_or_else(|| self.bad(name, &format!("one of {}", E::choices()), &value))
    }
}

pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// An objective's fields written into a dict ([`FieldWriter`]).
struct DictWriter<'py>(Bound<'py, PyDict>);

impl FieldWriter for DictWriter<'_> {
    type Error = PyErr;

    fn number(&mut self, name: &str, value: f64) -> PyResult<()> {
        self.0.set_item(name, value)
    }

    fn optional_number(&mut self, name: &str, value: Option<f64>) -> PyResult<()> {
        self.0.set_item(name, value)
    }

    fn integer(&mut self, name: &str, value: i64) -> PyResult<()> {
        self.0.set_item(name, value)
    }

    fn word(&mut self, name: &str, value: &str) -> PyResult<()> {
        self.0.set_item(name, value)
    }

    fn optional_vector(&mut self, name: &str, value: Option<&[f64]>) -> PyResult<()> {
        match value {
            Some(v) => self
                .0
                .set_item(name, pyo3::types::PyTuple::new(self.0.py(), v)?),
            None => self.0.set_item(name, self.0.py().None()),
        }
    }
}

/// The objective's fields as Python sees them: {"kind": class name, **fields}, the form of
/// `Objective.as_dict()` (the round trip of the binding is tested against it).
pub(crate) fn objective_dict<'py>(
    py: Python<'py>,
    spec: &ObjectiveSpec,
) -> PyResult<Bound<'py, PyDict>> {
    let mut out = DictWriter(PyDict::new(py));
    out.0.set_item("kind", spec.kind())?;
    spec.write(&mut out)?;
    Ok(out.0)
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

/// `update`, from its name ('sgd' or 'natural').
pub(crate) struct UpdateArg(pub(crate) Update);

impl<'a, 'py> FromPyObject<'a, 'py> for UpdateArg {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match ob.extract::<String>()?.as_str() {
            "sgd" => Ok(UpdateArg(Update::Sgd)),
            "natural" => Ok(UpdateArg(Update::Natural)),
            other => Err(PyValueError::new_err(format!(
                "update must be 'sgd' or 'natural', got {other:?}"
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
