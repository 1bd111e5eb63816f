//! The training engine (MATH §3–§5): objectives, one generic score-function core,
//! finite-batch sampling with replay slots, the update, extra state (SDFT teacher, OAPL lag,
//! TTT start model), starvation counting and recording, over many replicates in parallel.
//!
//! Every objective's gradient is ĝ = Σ_i ω_i c_i s(x_i): the objective contributes its
//! sampling distribution and the per-sample coefficient c_i; ω_i = 1/B for a finite batch,
//! quadrature weights for the exact expectation (population.rs). One core serves both.

use crate::fastmath;
use crate::mixture::{Cov, Gaussian};
use crate::rng::Stream;
use crate::starvation::{stratified_replay_count, Slots};
use rayon::prelude::*;

const LN_2: f64 = std::f64::consts::LN_2;
/// Clip bounds of the direct weight parametrisation (2510.18874's code).
pub const DIRECT_EPS: f64 = 1e-3;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightParam {
    Logit,
    Direct,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reward {
    NewLogpdf,
    TargetLogpdf,
    NewIndicator { radius: f64 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    ForwardKL {
        replay: f64,
        slots: Slots,
    },
    ReverseKL {
        replay: f64,
        slots: Slots,
        cap: f64,
        loo: bool,
    },
    Sdft {
        ema: f64,
        anchor: f64,
        forward: bool,
    },
    Ttt {
        beta: Option<f64>,
        kl_penalty: f64,
        reward: Reward,
    },
    Oapl {
        beta1: f64,
        beta2: f64,
        lag: usize,
        reward: Reward,
    },
}

impl Objective {
    /// Decode the flat parameter vector written by python/mixforget/objectives.py.
    pub fn from_params(p: &[f64]) -> Result<Objective, String> {
        if p.len() != 15 {
            return Err(format!(
                "objective parameters must have 15 entries, got {}",
                p.len()
            ));
        }
        let slots = if p[2] == 0.0 {
            Slots::Bernoulli
        } else {
            Slots::Stratified
        };
        let reward = || -> Result<Reward, String> {
            Ok(match p[11] as i64 {
                0 => Reward::NewLogpdf,
                1 => Reward::TargetLogpdf,
                2 => Reward::NewIndicator { radius: p[12] },
                r => return Err(format!("unknown reward code {r}")),
            })
        };
        let replay = p[1];
        if !(0.0..1.0).contains(&replay) {
            return Err(format!("replay must be in [0, 1), got {replay}"));
        }
        Ok(match p[0] as i64 {
            0 => Objective::ForwardKL { replay, slots },
            1 => Objective::ReverseKL {
                replay,
                slots,
                cap: p[3],
                loo: p[4] != 0.0,
            },
            2 => Objective::Sdft {
                ema: p[5],
                anchor: p[6],
                forward: p[7] != 0.0,
            },
            3 => Objective::Ttt {
                beta: if p[9] != 0.0 { None } else { Some(p[8]) },
                kl_penalty: p[10],
                reward: reward()?,
            },
            4 => Objective::Oapl {
                beta1: p[13],
                beta2: p[14],
                lag: (p[5] as usize).max(1),
                reward: reward()?,
            },
            k => return Err(format!("unknown objective kind {k}")),
        })
    }

    fn replay(&self) -> (f64, Slots) {
        match *self {
            Objective::ForwardKL { replay, slots } | Objective::ReverseKL { replay, slots, .. } => {
                (replay, slots)
            }
            _ => (0.0, Slots::Bernoulli),
        }
    }
}

/// Trainable parameters θ = (weight parameter, μ_o, μ_n); the weight parameter is η = logit α
/// or α itself (direct).
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub weight: f64,
    pub old: Vec<f64>,
    pub new: Vec<f64>,
}

impl Params {
    pub fn alpha(&self, wp: WeightParam) -> f64 {
        match wp {
            WeightParam::Logit => crate::mixture::sigmoid(self.weight),
            WeightParam::Direct => self.weight,
        }
    }
    pub fn from_alpha(alpha: f64, old: Vec<f64>, new: Vec<f64>, wp: WeightParam) -> Params {
        let weight = match wp {
            WeightParam::Logit => (alpha / (1.0 - alpha)).ln(),
            WeightParam::Direct => alpha,
        };
        Params { weight, old, new }
    }
    fn is_finite(&self) -> bool {
        self.weight.is_finite() && self.old.iter().chain(&self.new).all(|v| v.is_finite())
    }
    fn copy_from(&mut self, other: &Params) {
        self.weight = other.weight;
        self.old.copy_from_slice(&other.old);
        self.new.copy_from_slice(&other.new);
    }
}

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
    fn set(&mut self, alpha: f64, old: &[f64], new: &[f64]) {
        if alpha != self.alpha {
            self.alpha = alpha;
            self.ln_alpha = alpha.ln();
            self.ln_alpha_c = (1.0 - alpha).ln();
        }
        self.old.set_mean(old);
        self.new.set_mean(new);
    }
}

