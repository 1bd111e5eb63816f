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

use super::fields::{FieldReader, FieldWriter};
use super::reverse_kl::{log_ratio_values, subtract_loo_baseline};
use super::{likelihood_coefficients, Named, Objective, Source};
use crate::engine::batch::Batch;
use crate::engine::state::{Averager, MixtureBuilder, Models};
use crate::model::params::Params;
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

    fn read<R: FieldReader>(f: &R) -> Result<Self, R::Error> {
        Ok(SDFT {
            ema: f.number("ema", "a finite number in (0, 1]", |v| v > 0.0 && v <= 1.0)?,
            anchor: f.number("anchor", "a finite number in [0, 1]", |v| {
                (0.0..=1.0).contains(&v)
            })?,
            direction: f.choice("direction")?,
        })
    }

    fn write<W: FieldWriter>(&self, f: &mut W) -> Result<(), W::Error> {
        f.number("ema", self.ema)?;
        f.number("anchor", self.anchor)?;
        f.word("direction", self.direction.name())
    }

    /// The teacher's parameters φ, an EMA of θ (the twin's `"ema"`).
    type Extra = Params;
    /// The teacher t (φ's mixture, new mean anchored).
    type ExtraModels = Mix2;

    fn reset(&self, start: &Params) -> Params {
        start.clone()
    }

    fn extra_models(&self, ema: &Params, mixtures: &impl MixtureBuilder, target: &Mix2) -> Mix2 {
        let mut teacher = mixtures.mixture(ema);
        self.anchor(&mut teacher, target);
        teacher
    }

    fn refresh_extra_models(
        &self,
        ema: &Params,
        teacher: &mut Mix2,
        mixtures: &impl MixtureBuilder,
        target: &Mix2,
    ) {
        mixtures.set_mixture(ema, teacher);
        self.anchor(teacher, target);
    }

    /// Reverse: q_θ; forward: the teacher t.
    fn source<'a>(&self, m: &'a Models<Mix2>) -> Source<'a> {
        match self.direction {
            Direction::Reverse => Source::Mixture(&m.model),
            Direction::Forward => Source::Mixture(&m.extra),
        }
    }

    /// Reverse: the teacher t.
    fn compared_density<'a>(&self, m: &'a Models<Mix2>) -> Option<&'a Mix2> {
        match self.direction {
            Direction::Reverse => Some(&m.extra),
            Direction::Forward => None,
        }
    }

    #[inline(always)]
    fn values(&self, _m: &Models<Mix2>, batch: &mut Batch) {
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

    /// φ ← (1−τ) φ + τ θ.
    fn advance(&self, t: &mut Params, theta: &Params, _step: u64) {
        let ema = self.ema;
        t.weight = (1.0 - ema) * t.weight + ema * theta.weight;
        t.old_mean
            .iter_mut()
            .zip(&theta.old_mean)
            .for_each(|(p, q)| *p = (1.0 - ema) * *p + ema * q);
        t.new_mean
            .iter_mut()
            .zip(&theta.new_mean)
            .for_each(|(p, q)| *p = (1.0 - ema) * *p + ema * q);
        // the scale parameters (σ or log σ) follow the same average; they are constant, and
        // unused, when scales do not train
        t.scale
            .iter_mut()
            .zip(&theta.scale)
            .for_each(|(p, q)| *p = (1.0 - ema) * *p + ema * q);
    }
}

impl SDFT {
    /// The teacher's new mean, moved toward the truth: (1−κ) μ_n^φ + κ μ_n*.
    fn anchor(&self, teacher: &mut Mix2, target: &Mix2) {
        let anchor = self.anchor;
        for (m, t) in teacher.new.mean.iter_mut().zip(&target.new.mean) {
            *m = (1.0 - anchor) * *m + anchor * t;
        }
    }
}
