//! The finite-batch gradient as one vectorised pass per batch, generic over the objective
//! (monomorphised, like the rest of the core).
//!
//! `engine::score::evaluate` serves both finite batches and exact (quadrature) expectations; it
//! runs the densities as separate whole-array passes (model log parts, log-sum-exp and
//! responsibilities, second density), compiled for the baseline instruction set. A finite
//! batch is small (B ≲ a few hundred), so here instead:
//!
//! 1. the whole step — draw, densities, per-sample values, batch statistic, score sums — is
//!    one function compiled with AVX-512 or AVX2 (selected at run time; every copy, the
//!    portable one too, performs the same IEEE operations in the same order, so all give the
//!    same bits, as does the unfused `evaluate`: Rust never contracts into FMA, and every
//!    loop keeps its order);
//! 2. the densities run block by block (`BLOCK` samples): a block's points, the model's and
//!    the second density's log parts, log q, the responsibilities and log of the second
//!    density are produced while the block sits in registers and L1, instead of one pass
//!    over the batch per quantity;
//! 3. the objective's per-sample values, its batch statistic (leave-one-out baseline,
//!    entropic weights, V̂ …) and the score sums are then short passes over the batch's
//!    small work arrays, inlined into the same function.
//!
//! The result equals `draw_batch` + `evaluate` bit for bit (asserted in the tests below), so
//! switching a caller between the two changes no number.
//!
//! The score itself (weight, means, and the scales when they train) is `engine::score`'s
//! `accumulate_score` and `accumulate_scale_score`, shared with the exact evaluation; the
//! scale score recomputes ‖x−μ‖² per component in a second, short pass over the batch.

use crate::engine::batch::{Batch, TAIL_ROWS};
use crate::engine::sampling::draw_batch;
use crate::engine::score::{accumulate_scale_score, accumulate_score};
use crate::engine::state::{Averager, Grad, Models};
use crate::math::fastmath;
use crate::model::params::ScaleParam;
use crate::model::two_mode::Mix2;
use crate::objectives::Objective;
use crate::random::simd_rng::LaneStream;

use crate::model::params::WeightParam;

/// Samples per density block. Not smaller: LLVM vectorises each short loop of a block
/// with its vector width times an unroll factor (4 × 8 doubles with AVX-512), and a block
/// shorter than that would run entirely in the scalar remainder loop. A block's
/// intermediate arrays (8 quantities × 64 × 8 bytes = 4 KiB) still sit in L1.
pub const BLOCK: usize = 64;

/// The densities of rows [lo, hi): the model's log parts, log q and old responsibility,
/// then the second density's log parts and log density.
#[inline(always)]
fn density_block(model: &Mix2, second: Option<&Mix2>, batch: &mut Batch, lo: usize, hi: usize) {
    let d = batch.dim;
    let x = &batch.x[lo * d..hi * d];
    let scratch = &mut batch.scratch;
    let (mo, mn) = (
        &mut batch.model_old_part[lo..hi],
        &mut batch.model_new_part[lo..hi],
    );
    model.log_parts_rows(x, mo, mn, scratch);
    let (log_q, resp_old) = (&mut batch.log_q[lo..hi], &mut batch.resp_old[lo..hi]);
    match second {
        Some(mix) => {
            let (so, sn) = (
                &mut batch.compared_old[lo..hi],
                &mut batch.compared_new[lo..hi],
            );
            mix.log_parts_rows(x, so, sn, scratch);
            fastmath::log_sum_share_and_log_sum_slices(
                (mo, mn),
                (so, sn),
                log_q,
                resp_old,
                &mut batch.log_compared[lo..hi],
            );
        }
        None => fastmath::log_sum_share_slices(mo, mn, log_q, resp_old),
    }
}

