//! Off-policy regression to the optimal policy, OAPL (docs: theory-oapl); Python class
//! `mixforget.OAPL`.
//!
//! Group size G = batch size. A lagged copy of the model, θ_lag ← θ every `lag` steps, draws
//! the samples; with rewards r_i = R(x_i), the value estimate V̂ = β1 log mean_i exp(r_i/β1)
//! and Δ_i = log q_θ(x_i) − log q_lag(x_i),
//!
//!   ĝ = (2β2/G) Σ_i (β2 Δ_i − (r_i − V̂)) s(x_i),
//!
//! so c_i = 2β2 (β2 Δ_i − (r_i − V̂)).

use super::fields::{FieldReader, FieldWriter};
use super::{reward_values, Named, Objective, Reward, Source};
use crate::engine::batch::Batch;
use crate::engine::state::{Averager, MixtureBuilder, Models};
use crate::error::KernelResult;
use crate::model::params::Params;
use crate::model::two_mode::Mix2;

#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OAPL {
    /// β1 > 0, temperature of V̂.
    pub beta1: f64,
    /// β2 > 0, weight of the KL to the lagged model.
    pub beta2: f64,
    /// Steps between refreshes of the lagged model, ≥ 1.
    pub lag: usize,
    pub reward: Reward,
    /// Radius of the indicator reward (unused by the others), > 0.
    pub radius: f64,
}

impl Objective for OAPL {
    const KIND: &'static str = "OAPL";

    fn read<R: FieldReader>(f: &R) -> Result<Self, R::Error> {
        let lag = f.integer("lag", "an integer >= 1", |v| v >= 1)? as usize;
        let (reward, radius) = f.reward()?;
        Ok(OAPL {
            beta1: f.positive("beta1")?,
            beta2: f.positive("beta2")?,
            lag,
            reward,
            radius,
        })
    }

    fn write<W: FieldWriter>(&self, f: &mut W) -> Result<(), W::Error> {
        f.number("beta1", self.beta1)?;
        f.number("beta2", self.beta2)?;
        f.integer("lag", self.lag as i64)?;
        f.word("reward", self.reward.name())?;
        f.number("radius", self.radius)
    }

    /// The lagged parameters θ_lag (the twin's `"lag"`).
    type Extra = Params;
    /// The lagged model q_lag.
    type ExtraModels = Mix2;

    fn reset(&self, start: &Params) -> Params {
        start.clone()
    }

    fn extra_models(&self, lag: &Params, mixtures: &impl MixtureBuilder, _target: &Mix2) -> Mix2 {
        mixtures.mixture(lag)
    }

    fn refresh_extra_models(
        &self,
        lag: &Params,
        lagged: &mut Mix2,
        mixtures: &impl MixtureBuilder,
        _target: &Mix2,
    ) {
        mixtures.set_mixture(lag, lagged);
    }

    /// θ_lag ← θ every `lag` steps.
    fn advance(&self, lag: &mut Params, theta: &Params, step: u64) {
        if step.is_multiple_of(self.lag as u64) {
            lag.copy_from(theta);
        }
    }

    /// The lagged model q_lag.
    fn source<'a>(&self, m: &'a Models<Mix2>) -> Source<'a> {
        Source::Mixture(&m.extra)
    }

    /// q_lag, in Δ.
    fn compared_density<'a>(&self, m: &'a Models<Mix2>) -> Option<&'a Mix2> {
        Some(&m.extra)
    }

    /// e^{R/β1} with R a log density adds curvature 1/β1; the indicator reward jumps.
    fn quadrature_curvature(&self) -> Option<f64> {
        (self.reward != Reward::NewIndicator).then_some(1.0 / self.beta1)
    }

    fn indicator_radius(&self) -> Option<f64> {
        (self.reward == Reward::NewIndicator).then_some(self.radius)
    }

    /// v_i = r_i, batch.weight_or_log_ratio = Δ_i.
    #[inline(always)]
    fn values(&self, m: &Models<Mix2>, batch: &mut Batch) {
        reward_values(self.reward, self.radius, m, batch)
    }

    #[inline(always)]
    fn coefficients(&self, batch: &mut Batch, how: Averager) {
        let n = batch.len;
        let (beta1, beta2) = (self.beta1, self.beta2);
        let sum_w = batch.weight_sum();
        // V̂ = β1 log Σ ω exp(r/β1), stable with the max shift.
        let r_max = batch.value_max();
        let mut z = 0.0;
        for i in 0..n {
            z += batch.omega[i] * ((batch.value[i] - r_max) / beta1).exp();
        }
        let v_hat = r_max + beta1 * (z / sum_w).ln();
        // E over the dropped dimensions of (r − V̂) for log-density rewards (the indicator is
        // refused by `check_exact`).
        let shift = if how.exact && how.perp_dims > 0 {
            -0.5 * how.perp_dims as f64 * (1.0 - beta1 * (1.0 + 1.0 / beta1).ln())
        } else {
            0.0
        };
        for i in 0..n {
            let advantage = batch.value[i] - v_hat + shift;
            batch.value[i] = 2.0 * beta2 * (beta2 * batch.weight_or_log_ratio[i] - advantage);
        }
    }

    fn check_exact(&self, perp_dims: usize) -> KernelResult<()> {
        if perp_dims > 0 && self.reward == Reward::NewIndicator {
            return Err("the exact population limit of OAPL with the indicator reward is implemented only when the means span all d dimensions (e.g. d = 1)".into());
        }
        Ok(())
    }
}
