//! The `mixforget._core` extension module: bindings only, one file per object Python sees. Arguments arrive validated and
//! normalised by the Python layer (python/mixforget/); here they are converted, checked once
//! more for consistency, and handed to the pure-Rust kernels with the GIL released. An
//! objective crosses as its dataclass, read by attribute name into a typed `objectives::ObjectiveSpec`
//! (`ObjectiveReader`, through which each objective reads its own fields); its string choices
//! become Rust enums.
//! Kernel errors become ValueError (NotImplementedError where marked); a panic, which should
//! never happen, is caught and reported as RuntimeError instead of aborting the interpreter.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use self::problem::*;
use crate::model::mixture;

mod conversions;
mod errors;
mod gradients;
mod mixture_problem;
mod mixture_simulator;
mod mixtures;
mod pools;
mod population_flow;
mod problem;
mod records;
mod rng_probes;
mod simulator;
use gradients::*;
use mixture_problem::*;
use mixture_simulator::*;
use mixtures::*;
use population_flow::*;
use rng_probes::*;
use simulator::*;

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
    m.add_class::<records::RecordChunk>()?;
    m.add_class::<PopulationFlow>()?;
    m.add_class::<MixtureProblem>()?;
    m.add_class::<MixtureSimulator>()?;
    m.add_class::<MixtureRecordChunk>()?;
    m.add_function(wrap_pyfunction!(mixture_estimate_gradient, m)?)?;
    m.add("RUNAWAY_DISTANCE", crate::engine::problem::RUNAWAY_DISTANCE)?;
    m.add("RUNAWAY_WEIGHT", crate::engine::problem::RUNAWAY_WEIGHT)?;
    m.add("RUNAWAY_SCALE", crate::engine::problem::RUNAWAY_SCALE)?;
    m.add(
        "BATCHES_PER_STREAM",
        crate::engine::training::BATCHES_PER_STREAM,
    )?;
    m.add("SAMPLES_PER_STREAM", mixture::CHUNK)?;
    // the objectives of `objectives::objective_list!`, by Python class name, in list order
    m.add(
        "OBJECTIVE_KINDS",
        PyTuple::new(m.py(), crate::objectives::ObjectiveSpec::KINDS)?,
    )?;
    Ok(())
}
