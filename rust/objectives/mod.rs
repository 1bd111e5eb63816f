//! The training objectives (docs: theory-estimators), one module each, every one implementing
//! [`Objective`].
//!
//! Every objective's gradient is ĝ = Σ_i ω_i c_i s(x_i) (docs: theory-scores): the generic core in
//! `crate::engine` draws the batch, evaluates the model's log density and responsibilities,
//! accumulates the score and applies the update; an objective contributes only what is its
//! own — where its samples come from, the density it compares the model with
//! ([`Objective::compared_density`]), its per-sample value, its batch coefficients c_i, its
//! extra state and its exact-limit rules. Each module is named after the Python class of
//! `mixforget.objectives` it implements and declares that name as [`Objective::KIND`].
//!
//! An objective owns all of its state and fields. Its extra state beyond θ (SDFT's teacher,
//! TTT-Discover's start model, OAPL's lagged model; the twin's `Extra`) is its associated type
//! [`Objective::Extra`], set by [`Objective::reset`] and moved by [`Objective::advance`], and
//! the densities it derives from that state are [`Objective::ExtraModels`], held in
//! `Models::extra`; objectives without state use `()` ([`no_extra_state!`]). Its fields
//! cross the binding through [`Objective::read`] and [`Objective::write`] (by name, against
//! the pyo3-free traits of [`fields`]). The generic core (`crate::engine`,
//! `crate::population`, `crate::bindings`) names no objective and no objective's field.
//!
//! The core is generic over the trait and monomorphised: an entry point dispatches on
//! [`ObjectiveSpec`] once (see [`with_objective!`]; a run kept across calls once when it is
//! made, then once per chunk) and every per-sample loop is specialised for one objective,
//! with no dynamic dispatch inside.
//!
//! Adding an objective: its module here (its struct implementing [`Objective`]: its `KIND`,
//! `read`/`write` of its fields, its `Extra`/`ExtraModels` or `no_extra_state!()`, and the
//! estimator's pieces), its `pub mod`/`pub use` lines, and one name in [`objective_list!`]:
//! that list generates [`ObjectiveSpec`] (with its `KINDS`, exposed to Python as
//! `_core.OBJECTIVE_KINDS`, and its `read`/`write` by kind) and [`with_objective!`]. On the
//! Python side its dataclass in `objectives.py` with `kind` set to the class name (see
//! docs/adding-an-objective.md).

pub mod forward_kl;
pub mod kl_regularized_rl;
pub mod new_mode_reinforce;
pub mod oapl;
pub mod reverse_kl;
pub mod sdft;
pub mod ttt_discover;

pub use forward_kl::ForwardKL;
pub use kl_regularized_rl::{KLRegularizedRL, KlAdvantage, KlEstimator, Reference, RewardKind};
pub use new_mode_reinforce::{Advantage, NewModeREINFORCE};
pub use oapl::OAPL;
pub use reverse_kl::{Baseline, ReverseKL};
pub use sdft::{Direction, SDFT};
pub use ttt_discover::{Beta, TTTDiscover};

use self::fields::{FieldReader, FieldWriter};
use crate::engine::batch::Batch;
use crate::engine::state::{Averager, ExtraModels, MixtureBuilder, Models};
use crate::error::KernelResult;
use crate::model::mixture::Gaussian;
use crate::model::params::Params;
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
/// responsibilities (always) and [`compared_density`](Objective::compared_density)'s log
/// density (if any) into the batch's work arrays; [`values`](Objective::values) then
/// [`coefficients`](Objective::coefficients) to turn them into c_i; the score sums. Its own
/// state beyond θ (the twin's `Extra`, `reset`, `advance`): [`reset`](Objective::reset) per
/// replicate at the start, [`extra_models`](Objective::extra_models) once per call,
/// [`refresh_extra_models`](Objective::refresh_extra_models) before every batch and
/// [`advance`](Objective::advance) after every (finite) update.
pub trait Objective: Copy + Send + Sync + std::fmt::Debug {
    /// The Python class name (`kind`) of the objective, declared by its module.
    const KIND: &'static str;

    /// The objective from its fields by name (the Python dataclass's attributes), each
    /// checked.
    fn read<R: FieldReader>(fields: &R) -> Result<Self, R::Error>;