/// The whole finite-batch step; inlined into the AVX2 and the portable copies below.
#[inline(always)]
fn batch_gradient_body<O: Objective>(
    objective: &O,
    wp: WeightParam,
    scales: Option<ScaleParam>,
    m: &Models<O::ExtraModels>,
    rng: &mut LaneStream,
    batch: &mut Batch,
    grad: &mut Grad,
) -> usize {
    let old_count = draw_batch(objective, m, rng, batch);
    let second = objective.compared_density(m);
    let n = batch.len;
    let mut lo = 0;
    while lo + BLOCK <= n {
        density_block(&m.model, second, batch, lo, lo + BLOCK);
        lo += BLOCK;
    }
    if lo < n {
        // The short last block padded to a multiple of TAIL_ROWS rows where the arrays have
        // room (rows are independent, so the real rows' bits are the same): a length the
        // vectoriser's epilogue covers, where a batch of 4 would otherwise run scalar.
        let padded = lo + (n - lo).next_multiple_of(TAIL_ROWS);
        let hi = if batch.padded_len().is_some() {
            padded
        } else {
            n
        };
        density_block(&m.model, second, batch, lo, hi);
    }
    objective.values(m, batch);
    objective.coefficients(batch, Averager::default());
    accumulate_score(wp, &m.model, batch, grad);
    if let Some(param) = scales {
        accumulate_scale_score(param, &m.model, batch, grad);
    }
    old_count
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn batch_gradient_avx2<O: Objective>(
    objective: &O,
    wp: WeightParam,
    scales: Option<ScaleParam>,
    m: &Models<O::ExtraModels>,
    rng: &mut LaneStream,
    batch: &mut Batch,
    grad: &mut Grad,
) -> usize {
    batch_gradient_body(objective, wp, scales, m, rng, batch, grad)
}

/// The same body with AVX-512 (8 doubles per instruction). The features it implies (FMA
/// among them) do not change results: Rust never contracts a·b + c into a fused
/// multiply-add, so every path rounds identically.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn batch_gradient_avx512<O: Objective>(
    objective: &O,
    wp: WeightParam,
    scales: Option<ScaleParam>,
    m: &Models<O::ExtraModels>,
    rng: &mut LaneStream,
    batch: &mut Batch,
    grad: &mut Grad,
) -> usize {
    batch_gradient_body(objective, wp, scales, m, rng, batch, grad)
}

