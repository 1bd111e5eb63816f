//! Self-distillation fine-tuning (docs: theory-sdft, a modelling choice); Python class
//! `mixforget.SDFT`.
//!
//! The teacher φ is an exponential moving average of the student, φ ← (1−τ) φ + τ θ after
//! each step (τ = `ema`), whose new mean is moved toward the truth by the demonstration:
//!
//!   t = α_φ φ(·; μ_o^φ) + (1−α_φ) φ(·; (1−κ) μ_n^φ + κ μ_n*)   (κ = `anchor`).
//!
//! Direction "reverse": KL(q_θ ‖ t), the ReverseKL estimator with p* → t and the
//! leave-one-out baseline, samples from q_θ. Direction "forward": KL(t ‖ q_θ), samples from
//! t and ĝ = −(1/B) Σ_i s(x_i).

use super::reverse_kl::{log_ratio_values, subtract_loo_baseline};
use super::{likelihood_coefficients, Named, Objective, Source};
use crate::engine::batch::Batch;
use crate::engine::state::{Averager, Models, Replicate};
use crate::model::two_mode::Mix2;

/// Which KL between student and teacher is minimised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// KL(q_θ ‖ t).
    Reverse,
    /// KL(t ‖ q_θ).
    Forward,
}

impl Named for Direction {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("reverse", Direction::Reverse),
        ("forward", Direction::Forward),
    ];
}

#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SDFT {
    /// τ ∈ (0, 1].
    pub ema: f64,
    /// κ ∈ [0, 1].
    pub anchor: f64,
    pub direction: Direction,
}

impl Objective for SDFT {
    const KIND: &'static str = "SDFT";

    fn source<'a>(&self, m: &'a Models) -> Source<'a> {
        match self.direction {
            Direction::Reverse => Source::Mixture(&m.model),
            Direction::Forward => Source::Mixture(&m.teacher),
        }
    }

    fn compared_density<'a>(&self, m: &'a Models) -> Option<&'a Mix2> {
        match self.direction {
            Direction::Reverse => Some(&m.teacher),
            Direction::Forward => None,
        }
    }

    fn state_model<'a>(&self, m: &'a Models) -> Option<&'a Mix2> {
        Some(&m.teacher)
    }

    #[inline(always)]
    fn values(&self, _m: &Models, batch: &mut Batch) {
        if self.direction == Direction::Reverse {
            log_ratio_values(batch);
        }
    }

    #[inline(always)]
    fn coefficients(&self, batch: &mut Batch, how: Averager) {
        match self.direction {
            Direction::Reverse => subtract_loo_baseline(batch, how.exact),
            Direction::Forward => likelihood_coefficients(batch),
        }
    }

    /// The teacher's new mean, moved toward the truth: (1−κ) μ_n^φ + κ μ_n*.
    fn derive_models(&self, models: &mut Models, target: &Mix2) {
        let anchor = self.anchor;
        for (m, t) in models.teacher.new.mean.iter_mut().zip(&target.new.mean) {
            *m = (1.0 - anchor) * *m + anchor * t;
        }
    }

    const MOVES_STATE: bool = true;

    /// φ ← (1−τ) φ + τ θ.
    fn advance(&self, r: &mut Replicate) {
        let ema = self.ema;
        let t = &mut r.teacher;
        t.weight = (1.0 - ema) * t.weight + ema * r.theta.weight;
        t.old
            .iter_mut()
            .zip(&r.theta.old)
            .for_each(|(p, q)| *p = (1.0 - ema) * *p + ema * q);
        t.new
            .iter_mut()
            .zip(&r.theta.new)
            .for_each(|(p, q)| *p = (1.0 - ema) * *p + ema * q);
        // the scale parameters (σ or log σ) follow the same average; they are constant, and
        // unused, when scales do not train
        t.scale
            .iter_mut()
            .zip(&r.theta.scale)
            .for_each(|(p, q)| *p = (1.0 - ema) * *p + ema * q);
    }
}