/// Every density an objective may need, at the current state.
#[derive(Clone, Debug)]
pub struct Models {
    pub model: Mix2,
    pub target: Mix2,
    /// SDFT's teacher t (new mean already moved toward the truth by the anchor).
    pub teacher: Mix2,
    /// TTT-Discover's start model q_0.
    pub start: Mix2,
    /// OAPL's lagged model.
    pub lag: Mix2,
}

/// Fixed description of a training problem (original coordinates).
#[derive(Clone, Debug)]
pub struct Problem {
    pub dim: usize,
    pub target: Mix2,
    pub model_old_cov: Cov,
    pub model_new_cov: Cov,
    pub start: Params,
    pub objective: Objective,
    pub weight_param: WeightParam,
    pub lr: f64,
    /// Learning-rate multipliers for (weight, old mean, new mean); 0 freezes a group.
    pub lr_scale: [f64; 3],
}

/// State of one replicate.
#[derive(Clone, Debug)]
pub struct Replicate {
    pub theta: Params,
    pub teacher: Params,
    pub lag: Params,
    pub steps_done: u64,
    pub starved: i64,
    pub diverged: bool,
    pub rng: Stream,
}

impl Problem {
    pub fn models_at(&self, r: &Replicate) -> Models {
        let wp = self.weight_param;
        let g = |mean: &[f64], cov: &Cov| Gaussian::new(mean.to_vec(), cov.clone());
        let mix = |p: &Params| {
            Mix2::new(
                p.alpha(wp),
                g(&p.old, &self.model_old_cov),
                g(&p.new, &self.model_new_cov),
            )
        };
        let mut models = Models {
            model: mix(&r.theta),
            target: self.target.clone(),
            teacher: mix(&r.teacher),
            start: mix(&self.start),
            lag: mix(&r.lag),
        };
        self.refresh(&mut models, r);
        models
    }

    /// Update the moving models in place (no allocation): θ, teacher (with its anchor), lag.
    pub fn refresh(&self, models: &mut Models, r: &Replicate) {
        let wp = self.weight_param;
        models
            .model
            .set(r.theta.alpha(wp), &r.theta.old, &r.theta.new);
        models.lag.set(r.lag.alpha(wp), &r.lag.old, &r.lag.new);
        models
            .teacher
            .set(r.teacher.alpha(wp), &r.teacher.old, &r.teacher.new);
        if let Objective::Sdft { anchor, .. } = self.objective {
            let truth = &self.target.new.mean;
            for (m, t) in models.teacher.new.mean.iter_mut().zip(truth) {
                *m = (1.0 - anchor) * *m + anchor * t;
            }
        }
    }

    pub fn new_replicate(&self, key: [u64; 2], index: u64) -> Replicate {
        Replicate {
            theta: self.start.clone(),
            teacher: self.start.clone(),
            lag: self.start.clone(),
            steps_done: 0,
            starved: 0,
            diverged: false,
            rng: Stream::new(key, index),
        }
    }
}

/// A batch of points with their averaging weights ω (Σ ω = 1) and old labels, plus
/// per-sample work arrays: allocated once per replicate, reused every step.
pub struct Batch {
    pub dim: usize,
    pub len: usize,
    pub x: Vec<f64>,
    pub omega: Vec<f64>,
    /// Which sampling component each point came from (see `draw_batch`).
    component: Vec<u8>,
    /// Replay fraction used by the importance weights (λ, or round(λB)/B when stratified).
    pub replay_used: f64,
    log_q: Vec<f64>,
    resp_old: Vec<f64>,
    part_a: Vec<f64>,
    part_b: Vec<f64>,
    second_a: Vec<f64>,
    second_b: Vec<f64>,
    log_second: Vec<f64>,
    value: Vec<f64>,
    aux: Vec<f64>,
    scratch: Vec<f64>,
}

impl Batch {
    pub fn new(dim: usize, capacity: usize) -> Batch {
        Batch {
            dim,
            len: capacity,
            x: vec![0.0; capacity * dim],
            omega: vec![1.0 / capacity.max(1) as f64; capacity],
            component: vec![0; capacity],
            replay_used: 0.0,
            log_q: vec![0.0; capacity],
            resp_old: vec![0.0; capacity],
            part_a: vec![0.0; capacity],
            part_b: vec![0.0; capacity],
            second_a: vec![0.0; capacity],
            second_b: vec![0.0; capacity],
            log_second: vec![0.0; capacity],
            value: vec![0.0; capacity],
            aux: vec![0.0; capacity],
            scratch: vec![0.0; dim],
        }
    }

