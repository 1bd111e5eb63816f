//! The two-component mixture α φ_o + (1−α) φ_n the engine trains, with its log weights cached.

use crate::model::mixture::Gaussian;

/// A two-component mixture α φ_o + (1−α) φ_n, with its log weights cached.
#[derive(Clone, Debug)]
pub struct Mix2 {
    pub alpha: f64,
    pub old: Gaussian,
    pub new: Gaussian,
    ln_alpha: f64,
    ln_alpha_c: f64,
}

/// log(e^a + e^b) and e^a/(e^a + e^b) from one exp and one log1p.
#[inline(always)]
pub fn log_sum_and_share(a: f64, b: f64) -> (f64, f64) {
    let (hi, lo, a_is_hi) = if a >= b { (a, b, true) } else { (b, a, false) };
    if lo == f64::NEG_INFINITY {
        return (hi, if a_is_hi { 1.0 } else { 0.0 });
    }
    let t = (lo - hi).exp();
    let one_plus = 1.0 + t;
    let share = if a_is_hi {
        1.0 / one_plus
    } else {
        t / one_plus
    };
    // ln(1 + t) with t ≤ 1: the absolute error of ln is what matters for log q, and plain ln
    // is several times faster than log1p.
    (hi + one_plus.ln(), share)
}

impl Mix2 {
    pub fn new(alpha: f64, old: Gaussian, new: Gaussian) -> Mix2 {
        Mix2 {
            alpha,
            old,
            new,
            ln_alpha: alpha.ln(),
            ln_alpha_c: (1.0 - alpha).ln(),
        }
    }
    /// (log α φ_o(x), log (1−α) φ_n(x)).
    #[inline]
    pub fn log_parts(&self, x: &[f64], scratch: &mut [f64]) -> (f64, f64) {
        (
            self.ln_alpha + self.old.logpdf(x, scratch),
            self.ln_alpha_c + self.new.logpdf(x, scratch),
        )
    }
    /// log α φ_o and log (1−α) φ_n for the rows of x (n × d).
    #[inline(always)]
    pub fn log_parts_rows(&self, x: &[f64], old: &mut [f64], new: &mut [f64], scratch: &mut [f64]) {
        self.old.logpdf_rows(x, self.ln_alpha, old, scratch);
        self.new.logpdf_rows(x, self.ln_alpha_c, new, scratch);
    }
    #[inline]
    pub fn logpdf(&self, x: &[f64], scratch: &mut [f64]) -> f64 {
        let (a, b) = self.log_parts(x, scratch);
        log_sum_and_share(a, b).0
    }
    pub fn ln_alpha(&self) -> f64 {
        self.ln_alpha
    }
    pub(crate) fn set(&mut self, alpha: f64, old: &[f64], new: &[f64]) {
        if alpha != self.alpha {
            self.alpha = alpha;
            self.ln_alpha = alpha.ln();
            self.ln_alpha_c = (1.0 - alpha).ln();
        }
        self.old.set_mean(old);
        self.new.set_mean(new);
    }
}
