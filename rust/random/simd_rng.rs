//! Vectorised random numbers: `LANES` independent Xoshiro256++ generators per stream, stored
//! as structure-of-arrays (one `[u64; LANES]` per state word) so that one generator step is a
//! handful of vector instructions, plus block fills of uniforms and of standard normals (a
//! Ziggurat whose fast path runs four words at a time with gathers, its rare slow path out
//! of line).
//!
//! Determinism: a `LaneStream` is seeded from (root key, stream index) only, like
//! `rng::Stream`, and lives with the unit of work that owns it (a replicate, a chunk), so
//! results do not depend on the number of threads. Every path (AVX2 selected at run time, or
//! the portable one) performs the same IEEE operations in the same order (no FMA; exp and ln
//! are this crate's branch-free versions, not the platform's libm), so every machine
//! produces the same bits.
//!
//! Consumption rule (what the callers' bit-exact results rest on): one *step* advances every
//! lane once and yields `LANES` words, word j from lane j.
//! - `fill_u64` / `fill_uniform` / `fill_open_uniform` of n values take ⌈n / LANES⌉ steps;
//!   value i comes from lane i mod LANES of step ⌊i / LANES⌋; the rest of the last step is
//!   discarded.
//! - `fill_normal` works in chunks of `ZIG_CHUNK` (256) positions: the chunk's words are drawn
//!   first as by `fill_u64` (position p from lane p mod LANES), then the positions are
//!   finished in order; a word the fast path rejects (≈ 1 %) continues rand_distr's Ziggurat
//!   loop with further words from its own lane. So a fill of n values is a function of the
//!   state and n; splitting it into several fills gives other (equally valid) values.

use crate::math::fastmath;
use crate::random::rng::mix64;

#[path = "ziggurat_tables.rs"]
#[rustfmt::skip]
mod ziggurat_tables;
use ziggurat_tables::{ZIG_NORM_F, ZIG_NORM_R, ZIG_NORM_X};

/// Independent generators per stream: two AVX2 registers (or one AVX-512 register) per
/// state word, so each step has two independent dependency chains to overlap.
pub const LANES: usize = 8;

/// Separates the lane generators' seeds from those of `rng::Stream` for the same (key, index).
const LANE_DOMAIN: u64 = 0x6C61_6E65_5F78_6F73; // "lane_xos"

const ONE_BITS: u64 = 0x3FF0_0000_0000_0000; // 1.0
const MANTISSA: u64 = 0x000F_FFFF_FFFF_FFFF;
const TWO_POW_52_BITS: u64 = 0x4330_0000_0000_0000; // 2^52: low bits hold an integer < 2^52
const TWO_POW_52: f64 = 4_503_599_627_370_496.0;
const TWO_POW_M53: f64 = 1.0 / 9_007_199_254_740_992.0;
const TWO_POW_26: f64 = 67_108_864.0;

/// Call `$body(stream, out, words)` through an AVX2-enabled copy with the explicit AVX2
/// generator step when the processor has AVX2, else with the portable step (same bits).
macro_rules! dispatch {
    ($body:ident($stream:ident, $out:ident): $elem:ty) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            unsafe fn avx2(stream: &mut LaneStream, out: &mut [$elem]) {
                // SAFETY: this function only runs where AVX2 is present.
                $body(stream, out, |s, w| unsafe { fill_words_avx2(s, w) })
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the processor supports AVX2 (checked just above).
                return unsafe { avx2($stream, $out) };
            }
        }
        $body($stream, $out, fill_words)
    }};
}

/// `LANES` Xoshiro256++ generators in structure-of-arrays layout: `s[w][j]` is word w of lane j.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneStream {
    s: [[u64; LANES]; 4],
}

impl LaneStream {
    /// The stream for (root key, index): each lane's four words are consecutive outputs of
    /// SplitMix64 started from the hashed (key, index) pair (separated from `rng::Stream`'s
    /// seeds), lane by lane.
    pub fn new(key: [u64; 2], index: u64) -> Self {
        let mut h = mix64(mix64(key[0] ^ mix64(key[1] ^ mix64(index))) ^ LANE_DOMAIN);
        let mut s = [[0u64; LANES]; 4];
        for j in 0..LANES {
            for word in s.iter_mut() {
                h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
                word[j] = mix64(h);
            }
            if (0..4).all(|w| s[w][j] == 0) {
                s[0][j] = 1; // the all-zero state is the generator's only fixed point
            }
        }
        LaneStream { s }
    }