    /// Reshape for `len` points in `dim` dimensions, reusing the allocations (exact
    /// evaluations rebuild their quadrature batch every step). ω is left for the caller to
    /// fill.
    pub fn reset(&mut self, dim: usize, len: usize) {
        self.dim = dim;
        self.len = len;
        self.x.resize(len * dim, 0.0);
        self.scratch.resize(dim, 0.0);
        self.component.resize(len, 0);
        for v in [
            &mut self.omega,
            &mut self.log_q,
            &mut self.resp_old,
            &mut self.part_a,
            &mut self.part_b,
            &mut self.second_a,
            &mut self.second_b,
            &mut self.log_second,
            &mut self.value,
            &mut self.aux,
        ] {
            v.resize(len, 0.0);
        }
    }
}

/// A gradient of the loss: weight parameter, old mean, new mean.
#[derive(Clone, Debug, PartialEq)]
pub struct Grad {
    pub weight: f64,
    pub old: Vec<f64>,
    pub new: Vec<f64>,
}

impl Grad {
    pub fn zeros(dim: usize) -> Grad {
        Grad {
            weight: 0.0,
            old: vec![0.0; dim],
            new: vec![0.0; dim],
        }
    }
    pub fn write_flat(&self, out: &mut [f64]) {
        let d = self.old.len();
        out[0] = self.weight;
        out[1..1 + d].copy_from_slice(&self.old);
        out[1 + d..1 + 2 * d].copy_from_slice(&self.new);
    }
}

/// Points per parallel chunk of an exact (quadrature) evaluation.
const PAR_CHUNK: usize = 8192;

/// One chunk of points with its per-sample density outputs (see `evaluate`, pass 1).
type DensityChunk<'a> = (
    (
        (
            (
                (((&'a [f64], &'a mut [f64]), &'a mut [f64]), &'a mut [f64]),
                &'a mut [f64],
            ),
            &'a mut [f64],
        ),
        &'a mut [f64],
    ),
    &'a mut [f64],
);

/// How the exact (population) evaluation differs from a finite batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Exactness {
    /// Expectations instead of leave-one-out batch statistics (the G → ∞ limit).
    pub exact: bool,
    /// Dimensions dropped by the span reduction (population.rs); their contribution to
    /// log-density rewards is added in closed form where one exists.
    pub perp_dims: usize,
}

/// Where the non-replay part of a batch comes from.
enum Source<'a> {
    Mixture(&'a Mix2),
    Single(&'a Gaussian),
}

fn source<'a>(objective: &Objective, m: &'a Models) -> Source<'a> {
    match objective {
        Objective::ForwardKL { .. } => Source::Single(&m.target.new),
        Objective::Sdft { forward: true, .. } => Source::Mixture(&m.teacher),
        Objective::Oapl { .. } => Source::Mixture(&m.lag),
        _ => Source::Mixture(&m.model),
    }
}

/// The components of the full sampling distribution with their probabilities (for exact
/// expectations): replay λ from p_old*, the rest from the source.
pub fn sampling_components<'a>(objective: &Objective, m: &'a Models) -> Vec<(f64, &'a Gaussian)> {
    let (replay, _) = objective.replay();
    let mut out = Vec::with_capacity(3);
    match source(objective, m) {
        Source::Single(g) => out.push((1.0 - replay, g)),
        Source::Mixture(mix) => {
            out.push(((1.0 - replay) * mix.alpha, &mix.old));
            out.push(((1.0 - replay) * (1.0 - mix.alpha), &mix.new));
        }
    }
    if replay > 0.0 {
        out.push((replay, &m.target.old));
    }
    out
}

