//! A training problem (target, model covariances, start, objective, update settings) and what
//! it does to a replicate: build and refresh its models, one batch gradient, the update with
//! its runaway rule, and the records.

use crate::engine::batch::Batch;
use crate::engine::state::{Grad, MixtureBuilder, Models, Replicate};
use crate::model::mixture::{Cov, Gaussian};
use crate::model::params::{Params, ScaleParam, WeightParam, DIRECT_EPS, SCALE_FLOOR};
use crate::model::two_mode::Mix2;
use crate::objectives::{Objective, ObjectiveSpec};
use crate::random::simd_rng::LaneStream;

/// The runaway bound (with [`RUNAWAY_WEIGHT`]): a replicate whose old or new mean is farther
/// than this many Mahalanobis units (the target's covariance of that mode) from the target's
/// mean of the mode has left the model's meaningful range, even while finite, and is flagged
/// diverged. The one definition: Python reads both constants from `_core`
/// (`mixforget.results.RUNAWAY_DISTANCE`, `Trajectory.runaway`).
pub const RUNAWAY_DISTANCE: f64 = 1e6;
/// A replicate whose old weight α, as computed in float64 (the value the records show), is
/// within this of 0 or 1 has run away: logit η ≤ ≈ −690.8, or η ≳ 36.7 where α rounds to
/// exactly 1 (so a recorded α = 1.0 is always flagged); direct α never (clamped to
/// [1e-3, 1 − 1e-3]). `Trajectory.runaway` applies the same test to the recorded α.
pub const RUNAWAY_WEIGHT: f64 = 1e-300;
/// A trained component scale σ_k more than this factor above or below the target's scale of
/// its mode (det(Σ*_k)^{1/(2d)}) has run away (σ → ∞) or collapsed (σ → 0); decided on
/// log σ, so that neither σ nor σ² has to be finite.
pub const RUNAWAY_SCALE: f64 = 1e6;

/// Trainable component scales: component k's covariance is σ_k² S_k with S_k = Σ_k /
/// det(Σ_k)^{1/d} (unit determinant, fixed) and σ_k starting at det(Σ_k)^{1/(2d)}, so that in
/// one dimension σ_k is the standard deviation.
#[derive(Clone, Debug, PartialEq)]
pub struct Scales {
    pub param: ScaleParam,
    /// Learning-rate multipliers of (σ_o, σ_n).
    pub lr_scale: [f64; 2],
    /// S_o and S_n.
    pub shape: [Cov; 2],
}

impl Scales {
    /// The covariance σ² S of component k (0 old, 1 new) at parameter value `value`, in place.
    #[inline]
    pub(crate) fn apply(&self, k: usize, value: f64, g: &mut Gaussian) {
        g.set_scaled_cov(&self.shape[k], self.param.sd(value));
    }
}

/// How a step turns the gradient ĝ into a parameter change (docs: theory-natural-gradient).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Update {
    /// θ ← θ − lr·m⊙ĝ.
    #[default]
    Sgd,
    /// θ ← θ − lr·m⊙F⁻¹ĝ with F the complete-data Fisher of the current model, exact and
    /// block-diagonal per component: weight α(1−α) (logit η) or 1/(α(1−α)) (direct α); mean of
    /// component k w_k Σ_k⁻¹; trained scale 2d·w_k/σ_k² (σ direct) or 2d·w_k (log σ), with
    /// (w_o, w_n) = (α, 1−α) and Σ_k the component's current covariance.
    Natural,
}

/// Fixed description of a training problem (original coordinates).
#[derive(Clone, Debug)]
pub struct Problem {
    pub dim: usize,
    pub target: Mix2,
    pub model_old_cov: Cov,
    pub model_new_cov: Cov,
    pub start: Params,
    pub objective: ObjectiveSpec,
    pub weight_param: WeightParam,
    pub lr: f64,
    /// Learning-rate multipliers for (weight, old mean, new mean); 0 freezes a group.
    pub lr_scale: [f64; 3],
    /// Trainable component scales; None keeps the model covariances fixed.
    pub scales: Option<Scales>,
    /// Plain or natural-gradient steps.
    pub update: Update,
}

