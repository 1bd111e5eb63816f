//! KL-regularised RL toward a reference model (docs: theory-kl-regularized); Python class
//! `mixforget.KLRegularizedRL`.
//!
//! Maximise E_q[r] − β KL with on-policy samples x_i ~ q_θ. Per sample the reward r_i and the
//! KL term κ_i; the value v_i = r_i − β κ_i; the advantage A_i of v ('raw' v, 'loo' v minus
//! the leave-one-out mean, 'group' (v − mean)/sd); ĝ = −(1/B) Σ_i A_i s(x_i), so c_i = −A_i.
//! κ: reverse 'exact'/'k1' log q_θ − log q_ref, 'k3' ρ − 1 − log ρ (ρ = q_ref/q_θ; biased by
//! −∇KL(q_ref ‖ q)), forward −ρ (∇KL(q_ref ‖ q) = −E_q[ρ s]). Reverse 'exact' under 'group'
//! keeps the KL out of the normalisation: c_i = −(r_i − mean r)/sd(r) + β (κ_i − mean κ). The
//! reference is the start model q_0 (extra state, as TTT-Discover's), the target p*, or the
//! flat measure (log q_ref ≡ 0). In the exact limit the batch moments become expectations under q_θ.
//! Rewards with their own geometry (a half-space, a ball, a Gaussian bump, in the original
//! coordinates) are data: a direction or centre of at most [`MAX_REWARD_DIM`] entries.

use super::fields::{FieldReader, FieldWriter};
use super::{Direction, Named, Objective, Source};
use crate::engine::batch::{inverse_weighted_sd, Batch, LooMean};
use crate::engine::state::{Averager, MixtureBuilder, Models};
use crate::error::KernelResult;
use crate::model::mixture::{squared_distance, Gaussian};
use crate::model::params::Params;
use crate::model::two_mode::{log_sum_and_share, Mix2};

/// The densities of the extra state: the start model q_0 when it is the reference.
type StartModel = Option<Mix2>;

/// The reward r(x).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewardKind {
    /// r_old π*_old(x) + r_new (1 − π*_old(x)), π*_old the target's old responsibility.
    Labels,
    /// log p*(x).
    TargetLogpdf,
    /// log p_new*(x).
    NewLogpdf,
    /// r_new where a·x ≥ b, else r_old (a = `reward_direction`, b = `reward_offset`).
    Halfspace,
    /// r_new where ‖x − c‖ ≤ radius (Euclidean), else r_old.
    Ball,
    /// r_old + (r_new − r_old) exp(−‖x − c‖²/(2 s²)), s = `reward_width`.
    Bump,
}

/// Most entries of a reward direction or centre (the dimension of a geometric reward).
pub const MAX_REWARD_DIM: usize = 16;

/// A reward direction or centre: a short vector kept inline, so that the objective stays
/// `Copy` (the engine copies objectives into every run).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RewardVector {
    len: usize,
    values: [f64; MAX_REWARD_DIM],
}

impl RewardVector {
    /// None when `v` is empty or longer than [`MAX_REWARD_DIM`].
    pub fn from_slice(v: &[f64]) -> Option<RewardVector> {
        if v.is_empty() || v.len() > MAX_REWARD_DIM {
            return None;
        }
        let mut values = [0.0; MAX_REWARD_DIM];
        values[..v.len()].copy_from_slice(v);
        Some(RewardVector {
            len: v.len(),
            values,
        })
    }

    pub fn as_slice(&self) -> &[f64] {
        &self.values[..self.len]
    }
}

impl Named for RewardKind {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("labels", RewardKind::Labels),
        ("target_logpdf", RewardKind::TargetLogpdf),
        ("new_logpdf", RewardKind::NewLogpdf),
        ("halfspace", RewardKind::Halfspace),
        ("ball", RewardKind::Ball),
        ("bump", RewardKind::Bump),
    ];
}

