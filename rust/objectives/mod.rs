//! The training objectives (docs: theory-estimators), one module each, every one implementing
//! [`Objective`].
//!
//! Every objective's gradient is ĝ = Σ_i ω_i c_i s(x_i) (docs: theory-scores): the generic core in
//! `engine.rs` draws the batch, evaluates the model's log density and responsibilities,
//! accumulates the score and applies the update; an objective contributes only what is its
//! own — where its samples come from, the second density it compares the model with, its
//! per-sample value, its batch coefficients c_i, its extra state and its exact-limit rules.
//! Each module is named after the Python class of `mixforget.objectives` it implements.
//!
//! The core is generic over the trait and monomorphised: an entry point dispatches on
//! [`Spec`] once (see [`with_objective!`]) and every per-sample loop is specialised for one
//! objective, with no dynamic dispatch inside.
//!
//! Adding an objective: its module here implementing [`Objective`], one [`Spec`] variant and
//! its arm in [`with_objective!`], and in `lib.rs` its arm of the extraction
//! (`ObjectiveReader::spec`) and of `objective_dict`; on the Python side its dataclass in
//! `objectives.py` with `kind` set to the class name.

pub mod forward_kl;
pub mod new_mode_reinforce;
pub mod oapl;
pub mod reverse_kl;
pub mod sdft;
pub mod ttt_discover;

pub use forward_kl::ForwardKL;
pub use new_mode_reinforce::{Advantage, NewModeREINFORCE};
pub use oapl::OAPL;
pub use reverse_kl::{Baseline, ReverseKL};
pub use sdft::{Direction, SDFT};
pub use ttt_discover::{Beta, TTTDiscover};

use crate::engine::batch::Batch;
use crate::engine::state::{Exactness, Models, Replicate};
use crate::error::KernelResult;
use crate::model::mixture::Gaussian;
use crate::model::two_mode::Mix2;
use crate::random::starvation::Slots;

