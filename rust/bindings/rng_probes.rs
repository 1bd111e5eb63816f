//! Test and benchmark hooks of the generators: the normal-generation floors and the lane
//! streams' output.

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

use super::pools::*;
use crate::model::mixture;
use crate::random::{rng, simd_rng};

/// normal_floor(n, key, threads) -> sum of n standard normals drawn in parallel chunks: the
/// RNG cost floor that the benchmarks compare every workload with.
#[pyfunction]
pub(crate) fn normal_floor(
    py: Python<'_>,
    n: usize,
    key: (u64, u64),
    threads: usize,
) -> PyResult<f64> {
    use rayon::prelude::*;
    run(py, threads, || {
        let chunks = n.div_ceil(mixture::CHUNK);
        Ok((0..chunks)
            .into_par_iter()
            .map(|c| {
                let mut rng = rng::Stream::new([key.0, key.1], c as u64);
                let len = mixture::CHUNK.min(n - c * mixture::CHUNK);
                (0..len).map(|_| rng::normal(&mut rng)).sum::<f64>()
            })
            .sum())
    })
}

// --- the vectorised generator (simd_rng): test and benchmark hooks --------------------------

/// lane_normals(n, key, index) -> the n standard normals of one `fill_normal` of
/// `LaneStream::new(key, index)` (the statistical tests' hook).
#[pyfunction]
pub(crate) fn lane_normals(
    py: Python<'_>,
    n: usize,
    key: (u64, u64),
    index: u64,
) -> PyResult<Bound<'_, PyArray1<f64>>> {
    let mut out = vec![0.0; n];
    py.detach(|| simd_rng::LaneStream::new([key.0, key.1], index).fill_normal(&mut out));
    Ok(out.into_pyarray(py))
}

/// Fold the normals of chunks of mixture::CHUNK (one LaneStream per chunk, drawn 256 at a
/// time into a stack buffer: the same values as one fill of the chunk) and combine the chunks.
pub(crate) fn lane_chunks<T: Send>(
    n: usize,
    key: (u64, u64),
    zero: impl Fn() -> T + Sync + Send,
    fold: impl Fn(T, &[f64]) -> T + Sync,
    combine: impl Fn(T, T) -> T + Sync + Send,
) -> T {
    use rayon::prelude::*;
    (0..n.div_ceil(mixture::CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut stream = simd_rng::LaneStream::new([key.0, key.1], c as u64);
            let mut buf = [0.0; 256];
            let mut left = mixture::CHUNK.min(n - c * mixture::CHUNK);
            let mut acc = zero();
            while left > 0 {
                let z = &mut buf[..left.min(256)];
                stream.fill_normal(z);
                acc = fold(acc, z);
                left -= z.len();
            }
            acc
        })
        .reduce(&zero, combine)
}

/// lane_normal_floor(n, key, threads) -> sum of n normals from the vectorised generator in
/// parallel chunks: `normal_floor` with `simd_rng::LaneStream::fill_normal`.
#[pyfunction]
pub(crate) fn lane_normal_floor(
    py: Python<'_>,
    n: usize,
    key: (u64, u64),
    threads: usize,
) -> PyResult<f64> {
    run(py, threads, || {
        Ok(lane_chunks(
            n,
            key,
            || 0.0,
            |acc, z| acc + z.iter().sum::<f64>(),
            |a, b| a + b,
        ))
    })
}

/// lane_normal_tail_counts(n, key, thresholds, threads) -> ([#{|z| > t} for t in
/// thresholds], max |z|) over n normals drawn as by `lane_normal_floor`.
#[pyfunction]
pub(crate) fn lane_normal_tail_counts(
    py: Python<'_>,
    n: usize,
    key: (u64, u64),
    thresholds: Vec<f64>,
    threads: usize,
) -> PyResult<(Vec<u64>, f64)> {
    let k = thresholds.len();
    run(py, threads, || {
        Ok(lane_chunks(
            n,
            key,
            || (vec![0u64; k], 0.0f64),
            |(mut counts, mut max_abs), z| {
                for v in z.iter().map(|v| v.abs()) {
                    max_abs = max_abs.max(v);
                    for (c, t) in counts.iter_mut().zip(&thresholds) {
                        *c += (v > *t) as u64;
                    }
                }
                (counts, max_abs)
            },
            |(a, ma), (b, mb)| (a.iter().zip(&b).map(|(x, y)| x + y).collect(), ma.max(mb)),
        ))
    })
}
