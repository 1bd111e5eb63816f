//! KLRegularizedRL's per-sample values on a K-component batch (docs: theory-kl-regularized,
//! theory-k-components): the reward, the KL term toward the reference and the coefficients
//! c_i of ĝ = (1/B) Σ_i c_i s(x_i), in the batch's work arrays (a child of `batch`, whose
//! private buffers and column helpers it reads).

use super::{component_parts, log_sum_exp_columns, log_target_density, Workspace};
use crate::engine::batch::LooMean;
use crate::math::fastmath;
use crate::math::lane_sums::lane_sums;
use crate::mixture_engine::problem::Problem;
use crate::objectives::kl_regularized_rl::mean_and_inverse_sd;
use crate::objectives::{
    Direction, KLRegularizedRL, KlAdvantage, KlEstimator, Reference, RewardKind,
};

/// KLRegularizedRL's reward r_i into `ws.reward` and KL term κ_i into `ws.importance`
/// (docs: theory-kl-regularized): the 'labels' reward Σ_j r_j π*_j(x) with the target's
/// responsibilities, log p*, log p_new* or a geometric reward; κ from log q_θ (`ws.log_q`)
/// and the reference's log density (the start model, the target, or 0).
#[inline(always)]
pub(super) fn kl_rl_values(problem: &Problem, o: &KLRegularizedRL, ws: &mut Workspace) {
    let (b, d) = (ws.len, problem.dim);
    let reads_target = matches!(
        o.reward,
        RewardKind::Labels | RewardKind::TargetLogpdf | RewardKind::NewLogpdf
    ) || o.reference == Reference::Target;
    if reads_target {
        log_target_density(problem, ws, b);
    }
    match o.reward {
        RewardKind::Labels => {
            ws.reward[..b].fill(0.0);
            for (col, r_j) in ws.target_part.chunks_exact(b).zip(&problem.label_rewards) {
                for ((r, p), lt) in ws.reward[..b].iter_mut().zip(col).zip(&ws.log_target[..b]) {
                    *r += r_j * fastmath::exp(p - lt);
                }
            }
        }
        RewardKind::TargetLogpdf => ws.reward[..b].copy_from_slice(&ws.log_target[..b]),
        RewardKind::NewLogpdf => log_sum_exp_columns(
            &ws.target_part,
            b,
            &ws.new_columns,
            &mut ws.column_max,
            &mut ws.column_sum,
            &mut ws.reward,
        ),
        RewardKind::Halfspace | RewardKind::Ball | RewardKind::Bump => {
            for (r, x) in ws.reward[..b].iter_mut().zip(ws.x[..b * d].chunks_exact(d)) {
                *r = o.geometric_value(x);
            }
        }
    }
    match o.reference {
        Reference::Start => {
            let start = &ws.start_model;
            let lw = &start.log_weights;
            component_parts(
                &start.components,
                |j| lw[j],
                &ws.x,
                b,
                &mut ws.reference_part,
                &mut ws.scratch,
            );
            log_sum_exp_columns(
                &ws.reference_part,
                b,
                &ws.all_columns,
                &mut ws.column_max,
                &mut ws.column_sum,
                &mut ws.log_reference,
            );
        }
        Reference::Target => ws.log_reference[..b].copy_from_slice(&ws.log_target[..b]),
        Reference::Flat => ws.log_reference[..b].fill(0.0),
    }
    for ((kappa, lq), lr) in ws.importance[..b]
        .iter_mut()
        .zip(&ws.log_q[..b])
        .zip(&ws.log_reference[..b])
    {
        let log_rho = lr - lq;
        *kappa = match (o.kl, o.kl_estimator) {
            (Direction::Forward, _) => -log_rho.exp(),
            (Direction::Reverse, KlEstimator::K3) => log_rho.exp_m1() - log_rho,
            (Direction::Reverse, _) => -log_rho,
        };
    }
}

