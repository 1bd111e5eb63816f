//! A K-component training problem, validated once (every refusal names its argument): the
//! target p*, the model covariances, the start θ_0, the task roles (new and old components,
//! the replay mix ρ, KLRegularizedRL's label reward per component), the objective and the
//! update; and what it does to θ: the pinned softmax, the sgd, natural or full-softmax step,
//! the runaway rule.

use crate::engine::problem::{RUNAWAY_DISTANCE, RUNAWAY_WEIGHT};
use crate::error::{KernelError, KernelResult};
use crate::model::mixture::{Cov, Gaussian};
use crate::objectives::{
    ForwardKL, KLRegularizedRL, Named, Objective, ObjectiveSpec, ReverseKL, RewardKind,
};
use crate::random::starvation::Slots;

/// Tolerance of "sums to 1" for weights and the replay mix.
pub const SUM_TOLERANCE: f64 = 1e-9;

/// Most components: a sample's label is one byte.
pub const MAX_COMPONENTS: usize = 255;

/// The objectives the K-component engine implements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MixtureObjective {
    ForwardKL(ForwardKL),
    ReverseKL(ReverseKL),
    KLRegularizedRL(KLRegularizedRL),
}

impl MixtureObjective {
    /// The engine's objective of a two-mode spec; NotImplemented for the others.
    pub fn from_spec(spec: &ObjectiveSpec) -> KernelResult<MixtureObjective> {
        match spec {
            ObjectiveSpec::ForwardKL(o) => Ok(MixtureObjective::ForwardKL(*o)),
            ObjectiveSpec::ReverseKL(o) => Ok(MixtureObjective::ReverseKL(*o)),
            ObjectiveSpec::KLRegularizedRL(o) => Ok(MixtureObjective::KLRegularizedRL(*o)),
            other => Err(KernelError::NotImplemented(format!(
                "objective {} is not implemented for K-component mixtures (K >= 3 supports \
                 ForwardKL, ReverseKL and KLRegularizedRL)",
                other.kind()
            ))),
        }
    }

    /// Replay fraction λ and its slots.
    pub fn replay(&self) -> (f64, Slots) {
        match self {
            MixtureObjective::ForwardKL(o) => (o.replay, o.replay_slots),
            MixtureObjective::ReverseKL(o) => (o.replay, o.replay_slots),
            MixtureObjective::KLRegularizedRL(_) => (0.0, Slots::Bernoulli),
        }
    }

    /// Whether the batch is drawn from the model (ReverseKL, KLRegularizedRL) rather than
    /// from the new task's data (ForwardKL).
    pub fn on_policy(&self) -> bool {
        !matches!(self, MixtureObjective::ForwardKL(_))
    }
}

/// The step's preconditioner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// Plain steps on the K − 1 free logits (the last pinned at 0) and the means.
    Sgd,
    /// The complete-data natural gradient ([`natural_direction`]).
    Natural,
    /// Plain steps on all K logits of the over-parametrised softmax, written in the pinned
    /// ones ([`full_softmax_direction`]); the means as `Sgd`.
    SgdFullSoftmax,
}

impl Named for Update {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("sgd", Update::Sgd),
        ("natural", Update::Natural),
        ("sgd_full_softmax", Update::SgdFullSoftmax),
    ];
}

/// The problem's fields as the caller has them (means row-major K × d), before validation.
pub struct ProblemSpec<'a> {
    pub dim: usize,
    pub target_weights: &'a [f64],
    pub target_means: &'a [f64],
    pub target_covs: Vec<Cov>,
    pub model_covs: Vec<Cov>,
    pub start_weights: &'a [f64],
    pub start_means: &'a [f64],
    pub objective: MixtureObjective,
    pub new_components: &'a [i64],
    pub replay_mix: &'a [f64],
    /// r_j of KLRegularizedRL's 'labels' reward (K entries); empty for the other objectives.
    pub label_rewards: &'a [f64],
    pub lr: f64,
    pub lr_weight: f64,
    pub lr_means: f64,
    pub update: Update,
}