    /// Its fields by name, as `Objective.as_dict()` has them (`kind` aside).
    fn write<W: FieldWriter>(&self, fields: &mut W) -> Result<(), W::Error>;

    /// The objective's own state beyond θ, one per replicate (teacher EMA, start model,
    /// lagged model …): `()` for none.
    type Extra: Clone + std::fmt::Debug + Send + Sync;

    /// The densities it derives from [`Extra`](Objective::Extra) and reads besides q_θ and
    /// p* (in `Models::extra`): `()` for none.
    type ExtraModels: ExtraModels;

    /// The extra state at the starting parameters (the twin's `reset`).
    fn reset(&self, start: &Params) -> Self::Extra;

    /// The densities of the extra state, built with the problem's `mixtures` (covariances,
    /// trained scales) against the target p*.
    fn extra_models(
        &self,
        extra: &Self::Extra,
        mixtures: &impl MixtureBuilder,
        target: &Mix2,
    ) -> Self::ExtraModels;

    /// The densities of the extra state after it moved, in place (no allocation); by
    /// default nothing, for a state that never moves.
    fn refresh_extra_models(
        &self,
        _extra: &Self::Extra,
        _models: &mut Self::ExtraModels,
        _mixtures: &impl MixtureBuilder,
        _target: &Mix2,
    ) {
    }

    /// The extra state's own update after training step `step` (1-based) took θ to the
    /// finite `theta` (the twin's `advance`); by default nothing.
    fn advance(&self, _extra: &mut Self::Extra, _theta: &Params, _step: u64) {}

    /// Replay fraction λ of p_old* in every batch and how its slots are assigned.
    fn replay(&self) -> (f64, Slots) {
        (0.0, Slots::Bernoulli)
    }

    /// The distribution of the non-replay samples.
    fn source<'a>(&self, m: &'a Models<Self::ExtraModels>) -> Source<'a>;

    /// The density whose log the per-sample value compares with log q_θ, if any; the core
    /// stores its log parts and log density in `batch.compared_old/compared_new/log_compared`.
    fn compared_density<'a>(&self, m: &'a Models<Self::ExtraModels>) -> Option<&'a Mix2>;

    /// The components (with mixing weights) around which the exact quadrature places its
    /// nodes: those on which the integrand's mass lives. By default the sampling
    /// distribution's own components, whose nodes then carry its weights directly. An
    /// objective whose per-sample value carries an importance ratio that moves mass off the
    /// sampling distribution (NewModeREINFORCE: ρ φ_n = q/(1−α)) names the components of
    /// that mass instead; the quadrature still computes expectations under the sampling
    /// distribution p_s, reweighting each node by p_s/m with m the node mixture.
    fn quadrature_components<'a>(
        &self,
        m: &'a Models<Self::ExtraModels>,
    ) -> Vec<(f64, &'a Gaussian)> {
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

    /// Refuse fields whose dimension is not the problem's `dim` (a reward's geometry);
    /// nothing to check by default.
    fn check_dimension(&self, _dim: usize) -> Result<(), String> {
        Ok(())
    }

    /// Whether the per-sample value reads the points in their original coordinates (a
    /// reward with its own geometry: a half-space, a ball, a bump), so that the exact
    /// quadrature cannot reduce to the whitened span of the means and runs over all d
    /// dimensions instead.
    fn needs_original_coordinates(&self) -> bool {
        false
    }

    /// In one dimension, the points (lo, hi) where the per-sample value jumps (original
    /// coordinates; lo = hi for a single jump), which the exact quadrature's grid passes
    /// through; None for a continuous value or one described by `indicator_radius`.
    fn value_jumps_1d(&self) -> Option<(f64, f64)> {
        None
    }

    /// Per-sample value v_i into `batch.value` and its importance weight or log-ratio into
    /// `batch.weight_or_log_ratio`, from `batch.log_q`, `batch.log_compared` and the points.
    fn values(&self, m: &Models<Self::ExtraModels>, batch: &mut Batch);

    /// Batch statistics (baselines, entropic weights, V̂ …) and the coefficients c_i, written
    /// over `batch.value`. `how` tells a finite batch from an exact expectation.
    fn coefficients(&self, batch: &mut Batch, how: Averager);

    /// Refuse an exact (population) evaluation that drops `perp_dims` dimensions when the
    /// objective's limit has no closed form for them.
    fn check_exact(&self, _perp_dims: usize) -> KernelResult<()> {
        Ok(())
    }
}