/// The reference of the KL term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// The run's start model q_0.
    Start,
    /// The target p* (a fixed reference away from the model, e.g. to measure the estimators'
    /// bias where q_θ ≠ q_ref).
    Target,
    /// The flat (Lebesgue) measure: log q_ref ≡ 0, the KL is −H(q).
    Flat,
}

impl Named for Reference {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("start", Reference::Start),
        ("target", Reference::Target),
        ("flat", Reference::Flat),
    ];
}

/// The per-sample KL term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KlEstimator {
    /// The KL's own score coefficient (a separate term under group normalisation).
    Exact,
    /// log q/q_ref in the reward.
    K1,
    /// ρ − 1 − log ρ, ρ = q_ref/q, in the reward.
    K3,
}

impl Named for KlEstimator {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("exact", KlEstimator::Exact),
        ("k1", KlEstimator::K1),
        ("k3", KlEstimator::K3),
    ];
}

/// The advantage of the per-sample value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KlAdvantage {
    /// v minus the leave-one-out mean of the others.
    Loo,
    /// (v − mean v)/sd(v) over the group (GRPO).
    Group,
    /// v itself.
    Raw,
}

impl Named for KlAdvantage {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("loo", KlAdvantage::Loo),
        ("group", KlAdvantage::Group),
        ("raw", KlAdvantage::Raw),
    ];
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KLRegularizedRL {
    pub reward: RewardKind,
    /// Label rewards of the old and new component (used by `RewardKind::Labels`).
    pub reward_old: f64,
    pub reward_new: f64,
    /// β > 0.
    pub beta: f64,
    pub reference: Reference,
    pub kl: Direction,
    pub kl_estimator: KlEstimator,
    pub advantage: KlAdvantage,
    /// The geometric reward's vector: a of the half-space reward a·x ≥ b
    /// (`reward_direction`), or c of the ball and bump rewards (`reward_center`); one field,
    /// since a reward has one of them, which keeps the objective small.
    pub reward_vector: Option<RewardVector>,
    /// b of the half-space reward.
    pub reward_offset: f64,
    /// Radius of the ball reward (> 0).
    pub reward_radius: f64,
    /// Width s of the bump reward (> 0).
    pub reward_width: f64,
}

impl KLRegularizedRL {
    /// Whether the KL term is a separate loss term rather than part of the shaped reward.
    fn separate_kl(&self) -> bool {
        self.kl_estimator == KlEstimator::Exact && self.advantage == KlAdvantage::Group
    }

    /// The reference mixture (None for the flat measure).
    fn reference_model<'a>(&self, m: &'a Models<StartModel>) -> Option<&'a Mix2> {
        match self.reference {
            Reference::Start => m.extra.as_ref(),
            Reference::Target => Some(&m.target),
            Reference::Flat => None,
        }
    }

    /// Whether κ carries the importance ratio ρ = q_ref/q (k3, forward).
    fn uses_ratio(&self) -> bool {
        self.kl == Direction::Forward || self.kl_estimator == KlEstimator::K3
    }

    /// Whether the reward has its own geometry in the original coordinates.
    fn geometric_reward(&self) -> bool {
        matches!(
            self.reward,
            RewardKind::Halfspace | RewardKind::Ball | RewardKind::Bump
        )
    }

    /// The dimension the reward's geometry lives in, if it has one.
    pub fn reward_dim(&self) -> Option<usize> {
        self.reward_vector.map(|v| v.as_slice().len())
    }

    /// The vector under its field name (`reward_direction`, `reward_center`): the
    /// half-space's direction, or the ball's and bump's centre.
    fn vector_named(&self, name: &str) -> Option<&[f64]> {
        let holds = match name {
            "reward_direction" => self.reward == RewardKind::Halfspace,
            _ => matches!(self.reward, RewardKind::Ball | RewardKind::Bump),
        };
        self.reward_vector
            .as_ref()
            .filter(|_| holds)
            .map(|v| v.as_slice())
    }

    /// r(x) of a geometric reward at x (original coordinates).
    #[inline]
    pub(crate) fn geometric_value(&self, x: &[f64]) -> f64 {
        let (old, new) = (self.reward_old, self.reward_new);
        match (self.reward, self.reward_vector) {
            (RewardKind::Halfspace, Some(a)) => {
                let s: f64 = a.as_slice().iter().zip(x).map(|(a, x)| a * x).sum();
                if s >= self.reward_offset {
                    new
                } else {
                    old
                }
            }
            (RewardKind::Ball, Some(c)) => {
                if squared_distance(x, c.as_slice()) <= self.reward_radius * self.reward_radius {
                    new
                } else {
                    old
                }
            }
            (RewardKind::Bump, Some(c)) => {
                let s = self.reward_width;
                old + (new - old) * (-0.5 * squared_distance(x, c.as_slice()) / (s * s)).exp()
            }
            _ => unreachable!("a geometric reward without its vector is refused when read"),
        }
    }
}