/// The model's mixture of a parameter set: the weight parametrisation, the model
/// covariances and, when they train, the scales.
impl MixtureBuilder for Problem {
    fn mixture(&self, p: &Params) -> Mix2 {
        let g = |mean: &[f64], cov: &Cov| Gaussian::new(mean.to_vec(), cov.clone());
        let mut mix = Mix2::new(
            p.alpha(self.weight_param),
            g(&p.old_mean, &self.model_old_cov),
            g(&p.new_mean, &self.model_new_cov),
        );
        self.apply_scales(p, &mut mix);
        mix
    }

    fn set_mixture(&self, p: &Params, mix: &mut Mix2) {
        mix.set(p.alpha(self.weight_param), &p.old_mean, &p.new_mean);
        self.apply_scales(p, mix);
    }
}

impl Problem {
    fn apply_scales(&self, p: &Params, mix: &mut Mix2) {
        if let Some(scales) = &self.scales {
            scales.apply(0, p.scale[0], &mut mix.old);
            scales.apply(1, p.scale[1], &mut mix.new);
        }
    }

    /// The densities at a replicate's state: q_θ, p* and the objective's extra models.
    pub fn models_at<O: Objective>(
        &self,
        objective: &O,
        r: &Replicate<O::Extra>,
    ) -> Models<O::ExtraModels> {
        Models {
            model: self.mixture(&r.theta),
            target: self.target.clone(),
            extra: objective.extra_models(&r.extra, self, &self.target),
        }
    }

    /// Update the moving models in place (no allocation): q_θ, then what the objective
    /// derives from its extra state.
    pub fn refresh<O: Objective>(
        &self,
        objective: &O,
        models: &mut Models<O::ExtraModels>,
        r: &Replicate<O::Extra>,
    ) {
        self.set_mixture(&r.theta, &mut models.model);
        objective.refresh_extra_models(&r.extra, &mut models.extra, self, &self.target);
    }

    /// σ_k of a parameter set (its fixed start value when scales are not trained).
    pub fn scale_sd(&self, p: &Params) -> [f64; 2] {
        match &self.scales {
            Some(s) => p.scale.map(|v| s.param.sd(v)),
            None => p.scale,
        }
    }

    /// Entries of one flat gradient: 1 + 2d, plus (σ_o, σ_n) when scales train.
    pub fn grad_width(&self) -> usize {
        1 + 2 * self.dim + if self.scales.is_some() { 2 } else { 0 }
    }

    /// Replicate `index` at the start: θ_0, the objective's extra state reset from it, and
    /// its stream (key, index).
    pub fn new_replicate<O: Objective>(
        &self,
        objective: &O,
        key: [u64; 2],
        index: u64,
    ) -> Replicate<O::Extra> {
        Replicate {
            theta: self.start.clone(),
            extra: objective.reset(&self.start),
            steps_done: 0,
            starved: 0,
            diverged: false,
            rng: LaneStream::new(key, index),
        }
    }
}

impl Problem {
    /// One finite-batch estimate ĝ at `models`: draw the batch from the objective's sampling
    /// distribution (docs: theory-estimators), then the score-function core. Returns the
    /// old-labelled count.
    pub fn batch_gradient<O: Objective>(
        &self,
        objective: &O,
        models: &Models<O::ExtraModels>,
        rng: &mut LaneStream,
        batch: &mut Batch,
        grad: &mut Grad,
    ) -> usize {
        crate::engine::batch_gradient::batch_gradient(
            objective,
            self.weight_param,
            self.scales.as_ref().map(|s| s.param),
            models,
            rng,
            batch,
            grad,
        )
    }

    /// Write record `k` of a replicate (α, μ_o, μ_n, cumulative starved count, (σ_o, σ_n))
    /// into its per-replicate slices of the recording buffers.
    #[allow(clippy::type_complexity)]
    pub fn record<E>(
        &self,
        rep: &Replicate<E>,
        k: usize,
        (weight, old, new, starved, scale): (
            &mut [f64],
            &mut [f64],
            &mut [f64],
            &mut [i64],
            &mut [f64],
        ),
    ) {
        let d = self.dim;
        weight[k] = rep.theta.alpha(self.weight_param);
        old[k * d..(k + 1) * d].copy_from_slice(&rep.theta.old_mean);
        new[k * d..(k + 1) * d].copy_from_slice(&rep.theta.new_mean);
        starved[k] = rep.starved;
        scale[2 * k..2 * k + 2].copy_from_slice(&self.scale_sd(&rep.theta));
    }