    /// The state of lane `j` as (s0, s1, s2, s3): a scalar Xoshiro256++ from it reproduces
    /// the lane's outputs.
    pub fn lane_state(&self, j: usize) -> [u64; 4] {
        [self.s[0][j], self.s[1][j], self.s[2][j], self.s[3][j]]
    }

    /// One step of lane `j` alone (the Ziggurat's rare slow path).
    #[inline]
    pub fn lane_next(&mut self, j: usize) -> u64 {
        let s = &mut self.s;
        let (s0, s1, s2, s3) = (s[0][j], s[1][j], s[2][j], s[3][j]);
        let result = s0.wrapping_add(s3).rotate_left(23).wrapping_add(s0);
        let t = s1 << 17;
        let s2 = s2 ^ s0;
        let s3 = s3 ^ s1;
        s[1][j] = s1 ^ s2;
        s[0][j] = s0 ^ s3;
        s[2][j] = s2 ^ t;
        s[3][j] = s3.rotate_left(45);
        result
    }

    /// Raw 64-bit words (see the consumption rule in the module docstring).
    pub fn fill_u64(&mut self, out: &mut [u64]) {
        dispatch!(fill_u64_body(self, out): u64)
    }

    /// Uniforms on [0, 1) with 53 random bits: (w >> 11)·2⁻⁵³, the map of
    /// `rng::Stream::uniform`, so `u < p` agrees with the integer test used for labels.
    pub fn fill_uniform(&mut self, out: &mut [f64]) {
        dispatch!(fill_uniform_body(self, out): f64)
    }

    /// Uniforms on the open interval (0, 1), safe to take logs of: the 2⁵² midpoints
    /// (2k + 1)·2⁻⁵³ from the top 52 bits of each word.
    pub fn fill_open_uniform(&mut self, out: &mut [f64]) {
        dispatch!(fill_open_uniform_body(self, out): f64)
    }

    /// Standard normals by a vectorised Ziggurat (rand_distr's 256-layer tables; see the
    /// module docstring for which words it takes).
    pub fn fill_normal(&mut self, out: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::math::fastmath::has_avx512() {
                // SAFETY: the processor supports AVX-512 F, DQ and VL (checked just above).
                return unsafe { fill_normal_ziggurat_avx512(self, out) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the processor supports AVX2 (checked just above).
                return unsafe { fill_normal_ziggurat_avx2(self, out) };
            }
        }
        fill_normal_ziggurat(self, out)
    }
}

/// One Xoshiro256++ step of every lane (Blackman & Vigna), written lane-wise so that LLVM
/// turns each line into one vector instruction per register.
#[inline(always)]
fn step(s: &mut [[u64; LANES]; 4], out: &mut [u64; LANES]) {
    for j in 0..LANES {
        let (s0, s1, s2, s3) = (s[0][j], s[1][j], s[2][j], s[3][j]);
        out[j] = s0.wrapping_add(s3).rotate_left(23).wrapping_add(s0);
        let t = s1 << 17;
        let s2 = s2 ^ s0;
        let s3 = s3 ^ s1;
        s[1][j] = s1 ^ s2;
        s[0][j] = s0 ^ s3;
        s[2][j] = s2 ^ t;
        s[3][j] = s3.rotate_left(45);
    }
}

/// Fill `out` step by step; the state is copied into a local so that it stays in registers.
#[inline(always)]
fn fill_words(stream: &mut LaneStream, out: &mut [u64]) {
    let mut s = stream.s;
    let mut chunks = out.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        let block: &mut [u64; LANES] = chunk.try_into().expect("chunk of LANES words");
        step(&mut s, block);
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut block = [0u64; LANES];
        step(&mut s, &mut block);
        rest.copy_from_slice(&block[..rest.len()]);
    }
    stream.s = s;
}

