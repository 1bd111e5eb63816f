//! Old-mode starvation (docs: theory-starvation): the number of old-labelled samples in each of
//! many batches, drawn as binomial counts without materialising the samples.

use crate::error::KernelResult;
use crate::model::mixture::CHUNK;
use crate::random::rng::Stream;
use rand::RngExt;
use rand_distr::Binomial;
use rayon::prelude::*;

/// How replay slots are assigned within a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slots {
    /// Each sample is a replay sample with probability λ.
    Bernoulli,
    /// Exactly round(λB) replay samples per batch.
    Stratified,
}

/// Number of replay slots fixed by stratification: round(λB) (ties away from zero).
pub fn stratified_replay_count(replay: f64, batch_size: usize) -> usize {
    (replay * batch_size as f64).round() as usize
}

/// Inverse-CDF table of Binomial(n, p): cdf[k] = P(X ≤ k). Built from the mode outwards
/// with the pmf recursion, so nothing underflows where the mass is; exact to rounding.
struct BinomialTable {
    cdf: Vec<f64>,
    mean: f64,
}

impl BinomialTable {
    fn new(n: usize, p: f64) -> BinomialTable {
        let mode = ((n as f64 + 1.0) * p).floor().min(n as f64) as usize;
        let ratio = p / (1.0 - p);
        let mut pmf = vec![0.0; n + 1];
        pmf[mode] = 1.0;
        for k in mode..n {
            pmf[k + 1] = pmf[k] * (n - k) as f64 / (k + 1) as f64 * ratio;
        }
        for k in (1..=mode).rev() {
            pmf[k - 1] = pmf[k] * k as f64 / (n - k + 1) as f64 / ratio;
        }
        let total: f64 = pmf.iter().sum();
        let mut acc = 0.0;
        let cdf = pmf
            .iter()
            .map(|v| {
                acc += v / total;
                acc
            })
            .collect();
        BinomialTable {
            cdf,
            mean: n as f64 * p,
        }
    }

    /// One draw from a uniform u ∈ [0, 1): the smallest k with u < cdf[k].
    #[inline(always)]
    fn draw(&self, u: f64) -> usize {
        let last = self.cdf.len() - 1;
        if self.mean < 16.0 {
            // short linear search from 0: about mean + 1 comparisons
            self.cdf.iter().position(|&c| u < c).unwrap_or(last)
        } else {
            self.cdf.partition_point(|&c| c <= u).min(last)
        }
    }
}

/// Batches up to this size use the exact inverse-CDF table (one uniform per batch); larger
/// ones rand_distr's BTPE sampler.
const TABLE_MAX_BATCH: usize = 1 << 16;

/// Per-batch old-labelled counts into `out` (one entry per batch); chunk c of [`CHUNK`]
/// batches uses stream (key, first_stream + c), so counts cut at chunk boundaries reproduce
/// one call.
/// Bernoulli slots: Binomial(B, λ + (1−λ)α); stratified: round(λB) + Binomial(B − round(λB), α).
pub fn starvation_counts(
    old_weight: f64,
    batch_size: usize,
    replay: f64,
    slots: Slots,
    key: [u64; 2],
    first_stream: u64,
    out: &mut [i64],
) -> KernelResult<()> {
    let (fixed, trials, p) = match slots {
        Slots::Bernoulli => (0, batch_size, replay + (1.0 - replay) * old_weight),
        Slots::Stratified => {
            let k = stratified_replay_count(replay, batch_size).min(batch_size);
            (k, batch_size - k, old_weight)
        }
    };
    if !(p > 0.0 && p < 1.0) {
        return Err(format!("the old-label probability must be in (0, 1), got {p}").into());
    }
    if trials <= TABLE_MAX_BATCH {
        let table = BinomialTable::new(trials, p);
        // Small means: count k with u ≥ cdf[k] over the support that carries mass in double
        // precision, one comparison pass per k over the whole chunk (branch-free, vectorised).
        let support = table
            .cdf
            .iter()
            .position(|&c| c >= 1.0)
            .unwrap_or(table.cdf.len() - 1);
        let branch_free = table.mean < 16.0 && support <= 64;
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
            let mut rng = Stream::new(key, first_stream + c as u64);
            if branch_free {
                let u: Vec<f64> = (0..o.len()).map(|_| rng.uniform()).collect();
                o.iter_mut().for_each(|v| *v = fixed as i64);
                for &edge in &table.cdf[..support] {
                    for (v, &ui) in o.iter_mut().zip(&u) {
                        *v += (ui >= edge) as i64;
                    }
                }
            } else {
                for v in o.iter_mut() {
                    *v = (fixed + table.draw(rng.uniform())) as i64;
                }
            }
        });
        return Ok(());
    }
    let dist =
        Binomial::new(trials as u64, p).map_err(|e| format!("invalid binomial parameters: {e}"))?;
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let mut rng = Stream::new(key, first_stream + c as u64);
        for v in o.iter_mut() {
            *v = fixed as i64 + rng.sample(dist) as i64;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_frequency_matches_formula() {
        let n = 200_000;
        let mut out = vec![0i64; n];
        starvation_counts(0.05, 32, 0.0, Slots::Bernoulli, [3, 4], 0, &mut out).unwrap();
        let p = out.iter().filter(|&&c| c == 0).count() as f64 / n as f64;
        let expect = 0.95f64.powi(32);
        assert!((p - expect).abs() < 5.0 * (expect * (1.0 - expect) / n as f64).sqrt());
        starvation_counts(0.05, 32, 0.25, Slots::Stratified, [3, 4], 0, &mut out).unwrap();
        assert!(out.iter().all(|&c| c >= 8));
    }

    #[test]
    fn binomial_table_moments() {
        for (n, p) in [(32usize, 0.05), (7, 0.9), (2000, 0.5), (1, 0.3)] {
            let table = BinomialTable::new(n, p);
            assert!((table.cdf[n] - 1.0).abs() < 1e-12);
            let mut rng = Stream::new([1, 1], 0);
            let m = 200_000;
            let draws: Vec<f64> = (0..m).map(|_| table.draw(rng.uniform()) as f64).collect();
            let mean = draws.iter().sum::<f64>() / m as f64;
            let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (m - 1) as f64;
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (mean - n as f64 * p).abs() < 5.0 * sd / (m as f64).sqrt(),
                "n={n} p={p} mean={mean}"
            );
            assert!(
                (var / (sd * sd) - 1.0).abs() < 5.0 * (2.0 / m as f64).sqrt() * 1.5,
                "n={n} p={p} var={var}"
            );
        }
    }
}
