//! A training problem (target, model covariances, start, objective, update settings) and what
//! it does to a replicate: build and refresh its models, one batch gradient, the update with
//! its runaway rule, and the records.

use crate::engine::batch::Batch;
use crate::engine::state::{Grad, Models, Replicate};
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
/// A replicate whose old weight α is within this of 0 or 1 has run away. Decided on the
/// weight parameter itself, without rounding α: logit |η| ≥ ln(1/1e-300 − 1) ≈ 690.8 (a
/// recorded α rounds to exactly 1 from η ≈ 36.7 on, far inside the bound); direct α ≤ 1e-300
/// or 1 − α ≤ 1e-300 (never, given the clip to [1e-3, 1 − 1e-3]).
pub const RUNAWAY_WEIGHT: f64 = 1e-300;

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
}

impl Problem {
    pub fn models_at<O: Objective>(&self, objective: &O, r: &Replicate) -> Models {
        let wp = self.weight_param;
        let g = |mean: &[f64], cov: &Cov| Gaussian::new(mean.to_vec(), cov.clone());
        let mix = |p: &Params| {
            let mut mix = Mix2::new(
                p.alpha(wp),
                g(&p.old, &self.model_old_cov),
                g(&p.new, &self.model_new_cov),
            );
            if let Some(scales) = &self.scales {
                scales.apply(0, p.scale[0], &mut mix.old);
                scales.apply(1, p.scale[1], &mut mix.new);
            }
            mix
        };
        let mut models = Models {
            model: mix(&r.theta),
            target: self.target.clone(),
            teacher: mix(&r.teacher),
            start: mix(&self.start),
            lag: mix(&r.lag),
        };
        self.refresh(objective, &mut models, r);
        models
    }

    /// Update the moving models in place (no allocation): θ, teacher, lag, then what the
    /// objective derives from its extra state (SDFT's anchored teacher).
    pub fn refresh<O: Objective>(&self, objective: &O, models: &mut Models, r: &Replicate) {
        let wp = self.weight_param;
        models
            .model
            .set(r.theta.alpha(wp), &r.theta.old, &r.theta.new);
        if O::MOVES_STATE {
            models.lag.set(r.lag.alpha(wp), &r.lag.old, &r.lag.new);
            models
                .teacher
                .set(r.teacher.alpha(wp), &r.teacher.old, &r.teacher.new);
        }
        if let Some(scales) = &self.scales {
            let moving: &mut [(&mut Mix2, &Params)] = if O::MOVES_STATE {
                &mut [
                    (&mut models.model, &r.theta),
                    (&mut models.lag, &r.lag),
                    (&mut models.teacher, &r.teacher),
                ]
            } else {
                &mut [(&mut models.model, &r.theta)]
            };
            for (mix, p) in moving.iter_mut() {
                scales.apply(0, p.scale[0], &mut mix.old);
                scales.apply(1, p.scale[1], &mut mix.new);
            }
        }
        objective.derive_models(models, &self.target);
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

    pub fn new_replicate(&self, key: [u64; 2], index: u64) -> Replicate {
        Replicate {
            theta: self.start.clone(),
            teacher: self.start.clone(),
            lag: self.start.clone(),
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
        models: &Models,
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
    pub fn record(
        &self,
        rep: &Replicate,
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
        old[k * d..(k + 1) * d].copy_from_slice(&rep.theta.old);
        new[k * d..(k + 1) * d].copy_from_slice(&rep.theta.new);
        starved[k] = rep.starved;
        scale[2 * k..2 * k + 2].copy_from_slice(&self.scale_sd(&rep.theta));
    }

    /// θ ← θ − lr·m⊙ĝ, then the objective's extra state; a non-finite θ freezes the replicate.
    pub fn apply_update<O: Objective>(
        &self,
        objective: &O,
        r: &mut Replicate,
        grad: &Grad,
        previous: &mut Params,
    ) {
        previous.copy_from(&r.theta);
        let [sw, so, sn] = self.lr_scale;
        let lr = self.lr;
        r.theta.weight -= lr * sw * grad.weight;
        if self.weight_param == WeightParam::Direct {
            r.theta.weight = r.theta.weight.clamp(DIRECT_EPS, 1.0 - DIRECT_EPS);
        }
        r.theta
            .old
            .iter_mut()
            .zip(&grad.old)
            .for_each(|(p, g)| *p -= lr * so * g);
        r.theta
            .new
            .iter_mut()
            .zip(&grad.new)
            .for_each(|(p, g)| *p -= lr * sn * g);
        if let Some(scales) = &self.scales {
            for k in 0..2 {
                let v = r.theta.scale[k] - lr * scales.lr_scale[k] * grad.scale[k];
                r.theta.scale[k] = match scales.param {
                    ScaleParam::Direct => v.max(SCALE_FLOOR),
                    ScaleParam::Log => v,
                };
            }
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
        objective.advance(r);
    }

    /// Whether θ has left the documented bound ([`RUNAWAY_DISTANCE`], [`RUNAWAY_WEIGHT`]).
    pub fn runaway(&self, theta: &Params) -> bool {
        let weight_out = match self.weight_param {
            WeightParam::Logit => theta.weight.abs() >= (1.0 / RUNAWAY_WEIGHT - 1.0).ln(),
            WeightParam::Direct => {
                theta.weight <= RUNAWAY_WEIGHT || 1.0 - theta.weight <= RUNAWAY_WEIGHT
            }
        };
        if weight_out {
            return true;
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
            (&theta.old, &self.target.old),
            (&theta.new, &self.target.new),
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