/// ω-weighted (mean, 1/sd) of the first n values (1/sd = 0 when they are all equal).
pub(crate) fn mean_and_inverse_sd(omega: &[f64], values: &[f64]) -> (f64, f64) {
    let sum_w: f64 = omega.iter().sum();
    let mean = omega.iter().zip(values).map(|(w, v)| w * v).sum::<f64>() / sum_w;
    (mean, inverse_weighted_sd(omega, values, mean, sum_w))
}

impl Objective for KLRegularizedRL {
    const KIND: &'static str = "KLRegularizedRL";

    fn read<R: FieldReader>(f: &R) -> Result<Self, R::Error> {
        let real = |name: &str| f.number(name, "a finite number", |_| true);
        let vector = |name: &str| {
            f.optional_vector(name, "None or 1 to 16 finite numbers", MAX_REWARD_DIM)
                .map(|v| v.and_then(|v| RewardVector::from_slice(&v)))
        };
        let reward: RewardKind = f.choice("reward")?;
        let direction = vector("reward_direction")?;
        let center = vector("reward_center")?;
        let (wants_direction, wants_center) = (
            reward == RewardKind::Halfspace,
            matches!(reward, RewardKind::Ball | RewardKind::Bump),
        );
        if direction.is_some() != wants_direction {
            let allowed = "a nonzero vector with reward='halfspace' only (None otherwise)";
            f.number("reward_direction", allowed, |_| false)?;
        }
        if center.is_some() != wants_center {
            let allowed = "a vector with reward='ball' or 'bump' only (None otherwise)";
            f.number("reward_center", allowed, |_| false)?;
        }
        let o = KLRegularizedRL {
            reward,
            reward_old: real("reward_old")?,
            reward_new: real("reward_new")?,
            beta: f.positive("beta")?,
            reference: f.choice("reference")?,
            kl: f.choice("kl")?,
            kl_estimator: f.choice("kl_estimator")?,
            advantage: f.choice("advantage")?,
            reward_vector: direction.or(center),
            reward_offset: real("reward_offset")?,
            reward_radius: f.positive("reward_radius")?,
            reward_width: f.positive("reward_width")?,
        };
        // the rules between fields are the dataclass's, checked again: a broken one is
        // refused as its field's value, with the rule as what the field allows
        match o.check_fields() {
            Ok(()) => Ok(o),
            Err((name, allowed)) => f.number(name, allowed, |_| false).map(|_| o),
        }
    }

    fn write<W: FieldWriter>(&self, f: &mut W) -> Result<(), W::Error> {
        f.word("reward", self.reward.name())?;
        f.number("reward_old", self.reward_old)?;
        f.number("reward_new", self.reward_new)?;
        f.number("beta", self.beta)?;
        f.word("reference", self.reference.name())?;
        f.word("kl", self.kl.name())?;
        f.word("kl_estimator", self.kl_estimator.name())?;
        f.word("advantage", self.advantage.name())?;
        f.optional_vector("reward_direction", self.vector_named("reward_direction"))?;
        f.number("reward_offset", self.reward_offset)?;
        f.optional_vector("reward_center", self.vector_named("reward_center"))?;
        f.number("reward_radius", self.reward_radius)?;
        f.number("reward_width", self.reward_width)
    }