/// Where the non-replay part of a batch comes from.
pub enum Source<'a> {
    /// A two-component mixture: each sample picks a component, then a point.
    Mixture(&'a Mix2),
    /// A single Gaussian (no label draw).
    Single(&'a Gaussian),
}

/// One training objective: the pieces of ĝ = Σ_i ω_i c_i s(x_i) that are its own.
///
/// The core calls, per batch: [`source`](Objective::source) and
/// [`replay`](Objective::replay) to draw it; the model's log density log q(x_i) and
/// responsibilities (always) and [`second`](Objective::second)'s log density (if any) into
/// the batch's work arrays; [`values`](Objective::values) then
/// [`coefficients`](Objective::coefficients) to turn them into c_i; the score sums. Per step:
/// [`refresh_state`](Objective::refresh_state) before the batch and
/// [`update_state`](Objective::update_state) after the update.
pub trait Objective: Copy + Send + Sync + std::fmt::Debug {
    /// Replay fraction λ of p_old* in every batch and how its slots are assigned.
    fn replay(&self) -> (f64, Slots) {
        (0.0, Slots::Bernoulli)
    }

    /// The distribution of the non-replay samples.
    fn source<'a>(&self, m: &'a Models) -> Source<'a>;

    /// The density whose log the per-sample value compares with log q_θ, if any; the core
    /// stores its log parts and log density in `batch.second_a/second_b/log_second`.
    fn second<'a>(&self, m: &'a Models) -> Option<&'a Mix2>;

    /// Whether `update_state` moves the replicate's teacher or lagged parameters (SDFT, OAPL);
    /// otherwise they stay at the start and the models built from them are not refreshed
    /// every step.
    const MOVES_STATE: bool = false;

    /// The model kept by the extra state (teacher, start or lag model), whose means an exact
    /// evaluation must span.
    fn state_model<'a>(&self, _m: &'a Models) -> Option<&'a Mix2> {
        None
    }

    /// The components (with mixing weights) around which the exact quadrature places its
    /// nodes: those on which the integrand's mass lives. By default the sampling
    /// distribution's own components, whose nodes then carry its weights directly. An
    /// objective whose per-sample value carries an importance ratio that moves mass off the
    /// sampling distribution (NewModeREINFORCE: ρ φ_n = q/(1−α)) names the components of
    /// that mass instead; the quadrature still computes expectations under the sampling
    /// distribution p_s, reweighting each node by p_s/m with m the node mixture.
    fn quadrature_components<'a>(&self, m: &'a Models) -> Vec<(f64, &'a Gaussian)> {
        sampling_components(self, m)
    }

    /// The largest curvature κ (whitened units) that the per-sample value's exponential
    /// factors add to the log of the exact integrand (e^{βR} with R a log density: β), which
    /// sets the exact quadrature's spacing along smooth directions; None when no bound is
    /// known before the batch (adaptive temperatures, indicator rewards, capped weights),
    /// which keeps the fine spacing everywhere.
    fn quadrature_curvature(&self) -> Option<f64> {
        Some(0.0)
    }

    /// Radius of an indicator reward, whose jumps the exact quadrature must resolve.
    fn indicator_radius(&self) -> Option<f64> {
        None
    }

    /// Per-sample value v_i into `batch.value` and auxiliary quantity into `batch.aux`
    /// (importance weight, log-ratio …), from `batch.log_q`, `batch.log_second` and the
    /// points.
    fn values(&self, m: &Models, batch: &mut Batch);

    /// Batch statistics (baselines, entropic weights, V̂ …) and the coefficients c_i, written
    /// over `batch.value`. `how` tells a finite batch from an exact expectation.
    fn coefficients(&self, batch: &mut Batch, how: Exactness);

    /// Refuse an exact (population) evaluation that drops `perp_dims` dimensions when the
    /// objective's limit has no closed form for them.
    fn check_exact(&self, _perp_dims: usize) -> KernelResult<()> {
        Ok(())
    }

    /// Derived densities of the extra state, after the replicate's parameters have been
    /// loaded into `models`.
    fn refresh_state(&self, _models: &mut Models, _target: &Mix2) {}

    /// The extra state's own update, after θ took a (finite) step.
    fn update_state(&self, _r: &mut Replicate) {}
}

/// The components of the full sampling distribution with their probabilities (for exact
/// expectations): replay λ from p_old*, the rest from the source.
pub fn sampling_components<'a, O: Objective>(
    objective: &O,
    m: &'a Models,
) -> Vec<(f64, &'a Gaussian)> {
    let (replay, _) = objective.replay();
    let mut out = Vec::with_capacity(3);
    match objective.source(m) {
        Source::Single(g) => out.push((1.0 - replay, g)),
        Source::Mixture(mix) => {
            out.push(((1.0 - replay) * mix.alpha, &mix.old));
            out.push(((1.0 - replay) * (1.0 - mix.alpha), &mix.new));
        }
    }
    if replay > 0.0 {
        out.push((replay, &m.target.old));
    }
    out
}

/// The objective of a training problem: one variant per objective module.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Spec {
    ForwardKL(ForwardKL),
    ReverseKL(ReverseKL),
    SDFT(SDFT),
    TTTDiscover(TTTDiscover),
    OAPL(OAPL),
    NewModeREINFORCE(NewModeREINFORCE),
}

impl Spec {
    /// The Python class names, in `Spec` order.
    pub const KINDS: [&'static str; 6] = [
        "ForwardKL",
        "ReverseKL",
        "SDFT",
        "TTTDiscover",
        "OAPL",
        "NewModeREINFORCE",
    ];

    /// The Python class name of the objective.
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::ForwardKL(_) => Self::KINDS[0],
            Spec::ReverseKL(_) => Self::KINDS[1],
            Spec::SDFT(_) => Self::KINDS[2],
            Spec::TTTDiscover(_) => Self::KINDS[3],
            Spec::OAPL(_) => Self::KINDS[4],
            Spec::NewModeREINFORCE(_) => Self::KINDS[5],
        }
    }
}

