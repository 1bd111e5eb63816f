//! The engine's vocabulary of per-step state: the densities an objective reads ([`Models`]),
//! one replicate's state ([`Replicate`]), a gradient ([`Grad`]) and how an evaluation averages
//! ([`Averager`]); and the two views through which an objective's own extra state meets the
//! generic core ([`ExtraModels`], [`MixtureBuilder`]). Nothing here depends on the objectives
//! or the loop, and nothing names an objective: each objective declares its extra state and
//! the densities derived from it as associated types (`crate::objectives::Objective`).

use crate::model::params::Params;
use crate::model::two_mode::Mix2;
use crate::random::simd_rng::LaneStream;

/// Every density an objective may need, at the current state: the model q_θ, the target p*
/// and the densities `X` the objective derives from its extra state
/// (`Objective::ExtraModels`; `()` for an objective without one).
#[derive(Clone, Debug)]
pub struct Models<X = ()> {
    pub model: Mix2,
    pub target: Mix2,
    pub extra: X,
}

/// The densities an objective derives from its extra state, as the generic core sees them:
/// mixtures it can list (an exact evaluation spans their means and resolves their
/// separations) and map (into the reduced span of `crate::population`).
pub trait ExtraModels: Clone + std::fmt::Debug + Send + Sync {
    /// Every mixture, in a fixed order.
    fn mixtures(&self) -> impl Iterator<Item = &Mix2>;
    /// The same densities with `f` applied to every mixture.
    fn map(&self, f: impl FnMut(&Mix2) -> Mix2) -> Self;
}

/// No derived densities.
impl ExtraModels for () {
    fn mixtures(&self) -> impl Iterator<Item = &Mix2> {
        std::iter::empty()
    }
    fn map(&self, _f: impl FnMut(&Mix2) -> Mix2) -> Self {}
}

/// One derived mixture (a teacher, start or lagged model).
impl ExtraModels for Mix2 {
    fn mixtures(&self) -> impl Iterator<Item = &Mix2> {
        std::iter::once(self)
    }
    fn map(&self, mut f: impl FnMut(&Mix2) -> Mix2) -> Self {
        f(self)
    }
}

/// A derived mixture that only some settings keep (KLRegularizedRL's start reference).
impl ExtraModels for Option<Mix2> {
    fn mixtures(&self) -> impl Iterator<Item = &Mix2> {
        self.iter()
    }
    fn map(&self, f: impl FnMut(&Mix2) -> Mix2) -> Self {
        self.as_ref().map(f)
    }
}

/// How a parameter set becomes the model's mixture: the problem's weight parametrisation,
/// model covariances and trained scales (implemented by `engine::problem::Problem`). An
/// objective builds the densities of its extra state with it.
pub trait MixtureBuilder {
    /// The mixture of `p`.
    fn mixture(&self, p: &Params) -> Mix2;
    /// `mix` set to the mixture of `p` in place (no allocation; `mix` came from
    /// [`mixture`](MixtureBuilder::mixture)).
    fn set_mixture(&self, p: &Params, mix: &mut Mix2);
}

/// State of one replicate: θ, the objective's extra state `E` (`Objective::Extra`; `()` for
/// none), counters and its random stream.
#[derive(Clone, Debug)]
pub struct Replicate<E = ()> {
    pub theta: Params,
    pub extra: E,
    pub steps_done: u64,
    pub starved: i64,
    pub diverged: bool,
    /// The replicate's own vectorised stream (labels, replay slots and normals).
    pub rng: LaneStream,
}

/// A gradient of the loss: weight parameter, old mean, new mean, and the parameters of
/// (σ_o, σ_n) (zero unless scales train).
#[derive(Clone, Debug, PartialEq)]
pub struct Grad {
    pub weight: f64,
    pub old: Vec<f64>,
    pub new: Vec<f64>,
    pub scale: [f64; 2],
}

impl Grad {
    pub fn zeros(dim: usize) -> Grad {
        Grad {
            weight: 0.0,
            old: vec![0.0; dim],
            new: vec![0.0; dim],
            scale: [0.0; 2],
        }
    }
    /// (weight, old mean [d], new mean [d]) and, when `out` has room for them (3 + 2d
    /// entries), the two scale entries (old, new).
    pub fn write_flat(&self, out: &mut [f64]) {
        let d = self.old.len();
        out[0] = self.weight;
        out[1..1 + d].copy_from_slice(&self.old);
        out[1 + d..1 + 2 * d].copy_from_slice(&self.new);
        if out.len() >= 3 + 2 * d {
            out[1 + 2 * d..3 + 2 * d].copy_from_slice(&self.scale);
        }
    }
}

/// How the exact (population) evaluation differs from a finite batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Averager {
    /// Expectations instead of leave-one-out batch statistics (the G → ∞ limit).
    pub exact: bool,
    /// Dimensions dropped by the span reduction (`crate::population`); their contribution to
    /// log-density rewards is added in closed form where one exists.
    pub perp_dims: usize,
}