/// A validated K-component training problem.
#[derive(Clone, Debug)]
pub struct Problem {
    pub dim: usize,
    pub k: usize,
    /// The target's components φ*_j and log w*_j.
    pub target: Vec<Gaussian>,
    pub target_log_weights: Vec<f64>,
    /// Σ_j of the model's components (fixed).
    pub model_covs: Vec<Cov>,
    /// θ_0 in the flat order [η_0 … η_{K−2}, μ_0 … μ_{K−1}].
    pub start: Vec<f64>,
    pub objective: MixtureObjective,
    /// The target components of the new task, and the others (old), increasing.
    pub new_components: Vec<usize>,
    pub old_components: Vec<usize>,
    /// ρ over the old components (in `old_components` order), summing to 1.
    pub replay_mix: Vec<f64>,
    /// r_j of KLRegularizedRL's 'labels' reward (K entries; empty for the other objectives).
    pub label_rewards: Vec<f64>,
    pub lr: f64,
    pub lr_weight: f64,
    pub lr_means: f64,
    pub update: Update,
}

fn invalid(message: String) -> KernelError {
    KernelError::InvalidArgument(message)
}

/// Entries finite and > 0 summing to 1 (within [`SUM_TOLERANCE`]).
fn check_weights(name: &str, w: &[f64], k: usize) -> KernelResult<()> {
    if w.len() != k {
        return Err(invalid(format!(
            "{name} must have K = {k} entries (one per target component), got {}",
            w.len()
        )));
    }
    if w.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(invalid(format!("{name} must be finite and > 0, got {w:?}")));
    }
    let total: f64 = w.iter().sum();
    if (total - 1.0).abs() > SUM_TOLERANCE {
        return Err(invalid(format!("{name} must sum to 1, got sum {total}")));
    }
    Ok(())
}

fn check_means(name: &str, m: &[f64], k: usize, d: usize) -> KernelResult<()> {
    if m.len() != k * d {
        return Err(invalid(format!(
            "{name} must be (K, d) = ({k}, {d}), got {} values",
            m.len()
        )));
    }
    if m.iter().any(|v| !v.is_finite()) {
        return Err(invalid(format!("{name} must be finite")));
    }
    Ok(())
}

/// The new components: sorted, unique, nonempty, not all K, each in [0, K).
fn check_new_components(new: &[i64], k: usize) -> KernelResult<Vec<usize>> {
    let shown = || format!("{new:?}");
    if new.is_empty() {
        return Err(invalid("new_components must not be empty".into()));
    }
    if new.iter().any(|&j| j < 0 || j as usize >= k) {
        return Err(invalid(format!(
            "new_components must be component indices in [0, {k}), got {}",
            shown()
        )));
    }
    if new.windows(2).any(|p| p[0] >= p[1]) {
        return Err(invalid(format!(
            "new_components must be sorted and unique, got {}",
            shown()
        )));
    }
    if new.len() == k {
        return Err(invalid(format!(
            "new_components must leave at least one old component, got all {k}"
        )));
    }
    Ok(new.iter().map(|&j| j as usize).collect())
}

/// KLRegularizedRL's reward against the problem: K finite label rewards with the 'labels'
/// reward (none otherwise), a geometric reward's vector of dimension d; nothing else takes
/// label rewards.
fn check_label_rewards(spec: &ProblemSpec<'_>, k: usize) -> KernelResult<()> {
    let labels = spec.label_rewards;
    let MixtureObjective::KLRegularizedRL(o) = spec.objective else {
        if labels.is_empty() {
            return Ok(());
        }
        return Err(invalid(
            "label_rewards are read by KLRegularizedRL only (pass none)".into(),
        ));
    };
    o.check_dimension(spec.dim).map_err(invalid)?;
    let wanted = if o.reward == RewardKind::Labels { k } else { 0 };
    if labels.len() != wanted || labels.iter().any(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "label_rewards must be {wanted} finite numbers (K = {k} for reward 'labels', \
             none otherwise), got {labels:?}"
        )));
    }
    Ok(())
}