/// `fill_words` with explicit AVX2 instructions (LLVM keeps the portable lane loop scalar
/// because AVX2 has no 64-bit rotate): two registers per state word.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn fill_words_avx2(stream: &mut LaneStream, out: &mut [u64]) {
    use core::arch::x86_64::*;
    macro_rules! rotl {
        ($x:expr, $k:literal) => {
            _mm256_or_si256(
                _mm256_slli_epi64::<$k>($x),
                _mm256_srli_epi64::<{ 64 - $k }>($x),
            )
        };
    }
    const _: () = assert!(LANES == 8);
    // SAFETY (all unaligned loads and stores): each pointer addresses 4 in-bounds u64.
    let load = |w: &[u64; LANES], h: usize| unsafe {
        _mm256_loadu_si256(w.as_ptr().add(4 * h) as *const __m256i)
    };
    let mut s0 = [load(&stream.s[0], 0), load(&stream.s[0], 1)];
    let mut s1 = [load(&stream.s[1], 0), load(&stream.s[1], 1)];
    let mut s2 = [load(&stream.s[2], 0), load(&stream.s[2], 1)];
    let mut s3 = [load(&stream.s[3], 0), load(&stream.s[3], 1)];
    let mut step = |dst: &mut [u64; LANES]| {
        for h in 0..2 {
            let result = _mm256_add_epi64(rotl!(_mm256_add_epi64(s0[h], s3[h]), 23), s0[h]);
            let t = _mm256_slli_epi64::<17>(s1[h]);
            s2[h] = _mm256_xor_si256(s2[h], s0[h]);
            s3[h] = _mm256_xor_si256(s3[h], s1[h]);
            s1[h] = _mm256_xor_si256(s1[h], s2[h]);
            s0[h] = _mm256_xor_si256(s0[h], s3[h]);
            s2[h] = _mm256_xor_si256(s2[h], t);
            s3[h] = rotl!(s3[h], 45);
            unsafe { _mm256_storeu_si256(dst.as_mut_ptr().add(4 * h) as *mut __m256i, result) };
        }
    };
    let mut chunks = out.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        step(chunk.try_into().expect("chunk of LANES words"));
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut block = [0u64; LANES];
        step(&mut block);
        rest.copy_from_slice(&block[..rest.len()]);
    }
    let store = |w: &mut [u64; LANES], v: [__m256i; 2]| {
        for (h, x) in v.iter().enumerate() {
            unsafe { _mm256_storeu_si256(w.as_mut_ptr().add(4 * h) as *mut __m256i, *x) };
        }
    };
    store(&mut stream.s[0], s0);
    store(&mut stream.s[1], s1);
    store(&mut stream.s[2], s2);
    store(&mut stream.s[3], s3);
}

#[inline(always)]
fn fill_u64_body(
    stream: &mut LaneStream,
    out: &mut [u64],
    words: impl Fn(&mut LaneStream, &mut [u64]),
) {
    words(stream, out)
}

/// An integer below 2⁵² as f64, exactly (no AVX2 instruction converts 64-bit integers).
#[inline(always)]
fn small_int_to_f64(n: u64) -> f64 {
    f64::from_bits(TWO_POW_52_BITS | n) - TWO_POW_52
}

/// (w >> 11)·2⁻⁵³ exactly: the 53-bit integer in two exactly converted halves.
#[inline(always)]
pub fn uniform53(w: u64) -> f64 {
    let n = w >> 11;
    let hi = small_int_to_f64(n >> 26);
    let lo = small_int_to_f64(n & ((1 << 26) - 1));
    (hi * TWO_POW_26 + lo) * TWO_POW_M53
}

/// (2k + 1)·2⁻⁵³ for k = w >> 12: in (0, 1), exact (Sterbenz: the subtraction is exact).
#[inline(always)]
pub fn open_uniform(w: u64) -> f64 {
    f64::from_bits((w >> 12) | ONE_BITS) - (1.0 - TWO_POW_M53)
}

/// `out` viewed as raw words, so that the words can be generated in place and then mapped
/// to floats without a buffer.
#[inline(always)]
fn as_words(out: &mut [f64]) -> &mut [u64] {
    // SAFETY: f64 and u64 have the same size and alignment, and every bit pattern is valid
    // for both; the borrow of `out` is carried over.
    unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u64, out.len()) }
}

#[inline(always)]
fn fill_uniform_body(
    stream: &mut LaneStream,
    out: &mut [f64],
    fill: impl Fn(&mut LaneStream, &mut [u64]),
) {
    fill(stream, as_words(out));
    for u in out.iter_mut() {
        *u = uniform53(u.to_bits());
    }
}

#[inline(always)]
fn fill_open_uniform_body(
    stream: &mut LaneStream,
    out: &mut [f64],
    fill: impl Fn(&mut LaneStream, &mut [u64]),
) {
    fill(stream, as_words(out));
    for u in out.iter_mut() {
        *u = open_uniform(u.to_bits());
    }
}

