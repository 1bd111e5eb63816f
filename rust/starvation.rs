//! Old-mode starvation (MATH §4.3): the number of old-labelled samples in each of many
//! batches, drawn as binomial counts without materialising the samples.

use crate::mixture::CHUNK;
use crate::rng::Stream;
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

/// Per-batch old-labelled counts into `out` (one entry per batch).
/// Bernoulli slots: Binomial(B, λ + (1−λ)α); stratified: round(λB) + Binomial(B − round(λB), α).
pub fn starvation_counts(
    old_weight: f64,
    batch_size: usize,
    replay: f64,
    slots: Slots,
    key: [u64; 2],
    out: &mut [i64],
) -> Result<(), String> {
    let (fixed, trials, p) = match slots {
        Slots::Bernoulli => (0, batch_size, replay + (1.0 - replay) * old_weight),
        Slots::Stratified => {
            let k = stratified_replay_count(replay, batch_size).min(batch_size);
            (k, batch_size - k, old_weight)
        }
    };
    let dist =
        Binomial::new(trials as u64, p).map_err(|e| format!("invalid binomial parameters: {e}"))?;
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let mut rng = Stream::new(key, c as u64);
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
        starvation_counts(0.05, 32, 0.0, Slots::Bernoulli, [3, 4], &mut out).unwrap();
        let p = out.iter().filter(|&&c| c == 0).count() as f64 / n as f64;
        let expect = 0.95f64.powi(32);
        assert!((p - expect).abs() < 5.0 * (expect * (1.0 - expect) / n as f64).sqrt());
        starvation_counts(0.05, 32, 0.25, Slots::Stratified, [3, 4], &mut out).unwrap();
        assert!(out.iter().all(|&c| c >= 8));
    }
}
