//! Deterministic vectorised sums: 16 partial sums in a fixed pairwise order, the same on every
//! instruction set and for any thread count.

/// Partial sums kept per output of `lane_sums`: 16 doubles are two AVX-512 or four AVX2
/// registers, enough independent chains to hide the adder's latency.
pub(crate) const SUM_LANES: usize = 16;

/// K sums Σ_i term(a_i, b_i, …)[k] over the rows of N equally long inputs, in one pass:
/// row i goes to partial sum i mod 16, then the 16 partials are added in a fixed pairwise
/// tree. The order depends on the length alone (deterministic, the same on every
/// instruction set). The terms of 16 rows are computed into a block first and then added:
/// that shape vectorises (the term receives values, not indices, so no bounds checks), and
/// K sums cost one pass of vector adds instead of K latency-bound scalar chains.
#[inline(always)]
pub(crate) fn lane_sums<const N: usize, const K: usize>(
    inputs: [&[f64]; N],
    term: impl Fn([f64; N]) -> [f64; K],
) -> [f64; K] {
    let len = inputs.iter().map(|s| s.len()).min().unwrap_or(0);
    let mut acc = [[0.0f64; SUM_LANES]; K];
    let full = len - len % SUM_LANES;
    let mut i = 0;
    while i < full {
        let chunk: [&[f64]; N] = inputs.map(|s| &s[i..i + SUM_LANES]);
        let mut block = [[0.0f64; SUM_LANES]; K];
        for j in 0..SUM_LANES {
            let t = term(chunk.map(|c| c[j]));
            for k in 0..K {
                block[k][j] = t[k];
            }
        }
        for k in 0..K {
            for j in 0..SUM_LANES {
                acc[k][j] += block[k][j];
            }
        }
        i += SUM_LANES;
    }
    for j in 0..len - full {
        let t = term(inputs.map(|s| s[full + j]));
        for k in 0..K {
            acc[k][j] += t[k];
        }
    }
    acc.map(lane_total)
}

/// Σ a_i.
#[inline(always)]
pub(crate) fn sum(a: &[f64]) -> f64 {
    lane_sums([a], |[a]| [a])[0]
}

/// The fixed pairwise tree over `lane_sums`' partial sums.
#[inline(always)]
pub(crate) fn lane_total(mut a: [f64; SUM_LANES]) -> f64 {
    let mut width = SUM_LANES;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            a[j] += a[j + width];
        }
    }
    a[0]
}
