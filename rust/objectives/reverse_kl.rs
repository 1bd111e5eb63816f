//! On-policy reverse KL (docs: theory-reverse-kl); Python class `mixforget.ReverseKL`.
//!
//! Loss KL(q_θ ‖ p*). Samples come from m = (1−λ) q_θ + λ p_old* (replay λ), and
//!
//!   ĝ = (1/B) Σ_i w_i (log q_θ(x_i) − log p*(x_i) − b_i) s(x_i),
//!
//! with the bounded importance weight w_i = min(c, q_θ(x_i)/m(x_i)) ≤ 1/(1−λ) (c the optional,
//! biased, `weight_cap`) and b_i the leave-one-out mean of the others' weighted log-ratios
//! (baseline "loo") or 0 ("none"). Stratified slots use the realised fraction
//! λ' = round(λB)/B in the weights. In the exact limit the baseline is the full expectation.

use super::{Named, Objective, Source};
use crate::engine::batch::{Batch, LooMean};
use crate::engine::state::{Averager, Models};
use crate::math::fastmath;
use crate::model::two_mode::Mix2;
use crate::random::starvation::Slots;

/// The baseline b_i subtracted from each sample's log-ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    None,
    /// The leave-one-out mean of the others' weighted log-ratios.
    Loo,
}

impl Named for Baseline {
    const NAMES: &'static [(&'static str, Self)] =
        &[("none", Baseline::None), ("loo", Baseline::Loo)];
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReverseKL {
    /// λ ∈ [0, 1).
    pub replay: f64,
    pub replay_slots: Slots,
    /// c > 0, or no cap.
    pub weight_cap: Option<f64>,
    pub baseline: Baseline,
}

impl ReverseKL {
    /// The cap c of the importance weights (∞ when there is none).
    pub fn cap(&self) -> f64 {
        self.weight_cap.unwrap_or(f64::INFINITY)
    }
}

/// Bounded importance weight of replay (docs: theory-reverse-kl): w = min(c, q/m), m = (1−λ) q + λ
/// p_old, so w ≤ 1/(1−λ) before any cap.
#[inline]
pub fn replay_weight(log_q: f64, log_p_old: f64, replay: f64, cap: f64) -> f64 {
    (1.0 / ((1.0 - replay) + replay * fastmath::exp(log_p_old - log_q))).min(cap)
}

/// v_i = log q_θ(x_i) − log q_2(x_i) with unit weights (no replay).
#[inline(always)]
pub(crate) fn log_ratio_values(batch: &mut Batch) {
    let n = batch.len;
    // zipped slices: no bounds checks, so the loop vectorises
    for (((v, a), lq), ls) in batch.value[..n]
        .iter_mut()
        .zip(&mut batch.aux[..n])
        .zip(&batch.log_q[..n])
        .zip(&batch.log_compared[..n])
    {
        *v = lq - ls;
        *a = 1.0;
    }
}

/// c_i = v_i − w_i b_i with b_i the leave-one-out mean of the weighted values
/// (docs: theory-reverse-kl), the full mean in the exact limit.
#[inline(always)]
pub(crate) fn subtract_loo_baseline(batch: &mut Batch, exact: bool) {
    let n = batch.len;
    let (sum_wv, sum_w) = batch.weighted_value_and_weight_sums();
    let baseline = LooMean::new(sum_wv, sum_w, batch.omega[0], exact);
    for (v, a) in batch.value[..n].iter_mut().zip(&batch.aux[..n]) {
        *v -= a * baseline.at(*v);
    }
}

impl Objective for ReverseKL {
    const KIND: &'static str = "ReverseKL";

    fn replay(&self) -> (f64, Slots) {
        (self.replay, self.replay_slots)
    }

    /// A cap below the weights' bound 1/(1−λ) puts a kink in the integrand.
    fn quadrature_curvature(&self) -> Option<f64> {
        (self.cap() * (1.0 - self.replay) >= 1.0).then_some(0.0)
    }

    /// The current model q_θ (replay adds p_old*).
    fn source<'a>(&self, m: &'a Models) -> Source<'a> {
        Source::Mixture(&m.model)
    }

    /// The target p*.
    fn compared_density<'a>(&self, m: &'a Models) -> Option<&'a Mix2> {
        Some(&m.target)
    }

    /// v_i = w_i (log q_θ(x_i) − log p*(x_i)), aux_i = w_i.
    #[inline(always)]
    fn values(&self, m: &Models, batch: &mut Batch) {
        let replay_used = batch.replay_used;
        if replay_used > 0.0 {
            let cap = self.cap();
            let ln_target_alpha = m.target.ln_alpha();
            let n = batch.len;
            for ((((v, a), lq), ls), so) in batch.value[..n]
                .iter_mut()
                .zip(&mut batch.aux[..n])
                .zip(&batch.log_q[..n])
                .zip(&batch.log_compared[..n])
                .zip(&batch.compared_old[..n])
            {
                let w = replay_weight(*lq, so - ln_target_alpha, replay_used, cap);
                *v = w * (lq - ls);
                *a = w;
            }
        } else {
            log_ratio_values(batch);
        }
    }

    #[inline(always)]
    fn coefficients(&self, batch: &mut Batch, how: Averager) {
        if self.baseline == Baseline::Loo {
            subtract_loo_baseline(batch, how.exact);
        }
    }
}