// --- branch-free ln (fdlibm's minimax kernel) for the Ziggurat's tail -----------------

const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const LG1: f64 = 6.666_666_666_666_735e-1;
const LG2: f64 = 3.999_999_999_940_942e-1;
const LG3: f64 = 2.857_142_874_366_239e-1;
const LG4: f64 = 2.222_219_843_214_978_4e-1;
const LG5: f64 = 1.818_357_216_161_805e-1;
const LG6: f64 = 1.531_383_769_920_937_3e-1;
const LG7: f64 = 1.479_819_860_511_658_6e-1;

/// ln u for a normal (not subnormal) u in (0, 1]·2^k: fdlibm's log without branches. The
/// exponent and mantissa come from the bits; the mantissa is folded into [√½, √2].
#[inline(always)]
pub fn ln_positive(u: f64) -> f64 {
    let bits = u.to_bits();
    let m = f64::from_bits((bits & MANTISSA) | ONE_BITS); // [1, 2)
    let big = m > std::f64::consts::SQRT_2;
    let m = if big { 0.5 * m } else { m };
    let e = small_int_to_f64(bits >> 52) - 1023.0 + if big { 1.0 } else { 0.0 };
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * (LG4 + w * LG6));
    let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    let r = t1 + t2;
    let hfsq = 0.5 * f * f;
    e * LN2_HI - ((hfsq - (s * (hfsq + r) + e * LN2_LO)) - f)
}

/// Words per inner chunk of the Ziggurat fill (a multiple of LANES and of 64).
const ZIG_CHUNK: usize = 256;
const _: () = assert!(ZIG_CHUNK.is_multiple_of(LANES) && ZIG_CHUNK.is_multiple_of(64));

/// The Ziggurat's fast path on one word: (x, accepted). Layer i = the low 8 bits; u ∈ [−1, 1)
/// from the top 52 bits (rand_distr's layout); x = u·X[i] is accepted when |x| < X[i+1],
/// i.e. when it falls inside the layer's inner rectangle (about 99% of words).
#[inline(always)]
fn ziggurat_fast(w: u64) -> (f64, bool) {
    let i = (w & 0xff) as usize;
    let u = f64::from_bits((w >> 12) | 0x4000_0000_0000_0000) - 3.0;
    let x = u * ZIG_NORM_X[i];
    (x, x.abs() < ZIG_NORM_X[i + 1])
}

/// The rest of rand_distr's Ziggurat loop for a word whose fast test failed, drawing any
/// further words from lane `lane` alone. exp and ln are this crate's branch-free versions,
/// so the result is the same on every machine.
#[cold]
#[inline(never)]
fn ziggurat_slow(stream: &mut LaneStream, lane: usize, first: u64) -> f64 {
    let mut w = first;
    loop {
        let (x, accepted) = ziggurat_fast(w);
        if accepted {
            return x;
        }
        let i = (w & 0xff) as usize;
        if i == 0 {
            // the base layer's tail beyond R (Marsaglia's method)
            let u_negative = x < 0.0;
            loop {
                let a = ln_positive(open_uniform(stream.lane_next(lane))) / ZIG_NORM_R;
                let b = ln_positive(open_uniform(stream.lane_next(lane)));
                if -2.0 * b >= a * a {
                    return if u_negative {
                        a - ZIG_NORM_R
                    } else {
                        ZIG_NORM_R - a
                    };
                }
            }
        }
        let f = ZIG_NORM_F[i + 1]
            + (ZIG_NORM_F[i] - ZIG_NORM_F[i + 1]) * uniform53(stream.lane_next(lane));
        if f < fastmath::exp(-0.5 * x * x) {
            return x;
        }
        w = stream.lane_next(lane);
    }
}

/// Portable Ziggurat fill: a chunk of words first (in place), then the fast path word by
/// word, a rejected word going through the slow path at once (positions in order).
fn fill_normal_ziggurat(stream: &mut LaneStream, out: &mut [f64]) {
    for chunk in out.chunks_mut(ZIG_CHUNK) {
        fill_words(stream, as_words(chunk));
        for (p, v) in chunk.iter_mut().enumerate() {
            let w = v.to_bits();
            let (x, accepted) = ziggurat_fast(w);
            *v = if accepted {
                x
            } else {
                ziggurat_slow(stream, p % LANES, w)
            };
        }
    }
}