/// The associated items of an objective without extra state (`Extra = ()`, no derived
/// densities), written inside its `impl Objective`.
macro_rules! no_extra_state {
    () => {
        type Extra = ();
        type ExtraModels = ();
        fn reset(&self, _start: &$crate::model::params::Params) {}
        fn extra_models(
            &self,
            _extra: &(),
            _mixtures: &impl $crate::engine::state::MixtureBuilder,
            _target: &$crate::model::two_mode::Mix2,
        ) {
        }
    };
}
pub(crate) use no_extra_state;

/// The components of the full sampling distribution with their probabilities (for exact
/// expectations): replay λ from p_old*, the rest from the source.
pub fn sampling_components<'a, O: Objective>(
    objective: &O,
    m: &'a Models<O::ExtraModels>,
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

/// THE list of objectives, one entry each (the name of its struct, re-exported above from its
/// module): `ObjectiveSpec`, its `KINDS` and [`with_objective!`] are generated from it.
/// `objective_list!(m!(args))` expands to `objectives::m! { (args) ForwardKL, ReverseKL, … }`.
macro_rules! objective_list {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::objectives::$callback! {
            ($($args)*) ForwardKL, ReverseKL, SDFT, TTTDiscover, OAPL, NewModeREINFORCE, KLRegularizedRL
        }
    };
}

/// The enum over the list, with the Python class names each objective declares (`KIND`).
macro_rules! define_objective_spec {
    (() $($name:ident),*) => {
        /// The objective of a training problem: one variant per objective module.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum ObjectiveSpec {
            $($name($name)),*
        }

        impl ObjectiveSpec {
            /// The Python class names, in list order.
            pub const KINDS: &'static [&'static str] = &[$(<$name as Objective>::KIND),*];

            /// The Python class name of the objective.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(ObjectiveSpec::$name(_) => <$name as Objective>::KIND),*
                }
            }

            /// The objective of Python class `kind`, read from its fields (None for a kind
            /// not in the list).
            pub fn read<R: FieldReader>(
                kind: &str,
                fields: &R,
            ) -> Option<Result<ObjectiveSpec, R::Error>> {
                $(if kind == <$name as Objective>::KIND {
                    return Some(<$name as Objective>::read(fields).map(ObjectiveSpec::$name));
                })*
                None
            }

            /// The objective's fields by name (`kind` aside).
            pub fn write<W: FieldWriter>(&self, fields: &mut W) -> Result<(), W::Error> {
                match self {
                    $(ObjectiveSpec::$name(o) => o.write(fields)),*
                }
            }
        }
    };
}

/// One match arm per listed objective, each evaluating the same body.
macro_rules! match_objective {
    (($spec:expr, $o:ident, $body:expr) $($name:ident),*) => {
        match $spec {
            $($crate::objectives::ObjectiveSpec::$name($o) => $body,)*
        }
    };
}
pub(crate) use define_objective_spec;
pub(crate) use match_objective;
pub(crate) use objective_list;
objective_list!(define_objective_spec!());