    /// θ ← θ − lr·m⊙ĝ, then the objective's extra state; a non-finite θ freezes the replicate.
    pub fn apply_update<O: Objective>(
        &self,
        objective: &O,
        r: &mut Replicate<O::Extra>,
        grad: &Grad,
        previous: &mut Params,
    ) {
        previous.copy_from(&r.theta);
        if self.update == Update::Natural {
            self.natural_step(&mut r.theta, grad);
        } else {
            self.sgd_step(&mut r.theta, grad);
        }
        r.steps_done += 1;
        if !r.theta.is_finite() {
            r.theta.copy_from(previous);
            r.diverged = true;
            return;
        }
        if self.runaway(&r.theta) {
            // Frozen where it crossed the bound (finite, so the records show it).
            r.diverged = true;
            return;
        }
        objective.advance(&mut r.extra, &r.theta, r.steps_done);
    }

    /// θ ← θ − lr·m⊙ĝ with the floors of the direct parametrisations.
    fn sgd_step(&self, theta: &mut Params, grad: &Grad) {
        let [sw, so, sn] = self.lr_scale;
        let lr = self.lr;
        theta.weight -= lr * sw * grad.weight;
        if self.weight_param == WeightParam::Direct {
            theta.weight = theta.weight.clamp(DIRECT_EPS, 1.0 - DIRECT_EPS);
        }
        theta
            .old_mean
            .iter_mut()
            .zip(&grad.old)
            .for_each(|(p, g)| *p -= lr * so * g);
        theta
            .new_mean
            .iter_mut()
            .zip(&grad.new)
            .for_each(|(p, g)| *p -= lr * sn * g);
        if let Some(scales) = &self.scales {
            for k in 0..2 {
                let v = theta.scale[k] - lr * scales.lr_scale[k] * grad.scale[k];
                theta.scale[k] = floor_scale(scales.param, v);
            }
        }
    }

    /// θ ← θ − lr·m⊙F⁻¹ĝ ([`Update::Natural`]), F at the current θ, then the same floors.
    fn natural_step(&self, theta: &mut Params, grad: &Grad) {
        let [sw, so, sn] = self.lr_scale;
        let lr = self.lr;
        let alpha = theta.alpha(self.weight_param);
        let weights = [alpha, 1.0 - alpha];
        let bernoulli = alpha * (1.0 - alpha);
        let weight_step = match self.weight_param {
            WeightParam::Logit => grad.weight / bernoulli,
            WeightParam::Direct => grad.weight * bernoulli,
        };
        theta.weight -= lr * sw * weight_step;
        if self.weight_param == WeightParam::Direct {
            theta.weight = theta.weight.clamp(DIRECT_EPS, 1.0 - DIRECT_EPS);
        }
        let sd = self.scale_sd(theta);
        let d = self.dim;
        // Σ_k ĝ_k on the stack for the usual dimensions
        let mut small = [0.0; 16];
        let mut large = Vec::new();
        let step: &mut [f64] = if d <= small.len() {
            &mut small[..d]
        } else {
            large.resize(d, 0.0);
            &mut large
        };
        let groups = [
            (&mut theta.old_mean, &grad.old, so),
            (&mut theta.new_mean, &grad.new, sn),
        ];
        for (k, (mean, g, m)) in groups.into_iter().enumerate() {
            step.copy_from_slice(g);
            let factor = match &self.scales {
                Some(scales) => {
                    covariance_times(&scales.shape[k], step);
                    sd[k] * sd[k] / weights[k]
                }
                None => {
                    covariance_times([&self.model_old_cov, &self.model_new_cov][k], step);
                    1.0 / weights[k]
                }
            };
            mean.iter_mut()
                .zip(step.iter())
                .for_each(|(p, s)| *p -= lr * m * (s * factor));
        }
        if let Some(scales) = &self.scales {
            let two_d = 2.0 * d as f64;
            for k in 0..2 {
                let fisher = match scales.param {
                    ScaleParam::Direct => two_d * weights[k] / (sd[k] * sd[k]),
                    ScaleParam::Log => two_d * weights[k],
                };
                let v = theta.scale[k] - lr * scales.lr_scale[k] * (grad.scale[k] / fisher);
                theta.scale[k] = floor_scale(scales.param, v);
            }
        }
    }