impl Problem {
    /// Validate `spec` (each refusal a ValueError naming the argument) and build the problem.
    pub fn new(spec: ProblemSpec<'_>) -> KernelResult<Problem> {
        let d = spec.dim;
        let k = spec.target_weights.len();
        if d == 0 {
            return Err(invalid("target_means must have d >= 1 columns".into()));
        }
        if !(2..=MAX_COMPONENTS).contains(&k) {
            return Err(invalid(format!(
                "target_weights must have 2 <= K <= {MAX_COMPONENTS} entries, got {k}"
            )));
        }
        check_weights("target_weights", spec.target_weights, k)?;
        check_weights("start_weights", spec.start_weights, k)?;
        check_means("target_means", spec.target_means, k, d)?;
        check_means("start_means", spec.start_means, k, d)?;
        for (name, covs) in [
            ("target_covs", &spec.target_covs),
            ("model_covs", &spec.model_covs),
        ] {
            if covs.len() != k {
                return Err(invalid(format!(
                    "{name} must hold K = {k} covariances, got {}",
                    covs.len()
                )));
            }
        }
        let new_components = check_new_components(spec.new_components, k)?;
        check_label_rewards(&spec, k)?;
        let old_components: Vec<usize> = (0..k).filter(|j| !new_components.contains(j)).collect();
        let rho = spec.replay_mix;
        if rho.len() != old_components.len() {
            return Err(invalid(format!(
                "replay_mix must have one entry per old component ({}), got {}",
                old_components.len(),
                rho.len()
            )));
        }
        let rho_total: f64 = rho.iter().sum();
        if rho.iter().any(|v| !(v.is_finite() && *v >= 0.0))
            || (rho_total - 1.0).abs() > SUM_TOLERANCE
        {
            return Err(invalid(format!(
                "replay_mix must be >= 0 and sum to 1, got {rho:?}"
            )));
        }
        if !(spec.lr.is_finite() && spec.lr > 0.0) {
            return Err(invalid(format!("lr must be > 0, got {}", spec.lr)));
        }
        for (name, v) in [("lr_weight", spec.lr_weight), ("lr_means", spec.lr_means)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(format!(
                    "{name} must be a finite number >= 0, got {v}"
                )));
            }
        }
        let target = (0..k)
            .map(|j| {
                Gaussian::new(
                    spec.target_means[j * d..(j + 1) * d].to_vec(),
                    spec.target_covs[j].clone(),
                )
            })
            .collect();
        // η_j = ln w_j − ln w_{K−1}: the pinned softmax of θ_0 gives the start weights back
        let last = spec.start_weights[k - 1].ln();
        let mut start: Vec<f64> = spec.start_weights[..k - 1]
            .iter()
            .map(|w| w.ln() - last)
            .collect();
        start.extend_from_slice(spec.start_means);
        Ok(Problem {
            dim: d,
            k,
            target,
            target_log_weights: spec.target_weights.iter().map(|w| w.ln()).collect(),
            model_covs: spec.model_covs,
            start,
            objective: spec.objective,
            new_components,
            old_components,
            replay_mix: rho.to_vec(),
            label_rewards: spec.label_rewards.to_vec(),
            lr: spec.lr,
            lr_weight: spec.lr_weight,
            lr_means: spec.lr_means,
            update: spec.update,
        })
    }

    /// Entries of θ and of one flat gradient: (K − 1) + K d.
    pub fn width(&self) -> usize {
        self.k - 1 + self.k * self.dim
    }

    /// θ ← θ − lr·m⊙(F⁻¹)ĝ, with the weights `w` of θ for the natural step; `grad` is
    /// overwritten by the step direction.
    pub fn step(&self, theta: &mut [f64], grad: &mut [f64], w: &[f64]) {
        match self.update {
            Update::Natural => natural_direction(grad, w, &self.model_covs, self.dim),
            Update::SgdFullSoftmax => full_softmax_direction(&mut grad[..self.k - 1]),
            Update::Sgd => {}
        }
        let free = self.k - 1;
        let (lr_eta, lr_mu) = (self.lr * self.lr_weight, self.lr * self.lr_means);
        for (t, g) in theta[..free].iter_mut().zip(&grad[..free]) {
            *t -= lr_eta * g;
        }
        for (t, g) in theta[free..].iter_mut().zip(&grad[free..]) {
            *t -= lr_mu * g;
        }
    }

    /// Whether a finite θ has left the documented bound: some ‖μ_j − μ*_j‖_{Σ*_j} >
    /// [`RUNAWAY_DISTANCE`] or some w_j ≤ [`RUNAWAY_WEIGHT`], with `w` θ's weights (the
    /// pinned softmax of its η in float64) and `scratch` d values.
    pub fn runaway(&self, theta: &[f64], w: &[f64], scratch: &mut [f64]) -> bool {
        let free = self.k - 1;
        if w.iter().any(|&v| v <= RUNAWAY_WEIGHT || v.is_nan()) {
            return true;
        }
        let d = self.dim;
        self.target.iter().enumerate().any(|(j, star)| {
            let mean = &theta[free + j * d..free + (j + 1) * d];
            let q = star
                .cov
                .mahalanobis_sq(|i| mean[i] - star.mean[i], d, scratch);
            // NaN: an overflowing difference whitened (∞ − ∞), beyond the bound as well
            q.is_nan() || q.sqrt() > RUNAWAY_DISTANCE
        })
    }
}