/// `with_objective!(spec, o => body)`: evaluate `body` with `o` bound to the concrete
/// objective inside `spec`, one monomorphised copy of `body` per objective. Entry points use
/// it once per call, never per sample.
macro_rules! with_objective {
    ($spec:expr, $o:ident => $body:expr) => {
        $crate::objectives::objective_list!(match_objective!($spec, $o, $body))
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

/// The RL objectives' per-sample values: v_i = R(x_i) and, in `weight_or_log_ratio`, the
/// log-ratio log q_θ(x_i) − log q_2(x_i) (q_2 the compared density: start model or lagged
/// model).
#[inline(always)]
pub(crate) fn reward_values<X>(reward: Reward, radius: f64, m: &Models<X>, batch: &mut Batch) {
    let d = batch.dim;
    for i in 0..batch.len {
        let x = &batch.x[i * d..(i + 1) * d];
        batch.value[i] = reward.at(radius, &m.target, x, &mut batch.scratch);
        batch.weight_or_log_ratio[i] = batch.log_q[i] - batch.log_compared[i];
    }
}

/// Every objective's ĝ = −Σ ω_i s(x_i) (maximum likelihood on its samples): c_i = −1.
#[inline(always)]
pub(crate) fn likelihood_coefficients(batch: &mut Batch) {
    batch.value[..batch.len].iter_mut().for_each(|v| *v = -1.0)
}

pub mod fields {
    //! An objective's fields by name, as they cross the binding: each objective reads itself from
    //! a [`FieldReader`] and writes itself to a [`FieldWriter`] ([`super::Objective::read`],
    //! [`super::Objective::write`]), so the binding (`bindings/conversions.rs`) implements the two
    //! traits once for Python objects and names no objective. Kept free of pyo3, like the rest of
    //! the kernels.

    use super::{Named, Reward};

    /// Typed, checked access to the fields of an objective (the Python dataclass, read by
    /// attribute name). Every read checks its value: a value that bypassed the dataclass
    /// validation is refused with an error naming the field and what it allows.
    pub trait FieldReader {
        type Error;

        /// A finite real number (not a bool or a string) with `ok(value)`; `allowed` says which
        /// values those are ("a finite number > 0").
        fn number(
            &self,
            name: &str,
            allowed: &str,
            ok: impl Fn(f64) -> bool,
        ) -> Result<f64, Self::Error>;

        /// None, or a number as [`number`](FieldReader::number).
        fn optional_number(
            &self,
            name: &str,
            allowed: &str,
            ok: impl Fn(f64) -> bool,
        ) -> Result<Option<f64>, Self::Error>;

        /// The string `word` (then None), or a number as [`number`](FieldReader::number).
        fn number_or_word(
            &self,
            name: &str,
            word: &str,
            allowed: &str,
            ok: impl Fn(f64) -> bool,
        ) -> Result<Option<f64>, Self::Error>;

        /// An integer (not a bool) with `ok(value)`.
        fn integer(
            &self,
            name: &str,
            allowed: &str,
            ok: impl Fn(i64) -> bool,
        ) -> Result<i64, Self::Error>;

        /// One of the names of `E`.
        fn choice<E: Named>(&self, name: &str) -> Result<E, Self::Error>;

        /// None, or a sequence of 1 to `max_len` finite real numbers.
        fn optional_vector(
            &self,
            name: &str,
            allowed: &str,
            max_len: usize,
        ) -> Result<Option<Vec<f64>>, Self::Error>;

        /// A finite number > 0.
        fn positive(&self, name: &str) -> Result<f64, Self::Error> {
            self.number(name, "a finite number > 0", |v| v > 0.0)
        }

        /// The replay fraction λ ∈ [0, 1) (`replay`).
        fn replay(&self) -> Result<f64, Self::Error> {
            self.number("replay", "a finite number in [0, 1)", |v| {
                (0.0..1.0).contains(&v)
            })
        }

        /// A reward and the radius of the indicator reward (`reward`, `radius`).
        fn reward(&self) -> Result<(Reward, f64), Self::Error> {
            Ok((self.choice("reward")?, self.positive("radius")?))
        }
    }

    /// The fields of an objective written by name, in the form of `Objective.as_dict()`.
    pub trait FieldWriter {
        type Error;

        fn number(&mut self, name: &str, value: f64) -> Result<(), Self::Error>;

        fn optional_number(&mut self, name: &str, value: Option<f64>) -> Result<(), Self::Error>;

        fn integer(&mut self, name: &str, value: i64) -> Result<(), Self::Error>;

        /// A string: a choice's name, or a word standing for a value ('adaptive').
        fn word(&mut self, name: &str, value: &str) -> Result<(), Self::Error>;

        /// None, or a sequence of numbers (a tuple on the Python side).
        fn optional_vector(&mut self, name: &str, value: Option<&[f64]>)
            -> Result<(), Self::Error>;
    }
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
        names_round_trip::<RewardKind>();
        names_round_trip::<Reference>();
        names_round_trip::<KlEstimator>();
        names_round_trip::<KlAdvantage>();
    }
}