/// One finite-batch estimate ĝ at `m`: the batch drawn from the objective's sampling
/// distribution (see `engine::sampling::draw_batch`) on `rng`, then ĝ = Σ ω_i c_i s(x_i) into `grad`. Returns the
/// number of old-labelled samples. Same numbers as `draw_batch` followed by
/// `engine::score::evaluate` with `Averager::default()`.
pub fn batch_gradient<O: Objective>(
    objective: &O,
    wp: WeightParam,
    scales: Option<ScaleParam>,
    m: &Models<O::ExtraModels>,
    rng: &mut LaneStream,
    batch: &mut Batch,
    grad: &mut Grad,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::math::fastmath::has_avx512() {
            // SAFETY: the processor supports these AVX-512 subsets (checked just above).
            return unsafe { batch_gradient_avx512(objective, wp, scales, m, rng, batch, grad) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor supports AVX2 (checked just above).
            return unsafe { batch_gradient_avx2(objective, wp, scales, m, rng, batch, grad) };
        }
    }
    batch_gradient_body(objective, wp, scales, m, rng, batch, grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::problem::Problem;
    use crate::engine::score::evaluate;
    use crate::model::mixture::{Cov, Gaussian};
    use crate::model::params::Params;
    use crate::objectives::{with_objective, TTTDiscover};
    use crate::objectives::{
        Baseline, Beta, Direction, ForwardKL, ObjectiveSpec, ReverseKL, Reward, OAPL, SDFT,
    };
    use crate::random::starvation::Slots;

    fn problem(dim: usize, cov: Cov, objective: ObjectiveSpec) -> Problem {
        let u = 1.0 / (dim as f64).sqrt();
        let g = |m: f64| Gaussian::new(vec![m * u; dim], cov.clone());
        Problem {
            dim,
            target: Mix2::new(0.7, g(-2.0), g(2.5)),
            model_old_cov: cov.clone(),
            model_new_cov: cov.clone(),
            start: Params::from_alpha(
                0.6,
                vec![-2.0 * u; dim],
                vec![0.3 * u; dim],
                WeightParam::Logit,
            ),
            objective,
            weight_param: WeightParam::Logit,
            lr: 0.05,
            lr_scale: [1.0, 1.0, 1.0],
            scales: None,
            update: Default::default(),
        }
    }

    fn objectives() -> Vec<ObjectiveSpec> {
        vec![
            ObjectiveSpec::ForwardKL(ForwardKL {
                replay: 0.25,
                replay_slots: Slots::Bernoulli,
            }),
            ObjectiveSpec::ReverseKL(ReverseKL {
                replay: 0.3,
                replay_slots: Slots::Bernoulli,
                weight_cap: Some(1.2),
                baseline: Baseline::Loo,
            }),
            ObjectiveSpec::ReverseKL(ReverseKL {
                replay: 0.25,
                replay_slots: Slots::Stratified,
                weight_cap: None,
                baseline: Baseline::None,
            }),
            ObjectiveSpec::SDFT(SDFT {
                ema: 0.1,
                anchor: 0.3,
                direction: Direction::Forward,
            }),
            ObjectiveSpec::TTTDiscover(TTTDiscover {
                beta: Beta::Adaptive,
                kl_penalty: 0.1,
                reward: Reward::TargetLogpdf,
                radius: 1.0,
            }),
            ObjectiveSpec::OAPL(OAPL {
                beta1: 0.5,
                beta2: 2.0,
                lag: 3,
                reward: Reward::NewIndicator,
                radius: 1.5,
            }),
        ]
    }

    /// The fused step gives the unfused draw + evaluate's bits, for every objective, batch
    /// sizes that are and are not multiples of BLOCK, d = 1 and d = 5 (full covariance too).
    #[test]
    fn fused_step_equals_draw_then_evaluate_bit_for_bit() {
        let full = Cov::full(
            &[
                1.0, 0.2, 0.0, 0.0, 0.0, 0.2, 1.1, 0.1, 0.0, 0.0, 0.0, 0.1, 0.9, 0.0, 0.0, 0.0,
                0.0, 0.0, 1.2, 0.3, 0.0, 0.0, 0.0, 0.3, 1.0,
            ],
            5,
        )
        .unwrap();
        for (dim, cov) in [
            (1, Cov::scalar(1.3).unwrap()),
            (5, Cov::scalar(0.8).unwrap()),
            (5, full),
        ] {
            for spec in objectives() {
                let p = problem(dim, cov.clone(), spec);
                with_objective!(spec, o => {
                    let rep = p.new_replicate(&o, [3, 4], 0);
                    let models = p.models_at(&o, &rep);
                    for b in [1, 7, 16, 64, 77] {
                        let (mut r1, mut r2) = (rep.rng.clone(), rep.rng.clone());
                        let (mut b1, mut b2) = (Batch::new(dim, b), Batch::new(dim, b));
                        let (mut g1, mut g2) = (Grad::zeros(dim), Grad::zeros(dim));
                        for _ in 0..3 {
                            let c1 = batch_gradient(&o, p.weight_param, None, &models, &mut r1, &mut b1, &mut g1);
                            let c2 = draw_batch(&o, &models, &mut r2, &mut b2);
                            evaluate(&o, p.weight_param, None, &models, &mut b2, Averager::default(), &mut g2);
                            assert_eq!(c1, c2);
                            assert_eq!(g1, g2, "{spec:?} d={dim} B={b}");
                            assert!(g1.weight.is_finite());
                        }
                    }
                });
            }
        }
    }
}