/// w = softmax(η_0, …, η_{K−2}, 0) into `w` and log w into `log_w` (len K = η.len() + 1),
/// shifted by the largest logit so nothing overflows.
pub fn softmax_pinned_with_logs(eta: &[f64], w: &mut [f64], log_w: &mut [f64]) {
    let top = eta.iter().fold(0.0f64, |m, &e| m.max(e));
    let k = eta.len() + 1;
    for (lw, e) in log_w[..k].iter_mut().zip(eta.iter().chain([&0.0])) {
        *lw = e - top;
    }
    for (wj, lw) in w[..k].iter_mut().zip(&log_w[..k]) {
        *wj = lw.exp();
    }
    let total: f64 = w[..k].iter().sum();
    let log_total = total.ln();
    w[..k].iter_mut().for_each(|v| *v /= total);
    log_w[..k].iter_mut().for_each(|v| *v -= log_total);
}

/// w = softmax(η_0, …, η_{K−2}, 0) into `w` (len K = η.len() + 1), shifted by the largest
/// logit so nothing overflows.
pub fn softmax_pinned(eta: &[f64], w: &mut [f64]) {
    let top = eta.iter().fold(0.0f64, |m, &e| m.max(e));
    let k = eta.len() + 1;
    for (wj, e) in w[..k - 1].iter_mut().zip(eta) {
        *wj = (e - top).exp();
    }
    w[k - 1] = (-top).exp();
    let total: f64 = w[..k].iter().sum();
    w[..k].iter_mut().for_each(|v| *v /= total);
}

/// v ← Σ v = L (Lᵀ v).
pub fn covariance_apply(cov: &Cov, v: &mut [f64]) {
    match cov {
        Cov::Scalar { sd } => v.iter_mut().for_each(|x| *x *= sd * sd),
        Cov::Diag { sd } => v.iter_mut().zip(sd).for_each(|(x, s)| *x *= s * s),
        Cov::Full { chol, dim } => {
            // (Lᵀ v)_i = Σ_{k ≥ i} L_ki v_k only reads entries not yet overwritten
            for i in 0..*dim {
                v[i] = (i..*dim).map(|k| chol[k * dim + i] * v[k]).sum();
            }
            cov.color(v);
        }
    }
}

/// The plain step on all K logits θ of the softmax, in the pinned logits η_j = θ_j − θ_{K−1}:
/// ∂L/∂θ_j = g_j for j < K − 1 and ∂L/∂θ_{K−1} = −Σ_j g_j (w depends on θ through
/// differences only), so η_j moves by g_j − ∂L/∂θ_{K−1}: g_η ← g_η + (Σ_j g_j) 1.
pub fn full_softmax_direction(g_eta: &mut [f64]) {
    let total: f64 = g_eta.iter().sum();
    g_eta.iter_mut().for_each(|g| *g += total);
}