/// The vector fast paths' second half: the rejected positions (bit p of `rejected`) through
/// the slow path in increasing position, then the positions from `tail_start` on (fewer than
/// one vector) word by word, as the portable path does.
#[inline(always)]
fn finish_chunk(stream: &mut LaneStream, chunk: &mut [f64], rejected: &[u64], tail_start: usize) {
    for (word_index, &bits) in rejected.iter().enumerate() {
        let mut bits = bits;
        while bits != 0 {
            let p = 64 * word_index + bits.trailing_zeros() as usize;
            chunk[p] = ziggurat_slow(stream, p % LANES, chunk[p].to_bits());
            bits &= bits - 1;
        }
    }
    for (k, v) in chunk[tail_start..].iter_mut().enumerate() {
        let w = v.to_bits();
        let (x, accepted) = ziggurat_fast(w);
        *v = if accepted {
            x
        } else {
            ziggurat_slow(stream, (tail_start + k) % LANES, w)
        };
    }
}

/// `fill_normal_ziggurat` with AVX-512: eight words at a time (one register holds a whole
/// lane block), the eight lanes' state steps in one register each too; the same operations
/// on the same words as the other paths, so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn fill_normal_ziggurat_avx512(stream: &mut LaneStream, out: &mut [f64]) {
    use core::arch::x86_64::*;
    let layer_mask = _mm512_set1_epi64(0xff);
    let two_bits = _mm512_set1_epi64(0x4000_0000_0000_0000);
    let three = _mm512_set1_pd(3.0);
    let abs_mask = _mm512_castsi512_pd(_mm512_set1_epi64(i64::MAX));
    let table = ZIG_NORM_X.as_ptr();
    for chunk in out.chunks_mut(ZIG_CHUNK) {
        // the portable word loop, vectorised by LLVM with this function's features
        fill_words(stream, as_words(chunk));
        let mut rejected = [0u64; ZIG_CHUNK / 64];
        let tail_start = chunk.len() / 8 * 8;
        let mut base = 0;
        for oct in chunk[..tail_start].chunks_exact_mut(8) {
            let ptr = oct.as_mut_ptr();
            // SAFETY: `oct` holds 8 f64; layer indices are ≤ 255, so i and i + 1 index the
            // 257-entry table in bounds.
            let accepted = unsafe {
                let w = _mm512_loadu_si512(ptr as *const __m512i);
                let layer = _mm512_and_si512(w, layer_mask);
                let u = _mm512_sub_pd(
                    _mm512_castsi512_pd(_mm512_or_si512(_mm512_srli_epi64::<12>(w), two_bits)),
                    three,
                );
                let x = _mm512_mul_pd(u, _mm512_i64gather_pd::<8>(layer, table));
                let edge = _mm512_i64gather_pd::<8>(layer, table.add(1));
                let inside = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(_mm512_and_pd(x, abs_mask), edge);
                _mm512_storeu_pd(ptr, _mm512_mask_blend_pd(inside, _mm512_castsi512_pd(w), x));
                inside
            };
            rejected[base / 64] |= u64::from(!accepted) << (base % 64);
            base += 8;
        }
        finish_chunk(stream, chunk, &rejected, tail_start);
    }
}