/// KLRegularizedRL's c_i from r (`ws.reward`) and κ (`ws.importance`): v = r − β κ, then
/// −v ('raw'), −(v − leave-one-out mean) ('loo'), −(v − mean)/sd ('group'); reverse 'exact'
/// under 'group' keeps the KL apart: −(r − mean r)/sd(r) + β (κ − mean κ).
#[inline(always)]
pub(super) fn kl_rl_coefficients(o: &KLRegularizedRL, ws: &mut Workspace) {
    let b = ws.len;
    let (omega, beta) = (&ws.omega[..b], o.beta);
    let (reward, kappa, c) = (
        &ws.reward[..b],
        &ws.importance[..b],
        &mut ws.coefficient[..b],
    );
    if o.kl_estimator == KlEstimator::Exact && o.advantage == KlAdvantage::Group {
        let (mean_r, inv_sd) = mean_and_inverse_sd(omega, reward);
        let (mean_kl, _) = mean_and_inverse_sd(omega, kappa);
        for ((c, r), k) in c.iter_mut().zip(reward).zip(kappa) {
            *c = -(r - mean_r) * inv_sd + beta * (k - mean_kl);
        }
        return;
    }
    for ((c, r), k) in c.iter_mut().zip(reward).zip(kappa) {
        *c = r - beta * k;
    }
    match o.advantage {
        KlAdvantage::Raw => c.iter_mut().for_each(|v| *v = -*v),
        KlAdvantage::Loo => {
            let w = 1.0 / b as f64;
            let [sum_v] = lane_sums([&*c], |[v]| [v]);
            let baseline = LooMean::new(sum_v * w, 1.0, w, false);
            c.iter_mut().for_each(|v| *v = -(*v - baseline.at(*v)));
        }
        KlAdvantage::Group => {
            let (mean, inv_sd) = mean_and_inverse_sd(omega, c);
            c.iter_mut().for_each(|v| *v = -(*v - mean) * inv_sd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{draw, gradient, ModelState};
    use super::*;
    use crate::mixture_engine::problem::MixtureObjective;
    use crate::model::mixture::Cov;
    use crate::objectives::Baseline;
    use crate::random::simd_rng::LaneStream;
    use crate::random::starvation::Slots;

    /// KLRegularizedRL with r = log p*, the flat reference, β = 1 and a raw advantage has
    /// ReverseKL's coefficient log q − log p* (no baseline, no replay): the same ĝ on the
    /// same batch; and the 'labels' reward is Σ_j r_j π*_j, between the smallest and
    /// largest r_j.
    #[test]
    fn kl_regularized_rl_with_a_log_density_reward_is_reverse_kl() {
        use crate::mixture_engine::problem::{ProblemSpec, Update};
        use crate::objectives::ReverseKL;
        let covs = || (0..3).map(|_| Cov::scalar(1.0).unwrap()).collect();
        let spec = |objective: MixtureObjective, labels: &'static [f64]| ProblemSpec {
            dim: 1,
            target_weights: &[0.5, 0.3, 0.2],
            target_means: &[-2.5, 0.0, 2.5],
            target_covs: covs(),
            model_covs: covs(),
            start_weights: &[0.4, 0.35, 0.25],
            start_means: &[-2.0, 0.4, 2.9],
            objective,
            new_components: &[2],
            replay_mix: &[0.5, 0.5],
            label_rewards: labels,
            lr: 0.1,
            lr_weight: 1.0,
            lr_means: 1.0,
            update: Update::Sgd,
        };
        let make = |objective, labels| Problem::new(spec(objective, labels)).unwrap();
        let kl_rl = |reward, reference, advantage| {
            MixtureObjective::KLRegularizedRL(KLRegularizedRL {
                reward,
                reward_old: 0.0,
                reward_new: 1.0,
                beta: 1.0,
                reference,
                kl: Direction::Reverse,
                kl_estimator: KlEstimator::Exact,
                advantage,
                reward_vector: None,
                reward_offset: 0.0,
                reward_radius: 1.0,
                reward_width: 1.0,
            })
        };
        let reverse = make(
            MixtureObjective::ReverseKL(ReverseKL {
                replay: 0.0,
                replay_slots: Slots::Bernoulli,
                weight_cap: None,
                baseline: Baseline::None,
            }),
            &[],
        );
        let shaped = make(
            kl_rl(RewardKind::TargetLogpdf, Reference::Flat, KlAdvantage::Raw),
            &[],
        );
        let run = |p: &Problem| {
            let model = ModelState::new(p, &p.start);
            let mut ws = Workspace::try_new(p, 32).unwrap();
            let mut rng = LaneStream::new([4, 5], 1);
            draw(p, &model, &mut rng, &mut ws);
            let mut grad = vec![0.0; p.width()];
            gradient(p, &model, &mut ws, &mut grad);
            (grad, ws)
        };
        let ((a, _), (b, _)) = (run(&reverse), run(&shaped));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
        let labelled = kl_rl(RewardKind::Labels, Reference::Start, KlAdvantage::Loo);
        let (_, ws) = run(&make(labelled, &[0.0, 1.0, 3.0]));
        assert!(ws.reward[..32].iter().all(|r| (0.0..=3.0).contains(r)));
        assert!(
            ws.reward[..32].iter().any(|r| *r > 2.0) && ws.reward[..32].iter().any(|r| *r < 1.0)
        );
        // the wrong number of label rewards is refused naming them
        let wrong = Problem::new(spec(labelled, &[0.0, 1.0]));
        assert!(format!("{:?}", wrong.unwrap_err()).contains("label_rewards"));
    }
}
