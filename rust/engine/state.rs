//! The engine's vocabulary of per-step state: the densities an objective reads ([`Models`]),
//! one replicate's state ([`Replicate`]), a gradient ([`Grad`]) and how an evaluation averages
//! ([`Averager`]). Nothing here depends on the objectives or the loop.

use crate::model::params::Params;
use crate::model::two_mode::Mix2;
use crate::random::simd_rng::LaneStream;

/// Every density an objective may need, at the current state.
#[derive(Clone, Debug)]
pub struct Models {
    pub model: Mix2,
    pub target: Mix2,
    /// SDFT's teacher t (new mean already moved toward the truth by the anchor).
    pub teacher: Mix2,
    /// TTT-Discover's start model q_0.
    pub start: Mix2,
    /// OAPL's lagged model.
    pub lag: Mix2,
}

/// State of one replicate.
#[derive(Clone, Debug)]
pub struct Replicate {
    pub theta: Params,
    pub teacher: Params,
    pub lag: Params,
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
