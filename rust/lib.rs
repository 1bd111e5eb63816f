//! The `mixforget._core` extension module: bindings only. Arguments arrive validated and
//! normalised by the Python layer (python/mixforget/); here they are converted, checked once
//! more for consistency, and handed to the pure-Rust kernels with the GIL released. An
//! objective crosses as its dataclass, read by attribute name into a typed `objectives::Spec`
//! (`ObjectiveReader`); its string choices become Rust enums.
//! Kernel errors become ValueError (NotImplementedError where marked); a panic, which should
//! never happen, is caught and reported as RuntimeError instead of aborting the interpreter.

pub mod buffers;
pub mod engine;
pub mod fastmath;
pub mod fused;
pub mod mixture;
pub mod objectives;
pub mod population;
pub mod rng;
pub mod simd_rng;
pub mod starvation;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyMemoryError, PyNotImplementedError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};

use buffers::try_zeroed;
use engine::{Mix2, Params, Problem, Records, ScaleParam, Scales, Simulation, WeightParam};
use mixture::{Cov, Gaussian, Mixture};
use objectives::{
    Beta, ForwardKL, Named, NewModeREINFORCE, Objective, ReverseKL, Reward, Spec, TTTDiscover,
    OAPL, SDFT,
};
use starvation::Slots;

fn to_py_err(msg: String) -> PyErr {
    if let Some(rest) = msg.strip_prefix(buffers::MEMORY_ERROR) {
        return PyMemoryError::new_err(rest.to_string());
    }
    match msg.strip_prefix("NotImplemented: ") {
        Some(rest) => PyNotImplementedError::new_err(rest.to_string()),
        None => PyValueError::new_err(msg),
    }
}

/// Most thread pools kept alive at once. Each distinct `threads` value needs a pool of that
/// size (rayon cannot cap a pool's parallelism per call); keeping them all would leak OS
/// threads (one pool per value ever used), so the least recently used pool beyond this bound
/// is dropped, and its threads exit once the calls running on it return.
const MAX_POOLS: usize = 4;

/// Threads a pool of `threads` really gets: 0 means all cores, and more threads than cores
/// are capped at the core count (results do not depend on the thread count: each replicate
/// and chunk owns its random stream, so the cap changes speed only).
fn pool_size(threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 0 {
        cores
    } else {
        threads.min(cores)
    }
}

/// The pool for `threads` from a small LRU cache (most recently used last).
fn pool(threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
    /// (pool size, pool), least recently used first.
    type PoolCache = Vec<(usize, Arc<rayon::ThreadPool>)>;
    static POOLS: OnceLock<Mutex<PoolCache>> = OnceLock::new();
    let size = pool_size(threads);
    let mut pools = POOLS
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .map_err(|_| PyRuntimeError::new_err("thread-pool cache poisoned"))?;
    if let Some(at) = pools.iter().position(|(n, _)| *n == size) {
        let entry = pools.remove(at);
        let p = entry.1.clone();
        pools.push(entry);
        return Ok(p);
    }
    let p = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(size)
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start {size} threads: {e}")))?,
    );
    if pools.len() >= MAX_POOLS {
        pools.remove(0);
    }
    pools.push((size, p.clone()));
    Ok(p)
}

/// Run `f` without the GIL, on `threads` threads, turning errors and panics into exceptions.
fn run<T: Send>(
    py: Python<'_>,
    threads: usize,
    f: impl FnOnce() -> Result<T, String> + Send,
) -> PyResult<T> {
    let p = pool(threads)?;
    let out = py.detach(|| catch_unwind(AssertUnwindSafe(|| p.install(f))));
    match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(msg)) => Err(to_py_err(msg)),
        Err(_) => Err(PyRuntimeError::new_err(
            "internal error in the mixforget kernel (a Rust panic was caught); please report it",
        )),
    }
}

