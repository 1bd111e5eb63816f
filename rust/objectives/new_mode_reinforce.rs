//! The RL estimator of 2510.18874's simulation ("Retaining by Doing"); Python class
//! `mixforget.NewModeREINFORCE`.
//!
//! Per step the B samples come from the model's *new component* φ_n only. With the importance
//! ratio ρ(x) = q_θ(x) / ((1−α) φ_n(x)) and the reward
//!
//!   r(x) = log p_new*(x) − log((1−α) φ_n(x)) − log β,
//!
//! the step ascends the mean of r·ρ·∇log q_θ, with no baseline:
//!
//!   ĝ = −(1/B) Σ_i ρ_i A_i s(x_i),   x_i ~ φ_n,
//!
//! so c_i = −ρ_i A_i with A_i = r_i ("raw") or (r_i − r̄)/sd(r) over the batch
//! ("normalised", population standard deviation; A = 0 when every reward is equal).
//!
//! Its expectation is E_{φ_n}[ρ r s] = (1/(1−α)) ∫ q_θ r s dx ("raw"). Unlike ReverseKL, whose
//! coefficient is log q_θ − log p* over samples of the whole model, the reward here compares the
//! weighted new component alone with p_new*: no log-ratio of the old component enters it, the
//! old mode is reached only through ρ and the responsibilities at points drawn near the new
//! mode, and there is no baseline. In the exact limit the normalised advantage uses the mean
//! and standard deviation of r under φ_n.

use super::fields::{FieldReader, FieldWriter};
use super::{no_extra_state, Named, Objective, Source};
use crate::engine::batch::{inverse_weighted_sd, Batch};
use crate::engine::state::{Averager, Models};
use crate::math::fastmath;
use crate::model::mixture::Gaussian;
use crate::model::two_mode::Mix2;

/// How the rewards become advantages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advantage {
    /// A = r.
    Raw,
    /// A = (r − mean r) / sd r over the batch.
    Normalised,
}

impl Named for Advantage {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("raw", Advantage::Raw),
        ("normalised", Advantage::Normalised),
    ];
}

#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NewModeREINFORCE {
    /// β > 0: the reward's offset −log β.
    pub beta: f64,
    pub advantage: Advantage,
}

impl Objective for NewModeREINFORCE {
    const KIND: &'static str = "NewModeREINFORCE";

    fn read<R: FieldReader>(f: &R) -> Result<Self, R::Error> {
        Ok(NewModeREINFORCE {
            beta: f.positive("beta")?,
            advantage: f.choice("advantage")?,
        })
    }

    fn write<W: FieldWriter>(&self, f: &mut W) -> Result<(), W::Error> {
        f.number("beta", self.beta)?;
        f.word("advantage", self.advantage.name())
    }
    no_extra_state!();

    /// The model's new component φ_n.
    fn source<'a>(&self, m: &'a Models) -> Source<'a> {
        Source::Single(&m.model.new)
    }

    /// The whole model mixture: E_{φ_n}[ρ A s] = (1/(1−α)) ∫ q_θ A s dx has mass around the
    /// old component too, which a grid around φ_n alone truncates once the old component
    /// reaches beyond it. With the model's own weights the node mixture is q_θ, so a node's
    /// weight ω ∝ φ_n/q_θ and ρ are reciprocal up to 1/(1−α).
    fn quadrature_components<'a>(&self, m: &'a Models) -> Vec<(f64, &'a Gaussian)> {
        vec![
            (m.model.alpha, &m.model.old),
            (1.0 - m.model.alpha, &m.model.new),
        ]
    }

    /// The target, whose new part gives log p_new*.
    fn compared_density<'a>(&self, m: &'a Models) -> Option<&'a Mix2> {
        Some(&m.target)
    }

    /// v_i = r_i, batch.weight_or_log_ratio = ρ_i, from the model's log parts and the target's new part.
    fn values(&self, m: &Models, batch: &mut Batch) {
        let ln_target_new_weight = (1.0 - m.target.alpha).ln();
        let ln_beta = self.beta.ln();
        for i in 0..batch.len {
            // model_new_part = log (1−α) φ_n(x), compared_new = log (1−α*) p_new*(x)
            let log_new_part = batch.model_new_part[i];
            let log_p_new = batch.compared_new[i] - ln_target_new_weight;
            batch.value[i] = log_p_new - log_new_part - ln_beta;
            batch.weight_or_log_ratio[i] = fastmath::exp(batch.log_q[i] - log_new_part);
        }
    }

    fn coefficients(&self, batch: &mut Batch, _how: Averager) {
        let n = batch.len;
        match self.advantage {
            Advantage::Raw => {
                for i in 0..n {
                    batch.value[i] *= -batch.weight_or_log_ratio[i];
                }
            }
            Advantage::Normalised => {
                // ω-weighted moments: the batch's (ω = 1/B) or, in the exact limit, those of
                // r under φ_n (the quadrature weights).
                let (sum_wv, sum_w) = batch.weighted_value_and_weight_sums();
                let mean = sum_wv / sum_w;
                let inv_sd = inverse_weighted_sd(&batch.omega[..n], &batch.value[..n], mean, sum_w);
                for i in 0..n {
                    batch.value[i] =
                        -batch.weight_or_log_ratio[i] * (batch.value[i] - mean) * inv_sd;
                }
            }
        }
    }
}