    /// Whether θ has left the documented bound ([`RUNAWAY_DISTANCE`], [`RUNAWAY_WEIGHT`],
    /// [`RUNAWAY_SCALE`]): every trained parameter, one rule.
    pub fn runaway(&self, theta: &Params) -> bool {
        let alpha = theta.alpha(self.weight_param);
        if alpha <= RUNAWAY_WEIGHT || 1.0 - alpha <= RUNAWAY_WEIGHT {
            return true;
        }
        if let Some(scales) = &self.scales {
            let bound = RUNAWAY_SCALE.ln();
            let targets = [&self.target.old.cov, &self.target.new.cov];
            let out = theta.scale.iter().zip(targets).any(|(&v, cov)| {
                let log_ratio =
                    scales.param.log_sd(v) - cov.half_log_det(self.dim) / self.dim as f64;
                // NaN (log of a non-positive σ) counts as beyond the bound as well
                log_ratio.is_nan() || log_ratio.abs() > bound
            });
            if out {
                return true;
            }
        }
        let d = self.dim;
        // whitening scratch for full covariances, on the stack for the usual dimensions
        let mut small = [0.0; 16];
        let mut large = Vec::new();
        let scratch: &mut [f64] = if d <= small.len() {
            &mut small[..d]
        } else {
            large.resize(d, 0.0);
            &mut large
        };
        [
            (&theta.old_mean, &self.target.old),
            (&theta.new_mean, &self.target.new),
        ]
        .into_iter()
        .any(|(mean, mode)| {
            let q = mode
                .cov
                .mahalanobis_sq(|i| mean[i] - mode.mean[i], d, scratch);
            // NaN: an overflowing difference whitened (∞ − ∞), beyond the bound as well
            q.is_nan() || q.sqrt() > RUNAWAY_DISTANCE
        })
    }
}

/// A scale parameter after a step: a direct σ floored at [`SCALE_FLOOR`] (a NaN becomes the
/// floor, as `f64::max`), log σ as it is.
fn floor_scale(param: ScaleParam, value: f64) -> f64 {
    match param {
        ScaleParam::Direct => value.max(SCALE_FLOOR),
        ScaleParam::Log => value,
    }
}

/// v ← Σ v = L (Lᵀ v), the covariance applied to a vector (the natural step of a mean).
fn covariance_times(cov: &Cov, v: &mut [f64]) {
    match cov {
        Cov::Scalar { sd } => v.iter_mut().for_each(|x| *x *= sd * sd),
        Cov::Diag { sd } => v.iter_mut().zip(sd).for_each(|(x, s)| *x *= s * s),
        Cov::Full { chol, dim } => {
            // Lᵀ v in place, ascending: entry i reads only entries k ≥ i, not yet overwritten
            for i in 0..*dim {
                v[i] = (i..*dim).map(|k| chol[k * dim + i] * v[k]).sum();
            }
            cov.color(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covariance_times_is_the_matrix_product() {
        let m = [1.2, 0.3, 0.1, 0.3, 0.7, -0.2, 0.1, -0.2, 2.0];
        let cov = Cov::full(&m, 3).unwrap();
        let v = [0.5, -1.0, 2.0];
        let mut out = v;
        covariance_times(&cov, &mut out);
        for i in 0..3 {
            let expected: f64 = (0..3).map(|j| m[i * 3 + j] * v[j]).sum();
            assert!(
                (out[i] - expected).abs() < 1e-14,
                "{i}: {} vs {expected}",
                out[i]
            );
        }
        let mut diag = v;
        covariance_times(&Cov::diag(&[2.0, 3.0, 4.0]).unwrap(), &mut diag);
        for (a, b) in diag.iter().zip([1.0, -3.0, 8.0]) {
            assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        }
    }
}
