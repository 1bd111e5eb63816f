//! Branch-free exp and log for the engine's hot loops, written so that LLVM vectorises the
//! array loops. The slice functions are inlined into their callers, which pick the
//! instruction set at run time (the fused finite-batch pass, the exact quadrature); no FMA,
//! so every path rounds identically and results do not depend on the machine's vector width.
//! Accuracy: a few ulp over the ranges used (checked against libm in the tests below).

/// Whether the processor has the AVX-512 subsets (F, DQ, VL) that every AVX-512 copy of a
/// hot loop in this crate is compiled for: the one run-time test the dispatchers share.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

/// ln 2 split in a high part with trailing zero bits and the remainder (fdlibm).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const LOG2E: f64 = std::f64::consts::LOG2_E;
const LN2: f64 = std::f64::consts::LN_2;
const SQRT2: f64 = std::f64::consts::SQRT_2;
/// 1.5·2^52: adding it rounds to the nearest integer and leaves that integer in the low bits.
const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0;

/// e^x for x in [−708, 709] (clamped outside), ~1 ulp.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    let x = x.clamp(-708.0, 709.0);
    let shifted = x * LOG2E + ROUND_MAGIC;
    let k = shifted - ROUND_MAGIC;
    let r = (x - k * LN2_HI) - k * LN2_LO; // |r| ≤ ln2/2
                                           // Taylor series to r^13/13! (truncation < 5e-18 on |r| ≤ 0.3466), evaluated by
                                           // Estrin's scheme: a shallow dependency tree instead of a 14-deep Horner chain, so the
                                           // vectorised loop is throughput- rather than latency-bound.
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let p01 = 1.0 + r;
    let p23 = 0.5 + r * (1.0 / 6.0);
    let p45 = 1.0 / 24.0 + r * (1.0 / 120.0);
    let p67 = 1.0 / 720.0 + r * (1.0 / 5_040.0);
    let p89 = 1.0 / 40_320.0 + r * (1.0 / 362_880.0);
    let p1011 = 1.0 / 3_628_800.0 + r * (1.0 / 39_916_800.0);
    let p1213 = 1.0 / 479_001_600.0 + r * (1.0 / 6_227_020_800.0);
    let q0 = p01 + r2 * p23;
    let q1 = p45 + r2 * p67;
    let q2 = p89 + r2 * p1011;
    let o0 = q0 + r4 * q1;
    let o1 = q2 + r4 * p1213;
    let p = o0 + r8 * o1;
    // 2^k from the integer left in the low bits of `shifted`.
    let k_bits = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits());
    let scale = f64::from_bits(k_bits.wrapping_add(1023) << 52);
    p * scale
}

/// ln y for y in [1, 2] (the ln(1 + t), t ∈ [0, 1], of a log-sum-exp), ~1 ulp.
#[inline(always)]
pub fn ln_1_to_2(y: f64) -> f64 {
    let (offset, num, den) = ln_1_to_2_reduce(y);
    ln_1_to_2_finish(offset, num / den)
}

/// The range reduction of `ln_1_to_2`: y = 2^e m with e ∈ {0, 1} and m ∈ (1/√2, √2],
/// returned as (e ln 2, m − 1, m + 1); ln y = e ln 2 + 2 atanh s with s = (m − 1)/(m + 1). Split off so that a caller can share one division between
/// several quotients.
#[inline(always)]
fn ln_1_to_2_reduce(y: f64) -> (f64, f64, f64) {
    let big = y > SQRT2;
    let m = if big { 0.5 * y } else { y };
    let offset = if big { LN2 } else { 0.0 };
    (offset, m - 1.0, m + 1.0)
}

/// e ln 2 + 2 atanh s for |s| ≤ 0.1716 (see `ln_1_to_2_reduce`).
#[inline(always)]
fn ln_1_to_2_finish(offset: f64, s: f64) -> f64 {
    let s2 = s * s;
    // ln m = 2 atanh s = 2 Σ s^(2k+1)/(2k+1), to k = 11 (truncation < 1e-18), Estrin in s².
    let s4 = s2 * s2;
    let s8 = s4 * s4;
    let p0 = 1.0 + s2 * (1.0 / 3.0);
    let p1 = 1.0 / 5.0 + s2 * (1.0 / 7.0);
    let p2 = 1.0 / 9.0 + s2 * (1.0 / 11.0);
    let p3 = 1.0 / 13.0 + s2 * (1.0 / 15.0);
    let p4 = 1.0 / 17.0 + s2 * (1.0 / 19.0);
    let p5 = 1.0 / 21.0 + s2 * (1.0 / 23.0);
    let q0 = p0 + s4 * p1;
    let q1 = p2 + s4 * p3;
    let q2 = p4 + s4 * p5;
    let p = q0 + s8 * (q1 + s8 * q2);
    offset + 2.0 * s * p
}

