//! Drawing a finite batch from an objective's sampling distribution (docs: theory-estimators):
//! label first, then the point; replay slots.

use crate::engine::batch::Batch;
use crate::engine::state::Models;
use crate::model::mixture::{Cov, Gaussian};
use crate::objectives::{Objective, Source};
use crate::random::simd_rng::LaneStream;
use crate::random::starvation::{stratified_replay_count, Slots};

/// Draw a finite batch (docs: theory-estimators: label first, then the point; replay slots).
/// Returns the number of old-labelled samples.
///
/// Words taken from the replicate's `LaneStream`, in this order (each a separate fill, see
/// the consumption rule in `simd_rng`): B words for the Bernoulli replay slots (only when
/// λ > 0 and slots are Bernoulli), B words for the labels (only when the source is a
/// mixture), then the B·d normals. Sample i's replay and label words are the i-th of their
/// fills; u < p is decided on the 53-bit integer w >> 11 (the same outcome as
/// `uniform53(w) < p`), branch-free, because a label is a coin flip no predictor can learn.
#[inline(always)]
pub fn draw_batch<O: Objective>(
    objective: &O,
    m: &Models,
    rng: &mut LaneStream,
    batch: &mut Batch,
) -> usize {
    let (replay, slots) = objective.replay();
    let b = batch.len;
    let n_strat = match slots {
        Slots::Stratified => stratified_replay_count(replay, b).min(b),
        Slots::Bernoulli => 0,
    };
    batch.replay_used = match slots {
        Slots::Stratified => n_strat as f64 / b as f64,
        Slots::Bernoulli => replay,
    };
    // Components: 0 = the source's old component (or its single one), 1 = its new one,
    // 2 = replay from p_old*.
    let (comps, source_alpha, single): ([&Gaussian; 3], f64, bool) = match objective.source(m) {
        Source::Single(g) => ([g, g, &m.target.old], 0.0, true),
        Source::Mixture(mix) => ([&mix.old, &mix.new, &m.target.old], mix.alpha, false),
    };
    let below = |p: f64| (p * (1u64 << 53) as f64).ceil() as u64;
    let alpha_bits = below(source_alpha);
    let replay_bits = below(replay);
    let words = &mut batch.words[..b];
    let component = &mut batch.component[..b];
    // Replay slots first: 2 marks a replay sample, 1 a source sample (to be labelled).
    match slots {
        Slots::Bernoulli if replay > 0.0 => {
            rng.fill_u64(words);
            for (c, w) in component.iter_mut().zip(words.iter()) {
                *c = if (w >> 11) < replay_bits { 2 } else { 1 };
            }
        }
        _ => {
            for (i, c) in component.iter_mut().enumerate() {
                *c = if i < n_strat { 2 } else { 1 };
            }
        }
    }
    if !single {
        rng.fill_u64(words);
        for (c, w) in component.iter_mut().zip(words.iter()) {
            let on_new = ((w >> 11) >= alpha_bits) as u8;
            // a replay sample (2) keeps its mark; a source sample (1) takes its label
            *c = if *c == 2 { 2 } else { on_new };
        }
    }
    let old_count = component.iter().filter(|&&c| c != 1).count();
    let d = batch.dim;
    rng.fill_normal(&mut batch.x[..b * d]);
    // x = μ_c + L_c z.
    let all_scalar = comps.iter().all(|g| matches!(g.cov, Cov::Scalar { .. }));
    if all_scalar && d == 1 {
        let sd = comps.map(|g| {
            if let Cov::Scalar { sd } = g.cov {
                sd
            } else {
                1.0
            }
        });
        let mu = comps.map(|g| g.mean[0]);
        // selects instead of indexing by the label: the loop vectorises
        for (x, &c) in batch.x[..b].iter_mut().zip(&batch.component[..b]) {
            let pick = |v: [f64; 3]| match c {
                0 => v[0],
                1 => v[1],
                _ => v[2],
            };
            *x = pick(mu) + pick(sd) * *x;
        }
    } else {
        for (row, &c) in batch.x[..b * d]
            .chunks_exact_mut(d)
            .zip(&batch.component[..b])
        {
            let g = comps[c as usize];
            g.cov.color(row);
            row.iter_mut().zip(&g.mean).for_each(|(v, mu)| *v += mu);
        }
    }
    old_count
}