    /// The start parameters when the start model is the reference (fixed), else nothing.
    type Extra = Option<Params>;
    type ExtraModels = StartModel;

    fn reset(&self, start: &Params) -> Option<Params> {
        (self.reference == Reference::Start).then(|| start.clone())
    }

    fn extra_models(
        &self,
        start: &Option<Params>,
        mixtures: &impl MixtureBuilder,
        _target: &Mix2,
    ) -> StartModel {
        start.as_ref().map(|p| mixtures.mixture(p))
    }

    fn source<'a>(&self, m: &'a Models<StartModel>) -> Source<'a> {
        Source::Mixture(&m.model)
    }

    /// The reference, or the target when the reference is flat (whose log density and parts
    /// the rewards then read).
    fn compared_density<'a>(&self, m: &'a Models<StartModel>) -> Option<&'a Mix2> {
        self.reference_model(m).or(Some(&m.target))
    }

    /// The forward KL's ρ q_θ = q_ref lives on the reference's components, which the
    /// model's may have left: nodes on both, reweighted to expectations under q_θ.
    fn quadrature_components<'a>(&self, m: &'a Models<StartModel>) -> Vec<(f64, &'a Gaussian)> {
        match (self.kl, self.reference_model(m)) {
            (Direction::Forward, Some(reference)) => {
                let (a, a0) = (m.model.alpha, reference.alpha);
                vec![
                    (0.5 * a, &m.model.old),
                    (0.5 * (1.0 - a), &m.model.new),
                    (0.5 * a0, &reference.old),
                    (0.5 * (1.0 - a0), &reference.new),
                ]
            }
            _ => super::sampling_components(self, m),
        }
    }

    /// The geometric reward's vector has the problem's dimension.
    fn check_dimension(&self, dim: usize) -> Result<(), String> {
        match self.reward_dim() {
            Some(own) if own != dim => Err(format!(
                "the reward's direction or centre has {own} entries but the target has dimension {dim}"
            )),
            _ => Ok(()),
        }
    }

    /// A reward with its own geometry reads x in the original coordinates.
    fn needs_original_coordinates(&self) -> bool {
        self.geometric_reward()
    }

    /// The jumps of the half-space (one point, b/a) and ball (c ± radius) rewards in one
    /// dimension.
    fn value_jumps_1d(&self) -> Option<(f64, f64)> {
        match (self.reward, self.reward_vector) {
            (RewardKind::Halfspace, Some(a)) if a.as_slice().len() == 1 => {
                let at = self.reward_offset / a.as_slice()[0];
                Some((at, at))
            }
            (RewardKind::Ball, Some(c)) if c.as_slice().len() == 1 => {
                let c = c.as_slice()[0];
                Some((c - self.reward_radius, c + self.reward_radius))
            }
            _ => None,
        }
    }

    /// Values linear in log densities add no curvature; the ratio ρ of k3 and of the forward
    /// KL is an exponential whose tilt is not bounded in advance.
    fn quadrature_curvature(&self) -> Option<f64> {
        (!self.uses_ratio()).then_some(0.0)
    }

    /// v_i = r_i, batch.weight_or_log_ratio_i = κ_i.
    fn values(&self, m: &Models<StartModel>, batch: &mut Batch) {
        let d = batch.dim;
        let flat = self.reference == Reference::Flat;
        // the compared density is the target: its parts and log density are in the batch
        let compared_target = self.reference != Reference::Start;
        for i in 0..batch.len {
            let x = &batch.x[i * d..(i + 1) * d];
            batch.value[i] = match self.reward {
                RewardKind::Labels => {
                    let (lo, ln) = if compared_target {
                        (batch.compared_old[i], batch.compared_new[i])
                    } else {
                        m.target.log_parts(x, &mut batch.scratch)
                    };
                    let share_old = log_sum_and_share(lo, ln).1;
                    self.reward_new + (self.reward_old - self.reward_new) * share_old
                }
                RewardKind::TargetLogpdf if compared_target => batch.log_compared[i],
                RewardKind::TargetLogpdf => m.target.logpdf(x, &mut batch.scratch),
                RewardKind::NewLogpdf => m.target.new.logpdf(x, &mut batch.scratch),
                RewardKind::Halfspace | RewardKind::Ball | RewardKind::Bump => {
                    self.geometric_value(x)
                }
            };
            let log_ref = if flat { 0.0 } else { batch.log_compared[i] };
            let log_q = batch.log_q[i];
            batch.weight_or_log_ratio[i] = match (self.kl, self.kl_estimator) {
                (Direction::Forward, _) => -(log_ref - log_q).exp(),
                (Direction::Reverse, KlEstimator::K3) => {
                    let log_rho = log_ref - log_q;
                    log_rho.exp_m1() - log_rho
                }
                (Direction::Reverse, _) => log_q - log_ref,
            };
        }
    }

    fn coefficients(&self, batch: &mut Batch, how: Averager) {
        let n = batch.len;
        let beta = self.beta;
        if self.separate_kl() {
            let (mean_r, inv_sd) = mean_and_inverse_sd(&batch.omega[..n], &batch.value[..n]);
            let (mean_kl, _) =
                mean_and_inverse_sd(&batch.omega[..n], &batch.weight_or_log_ratio[..n]);
            for i in 0..n {
                batch.value[i] = -(batch.value[i] - mean_r) * inv_sd
                    + beta * (batch.weight_or_log_ratio[i] - mean_kl);
            }
            return;
        }
        for i in 0..n {
            batch.value[i] -= beta * batch.weight_or_log_ratio[i];
        }
        match self.advantage {
            KlAdvantage::Raw => batch.value[..n].iter_mut().for_each(|v| *v = -*v),
            KlAdvantage::Loo => {
                let (sum_wv, sum_w) = batch.weighted_value_and_weight_sums();
                let baseline = LooMean::new(sum_wv, sum_w, batch.omega[0], how.exact);
                for v in batch.value[..n].iter_mut() {
                    *v = -(*v - baseline.at(*v));
                }
            }
            KlAdvantage::Group => {
                let (mean, inv_sd) = mean_and_inverse_sd(&batch.omega[..n], &batch.value[..n]);
                for v in batch.value[..n].iter_mut() {
                    *v = -(*v - mean) * inv_sd;
                }
            }
        }
    }

    /// A log-density reward's dropped dimensions add variance that group normalisation
    /// divides by, with no closed form here.
    fn check_exact(&self, perp_dims: usize) -> KernelResult<()> {
        if perp_dims > 0
            && self.advantage == KlAdvantage::Group
            && self.reward != RewardKind::Labels
        {
            return Err("the exact population limit of KLRegularizedRL with advantage='group' and a log-density reward is implemented only when the means span all d dimensions (e.g. d = 1)".into());
        }
        Ok(())
    }
}