/// Draw a finite batch (MATH §4: label first, then the point; replay slots). Returns the
/// number of old-labelled samples.
pub fn draw_batch(objective: &Objective, m: &Models, rng: &mut Stream, batch: &mut Batch) -> usize {
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
    let (comps, source_alpha, single): ([&Gaussian; 3], f64, bool) = match source(objective, m) {
        Source::Single(g) => ([g, g, &m.target.old], 0.0, true),
        Source::Mixture(mix) => ([&mix.old, &mix.new, &m.target.old], mix.alpha, false),
    };
    // Labels first (one uniform each), then all the normals: simple loops, no dispatch.
    // u < α is decided on the integer 53-bit draw (same outcome as Stream::uniform() < α),
    // branch-free, because the label is a coin flip the predictor cannot learn.
    let below = |p: f64| (p * (1u64 << 53) as f64).ceil() as u64;
    let alpha_bits = below(source_alpha);
    let replay_bits = below(replay);
    let mut old_count = 0;
    for i in 0..b {
        let is_replay = match slots {
            Slots::Bernoulli => replay > 0.0 && (rng.next_u64() >> 11) < replay_bits,
            Slots::Stratified => i < n_strat,
        };
        let on_new = if single {
            1u8
        } else {
            ((rng.next_u64() >> 11) >= alpha_bits) as u8
        };
        let c = if is_replay { 2 } else { on_new };
        batch.component[i] = c;
        old_count += (c != 1) as usize;
    }
    let d = batch.dim;
    for z in batch.x[..b * d].iter_mut() {
        *z = crate::rng::normal(rng);
    }
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
        for (x, &c) in batch.x[..b].iter_mut().zip(&batch.component[..b]) {
            *x = mu[c as usize] + sd[c as usize] * *x;
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

/// The reward R(x) (MATH, rewards).
fn reward(kind: Reward, target: &Mix2, x: &[f64], scratch: &mut [f64]) -> f64 {
    match kind {
        Reward::NewLogpdf => target.new.logpdf(x, scratch),
        Reward::TargetLogpdf => target.logpdf(x, scratch),
        Reward::NewIndicator { radius } => {
            let mean = &target.new.mean;
            let q = target
                .new
                .cov
                .mahalanobis_sq(|i| x[i] - mean[i], mean.len(), scratch);
            if q <= radius * radius {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// Σ_i Π_k f_k(i) over `len` terms with four interleaved partial sums in registers: a fixed
/// order (deterministic) that is not latency-bound on a single accumulator.
#[inline(always)]
fn sum4(len: usize, term: impl Fn(usize) -> f64) -> f64 {
    let (mut s0, mut s1, mut s2, mut s3) = (0.0, 0.0, 0.0, 0.0);
    let full = len - len % 4;
    let mut i = 0;
    while i < full {
        s0 += term(i);
        s1 += term(i + 1);
        s2 += term(i + 2);
        s3 += term(i + 3);
        i += 4;
    }
    while i < len {
        s0 += term(i);
        i += 1;
    }
    (s0 + s1) + (s2 + s3)
}

/// Σ a_i b_i (c_i when given).
#[inline]
fn dot(a: &[f64], b: &[f64], c: Option<&[f64]>) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    match c {
        None => sum4(n, |i| a[i] * b[i]),
        Some(c) => {
            let c = &c[..n];
            sum4(n, |i| a[i] * b[i] * c[i])
        }
    }
}

/// Σ a_i.
#[inline]
fn sum(a: &[f64]) -> f64 {
    sum4(a.len(), |i| a[i])
}

/// The batch mean of ω-weighted values seen from sample i: over the others (leave-one-out,
/// finite batches) or over all (exact expectations), b_i = (Σ ω v − own·v_i)·scale. Finite
/// batches have uniform ω, so the leave-one-out denominator is one constant (no per-sample
/// division); a batch of one has no others and gets b = 0.
struct LooMean {
    total: f64,
    own: f64,
    scale: f64,
}

impl LooMean {
    fn new(sum_wv: f64, sum_w: f64, omega: f64, exact: bool) -> LooMean {
        if exact {
            return LooMean {
                total: sum_wv,
                own: 0.0,
                scale: 1.0 / sum_w,
            };
        }
        let den = sum_w - omega;
        if den > 0.0 {
            LooMean {
                total: sum_wv,
                own: omega,
                scale: 1.0 / den,
            }
        } else {
            LooMean {
                total: 0.0,
                own: 0.0,
                scale: 0.0,
            }
        }
    }
    #[inline(always)]
    fn at(&self, v_i: f64) -> f64 {
        (self.total - self.own * v_i) * self.scale
    }
}

/// KL(p_β ‖ ω) for p_β ∝ ω e^{β r}, and its derivative β Var_p(r).
fn tilt_kl(beta: f64, r: &[f64], omega: &[f64], r_max: f64) -> (f64, f64) {
    let (mut z, mut m1, mut m2) = (0.0, 0.0, 0.0);
    for (ri, wi) in r.iter().zip(omega) {
        let e = wi * (beta * (ri - r_max)).exp();
        let c = ri - r_max;
        z += e;
        m1 += e * c;
        m2 += e * c * c;
    }
    let (mean, second) = (m1 / z, m2 / z);
    (beta * mean - z.ln(), beta * (second - mean * mean).max(0.0))
}

/// Adaptive β of TTT-Discover: KL(softmax(β r) ‖ ω) = ln 2 by safeguarded Newton–bisection.
/// KL grows with β toward −ln(ω-mass of the top rewards); when ln 2 is out of reach (all
/// rewards equal) the search stops at β = 1e8. With a group of two distinct rewards the
/// supremum is ln 2 itself, reached to rounding once β·(r_max − r_min) is a few tens.
pub fn adaptive_beta(r: &[f64], omega: &[f64]) -> f64 {
    let r_max = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let f = |b: f64| tilt_kl(b, r, omega, r_max);
    let (mut lo, mut hi) = (0.0, 1.0);
    while f(hi).0 < LN_2 {
        lo = hi;
        hi *= 2.0;
        if hi > 1e8 {
            return 1e8;
        }
    }
    let mut beta = 0.5 * (lo + hi);
    for _ in 0..200 {
        let (kl, slope) = f(beta);
        let err = kl - LN_2;
        if err.abs() < 1e-13 {
            break;
        }
        if err > 0.0 {
            hi = beta;
        } else {
            lo = beta;
        }
        let newton = beta - err / slope;
        beta = if slope > 0.0 && newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if hi - lo < 1e-15 * hi {
            break;
        }
    }
    beta
}

/// Bounded importance weight of replay (MATH §4.2): w = min(c, q/m), m = (1−λ) q + λ p_old,
/// so w ≤ 1/(1−λ) before any cap.
#[inline]
pub fn replay_weight(log_q: f64, log_p_old: f64, replay: f64, cap: f64) -> f64 {
    (1.0 / ((1.0 - replay) + replay * fastmath::exp(log_p_old - log_q))).min(cap)
}

/// The generic score-function core: per-sample coefficients c_i of the objective, then
/// ĝ = Σ ω_i c_i s(x_i) with s the score of the model (MATH §3).
pub fn evaluate(
    problem_objective: &Objective,
    wp: WeightParam,
    m: &Models,
    batch: &mut Batch,
    how: Exactness,
    grad: &mut Grad,
) -> Result<(), String> {
    let d = batch.dim;
    let n = batch.len;
    let model = &m.model;
    // Pass 1a: log parts of the model and of the objective's second density (scalar loop).
    let second: Option<&Mix2> = match *problem_objective {
        Objective::ReverseKL { .. } => Some(&m.target),
        Objective::Sdft { forward: false, .. } => Some(&m.teacher),
        Objective::Ttt { .. } => Some(&m.start),
        Objective::Oapl { .. } => Some(&m.lag),
        _ => None,
    };
    // Pass 1a/1b over chunks: in parallel for large exact (quadrature) batches, in one piece
    // for finite batches (those already run one replicate per thread).
    let chunk = if how.exact && n > 2 * PAR_CHUNK {
        PAR_CHUNK
    } else {
        n.max(1)
    };
    let run_chunk = |(((((((xs, pa), pb), sa), sb), lq), ro), ls): DensityChunk<'_>,
                     scratch: &mut [f64]| {
        model.log_parts_rows(xs, pa, pb, scratch);
        fastmath::log_sum_share(pa, pb, lq, ro);
        if let Some(mix) = second {
            mix.log_parts_rows(xs, sa, sb, scratch);
            fastmath::log_sum(sa, sb, ls);
        }
    };
    if chunk < n {
        batch.x[..n * d]
            .par_chunks(chunk * d)
            .zip(batch.part_a[..n].par_chunks_mut(chunk))
            .zip(batch.part_b[..n].par_chunks_mut(chunk))
            .zip(batch.second_a[..n].par_chunks_mut(chunk))
            .zip(batch.second_b[..n].par_chunks_mut(chunk))
            .zip(batch.log_q[..n].par_chunks_mut(chunk))
            .zip(batch.resp_old[..n].par_chunks_mut(chunk))
            .zip(batch.log_second[..n].par_chunks_mut(chunk))
            .for_each(|c| run_chunk(c, &mut vec![0.0; d]));
    } else {
        run_chunk(
            (
                (
                    (
                        (
                            (
                                (
                                    (&batch.x[..n * d], &mut batch.part_a[..n]),
                                    &mut batch.part_b[..n],
                                ),
                                &mut batch.second_a[..n],
                            ),
                            &mut batch.second_b[..n],
                        ),
                        &mut batch.log_q[..n],
                    ),
                    &mut batch.resp_old[..n],
                ),
                &mut batch.log_second[..n],
            ),
            &mut batch.scratch,
        );
    }
    // Pass 1c: the objective's per-sample value and auxiliary quantity.
    let replay_used = batch.replay_used;
    match *problem_objective {
        Objective::ForwardKL { .. } | Objective::Sdft { forward: true, .. } => {}
        Objective::ReverseKL { cap, .. } => {
            let ln_target_alpha = m.target.ln_alpha();
            if replay_used > 0.0 {
                for i in 0..n {
                    let log_old = batch.second_a[i] - ln_target_alpha;
                    let w = replay_weight(batch.log_q[i], log_old, replay_used, cap);
                    batch.value[i] = w * (batch.log_q[i] - batch.log_second[i]);
                    batch.aux[i] = w;
                }
            } else {
                for i in 0..n {
                    batch.value[i] = batch.log_q[i] - batch.log_second[i];
                    batch.aux[i] = 1.0;
                }
            }
        }
        Objective::Sdft { .. } => {
            for i in 0..n {
                batch.value[i] = batch.log_q[i] - batch.log_second[i];
                batch.aux[i] = 1.0;
            }
        }
        Objective::Ttt { reward: kind, .. } | Objective::Oapl { reward: kind, .. } => {
            for i in 0..n {
                let x = &batch.x[i * d..(i + 1) * d];
                batch.value[i] = reward(kind, &m.target, x, &mut batch.scratch);
                batch.aux[i] = batch.log_q[i] - batch.log_second[i];
            }
        }
    }
    let sum_w: f64 = batch.omega[..n].iter().sum();
    let sum_wv: f64 = batch.omega[..n]
        .iter()
        .zip(&batch.value[..n])
        .map(|(w, v)| w * v)
        .sum();
    // the largest reward (TTT-Discover, OAPL): a shift for stable exponentials
    let r_max = || {
        batch.value[..n]
            .iter()
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max)
    };
    // Pass 2: batch statistics and the coefficients c_i (stored in `value`).
    let exact = how.exact;
    match *problem_objective {
        Objective::ForwardKL { .. } | Objective::Sdft { forward: true, .. } => {
            batch.value[..n].iter_mut().for_each(|v| *v = -1.0)
        }
        Objective::ReverseKL { .. } | Objective::Sdft { forward: false, .. } => {
            // SDFT's reverse direction always uses the leave-one-out baseline.
            let loo = !matches!(*problem_objective, Objective::ReverseKL { loo: false, .. });
            if loo {
                let baseline = LooMean::new(sum_wv, sum_w, batch.omega[0], exact);
                for i in 0..n {
                    let v = batch.value[i];
                    batch.value[i] = v - batch.aux[i] * baseline.at(v);
                }
            }
        }
        Objective::Ttt {
            beta,
            kl_penalty,
            reward: kind,
        } => {
            if exact
                && how.perp_dims > 0
                && (beta.is_none() || matches!(kind, Reward::NewIndicator { .. }))
            {
                return Err("the exact population limit of TTT-Discover with this reward or adaptive beta is implemented only when the means span all d dimensions (e.g. d = 1)".into());
            }
            let beta = match beta {
                Some(b) => b,
                None => adaptive_beta(&batch.value[..n], &batch.omega[..n]),
            };
            let shift = r_max();
            let mut sum_we = 0.0;
            for i in 0..n {
                let e = (beta * (batch.value[i] - shift)).exp();
                batch.value[i] = e;
                sum_we += batch.omega[i] * e;
            }
            let mean_e = LooMean::new(sum_we, sum_w, batch.omega[0], exact);
            for i in 0..n {
                let e = batch.value[i];
                let den = mean_e.at(e);
                let advantage =
                    if den > 0.0 { e / den - 1.0 } else { 0.0 } - kl_penalty * batch.aux[i];
                batch.value[i] = -advantage;
            }
        }
        Objective::Oapl {
            beta1,
            beta2,
            reward: kind,
            ..
        } => {
            // V̂ = β1 log Σ ω exp(r/β1), stable with the max shift.
            let r_max = r_max();
            let mut z = 0.0;
            for i in 0..n {
                z += batch.omega[i] * ((batch.value[i] - r_max) / beta1).exp();
            }
            let v_hat = r_max + beta1 * (z / sum_w).ln();
            let shift = if exact && how.perp_dims > 0 {
                match kind {
                    Reward::NewIndicator { .. } => return Err("the exact population limit of OAPL with the indicator reward is implemented only when the means span all d dimensions (e.g. d = 1)".into()),
                    // E over the dropped dimensions of (r − V̂) for log-density rewards.
                    _ => -0.5 * how.perp_dims as f64 * (1.0 - beta1 * (1.0 + 1.0 / beta1).ln()),
                }
            } else {
                0.0
            };
            for i in 0..n {
                let advantage = batch.value[i] - v_hat + shift;
                batch.value[i] = 2.0 * beta2 * (beta2 * batch.aux[i] - advantage);
            }
        }
    }
    // Pass 3: accumulate ĝ = Σ ω c s. Per-sample weights first (vectorised), then the sums.
    let alpha = model.alpha;
    let (coef_old, coef_new) = (&mut batch.part_a[..n], &mut batch.part_b[..n]);
    let weight_score = &mut batch.second_b[..n];
    for i in 0..n {
        let wc = batch.omega[i] * batch.value[i];
        let r_old = batch.resp_old[i];
        coef_old[i] = wc * r_old;
        coef_new[i] = wc * (1.0 - r_old);
    }
    match wp {
        WeightParam::Logit => {
            for (s, r) in weight_score.iter_mut().zip(&batch.resp_old[..n]) {
                *s = r - alpha;
            }
        }
        WeightParam::Direct => {
            for (s, r) in weight_score.iter_mut().zip(&batch.resp_old[..n]) {
                *s = r / alpha - (1.0 - r) / (1.0 - alpha);
            }
        }
    }
    grad.weight = dot(&batch.omega[..n], &batch.value[..n], Some(weight_score));
    let mass_old = sum(coef_old);
    let mass_new = sum(coef_new);
    if d == 1 {
        // local accumulators: no store-to-load chain through grad's memory
        let xs = &batch.x[..n];
        grad.old[0] = dot(coef_old, xs, None);
        grad.new[0] = dot(coef_new, xs, None);
    } else {
        grad.old.iter_mut().for_each(|v| *v = 0.0);
        grad.new.iter_mut().for_each(|v| *v = 0.0);
        for ((row, a), b) in batch.x[..n * d]
            .chunks_exact(d)
            .zip(coef_old.iter())
            .zip(coef_new.iter())
        {
            for ((go, gn), xj) in grad.old.iter_mut().zip(grad.new.iter_mut()).zip(row) {
                *go += a * xj;
                *gn += b * xj;
            }
        }
    }
    // Σ c r (x − μ) = Σ c r x − μ Σ c r, then the precision Σ⁻¹ (MATH §3).
    grad.old
        .iter_mut()
        .zip(&model.old.mean)
        .for_each(|(g, mu)| *g -= mass_old * mu);
    grad.new
        .iter_mut()
        .zip(&model.new.mean)
        .for_each(|(g, mu)| *g -= mass_new * mu);
    model.old.cov.precision_apply(&mut grad.old);
    model.new.cov.precision_apply(&mut grad.new);
    Ok(())
}

impl Problem {
    /// One finite-batch estimate ĝ at `models`: draw the batch from the objective's sampling
    /// distribution (MATH §4), then the score-function core. Returns the old-labelled count.
    pub fn batch_gradient(
        &self,
        models: &Models,
        rng: &mut Stream,
        batch: &mut Batch,
        grad: &mut Grad,
    ) -> Result<usize, String> {
        let old_count = draw_batch(&self.objective, models, rng, batch);
        evaluate(
            &self.objective,
            self.weight_param,
            models,
            batch,
            Exactness::default(),
            grad,
        )?;
        Ok(old_count)
    }

    /// Write record `k` of a replicate (α, μ_o, μ_n, cumulative starved count) into its
    /// per-replicate slices of the recording buffers.
    pub fn record(
        &self,
        rep: &Replicate,
        k: usize,
        (weight, old, new, starved): (&mut [f64], &mut [f64], &mut [f64], &mut [i64]),
    ) {
        let d = self.dim;
        weight[k] = rep.theta.alpha(self.weight_param);
        old[k * d..(k + 1) * d].copy_from_slice(&rep.theta.old);
        new[k * d..(k + 1) * d].copy_from_slice(&rep.theta.new);
        starved[k] = rep.starved;
    }

    /// θ ← θ − lr·m⊙ĝ, then the objective's extra state; a non-finite θ freezes the replicate.
    pub fn apply_update(&self, r: &mut Replicate, grad: &Grad, previous: &mut Params) {
        previous.copy_from(&r.theta);
        let [sw, so, sn] = self.lr_scale;
        let lr = self.lr;
        r.theta.weight -= lr * sw * grad.weight;
        if self.weight_param == WeightParam::Direct {
            r.theta.weight = r.theta.weight.clamp(DIRECT_EPS, 1.0 - DIRECT_EPS);
        }
        r.theta
            .old
            .iter_mut()
            .zip(&grad.old)
            .for_each(|(p, g)| *p -= lr * so * g);
        r.theta
            .new
            .iter_mut()
            .zip(&grad.new)
            .for_each(|(p, g)| *p -= lr * sn * g);
        r.steps_done += 1;
        if !r.theta.is_finite() {
            r.theta.copy_from(previous);
            r.diverged = true;
            return;
        }
        match self.objective {
            Objective::Sdft { ema, .. } => {
                let t = &mut r.teacher;
                t.weight = (1.0 - ema) * t.weight + ema * r.theta.weight;
                t.old
                    .iter_mut()
                    .zip(&r.theta.old)
                    .for_each(|(p, q)| *p = (1.0 - ema) * *p + ema * q);
                t.new
                    .iter_mut()
                    .zip(&r.theta.new)
                    .for_each(|(p, q)| *p = (1.0 - ema) * *p + ema * q);
            }
            Objective::Oapl { lag, .. } if r.steps_done % lag as u64 == 0 => {
                r.lag.copy_from(&r.theta)
            }
            _ => {}
        }
    }
}

/// Recording buffers for one chunk of steps: (R × n_rec) and (R × n_rec × d), row-major.
pub struct Records<'a> {
    pub weight: &'a mut [f64],
    pub old: &'a mut [f64],
    pub new: &'a mut [f64],
    pub starved: &'a mut [i64],
}

/// Finite-batch training of many replicates (MATH §5), each on its own stream.
pub struct Simulation {
    pub problem: Problem,
    pub batch_size: usize,
    pub replicates: Vec<Replicate>,
}

impl Simulation {
    pub fn new(
        problem: Problem,
        batch_size: usize,
        replicates: usize,
        key: [u64; 2],
    ) -> Simulation {
        let reps = (0..replicates)
            .map(|r| problem.new_replicate(key, r as u64))
            .collect();
        Simulation {
            problem,
            batch_size,
            replicates: reps,
        }
    }

    /// Advance every replicate by `steps`, recording every `record_every` steps into `rec`
    /// (n_rec = steps / record_every records per replicate). Parallel over replicates.
    pub fn advance(&mut self, steps: usize, record_every: usize, rec: Records) {
        let n_rec = steps / record_every;
        let d = self.problem.dim;
        let problem = &self.problem;
        let b = self.batch_size;
        self.replicates
            .par_iter_mut()
            .zip(rec.weight.par_chunks_mut(n_rec))
            .zip(rec.old.par_chunks_mut(n_rec * d))
            .zip(rec.new.par_chunks_mut(n_rec * d))
            .zip(rec.starved.par_chunks_mut(n_rec))
            .for_each(|((((rep, w_out), o_out), n_out), s_out)| {
                let mut models = problem.models_at(rep);
                let mut batch = Batch::new(d, b);
                let mut grad = Grad::zeros(d);
                let mut previous = rep.theta.clone();
                for step in 0..steps {
                    if !rep.diverged {
                        problem.refresh(&mut models, rep);
                        match problem.batch_gradient(&models, &mut rep.rng, &mut batch, &mut grad) {
                            Ok(old_count) => {
                                rep.starved += (old_count == 0) as i64;
                                problem.apply_update(rep, &grad, &mut previous);
                            }
                            Err(_) => rep.diverged = true, // finite batches never take the exact-only branches
                        }
                    }
                    if (step + 1) % record_every == 0 {
                        let k = (step + 1) / record_every - 1;
                        problem.record(rep, k, (w_out, o_out, n_out, s_out));
                    }
                }
            });
    }
}

/// One-step Monte Carlo study: `batches` independent finite-batch gradients at the start
/// state, with starved flags and old counts. Batch chunk c uses stream (key, c).
pub fn estimate_gradient(
    problem: &Problem,
    batch_size: usize,
    key: [u64; 2],
    grads: &mut [f64],
    old_counts: &mut [i64],
) -> Result<(), String> {
    const BATCHES_PER_STREAM: usize = 256;
    let d = problem.dim;
    let width = 1 + 2 * d;
    let rep = problem.new_replicate(key, 0);
    let models = problem.models_at(&rep);
    grads
        .par_chunks_mut(BATCHES_PER_STREAM * width)
        .zip(old_counts.par_chunks_mut(BATCHES_PER_STREAM))
        .enumerate()
        .try_for_each(|(c, (g_out, n_out))| {
            let mut rng = Stream::new(key, c as u64);
            let mut batch = Batch::new(d, batch_size);
            let mut grad = Grad::zeros(d);
            for (g_row, count) in g_out.chunks_mut(width).zip(n_out.iter_mut()) {
                *count = problem.batch_gradient(&models, &mut rng, &mut batch, &mut grad)? as i64;
                grad.write_flat(g_row);
            }
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(objective: Objective) -> Problem {
        let cov = Cov::scalar(1.0).unwrap();
        let g = |m: f64| Gaussian::new(vec![m], cov.clone());
        Problem {
            dim: 1,
            target: Mix2::new(0.75, g(-3.0), g(3.5)),
            model_old_cov: cov.clone(),
            model_new_cov: cov.clone(),
            start: Params::from_alpha(0.75, vec![-3.0], vec![0.5], WeightParam::Logit),
            objective,
            weight_param: WeightParam::Logit,
            lr: 0.05,
            lr_scale: [1.0, 1.0, 1.0],
        }
    }

    #[test]
    fn adaptive_beta_hits_ln2() {
        let r = [0.1, -0.5, 2.0, 1.5, 0.0, -3.0];
        let omega = [1.0 / 6.0; 6];
        let beta = adaptive_beta(&r, &omega);
        let r_max = 2.0;
        assert!((tilt_kl(beta, &r, &omega, r_max).0 - LN_2).abs() < 1e-10);
    }

    #[test]
    fn forward_kl_forgets_mass_and_simulation_is_deterministic() {
        let p = problem(Objective::ForwardKL {
            replay: 0.0,
            slots: Slots::Bernoulli,
        });
        let run = |threads: usize| {
            let mut sim = Simulation::new(p.clone(), 32, 8, [5, 6]);
            let (mut w, mut o, mut n, mut s) = (
                vec![0.0; 8 * 4],
                vec![0.0; 8 * 4],
                vec![0.0; 8 * 4],
                vec![0i64; 8 * 4],
            );
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    sim.advance(
                        200,
                        50,
                        Records {
                            weight: &mut w,
                            old: &mut o,
                            new: &mut n,
                            starved: &mut s,
                        },
                    )
                });
            (w, o, n, s)
        };
        let a = run(1);
        assert_eq!(a, run(2));
        assert!(a.0.iter().skip(3).step_by(4).all(|&w| w < 0.3), "{:?}", a.0);
        // every batch is starved without replay
        assert!(a.3.iter().skip(3).step_by(4).all(|&s| s == 200));
    }
}