/// `with_objective!(spec, o => body)`: evaluate `body` with `o` bound to the concrete
/// objective inside `spec`, one monomorphised copy of `body` per objective. Entry points use
/// it once per call, never per sample.
macro_rules! with_objective {
    ($spec:expr, $o:ident => $body:expr) => {
        match $spec {
            $crate::objectives::Spec::ForwardKL($o) => $body,
            $crate::objectives::Spec::ReverseKL($o) => $body,
            $crate::objectives::Spec::SDFT($o) => $body,
            $crate::objectives::Spec::TTTDiscover($o) => $body,
            $crate::objectives::Spec::OAPL($o) => $body,
            $crate::objectives::Spec::NewModeREINFORCE($o) => $body,
        }
    };
}
pub(crate) use with_objective;

/// A closed set of values named by strings (the Python side's choices).
pub trait Named: Copy + PartialEq + 'static {
    /// Every value with its name, in the order error messages list them.
    const NAMES: &'static [(&'static str, Self)];

    fn from_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, v)| *v == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// "['a', 'b']", for error messages.
    fn choices() -> String {
        let names: Vec<String> = Self::NAMES.iter().map(|(n, _)| format!("'{n}'")).collect();
        format!("[{}]", names.join(", "))
    }
}

impl Named for Slots {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("bernoulli", Slots::Bernoulli),
        ("stratified", Slots::Stratified),
    ];
}

/// The reward R(x) of the RL objectives (TTT-Discover, OAPL; docs: theory-rewards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reward {
    /// log p_new*(x).
    NewLogpdf,
    /// log p*(x).
    TargetLogpdf,
    /// 1[‖x − μ_n*‖_Σ ≤ radius].
    NewIndicator,
}

impl Named for Reward {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("new_logpdf", Reward::NewLogpdf),
        ("target_logpdf", Reward::TargetLogpdf),
        ("new_indicator", Reward::NewIndicator),
    ];
}

impl Reward {
    /// R(x); `radius` is used by the indicator only.
    #[inline]
    pub fn at(self, radius: f64, target: &Mix2, x: &[f64], scratch: &mut [f64]) -> f64 {
        match self {
            Reward::NewLogpdf => target.new.logpdf(x, scratch),
            Reward::TargetLogpdf => target.logpdf(x, scratch),
            Reward::NewIndicator => {
                let mean = &target.new.mean;
                let q = target
                    .new
                    .cov
                    .mahalanobis_sq(|i| x[i] - mean[i], mean.len(), scratch);
                if q <= radius * radius {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// The RL objectives' per-sample values: v_i = R(x_i) and aux_i = log q_θ(x_i) − log q_2(x_i)
/// (q_2 the second density: start model or lagged model).
#[inline(always)]
pub(crate) fn reward_values(reward: Reward, radius: f64, m: &Models, batch: &mut Batch) {
    let d = batch.dim;
    for i in 0..batch.len {
        let x = &batch.x[i * d..(i + 1) * d];
        batch.value[i] = reward.at(radius, &m.target, x, &mut batch.scratch);
        batch.aux[i] = batch.log_q[i] - batch.log_second[i];
    }
}

/// Every objective's ĝ = −Σ ω_i s(x_i) (maximum likelihood on its samples): c_i = −1.
#[inline(always)]
pub(crate) fn likelihood_coefficients(batch: &mut Batch) {
    batch.value[..batch.len].iter_mut().for_each(|v| *v = -1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_round_trip<E: Named + std::fmt::Debug>() {
        for (name, value) in E::NAMES {
            assert_eq!(E::from_name(name), Some(*value));
            assert_eq!(value.name(), *name);
        }
        assert_eq!(E::from_name("unknown"), None);
        assert!(E::choices().starts_with("['") && E::choices().ends_with("']"));
    }

    #[test]
    fn every_named_choice_round_trips() {
        names_round_trip::<Slots>();
        names_round_trip::<Reward>();
        names_round_trip::<Baseline>();
        names_round_trip::<Direction>();
        names_round_trip::<Advantage>();
    }
}
