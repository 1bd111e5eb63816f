//! Entropic test-time RL, TTT-Discover (docs: theory-ttt-discover); Python class
//! `mixforget.TTTDiscover`.
//!
//! Group size G = batch size, samples from q_θ, rewards r_i = R(x_i). With the entropic
//! weights e_i = exp(β (r_i − max r)) and the start model q_0,
//!
//!   A_i = e_i / mean_{j≠i} e_j − 1 − λ_KL (log q_θ(x_i) − log q_0(x_i)),
//!   ĝ = −(1/G) Σ_i A_i s(x_i),
//!
//! so c_i = −A_i. β is fixed, or adaptive: the β with KL(softmax(β r) ‖ ω) = ln 2. In the
//! exact limit the leave-one-out mean becomes the expectation.

use super::{reward_values, Objective, Reward, Source};
use crate::engine::batch::{Batch, LooMean};
use crate::engine::state::{Averager, Models};
use crate::error::KernelResult;
use crate::model::two_mode::Mix2;

const LN_2: f64 = std::f64::consts::LN_2;

/// The inverse temperature of the entropic weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Beta {
    Fixed(f64),
    /// Chosen per batch so that KL(softmax(β r) ‖ ω) = ln 2.
    Adaptive,
}

#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TTTDiscover {
    pub beta: Beta,
    /// λ_KL ≥ 0.
    pub kl_penalty: f64,
    pub reward: Reward,
    /// Radius of the indicator reward (unused by the others), > 0.
    pub radius: f64,
}

impl Objective for TTTDiscover {
    const KIND: &'static str = "TTTDiscover";

    fn source<'a>(&self, m: &'a Models) -> Source<'a> {
        Source::Mixture(&m.model)
    }

    /// The start model q_0 of the KL penalty.
    fn compared_density<'a>(&self, m: &'a Models) -> Option<&'a Mix2> {
        Some(&m.start)
    }

    fn state_model<'a>(&self, m: &'a Models) -> Option<&'a Mix2> {
        Some(&m.start)
    }

    /// e^{βR} with R a log density adds curvature β; the adaptive β is known only after the
    /// batch, and the indicator reward jumps.
    fn quadrature_curvature(&self) -> Option<f64> {
        match (self.beta, self.reward) {
            (_, Reward::NewIndicator) | (Beta::Adaptive, _) => None,
            (Beta::Fixed(beta), _) => Some(beta),
        }
    }

    fn indicator_radius(&self) -> Option<f64> {
        (self.reward == Reward::NewIndicator).then_some(self.radius)
    }

    /// v_i = r_i, aux_i = log q_θ(x_i) − log q_0(x_i).
    #[inline(always)]
    fn values(&self, m: &Models, batch: &mut Batch) {
        reward_values(self.reward, self.radius, m, batch)
    }

    #[inline(always)]
    fn coefficients(&self, batch: &mut Batch, how: Averager) {
        let n = batch.len;
        let sum_w = batch.weight_sum();
        let beta = match self.beta {
            Beta::Fixed(b) => b,
            Beta::Adaptive => adaptive_beta(&batch.value[..n], &batch.omega[..n]),
        };
        let shift = batch.value_max();
        let mut sum_we = 0.0;
        for i in 0..n {
            let e = (beta * (batch.value[i] - shift)).exp();
            batch.value[i] = e;
            sum_we += batch.omega[i] * e;
        }
        let mean_e = LooMean::new(sum_we, sum_w, batch.omega[0], how.exact);
        let kl_penalty = self.kl_penalty;
        for i in 0..n {
            let e = batch.value[i];
            let den = mean_e.at(e);
            let advantage = if den > 0.0 { e / den - 1.0 } else { 0.0 } - kl_penalty * batch.aux[i];
            batch.value[i] = -advantage;
        }
    }

    /// The dropped dimensions of the exact limit change the adaptive β and the indicator's
    /// jumps, with no closed form.
    fn check_exact(&self, perp_dims: usize) -> KernelResult<()> {
        if perp_dims > 0 && (self.beta == Beta::Adaptive || self.reward == Reward::NewIndicator) {
            return Err("the exact population limit of TTT-Discover with this reward or adaptive beta is implemented only when the means span all d dimensions (e.g. d = 1)".into());
        }
        Ok(())
    }
}

/// KL(p_β ‖ ω) for p_β ∝ ω e^{β r}, and its derivative β Var_p(r).
fn tilt_kl(beta: f64, r: &[f64], omega: &[f64], r_max: f64) -> (f64, f64) {
    let (mut z, mut m1, mut m2) = (0.0, 0.0, 0.0);
    for (ri, wi) in r.iter().zip(omega) {
        let e = wi * (beta * (ri - r_max)).exp();
        let c = ri - r_max;
        z += e;
        m1 += e * c;
        m2 += e * c * c;
    }
    let (mean, second) = (m1 / z, m2 / z);
    (beta * mean - z.ln(), beta * (second - mean * mean).max(0.0))
}

/// Adaptive β of TTT-Discover: KL(softmax(β r) ‖ ω) = ln 2 by safeguarded Newton–bisection.
/// KL grows with β toward −ln(ω-mass of the top rewards); when ln 2 is out of reach (all
/// rewards equal) the search stops at β = 1e8. With a group of two distinct rewards the
/// supremum is ln 2 itself, reached to rounding once β·(r_max − r_min) is a few tens.
pub fn adaptive_beta(r: &[f64], omega: &[f64]) -> f64 {
    let r_max = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let f = |b: f64| tilt_kl(b, r, omega, r_max);
    let (mut lo, mut hi) = (0.0, 1.0);
    while f(hi).0 < LN_2 {
        lo = hi;
        hi *= 2.0;
        if hi > 1e8 {
            return 1e8;
        }
    }
    let mut beta = 0.5 * (lo + hi);
    for _ in 0..200 {
        let (kl, slope) = f(beta);
        let err = kl - LN_2;
        if err.abs() < 1e-13 {
            break;
        }
        if err > 0.0 {
            hi = beta;
        } else {
            lo = beta;
        }
        let newton = beta - err / slope;
        beta = if slope > 0.0 && newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if hi - lo < 1e-15 * hi {
            break;
        }
    }
    beta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_beta_hits_ln2() {
        let r = [0.1, -0.5, 2.0, 1.5, 0.0, -3.0];
        let omega = [1.0 / 6.0; 6];
        let beta = adaptive_beta(&r, &omega);
        let r_max = 2.0;
        assert!((tilt_kl(beta, &r, &omega, r_max).0 - LN_2).abs() < 1e-10);
    }
}