/// Both mixtures of a finite-batch step at once: log q = log(e^a + e^b) and its share
/// e^a/(e^a + e^b) for the model parts (a, b), and log(e^c + e^d) for the second density's
/// parts (c, d). The same results as `log_sum_share` and `log_sum` up to a few ulp, from one
/// division instead of three: the three denominators (1 + t_q and the two m + 1 of the
/// logarithms) are multiplied, inverted once, and each reciprocal is that inverse times
/// the other two (all factors lie in [1, 3], so nothing under- or overflows). The divider
/// is the slowest unit this loop uses.
#[inline(always)]
pub fn log_sum_share_and_log_sum_slices(
    (a, b): (&[f64], &[f64]),
    (c, d): (&[f64], &[f64]),
    log_q: &mut [f64],
    share_a: &mut [f64],
    log_compared: &mut [f64],
) {
    let n = log_q.len();
    let (a, b, c, d) = (&a[..n], &b[..n], &c[..n], &d[..n]);
    let (share_a, log_compared) = (&mut share_a[..n], &mut log_compared[..n]);
    for i in 0..n {
        let dq = a[i] - b[i];
        share_a[i] = exp(if dq > 0.0 { -dq } else { dq }); // t_q = e^{−|a−b|}
        let dp = c[i] - d[i];
        log_compared[i] = exp(if dp > 0.0 { -dp } else { dp }); // t_p
    }
    for i in 0..n {
        let (tq, tp) = (share_a[i], log_compared[i]);
        let y_q = 1.0 + tq;
        let (off_q, num_q, den_q) = ln_1_to_2_reduce(y_q);
        let (off_p, num_p, den_p) = ln_1_to_2_reduce(1.0 + tp);
        let inv = 1.0 / ((den_q * den_p) * y_q);
        let a_hi = a[i] >= b[i];
        log_q[i] = (if a_hi { a[i] } else { b[i] })
            + ln_1_to_2_finish(off_q, num_q * (inv * (den_p * y_q)));
        share_a[i] = (if a_hi { 1.0 } else { tq }) * (inv * (den_q * den_p));
        log_compared[i] = (if c[i] >= d[i] { c[i] } else { d[i] })
            + ln_1_to_2_finish(off_p, num_p * (inv * (den_q * y_q)));
    }
}

/// log_sum[i] = log(e^a[i] + e^b[i]) and share_a[i] = e^a[i] / (e^a[i] + e^b[i]): the
/// log-density and responsibility of a two-component mixture from its log parts. Inlined
/// into the caller, which picks the instruction set.
#[inline(always)]
pub fn log_sum_share_slices(a: &[f64], b: &[f64], log_sum: &mut [f64], share_a: &mut [f64]) {
    let n = log_sum.len().min(share_a.len()).min(a.len()).min(b.len());
    let (a, b, log_sum, share_a) = (&a[..n], &b[..n], &mut log_sum[..n], &mut share_a[..n]);
    // Two simple loops vectorise far better than one long body (fewer live registers).
    for i in 0..n {
        let d = a[i] - b[i];
        share_a[i] = exp(if d > 0.0 { -d } else { d }); // t = e^{−|a−b|} ∈ (0, 1]
    }
    for i in 0..n {
        let (x, y, t) = (a[i], b[i], share_a[i]);
        let a_hi = x >= y;
        let one_plus = 1.0 + t;
        log_sum[i] = (if a_hi { x } else { y }) + ln_1_to_2(one_plus);
        share_a[i] = (if a_hi { 1.0 } else { t }) / one_plus;
    }
}

/// log_sum[i] = log(e^a[i] + e^b[i]) (the tests' reference for the shared-division form).
#[cfg(test)]
fn log_sum_slices(a: &[f64], b: &[f64], log_sum: &mut [f64]) {
    let n = log_sum.len().min(a.len()).min(b.len());
    let (a, b, log_sum) = (&a[..n], &b[..n], &mut log_sum[..n]);
    for i in 0..n {
        let d = a[i] - b[i];
        log_sum[i] = exp(if d > 0.0 { -d } else { d }); // t = e^{−|a−b|}
    }
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        log_sum[i] = (if x >= y { x } else { y }) + ln_1_to_2(1.0 + log_sum[i]);
    }
}

