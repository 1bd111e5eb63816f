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
    let full = len - len % SUM_LANES;
    let mut acc = whole_blocks(&inputs, full, &term);
    for j in 0..len - full {
        let t = term(inputs.map(|s| s[full + j]));
        for k in 0..K {
            acc[k][j] += t[k];
        }
    }
    acc.map(lane_total)
}

/// `lane_sums` of the first `len` rows of inputs that reach on to the end of the last block
/// of `SUM_LANES` rows (the rows past `len` may hold anything), bit for bit (a NaN's payload
/// aside, which follows the compiler's operand order in both): the last block
/// is computed whole and its rows past `len` added as +0.0, which leaves a partial sum
/// unchanged (a partial sum that starts at +0.0 is never −0.0 in round-to-nearest). One
/// vector pass where `lane_sums` runs the last rows one by one into its partial sums, which
/// for a batch of a few samples is most of the work.
#[inline(always)]
pub(crate) fn lane_sums_padded<const N: usize, const K: usize>(
    inputs: [&[f64]; N],
    len: usize,
    term: impl Fn([f64; N]) -> [f64; K],
) -> [f64; K] {
    let full = len - len % SUM_LANES;
    let mut acc = whole_blocks(&inputs, full, &term);
    if full < len {
        let chunk: [&[f64]; N] = inputs.map(|s| &s[full..full + SUM_LANES]);
        let mut block = [[0.0f64; SUM_LANES]; K];
        for j in 0..SUM_LANES {
            let t = term(chunk.map(|c| c[j]));
            let real = full + j < len;
            for k in 0..K {
                block[k][j] = if real { t[k] } else { 0.0 };
            }
        }
        for k in 0..K {
            for j in 0..SUM_LANES {
                acc[k][j] += block[k][j];
            }
        }
    }
    acc.map(lane_total)
}

/// The partial sums of rows [0, full) (a multiple of `SUM_LANES`), block by block.
#[inline(always)]
fn whole_blocks<const N: usize, const K: usize>(
    inputs: &[&[f64]; N],
    full: usize,
    term: &impl Fn([f64; N]) -> [f64; K],
) -> [[f64; SUM_LANES]; K] {
    let mut acc = [[0.0f64; SUM_LANES]; K];
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
    acc
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The padded form gives `lane_sums`' bits for every length, whatever the padding holds
    /// (signed zeros, infinities and NaN among the values). A NaN stays a NaN; its sign and
    /// payload follow the operand order the compiler picks, in `lane_sums` too.
    #[test]
    fn padded_sums_equal_lane_sums_bit_for_bit() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 11 {
                0 => -0.0,
                1 => 0.0,
                2 => f64::INFINITY,
                3 => f64::NAN,
                _ => (state >> 11) as f64 / (1u64 << 40) as f64 - 2000.0,
            }
        };
        for len in 0..70usize {
            let padded = len.next_multiple_of(SUM_LANES);
            let a: Vec<f64> = (0..padded).map(|_| next()).collect();
            let b: Vec<f64> = (0..padded).map(|_| next()).collect();
            let term = |[x, y]: [f64; 2]| [x * y, x - y, -0.0 * x];
            let want = lane_sums([&a[..len], &b[..len]], term);
            let got = lane_sums_padded([&a[..], &b[..]], len, term);
            for (w, g) in want.iter().zip(&got) {
                let same = w.to_bits() == g.to_bits() || (w.is_nan() && g.is_nan());
                assert!(same, "len {len}: {want:?} vs {got:?}");
            }
        }
    }
}