/// `fill_normal_ziggurat` with AVX2: the table reads are gathers, four words at a time; the
/// same operations on the same words, so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_normal_ziggurat_avx2(stream: &mut LaneStream, out: &mut [f64]) {
    use core::arch::x86_64::*;
    let layer_mask = _mm256_set1_epi64x(0xff);
    let two_bits = _mm256_set1_epi64x(0x4000_0000_0000_0000);
    let three = _mm256_set1_pd(3.0);
    let abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX));
    let table = ZIG_NORM_X.as_ptr();
    for chunk in out.chunks_mut(ZIG_CHUNK) {
        // SAFETY: this function only runs where AVX2 is present.
        unsafe { fill_words_avx2(stream, as_words(chunk)) };
        // Fast path without branches: rejected positions keep their word and set a bit; the
        // slow path then visits them in increasing position (as the portable path does),
        // outside the vector loop (no mispredicted branch, no vector spills per quad).
        let mut rejected = [0u64; ZIG_CHUNK / 64];
        let tail_start = chunk.len() / 4 * 4;
        let mut base = 0;
        for quad in chunk[..tail_start].chunks_exact_mut(4) {
            let ptr = quad.as_mut_ptr();
            // SAFETY: `quad` holds 4 f64; layer indices are ≤ 255, so i and i + 1 index the
            // 257-entry table in bounds.
            let accepted = unsafe {
                let w = _mm256_loadu_si256(ptr as *const __m256i);
                let layer = _mm256_and_si256(w, layer_mask);
                let u = _mm256_sub_pd(
                    _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64::<12>(w), two_bits)),
                    three,
                );
                let x = _mm256_mul_pd(u, _mm256_i64gather_pd::<8>(table, layer));
                let edge = _mm256_i64gather_pd::<8>(table.add(1), layer);
                let inside = _mm256_cmp_pd::<_CMP_LT_OQ>(_mm256_and_pd(x, abs_mask), edge);
                _mm256_storeu_pd(ptr, _mm256_blendv_pd(_mm256_castsi256_pd(w), x, inside));
                _mm256_movemask_pd(inside) as u64
            };
            rejected[base / 64] |= (!accepted & 0b1111) << (base % 64);
            base += 4;
        }
        finish_chunk(stream, chunk, &rejected, tail_start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scalar reference generator (same as rng::Stream) on a lane's state.
    fn scalar_next(s: &mut [u64; 4]) -> u64 {
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    #[test]
    fn lanes_are_scalar_xoshiro256plusplus() {
        let mut stream = LaneStream::new([3, 4], 5);
        let mut lanes: Vec<[u64; 4]> = (0..LANES).map(|j| stream.lane_state(j)).collect();
        let mut words = vec![0u64; 10 * LANES + 3];
        stream.fill_u64(&mut words);
        for (i, &w) in words.iter().enumerate() {
            assert_eq!(w, scalar_next(&mut lanes[i % LANES]), "word {i}");
        }
        // the partial last step was taken in full: the last lane (10 words used) is 11 steps on
        scalar_next(&mut lanes[LANES - 1]);
        assert_eq!(stream.lane_state(LANES - 1), lanes[LANES - 1]);
        let mut reference = [1u64, 2, 3, 4];
        assert_eq!(scalar_next(&mut reference), 41943041);
    }

    #[test]
    fn lanes_and_streams_are_distinct_and_deterministic() {
        let a = LaneStream::new([1, 2], 0);
        assert_eq!(a, LaneStream::new([1, 2], 0));
        assert_ne!(a, LaneStream::new([1, 2], 1));
        assert_ne!(a, LaneStream::new([1, 3], 0));
        for i in 0..LANES {
            for j in 0..i {
                assert_ne!(a.lane_state(i), a.lane_state(j));
            }
        }
    }

    #[test]
    fn uniform_maps_are_exact() {
        for w in [
            0u64,
            1,
            1 << 11,
            u64::MAX,
            0x8000_0000_0000_0000,
            0x1234_5678_9abc_def0,
        ] {
            assert_eq!(uniform53(w), (w >> 11) as f64 * TWO_POW_M53);
            let k = (w >> 12) as f64;
            assert_eq!(open_uniform(w), (2.0 * k + 1.0) * TWO_POW_M53);
        }
        assert!(open_uniform(0) > 0.0 && open_uniform(u64::MAX) < 1.0);
    }

    #[test]
    fn ln_matches_libm() {
        let mut worst: f64 = 0.0;
        let mut u: f64 = 1e-300;
        while u < 4.0 {
            if (u - 1.0).abs() > 1e-12 {
                worst = worst.max(((ln_positive(u) - u.ln()) / u.ln().abs()).abs());
            }
            u *= 1.000_37;
        }
        assert!(worst < 4e-16, "ln: worst relative error {worst}");
        assert_eq!(ln_positive(1.0), 0.0);
    }

    #[test]
    fn ziggurat_fast_path_uses_rand_distrs_layout() {
        // layer 5, u = 2.5 − 3 = −0.5 (the mantissa bits of 2.5 after the shift by 12)
        let w = (0x0004_0000_0000_0000u64 << 12) | 5;
        let (x, accepted) = ziggurat_fast(w);
        assert_eq!(x, -0.5 * ZIG_NORM_X[5]);
        assert!(accepted); // 0.5·X[5] < X[6]
        let edge = (0x000F_FFFF_FFFF_FFFFu64 << 12) | 7; // u just below 1: outside X[8]
        assert!(!ziggurat_fast(edge).1);
    }

    #[test]
    fn avx2_and_portable_paths_agree_bit_for_bit() {
        let n = 5 * ZIG_CHUNK + 13;
        let mut a = LaneStream::new([11, 12], 13);
        let mut b = a.clone();
        let (mut za, mut zb) = (vec![0.0; n], vec![0.0; n]);
        a.fill_normal(&mut za); // AVX-512 or AVX2 where the processor has it
        fill_normal_ziggurat(&mut b, &mut zb);
        assert_eq!(za, zb);
        assert_eq!(a, b);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut c = LaneStream::new([11, 12], 13);
            let mut zc = vec![0.0; n];
            // SAFETY: the processor supports AVX2 (checked just above).
            unsafe { fill_normal_ziggurat_avx2(&mut c, &mut zc) };
            assert_eq!(zc, zb);
        }
        let (mut wa, mut wb) = (vec![0u64; n], vec![0u64; n]);
        a.fill_u64(&mut wa);
        fill_words(&mut b, &mut wb);
        assert_eq!(wa, wb);
        assert_eq!(a, b);
        // some values went through the tail (|z| > R) and the wedges: the slow path ran
        let mut big = vec![0.0f64; 1 << 16];
        a.fill_normal(&mut big);
        assert!(big.iter().any(|z| z.abs() > ZIG_NORM_R));
    }

    #[test]
    fn normal_fill_is_chunked_as_documented() {
        // The first chunk's fast-path values are the words' fast-path values.
        let mut a = LaneStream::new([9, 9], 1);
        let mut b = a.clone();
        let mut z = vec![0.0; ZIG_CHUNK + 3];
        a.fill_normal(&mut z);
        let mut w = vec![0u64; ZIG_CHUNK];
        b.fill_u64(&mut w);
        let mut checked = 0;
        for p in 0..ZIG_CHUNK {
            let (x, accepted) = ziggurat_fast(w[p]);
            if accepted {
                assert_eq!(z[p], x);
                checked += 1;
            }
        }
        assert!(checked > ZIG_CHUNK * 9 / 10);
        // the same state and length give the same values
        let mut c = LaneStream::new([9, 9], 1);
        let mut z2 = vec![0.0; ZIG_CHUNK + 3];
        c.fill_normal(&mut z2);
        assert_eq!(z, z2);
    }

    #[test]
    fn uniform_fills_use_one_step_per_lanes_values() {
        let mut a = LaneStream::new([5, 6], 7);
        let mut b = a.clone();
        let mut u = vec![0.0; 3 * LANES + 1];
        let mut o = vec![0.0; 3 * LANES + 1];
        let mut w = vec![0u64; 3 * LANES + 1];
        a.fill_uniform(&mut u);
        b.fill_u64(&mut w);
        for i in 0..u.len() {
            assert_eq!(u[i], uniform53(w[i]));
        }
        let mut c = LaneStream::new([5, 6], 7);
        c.fill_open_uniform(&mut o);
        for i in 0..o.len() {
            assert_eq!(o[i], open_uniform(w[i]));
        }
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn normal_moments_and_tails() {
        let n = 1 << 22;
        let mut z = vec![0.0; n];
        LaneStream::new([7, 7], 0).fill_normal(&mut z);
        let nf = n as f64;
        let m1 = z.iter().sum::<f64>() / nf;
        let m2 = z.iter().map(|v| v * v).sum::<f64>() / nf;
        let m4 = z.iter().map(|v| v.powi(4)).sum::<f64>() / nf;
        assert!(m1.abs() < 5.0 / nf.sqrt(), "mean {m1}");
        assert!((m2 - 1.0).abs() < 5.0 * (2.0 / nf).sqrt(), "variance {m2}");
        assert!(
            (m4 - 3.0).abs() < 5.0 * (96.0 / nf).sqrt(),
            "fourth moment {m4}"
        );
        // P(|z| > 3) = 0.0026998
        let p3 = 2.699_796_063_260_2e-3;
        let beyond3 = z.iter().filter(|v| v.abs() > 3.0).count() as f64;
        assert!(
            (beyond3 - nf * p3).abs() < 5.0 * (nf * p3).sqrt(),
            "{beyond3}"
        );
    }
}