#[inline(always)]
fn logistic_pairs_body(z: &[f64], out: &mut [f64]) {
    let n = z.len().min(out.len() / 2);
    for (zi, pair) in z[..n].iter().zip(out.chunks_exact_mut(2)) {
        let e = exp(if *zi > 0.0 { -zi } else { *zi }); // e^{−|z|}
        let inv = 1.0 / (1.0 + e);
        let (hi, lo) = (inv, e * inv);
        let pos = *zi >= 0.0;
        pair[0] = if pos { hi } else { lo };
        pair[1] = if pos { lo } else { hi };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn logistic_pairs_avx2(z: &[f64], out: &mut [f64]) {
    logistic_pairs_body(z, out)
}

/// out[2i] = σ(z_i), out[2i+1] = σ(−z_i) = 1 − σ(z_i), from one exponential each.
pub fn logistic_pairs(z: &[f64], out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor supports AVX2 (checked just above).
            unsafe { logistic_pairs_avx2(z, out) };
            return;
        }
    }
    logistic_pairs_body(z, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst: f64 = 0.0;
        let mut x = -700.0;
        while x < 700.0 {
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 6e-16, "worst relative error {worst}"); // ~2.5 ulp
        assert!(exp(-1e4) < 1e-300 && exp(-1e4) >= 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn ln_matches_libm_on_1_to_2() {
        let mut worst: f64 = 0.0;
        for i in 0..=100_000 {
            let y = 1.0 + i as f64 / 100_000.0;
            worst = worst.max((ln_1_to_2(y) - y.ln()).abs());
        }
        assert!(worst < 3e-16, "worst absolute error {worst}");
        assert_eq!(ln_1_to_2(1.0), 0.0);
    }

    #[test]
    fn shared_division_matches_separate_divisions() {
        let a: Vec<f64> = (0..1001).map(|i| -50.0 + 0.097 * i as f64).collect();
        let b: Vec<f64> = (0..1001).map(|i| 20.0 - 0.061 * i as f64).collect();
        let c: Vec<f64> = (0..1001).map(|i| (i as f64 * 0.37).sin() * 30.0).collect();
        let d: Vec<f64> = (0..1001).map(|i| (i as f64 * 0.11).cos() * 25.0).collect();
        let (mut l, mut s, mut l2) = (vec![0.0; 1001], vec![0.0; 1001], vec![0.0; 1001]);
        log_sum_share_and_log_sum_slices((&a, &b), (&c, &d), &mut l, &mut s, &mut l2);
        let (mut lr, mut sr, mut l2r) = (vec![0.0; 1001], vec![0.0; 1001], vec![0.0; 1001]);
        log_sum_share_slices(&a, &b, &mut lr, &mut sr);
        log_sum_slices(&c, &d, &mut l2r);
        for i in 0..1001 {
            assert!((l[i] - lr[i]).abs() <= 4e-16 * (1.0 + lr[i].abs()), "{i}");
            assert!(
                (l2[i] - l2r[i]).abs() <= 4e-16 * (1.0 + l2r[i].abs()),
                "{i}"
            );
            assert!(
                (s[i] - sr[i]).abs() <= 6e-16 * sr[i],
                "{i}: {} vs {}",
                s[i],
                sr[i]
            );
        }
    }

    #[test]
    fn log_sum_share_matches_scalar_formula() {
        let a: Vec<f64> = (0..257).map(|i| -50.0 + 0.37 * i as f64).collect();
        let b: Vec<f64> = (0..257).map(|i| 20.0 - 0.21 * i as f64).collect();
        let (mut l, mut s) = (vec![0.0; 257], vec![0.0; 257]);
        log_sum_share_slices(&a, &b, &mut l, &mut s);
        let mut l2 = vec![0.0; 257];
        log_sum_slices(&a, &b, &mut l2);
        assert_eq!(l, l2);
        for i in 0..257 {
            let m = a[i].max(b[i]);
            let exact = m + ((a[i] - m).exp() + (b[i] - m).exp()).ln();
            assert!((l[i] - exact).abs() < 1e-14 * (1.0 + exact.abs()));
            let share = 1.0 / (1.0 + (b[i] - a[i]).exp());
            assert!((s[i] - share).abs() < 1e-15);
        }
    }
}