/// g ← F⁻¹ g with the complete-data Fisher, exact per block: for the free logits F_η =
/// diag(w') − w'w'ᵀ (w' the first K−1 weights), whose inverse (Sherman–Morrison) is
/// diag(1/w') + 11ᵀ/w_{K−1}, so δ_j = g_j/w_j + (Σ_k g_k)/w_{K−1} (α(1−α) for K = 2); for
/// μ_j the block w_j Σ_j⁻¹, so δ_μj = Σ_j g_μj / w_j.
pub fn natural_direction(g: &mut [f64], w: &[f64], model_covs: &[Cov], dim: usize) {
    let k = w.len();
    let free = k - 1;
    let shared = g[..free].iter().sum::<f64>() / w[k - 1];
    for (gj, wj) in g[..free].iter_mut().zip(w) {
        *gj = *gj / wj + shared;
    }
    for ((block, wj), cov) in g[free..].chunks_exact_mut(dim).zip(w).zip(model_covs) {
        covariance_apply(cov, block);
        block.iter_mut().for_each(|v| *v /= wj);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_softmax_inverts_the_start_logits_and_is_logistic_for_two() {
        let mut w = [0.0; 4];
        softmax_pinned(
            &[
                0.3f64.ln() - 0.4f64.ln(),
                0.2f64.ln() - 0.4f64.ln(),
                0.1f64.ln() - 0.4f64.ln(),
            ],
            &mut w,
        );
        for (a, b) in w.iter().zip([0.3, 0.2, 0.1, 0.4]) {
            assert!((a - b).abs() < 1e-15, "{w:?}");
        }
        let mut w2 = [0.0; 2];
        for eta in [-30.0, -1.5, 0.0, 2.0, 700.0] {
            softmax_pinned(&[eta], &mut w2);
            let alpha = crate::model::mixture::sigmoid(eta);
            assert!((w2[0] - alpha).abs() < 1e-15 && (w2[1] - (1.0 - alpha)).abs() < 1e-15);
        }
        // large logits do not overflow
        softmax_pinned(&[1e4, -1e4, 0.0], &mut w);
        assert!(w.iter().all(|v| v.is_finite()) && (w[0] - 1.0).abs() < 1e-15);
        // the logs agree with ln w, and stay finite where w underflows
        let mut log_w = [0.0; 4];
        let eta = [0.7, -2.0, 1.5];
        softmax_pinned_with_logs(&eta, &mut w, &mut log_w);
        let mut plain = [0.0; 4];
        softmax_pinned(&eta, &mut plain);
        for j in 0..4 {
            assert!((w[j] - plain[j]).abs() < 1e-15 && (log_w[j] - plain[j].ln()).abs() < 1e-14);
        }
        softmax_pinned_with_logs(&[800.0, 0.0, -800.0], &mut w, &mut log_w);
        assert_eq!(w[2], 0.0);
        assert!((log_w[2] - (-1600.0)).abs() < 1e-9);
    }

    #[test]
    fn natural_direction_solves_the_complete_data_fisher() {
        let w = [0.1, 0.25, 0.3, 0.35];
        let g0 = [0.7, -1.2, 0.4, 0.5, -0.25, 1.0, 2.0, -0.5, 0.3, 0.8, 1.5];
        let (k, d) = (4, 2);
        let covs = [
            Cov::scalar(2.0).unwrap(),
            Cov::diag(&[0.5, 3.0]).unwrap(),
            Cov::full(&[2.0, 0.3, 0.3, 1.0], 2).unwrap(),
            Cov::scalar(0.7).unwrap(),
        ];
        let mut g = g0;
        natural_direction(&mut g, &w, &covs, d);
        // F_η δ = g on the free logits: (diag(w') − w'w'ᵀ) δ
        let wd: f64 = (0..k - 1).map(|j| w[j] * g[j]).sum();
        for j in 0..k - 1 {
            let f_delta = w[j] * g[j] - w[j] * wd;
            assert!(
                (f_delta - g0[j]).abs() < 1e-12,
                "{j}: {f_delta} vs {}",
                g0[j]
            );
        }
        // w_j Σ_j⁻¹ δ_μj = g_μj
        for j in 0..k {
            let mut back = g[k - 1 + j * d..k - 1 + (j + 1) * d].to_vec();
            covs[j].precision_apply(&mut back);
            for i in 0..d {
                let v = w[j] * back[i];
                assert!((v - g0[k - 1 + j * d + i]).abs() < 1e-12, "μ_{j}[{i}]");
            }
        }
        // K = 2: the logit step is g / (α(1−α))
        let mut g2b = [0.3, 1.0, 1.0];
        natural_direction(
            &mut g2b,
            &[0.2, 0.8],
            &[covs[0].clone(), covs[3].clone()],
            1,
        );
        assert!((g2b[0] - 0.3 / (0.2 * 0.8)).abs() < 1e-12);
        assert!((g2b[1] - 2.0 / 0.2).abs() < 1e-12 && (g2b[2] - 0.7 / 0.8).abs() < 1e-12);
    }

    #[test]
    fn full_softmax_direction_is_the_step_of_all_k_logits() {
        // K = 3: ∂L/∂θ = (g_0, g_1, −g_0 − g_1); η_j = θ_j − θ_2 moves by g_j + g_0 + g_1
        let mut g = [0.3, -0.5];
        full_softmax_direction(&mut g);
        assert_eq!(g, [0.3 - 0.2, -0.5 - 0.2]);
        // K = 2: twice the plain logit step
        let mut g2 = [0.25];
        full_softmax_direction(&mut g2);
        assert_eq!(g2, [0.5]);
    }

    #[test]
    fn covariance_apply_inverts_precision_apply() {
        let cov = Cov::full(&[4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0], 3).unwrap();
        let v = [1.0, -2.0, 0.5];
        let mut w = v;
        covariance_apply(&cov, &mut w);
        let m = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        for i in 0..3 {
            let s: f64 = (0..3).map(|j| m[i * 3 + j] * v[j]).sum();
            assert!((w[i] - s).abs() < 1e-12);
        }
    }
}