fn cov_from_array(c: &PyReadonlyArrayDyn<'_, f64>, dim: usize) -> PyResult<Cov> {
    let data = c
        .as_slice()
        .map_err(|_| PyValueError::new_err("covariance arrays must be C-contiguous float64"))?;
    let res = match c.ndim() {
        0 => Cov::scalar(data[0]),
        1 if data.len() == dim => Cov::diag(data),
        2 if data.len() == dim * dim => Cov::full(data, dim),
        _ => Err(format!(
            "covariance must be a scalar, ({dim},) or ({dim}, {dim})"
        )),
    };
    res.map_err(|e| PyValueError::new_err(format!("covs: {e}")))
}

fn mixture_from(
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

fn points<'a>(x: &'a PyReadonlyArray2<'_, f64>, d: usize) -> PyResult<&'a [f64]> {
    if x.shape()[1] != d {
        return Err(PyValueError::new_err(format!(
            "x must have {d} columns, got {}",
            x.shape()[1]
        )));
    }
    x.as_slice()
        .map_err(|_| PyValueError::new_err("x must be C-contiguous float64"))
}

/// responsibilities(x, weights, means, covs, threads) -> (n, K)
#[pyfunction]
fn responsibilities<'py>(
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
fn mixture_logpdf<'py>(
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
fn sample_mixture<'py>(
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
fn starvation_counts<'py>(
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

/// Typed extraction of an objective of python/mixforget/objectives.py, read by attribute name
/// (the frozen dataclasses stay the one user-facing definition; duck-typed objects work
/// too). The `kind` attribute picks the objective; every field is checked here again, so a
/// value that bypassed the dataclass validation is refused with a ValueError naming it.
struct ObjectiveReader<'a, 'py> {
    obj: &'a Bound<'py, PyAny>,
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

    /// A real number (not a bool or a string) with `ok(value)`.
    fn number(&self, name: &str, allowed: &str, ok: impl Fn(f64) -> bool) -> PyResult<f64> {
        let value = self.attr(name)?;
        self.number_from(name, allowed, ok, &value)
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

    fn positive(&self, name: &str) -> PyResult<f64> {
        self.number(name, "a finite number > 0", |v| v > 0.0)
    }

    /// One of the names of `E`.
    fn choice<E: Named>(&self, name: &str) -> PyResult<E> {
        let value = self.attr(name)?;
        value
            .extract::<String>()
            .ok()
            .and_then(|s| E::from_name(&s))
            .ok_or_else(|| self.bad(name, &format!("one of {}", E::choices()), &value))
    }

    fn replay(&self) -> PyResult<f64> {
        self.number("replay", "a finite number in [0, 1)", |v| {
            (0.0..1.0).contains(&v)
        })
    }

    fn reward(&self) -> PyResult<(Reward, f64)> {
        Ok((self.choice("reward")?, self.positive("radius")?))
    }

    fn spec(&self) -> PyResult<Spec> {
        let kind_value = self.attr("kind")?;
        let kind = kind_value.extract::<String>().unwrap_or_default();
        Ok(match kind.as_str() {
            "ForwardKL" => Spec::ForwardKL(ForwardKL {
                replay: self.replay()?,
                replay_slots: self.choice("replay_slots")?,
            }),
            "ReverseKL" => {
                let cap = self.attr("weight_cap")?;
                Spec::ReverseKL(ReverseKL {
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
            "SDFT" => Spec::SDFT(SDFT {
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
                Spec::TTTDiscover(TTTDiscover {
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
                Spec::OAPL(OAPL {
                    beta1: self.positive("beta1")?,
                    beta2: self.positive("beta2")?,
                    lag,
                    reward,
                    radius,
                })
            }
            "NewModeREINFORCE" => Spec::NewModeREINFORCE(NewModeREINFORCE {
                beta: self.positive("beta")?,
                advantage: self.choice("advantage")?,
            }),
            _ => {
                let kinds: Vec<String> = Spec::KINDS.iter().map(|k| format!("'{k}'")).collect();
                return Err(self.bad(
                    "kind",
                    &format!("one of [{}]", kinds.join(", ")),
                    &kind_value,
                ));
            }
        })
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The objective's fields as Python sees them: {"kind": class name, **fields}, the form of
/// `Objective.as_dict()` (the round trip of the binding is tested against it).
fn objective_dict<'py>(py: Python<'py>, spec: &Spec) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("kind", spec.kind())?;
    match spec {
        Spec::ForwardKL(o) => {
            d.set_item("replay", o.replay)?;
            d.set_item("replay_slots", o.replay_slots.name())?;
        }
        Spec::ReverseKL(o) => {
            d.set_item("replay", o.replay)?;
            d.set_item("replay_slots", o.replay_slots.name())?;
            d.set_item("weight_cap", o.weight_cap)?;
            d.set_item("baseline", o.baseline.name())?;
        }
        Spec::SDFT(o) => {
            d.set_item("ema", o.ema)?;
            d.set_item("anchor", o.anchor)?;
            d.set_item("direction", o.direction.name())?;
        }
        Spec::TTTDiscover(o) => {
            match o.beta {
                Beta::Fixed(b) => d.set_item("beta", b)?,
                Beta::Adaptive => d.set_item("beta", "adaptive")?,
            }
            d.set_item("kl_penalty", o.kl_penalty)?;
            d.set_item("reward", o.reward.name())?;
            d.set_item("radius", o.radius)?;
        }
        Spec::OAPL(o) => {
            d.set_item("beta1", o.beta1)?;
            d.set_item("beta2", o.beta2)?;
            d.set_item("lag", o.lag)?;
            d.set_item("reward", o.reward.name())?;
            d.set_item("radius", o.radius)?;
        }
        Spec::NewModeREINFORCE(o) => {
            d.set_item("beta", o.beta)?;
            d.set_item("advantage", o.advantage.name())?;
        }
    }
    Ok(d)
}

/// A training problem: target, model covariances, start, objective and update settings.
#[pyclass(module = "mixforget._core", frozen)]
struct TrainingProblem {
    inner: Problem,
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

type RecordArrays<'py> = (
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray3<f64>>,
    Bound<'py, PyArray3<f64>>,
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray3<f64>>,
);

struct RecordBuffers {
    weight: Vec<f64>,
    old: Vec<f64>,
    new: Vec<f64>,
    starved: Vec<i64>,
    scale: Vec<f64>,
}

impl RecordBuffers {
    fn new(replicates: usize, n_rec: usize, d: usize) -> Result<Self, String> {
        let what = "the records";
        Ok(RecordBuffers {
            weight: try_zeroed(&[replicates, n_rec], what)?,
            old: try_zeroed(&[replicates, n_rec, d], what)?,
            new: try_zeroed(&[replicates, n_rec, d], what)?,
            starved: try_zeroed(&[replicates, n_rec], what)?,
            scale: try_zeroed(&[replicates, n_rec, 2], what)?,
        })
    }
    fn records(&mut self) -> Records<'_> {
        Records {
            weight: &mut self.weight,
            old: &mut self.old,
            new: &mut self.new,
            starved: &mut self.starved,
            scale: &mut self.scale,
        }
    }
    fn into_arrays(
        self,
        py: Python<'_>,
        replicates: usize,
        n_rec: usize,
        d: usize,
    ) -> PyResult<RecordArrays<'_>> {
        Ok((
            self.weight.into_pyarray(py).reshape([replicates, n_rec])?,
            self.old.into_pyarray(py).reshape([replicates, n_rec, d])?,
            self.new.into_pyarray(py).reshape([replicates, n_rec, d])?,
            self.starved.into_pyarray(py).reshape([replicates, n_rec])?,
            self.scale
                .into_pyarray(py)
                .reshape([replicates, n_rec, 2])?,
        ))
    }
}

/// Finite-batch training of many replicates; call `advance` chunk by chunk.
#[pyclass(module = "mixforget._core")]
struct Simulator {
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

    /// Advance all replicates by `steps` >= 1; returns the records at the absolute step
    /// counts in (steps_done, steps_done + steps] that are multiples of `record_every` (old
    /// weight (R, n), old mean (R, n, d), new mean (R, n, d), cumulative starved (R, n),
    /// scales (σ_o, σ_n) (R, n, 2)), so
    /// a run cut into calls of any length records the same.
    fn advance<'py>(
        &mut self,
        py: Python<'py>,
        steps: u64,
        record_every: u64,
    ) -> PyResult<RecordArrays<'py>> {
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
        buffers.into_arrays(py, r, n_rec, d)
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
fn check_chunk(done: u64, steps: u64, record_every: u64) -> PyResult<()> {
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

/// The population flow (exact gradients), advanced call by call; call `advance` chunk by
/// chunk.
#[pyclass(module = "mixforget._core")]
struct PopulationFlow {
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
    ) -> PyResult<RecordArrays<'py>> {
        check_chunk(self.inner.steps_done(), steps, record_every)?;
        let d = self.inner.problem.dim;
        let n_rec = engine::records_in(self.inner.steps_done(), steps, record_every);
        let flow = &mut self.inner;
        let buf = run(py, 0, || {
            let mut buf = RecordBuffers::new(1, n_rec, d)?;
            flow.advance(steps, record_every, buf.records())?;
            Ok(buf)
        })?;
        buf.into_arrays(py, 1, n_rec, d)
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
fn population_gradient<'py>(
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

/// estimate_gradient(problem, batch_size, batches, key, threads, first_stream=0)
/// -> (gradients (batches, 1+2d [+2 scale entries]), old counts): the c-th run of BATCHES_PER_STREAM batches
/// uses stream (key, first_stream + c), so a study cut at multiples of BATCHES_PER_STREAM
/// reproduces one call.
#[pyfunction]
#[pyo3(signature = (problem, batch_size, batches, key, threads, first_stream=0))]
#[allow(clippy::type_complexity)]
fn estimate_gradient<'py>(
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
        engine::estimate_gradient(
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
fn replay_weights<'py>(
    py: Python<'py>,
    problem: &TrainingProblem,
    x: PyReadonlyArray2<'py, f64>,
    threads: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let p = &problem.inner;
    let objective = match p.objective {
        Spec::ReverseKL(o) => o,
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
                        objectives::reverse_kl::replay_weight(
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

/// normal_floor(n, key, threads) -> sum of n standard normals drawn in parallel chunks: the
/// RNG cost floor that the benchmarks compare every workload with.
#[pyfunction]
fn normal_floor(py: Python<'_>, n: usize, key: (u64, u64), threads: usize) -> PyResult<f64> {
    use rayon::prelude::*;
    run(py, threads, || {
        let chunks = n.div_ceil(mixture::CHUNK);
        Ok((0..chunks)
            .into_par_iter()
            .map(|c| {
                let mut rng = rng::Stream::new([key.0, key.1], c as u64);
                let len = mixture::CHUNK.min(n - c * mixture::CHUNK);
                (0..len).map(|_| rng::normal(&mut rng)).sum::<f64>()
            })
            .sum())
    })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(responsibilities, m)?)?;
    m.add_function(wrap_pyfunction!(mixture_logpdf, m)?)?;
    m.add_function(wrap_pyfunction!(sample_mixture, m)?)?;
    m.add_function(wrap_pyfunction!(starvation_counts, m)?)?;
    m.add_function(wrap_pyfunction!(population_gradient, m)?)?;
    m.add_function(wrap_pyfunction!(estimate_gradient, m)?)?;
    m.add_function(wrap_pyfunction!(normal_floor, m)?)?;
    m.add_function(wrap_pyfunction!(replay_weights, m)?)?;
    m.add_function(wrap_pyfunction!(lane_normals, m)?)?;
    m.add_function(wrap_pyfunction!(lane_normal_floor, m)?)?;
    m.add_function(wrap_pyfunction!(lane_normal_tail_counts, m)?)?;
    m.add_class::<TrainingProblem>()?;
    m.add_class::<Simulator>()?;
    m.add_class::<PopulationFlow>()?;
    m.add("RUNAWAY_DISTANCE", engine::RUNAWAY_DISTANCE)?;
    m.add("RUNAWAY_WEIGHT", engine::RUNAWAY_WEIGHT)?;
    m.add("BATCHES_PER_STREAM", engine::BATCHES_PER_STREAM)?;
    m.add("SAMPLES_PER_STREAM", mixture::CHUNK)?;
    Ok(())
}

// --- the vectorised generator (simd_rng): test and benchmark hooks --------------------------

/// lane_normals(n, key, index) -> the n standard normals of one `fill_normal` of
/// `LaneStream::new(key, index)` (the statistical tests' hook).
#[pyfunction]
fn lane_normals(
    py: Python<'_>,
    n: usize,
    key: (u64, u64),
    index: u64,
) -> PyResult<Bound<'_, PyArray1<f64>>> {
    let mut out = vec![0.0; n];
    py.detach(|| simd_rng::LaneStream::new([key.0, key.1], index).fill_normal(&mut out));
    Ok(out.into_pyarray(py))
}

/// Fold the normals of chunks of mixture::CHUNK (one LaneStream per chunk, drawn 256 at a
/// time into a stack buffer: the same values as one fill of the chunk) and combine the chunks.
fn lane_chunks<T: Send>(
    n: usize,
    key: (u64, u64),
    zero: impl Fn() -> T + Sync + Send,
    fold: impl Fn(T, &[f64]) -> T + Sync,
    combine: impl Fn(T, T) -> T + Sync + Send,
) -> T {
    use rayon::prelude::*;
    (0..n.div_ceil(mixture::CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut stream = simd_rng::LaneStream::new([key.0, key.1], c as u64);
            let mut buf = [0.0; 256];
            let mut left = mixture::CHUNK.min(n - c * mixture::CHUNK);
            let mut acc = zero();
            while left > 0 {
                let z = &mut buf[..left.min(256)];
                stream.fill_normal(z);
                acc = fold(acc, z);
                left -= z.len();
            }
            acc
        })
        .reduce(&zero, combine)
}

/// lane_normal_floor(n, key, threads) -> sum of n normals from the vectorised generator in
/// parallel chunks: `normal_floor` with `simd_rng::LaneStream::fill_normal`.
#[pyfunction]
fn lane_normal_floor(py: Python<'_>, n: usize, key: (u64, u64), threads: usize) -> PyResult<f64> {
    run(py, threads, || {
        Ok(lane_chunks(
            n,
            key,
            || 0.0,
            |acc, z| acc + z.iter().sum::<f64>(),
            |a, b| a + b,
        ))
    })
}

/// lane_normal_tail_counts(n, key, thresholds, threads) -> ([#{|z| > t} for t in
/// thresholds], max |z|) over n normals drawn as by `lane_normal_floor`.
#[pyfunction]
fn lane_normal_tail_counts(
    py: Python<'_>,
    n: usize,
    key: (u64, u64),
    thresholds: Vec<f64>,
    threads: usize,
) -> PyResult<(Vec<u64>, f64)> {
    let k = thresholds.len();
    run(py, threads, || {
        Ok(lane_chunks(
            n,
            key,
            || (vec![0u64; k], 0.0f64),
            |(mut counts, mut max_abs), z| {
                for v in z.iter().map(|v| v.abs()) {
                    max_abs = max_abs.max(v);
                    for (c, t) in counts.iter_mut().zip(&thresholds) {
                        *c += (v > *t) as u64;
                    }
                }
                (counts, max_abs)
            },
            |(a, ma), (b, mb)| (a.iter().zip(&b).map(|(x, y)| x + y).collect(), ma.max(mb)),
        ))
    })
}