impl KLRegularizedRL {
    /// The rules between fields: the forward KL needs the 'exact' estimator and the start
    /// reference; k3 needs the start reference (ρ = q_ref/q has no mean under a flat
    /// reference). Err names the field and what it must be.
    pub fn check_fields(&self) -> Result<(), (&'static str, &'static str)> {
        if self.geometric_reward() != self.reward_vector.is_some() {
            return Err((
                "reward",
                "'halfspace' with reward_direction, 'ball' or 'bump' with reward_center",
            ));
        }
        if let Some(a) = self.vector_named("reward_direction") {
            if a.iter().all(|&v| v == 0.0) {
                return Err(("reward_direction", "a nonzero vector"));
            }
        }
        if self.kl == Direction::Forward && self.kl_estimator != KlEstimator::Exact {
            return Err(("kl_estimator", "'exact' with kl='forward'"));
        }
        if self.reference == Reference::Flat && self.uses_ratio() {
            return Err((
                "reference",
                "'start' with kl='forward' or kl_estimator='k3'",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objective(
        kl: Direction,
        kl_estimator: KlEstimator,
        reference: Reference,
    ) -> KLRegularizedRL {
        KLRegularizedRL {
            reward: RewardKind::Labels,
            reward_old: 0.0,
            reward_new: 1.0,
            beta: 1.0,
            reference,
            kl,
            kl_estimator,
            advantage: KlAdvantage::Loo,
            reward_vector: None,
            reward_offset: 0.0,
            reward_radius: 1.0,
            reward_width: 1.0,
        }
    }

    #[test]
    fn field_rules_name_the_field() {
        use Direction::*;
        use KlEstimator::*;
        assert!(objective(Reverse, K3, Reference::Start)
            .check_fields()
            .is_ok());
        assert!(objective(Forward, Exact, Reference::Target)
            .check_fields()
            .is_ok());
        assert_eq!(
            objective(Forward, K1, Reference::Start)
                .check_fields()
                .unwrap_err()
                .0,
            "kl_estimator"
        );
        assert_eq!(
            objective(Reverse, K3, Reference::Flat)
                .check_fields()
                .unwrap_err()
                .0,
            "reference"
        );
    }

    #[test]
    fn geometric_rewards_and_their_jumps() {
        let base = objective(Direction::Reverse, KlEstimator::Exact, Reference::Start);
        let with = |reward, v: &[f64]| KLRegularizedRL {
            reward,
            reward_vector: RewardVector::from_slice(v),
            reward_offset: 1.0,
            reward_radius: 0.5,
            reward_width: 2.0,
            ..base
        };
        let half = with(RewardKind::Halfspace, &[2.0, 0.0]);
        assert_eq!(half.geometric_value(&[0.5, 9.0]), 1.0); // a·x = b: inside
        assert_eq!(half.geometric_value(&[0.49, 9.0]), 0.0);
        let ball = with(RewardKind::Ball, &[1.0, 1.0]);
        assert_eq!(ball.geometric_value(&[1.3, 1.4]), 1.0);
        assert_eq!(ball.geometric_value(&[1.4, 1.4]), 0.0);
        let bump = with(RewardKind::Bump, &[0.0, 0.0]);
        let expected = (-0.5 * 8.0 / 4.0f64).exp();
        assert!((bump.geometric_value(&[2.0, 2.0]) - expected).abs() < 1e-15);
        assert!(half.check_fields().is_ok() && half.check_dimension(2).is_ok());
        assert!(half.check_dimension(3).is_err());
        assert_eq!(
            with(RewardKind::Halfspace, &[0.0])
                .check_fields()
                .unwrap_err()
                .0,
            "reward_direction"
        );
        assert_eq!(
            with(RewardKind::Labels, &[1.0])
                .check_fields()
                .unwrap_err()
                .0,
            "reward"
        );
        assert_eq!(
            with(RewardKind::Halfspace, &[4.0]).value_jumps_1d(),
            Some((0.25, 0.25))
        );
        assert_eq!(
            with(RewardKind::Ball, &[1.0]).value_jumps_1d(),
            Some((0.5, 1.5))
        );
        assert_eq!(bump.value_jumps_1d(), None);
        assert!(RewardVector::from_slice(&[0.0; MAX_REWARD_DIM + 1]).is_none());
    }

    #[test]
    fn moments_of_equal_values_have_no_spread() {
        assert_eq!(mean_and_inverse_sd(&[0.5, 0.5], &[2.0, 2.0]), (2.0, 0.0));
        let (mean, inv_sd) = mean_and_inverse_sd(&[0.25; 4], &[0.0, 0.0, 2.0, 2.0]);
        assert_eq!((mean, inv_sd), (1.0, 1.0));
    }
}
