//! The generic training core (docs: theory-scores, theory-estimators, theory-training-loop):
//! finite-batch sampling with replay slots, the densities, the score-function accumulation, the
//! update, starvation counting and recording, over many replicates in parallel. Written once,
//! generic over the objective (`crate::objectives`, one module per objective) and monomorphised:
//! each entry point dispatches on the objective once per call.
//!
//! Every objective's gradient is ĝ = Σ_i ω_i c_i s(x_i): the objective contributes its
//! sampling distribution and the per-sample coefficient c_i; ω_i = 1/B for a finite batch,
//! quadrature weights for the exact expectation (population.rs). One core serves both.

use crate::buffers::{checked_len, try_filled, try_zeroed};
use crate::fastmath;
use crate::mixture::{Cov, Gaussian};
use crate::objectives::{with_objective, Objective, Source, Spec};
use crate::simd_rng::LaneStream;
use crate::starvation::{stratified_replay_count, Slots};
use rayon::prelude::*;

/// Clip bounds of the direct weight parametrisation (2510.18874's code).
pub const DIRECT_EPS: f64 = 1e-3;

/// The runaway bound (with [`RUNAWAY_WEIGHT`]): a replicate whose old or new mean is farther
/// than this many Mahalanobis units (the target's covariance of that mode) from the target's
/// mean of the mode has left the model's meaningful range, even while finite, and is flagged
/// diverged. The one definition: Python reads both constants from `_core`
/// (`mixforget.results.RUNAWAY_DISTANCE`, `Trajectory.runaway`).
pub const RUNAWAY_DISTANCE: f64 = 1e6;
/// A replicate whose old weight α is within this of 0 or 1 has run away. Decided on the
/// weight parameter itself, without rounding α: logit |η| ≥ ln(1/1e-300 − 1) ≈ 690.8 (a
/// recorded α rounds to exactly 1 from η ≈ 36.7 on, far inside the bound); direct α ≤ 1e-300
/// or 1 − α ≤ 1e-300 (never, given the clip to [1e-3, 1 − 1e-3]).
pub const RUNAWAY_WEIGHT: f64 = 1e-300;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightParam {
    Logit,
    Direct,
}

/// How a trainable component scale σ_k is parametrised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleParam {
    /// Steps on σ itself, floored at [`SCALE_FLOOR`] (2510.18874's code).
    Direct,
    /// Steps on u = log σ.
    Log,
}

/// Floor of σ in the direct scale parametrisation (2510.18874's code).
pub const SCALE_FLOOR: f64 = 1e-3;

impl ScaleParam {
    /// σ from the stored parameter value.
    #[inline]
    pub fn sd(self, value: f64) -> f64 {
        match self {
            ScaleParam::Direct => value,
            ScaleParam::Log => value.exp(),
        }
    }
    /// The stored parameter value of σ.
    pub fn value(self, sd: f64) -> f64 {
        match self {
            ScaleParam::Direct => sd,
            ScaleParam::Log => sd.ln(),
        }
    }
}

/// Trainable component scales: component k's covariance is σ_k² S_k with S_k = Σ_k /
/// det(Σ_k)^{1/d} (unit determinant, fixed) and σ_k starting at det(Σ_k)^{1/(2d)}, so that in
/// one dimension σ_k is the standard deviation.
#[derive(Clone, Debug, PartialEq)]
pub struct Scales {
    pub param: ScaleParam,
    /// Learning-rate multipliers of (σ_o, σ_n).
    pub lr_scale: [f64; 2],
    /// S_o and S_n.
    pub shape: [Cov; 2],
}

impl Scales {
    /// The covariance σ² S of component k (0 old, 1 new) at parameter value `value`, in place.
    #[inline]
    fn apply(&self, k: usize, value: f64, g: &mut Gaussian) {
        g.set_scaled_cov(&self.shape[k], self.param.sd(value));
    }
}

/// Trainable parameters θ = (weight parameter, μ_o, μ_n, scale parameters); the weight
/// parameter is η = logit α or α itself (direct). `scale` holds the parameters of (σ_o, σ_n)
/// (σ itself or log σ, [`ScaleParam`]); they move only when the problem trains scales, and
/// otherwise hold the start σ (direct) for the records. A new trainable group is one field here
/// and in [`Grad`], one entry of `Problem::lr_scale`, one score term in `accumulate_score` and
/// one line in `Problem::apply_update` (and in the extra states that copy θ).
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub weight: f64,
    pub old: Vec<f64>,
    pub new: Vec<f64>,
    pub scale: [f64; 2],
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
        Params {
            weight,
            old,
            new,
            scale: [1.0, 1.0],
        }
    }
    fn is_finite(&self) -> bool {
        self.weight.is_finite()
            && self
                .old
                .iter()
                .chain(&self.new)
                .chain(&self.scale)
                .all(|v| v.is_finite())
    }
    pub(crate) fn copy_from(&mut self, other: &Params) {
        self.weight = other.weight;
        self.old.copy_from_slice(&other.old);
        self.new.copy_from_slice(&other.new);
        self.scale = other.scale;
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
    pub objective: Spec,
    pub weight_param: WeightParam,
    pub lr: f64,
    /// Learning-rate multipliers for (weight, old mean, new mean); 0 freezes a group.
    pub lr_scale: [f64; 3],
    /// Trainable component scales; None keeps the model covariances fixed.
    pub scales: Option<Scales>,
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
    /// The replicate's own vectorised stream (labels, replay slots and normals).
    pub rng: LaneStream,
}

impl Problem {
    pub fn models_at<O: Objective>(&self, objective: &O, r: &Replicate) -> Models {
        let wp = self.weight_param;
        let g = |mean: &[f64], cov: &Cov| Gaussian::new(mean.to_vec(), cov.clone());
        let mix = |p: &Params| {
            let mut mix = Mix2::new(
                p.alpha(wp),
                g(&p.old, &self.model_old_cov),
                g(&p.new, &self.model_new_cov),
            );
            if let Some(scales) = &self.scales {
                scales.apply(0, p.scale[0], &mut mix.old);
                scales.apply(1, p.scale[1], &mut mix.new);
            }
            mix
        };
        let mut models = Models {
            model: mix(&r.theta),
            target: self.target.clone(),
            teacher: mix(&r.teacher),
            start: mix(&self.start),
            lag: mix(&r.lag),
        };
        self.refresh(objective, &mut models, r);
        models
    }

    /// Update the moving models in place (no allocation): θ, teacher, lag, then what the
    /// objective derives from its extra state (SDFT's anchored teacher).
    pub fn refresh<O: Objective>(&self, objective: &O, models: &mut Models, r: &Replicate) {
        let wp = self.weight_param;
        models
            .model
            .set(r.theta.alpha(wp), &r.theta.old, &r.theta.new);
        if O::MOVES_STATE {
            models.lag.set(r.lag.alpha(wp), &r.lag.old, &r.lag.new);
            models
                .teacher
                .set(r.teacher.alpha(wp), &r.teacher.old, &r.teacher.new);
        }
        if let Some(scales) = &self.scales {
            let moving: &mut [(&mut Mix2, &Params)] = if O::MOVES_STATE {
                &mut [
                    (&mut models.model, &r.theta),
                    (&mut models.lag, &r.lag),
                    (&mut models.teacher, &r.teacher),
                ]
            } else {
                &mut [(&mut models.model, &r.theta)]
            };
            for (mix, p) in moving.iter_mut() {
                scales.apply(0, p.scale[0], &mut mix.old);
                scales.apply(1, p.scale[1], &mut mix.new);
            }
        }
        objective.refresh_state(models, &self.target);
    }

    /// σ_k of a parameter set (its fixed start value when scales are not trained).
    pub fn scale_sd(&self, p: &Params) -> [f64; 2] {
        match &self.scales {
            Some(s) => p.scale.map(|v| s.param.sd(v)),
            None => p.scale,
        }
    }

    /// Entries of one flat gradient: 1 + 2d, plus (σ_o, σ_n) when scales train.
    pub fn grad_width(&self) -> usize {
        1 + 2 * self.dim + if self.scales.is_some() { 2 } else { 0 }
    }

    pub fn new_replicate(&self, key: [u64; 2], index: u64) -> Replicate {
        Replicate {
            theta: self.start.clone(),
            teacher: self.start.clone(),
            lag: self.start.clone(),
            steps_done: 0,
            starved: 0,
            diverged: false,
            rng: LaneStream::new(key, index),
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
    /// Raw random words of the replay and label draws (see `draw_batch`).
    words: Vec<u64>,
    /// Replay fraction used by the importance weights (λ, or round(λB)/B when stratified).
    pub replay_used: f64,
    /// log q_θ(x_i).
    pub(crate) log_q: Vec<f64>,
    /// The model's old-component responsibility r_o(x_i).
    pub(crate) resp_old: Vec<f64>,
    /// log α φ_o(x_i) and log (1−α) φ_n(x_i) of the model; then the per-sample score
    /// coefficients of the old and new means (`accumulate_score`).
    pub(crate) part_a: Vec<f64>,
    pub(crate) part_b: Vec<f64>,
    /// The two log parts of the objective's second density (`Objective::second`); `second_b`
    /// then holds the weight score.
    pub(crate) second_a: Vec<f64>,
    pub(crate) second_b: Vec<f64>,
    /// log of the second density.
    pub(crate) log_second: Vec<f64>,
    /// The objective's per-sample value, then its coefficient c_i.
    pub(crate) value: Vec<f64>,
    /// The objective's per-sample auxiliary quantity (importance weight, log-ratio).
    pub(crate) aux: Vec<f64>,
    pub(crate) scratch: Vec<f64>,
}

impl Batch {
    /// A batch buffer for internal, bounded sizes (panics if it cannot be allocated).
    pub fn new(dim: usize, capacity: usize) -> Batch {
        Batch::try_new(dim, capacity).expect("batch buffer")
    }

    /// A batch buffer whose size comes from the user: an error naming the size when it
    /// cannot be allocated.
    pub fn try_new(dim: usize, capacity: usize) -> Result<Batch, String> {
        let what = "the batch buffers";
        let column = || try_zeroed::<f64>(&[capacity], what);
        Ok(Batch {
            dim,
            len: capacity,
            x: try_zeroed(&[capacity, dim], what)?,
            omega: try_filled(capacity, 1.0 / capacity.max(1) as f64, what)?,
            component: try_zeroed(&[capacity], what)?,
            words: try_zeroed(&[capacity], what)?,
            replay_used: 0.0,
            log_q: column()?,
            resp_old: column()?,
            part_a: column()?,
            part_b: column()?,
            second_a: column()?,
            second_b: column()?,
            log_second: column()?,
            value: column()?,
            aux: column()?,
            scratch: vec![0.0; dim],
        })
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
        self.words.resize(len, 0);
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

    /// Keep the first `len` points (len ≤ the current length) without shrinking the
    /// buffers, so that the next `reset` to the old size has nothing to refill.
    pub fn shorten(&mut self, len: usize) {
        assert!(len <= self.len, "shorten to {len} > {}", self.len);
        self.len = len;
    }

    /// Σ ω_i (16 partial sums in a fixed order, like every batch sum here). Inlined, so that
    /// it runs with the fused pass's instruction set.
    #[inline(always)]
    pub(crate) fn weight_sum(&self) -> f64 {
        sum(&self.omega[..self.len])
    }

    /// (Σ ω_i v_i, Σ ω_i) in one pass.
    #[inline(always)]
    pub(crate) fn weighted_value_and_weight_sums(&self) -> (f64, f64) {
        let (omega, value) = (&self.omega[..self.len], &self.value[..self.len]);
        let [wv, w] = lane_sums([omega, value], |[o, v]| [o * v, o]);
        (wv, w)
    }

    /// max_i v_i: the shift that keeps exponentials of rewards finite.
    pub(crate) fn value_max(&self) -> f64 {
        self.value[..self.len]
            .iter()
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// A gradient of the loss: weight parameter, old mean, new mean, and the parameters of
/// (σ_o, σ_n) (zero unless scales train).
#[derive(Clone, Debug, PartialEq)]
pub struct Grad {
    pub weight: f64,
    pub old: Vec<f64>,
    pub new: Vec<f64>,
    pub scale: [f64; 2],
}

impl Grad {
    pub fn zeros(dim: usize) -> Grad {
        Grad {
            weight: 0.0,
            old: vec![0.0; dim],
            new: vec![0.0; dim],
            scale: [0.0; 2],
        }
    }
    /// (weight, old mean [d], new mean [d]) and, when `out` has room for them (3 + 2d
    /// entries), the two scale entries (old, new).
    pub fn write_flat(&self, out: &mut [f64]) {
        let d = self.old.len();
        out[0] = self.weight;
        out[1..1 + d].copy_from_slice(&self.old);
        out[1 + d..1 + 2 * d].copy_from_slice(&self.new);
        if out.len() >= 3 + 2 * d {
            out[1 + 2 * d..3 + 2 * d].copy_from_slice(&self.scale);
        }
    }
}

/// Points per parallel chunk of an exact (quadrature) evaluation.
const PAR_CHUNK: usize = 8192;

/// How the exact (population) evaluation differs from a finite batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Exactness {
    /// Expectations instead of leave-one-out batch statistics (the G → ∞ limit).
    pub exact: bool,
    /// Dimensions dropped by the span reduction (population.rs); their contribution to
    /// log-density rewards is added in closed form where one exists.
    pub perp_dims: usize,
}

/// The components of the full sampling distribution with their probabilities (for exact
/// expectations): replay λ from p_old*, the rest from the source.
pub fn sampling_components<'a, O: Objective>(
    objective: &O,
    m: &'a Models,
) -> Vec<(f64, &'a Gaussian)> {
    let (replay, _) = objective.replay();
    let mut out = Vec::with_capacity(3);
    match objective.source(m) {
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

/// Partial sums kept per output of `lane_sums`: 16 doubles are two AVX-512 or four AVX2
/// registers, enough independent chains to hide the adder's latency.
const SUM_LANES: usize = 16;

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
fn sum(a: &[f64]) -> f64 {
    lane_sums([a], |[a]| [a])[0]
}

/// The batch mean of ω-weighted values seen from sample i: over the others (leave-one-out,
/// finite batches) or over all (exact expectations), b_i = (Σ ω v − own·v_i)·scale. Finite
/// batches have uniform ω, so the leave-one-out denominator is one constant (no per-sample
/// division); a batch of one has no others and gets b = 0.
pub(crate) struct LooMean {
    total: f64,
    own: f64,
    scale: f64,
}

impl LooMean {
    pub(crate) fn new(sum_wv: f64, sum_w: f64, omega: f64, exact: bool) -> LooMean {
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
    pub(crate) fn at(&self, v_i: f64) -> f64 {
        (self.total - self.own * v_i) * self.scale
    }
}

/// The rows of a batch with the outputs of the density pass: the model's log parts, log
/// density and old responsibility, and the second density's log parts and log density.
struct DensityRows<'a> {
    x: &'a [f64],
    model_old: &'a mut [f64],
    model_new: &'a mut [f64],
    second_old: &'a mut [f64],
    second_new: &'a mut [f64],
    log_q: &'a mut [f64],
    resp_old: &'a mut [f64],
    log_second: &'a mut [f64],
}

impl<'a> DensityRows<'a> {
    /// The batch's first `len` rows, and its scratch row.
    fn of(batch: &'a mut Batch) -> (DensityRows<'a>, &'a mut [f64]) {
        let (n, d) = (batch.len, batch.dim);
        let Batch {
            x,
            part_a,
            part_b,
            second_a,
            second_b,
            log_q,
            resp_old,
            log_second,
            scratch,
            ..
        } = batch;
        let rows = DensityRows {
            x: &x[..n * d],
            model_old: &mut part_a[..n],
            model_new: &mut part_b[..n],
            second_old: &mut second_a[..n],
            second_new: &mut second_b[..n],
            log_q: &mut log_q[..n],
            resp_old: &mut resp_old[..n],
            log_second: &mut log_second[..n],
        };
        (rows, scratch)
    }

    fn len(&self) -> usize {
        self.log_q.len()
    }

    fn split_at(self, mid: usize, d: usize) -> (DensityRows<'a>, DensityRows<'a>) {
        let (x0, x1) = self.x.split_at(mid * d);
        let (mo0, mo1) = self.model_old.split_at_mut(mid);
        let (mn0, mn1) = self.model_new.split_at_mut(mid);
        let (so0, so1) = self.second_old.split_at_mut(mid);
        let (sn0, sn1) = self.second_new.split_at_mut(mid);
        let (lq0, lq1) = self.log_q.split_at_mut(mid);
        let (ro0, ro1) = self.resp_old.split_at_mut(mid);
        let (ls0, ls1) = self.log_second.split_at_mut(mid);
        (
            DensityRows {
                x: x0,
                model_old: mo0,
                model_new: mn0,
                second_old: so0,
                second_new: sn0,
                log_q: lq0,
                resp_old: ro0,
                log_second: ls0,
            },
            DensityRows {
                x: x1,
                model_old: mo1,
                model_new: mn1,
                second_old: so1,
                second_new: sn1,
                log_q: lq1,
                resp_old: ro1,
                log_second: ls1,
            },
        )
    }

    /// Consecutive pieces of `rows` rows (the last one shorter).
    fn chunks(self, rows: usize, d: usize) -> Vec<DensityRows<'a>> {
        let mut out = Vec::with_capacity(self.len().div_ceil(rows));
        let mut rest = self;
        while rest.len() > rows {
            let (head, tail) = rest.split_at(rows, d);
            out.push(head);
            rest = tail;
        }
        out.push(rest);
        out
    }

    /// `compute` with the widest instruction set present: a chunk run on a rayon worker does
    /// not inherit the caller's target features.
    fn compute_dispatched(self, model: &Mix2, second: Option<&Mix2>, scratch: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512dq,avx512vl")]
            unsafe fn avx512(r: DensityRows, m: &Mix2, s: Option<&Mix2>, x: &mut [f64]) {
                r.compute(m, s, x)
            }
            #[target_feature(enable = "avx2")]
            unsafe fn avx2(r: DensityRows, m: &Mix2, s: Option<&Mix2>, x: &mut [f64]) {
                r.compute(m, s, x)
            }
            if crate::fastmath::has_avx512() {
                // SAFETY: the processor supports these AVX-512 subsets (checked just above).
                return unsafe { avx512(self, model, second, scratch) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the processor supports AVX2 (checked just above).
                return unsafe { avx2(self, model, second, scratch) };
            }
        }
        self.compute(model, second, scratch)
    }

    /// The same operations as the fused pass's density block (`fused::density_block`), so
    /// both give the same bits.
    #[inline(always)]
    fn compute(self, model: &Mix2, second: Option<&Mix2>, scratch: &mut [f64]) {
        model.log_parts_rows(self.x, self.model_old, self.model_new, scratch);
        match second {
            Some(mix) => {
                mix.log_parts_rows(self.x, self.second_old, self.second_new, scratch);
                fastmath::log_sum_share_and_log_sum_slices(
                    (self.model_old, self.model_new),
                    (self.second_old, self.second_new),
                    self.log_q,
                    self.resp_old,
                    self.log_second,
                );
            }
            None => fastmath::log_sum_share_slices(
                self.model_old,
                self.model_new,
                self.log_q,
                self.resp_old,
            ),
        }
    }
}

/// The generic score-function core: the densities, the objective's per-sample values and
/// coefficients c_i, then ĝ = Σ ω_i c_i s(x_i) with s the score of the model (docs: theory-scores).
#[inline(always)]
pub fn evaluate<O: Objective>(
    objective: &O,
    wp: WeightParam,
    scales: Option<ScaleParam>,
    m: &Models,
    batch: &mut Batch,
    how: Exactness,
    grad: &mut Grad,
) {
    let (n, d) = (batch.len, batch.dim);
    let model = &m.model;
    let second = objective.second(m);
    // Densities over chunks: in parallel for large exact (quadrature) batches, in one piece
    // for finite batches (those already run one replicate per thread).
    let chunk = if how.exact && n > 2 * PAR_CHUNK {
        PAR_CHUNK
    } else {
        n.max(1)
    };
    let (rows, scratch) = DensityRows::of(batch);
    if chunk < n {
        rows.chunks(chunk, d)
            .into_par_iter()
            .for_each(|c| c.compute_dispatched(model, second, &mut vec![0.0; d]));
    } else {
        rows.compute(model, second, scratch);
    }
    objective.values(m, batch);
    objective.coefficients(batch, how);
    accumulate_score(wp, model, batch, grad);
    if let Some(param) = scales {
        accumulate_scale_score(param, model, batch, grad);
    }
}

/// The scale entries of ĝ = Σ ω_i c_i s(x_i): with M_k(x) = ‖x − μ_k‖² in the metric of
/// component k's covariance σ_k² S_k, ∂/∂σ_k log φ_k = (M_k − d)/σ_k, so
/// ∂/∂σ_o = Σ ω c r (M_o − d)/σ_o and ∂/∂σ_n = Σ ω c (1−r) (M_n − d)/σ_n; for u = log σ
/// the same times σ. Reads the per-sample coefficients ω c r and ω c (1−r) that
/// `accumulate_score` leaves in `part_a`/`part_b`.
pub(crate) fn accumulate_scale_score(
    param: ScaleParam,
    model: &Mix2,
    batch: &mut Batch,
    grad: &mut Grad,
) {
    let (n, d) = (batch.len, batch.dim);
    for (k, (comp, coef)) in [(&model.old, &batch.part_a), (&model.new, &batch.part_b)]
        .into_iter()
        .enumerate()
    {
        let mu = &comp.mean;
        let mut total = 0.0;
        let mut mass = 0.0;
        for (row, c) in batch.x[..n * d].chunks_exact(d).zip(&coef[..n]) {
            let m = comp
                .cov
                .mahalanobis_sq(|j| row[j] - mu[j], d, &mut batch.scratch);
            total += c * m;
            mass += c;
        }
        // Σ c (M − d) / σ, then × σ for u = log σ.
        let g = total - d as f64 * mass;
        grad.scale[k] = match param {
            ScaleParam::Direct => g / comp.scale(),
            ScaleParam::Log => g,
        };
    }
}

/// Σ_i a_i x_i and Σ_i b_i x_i for rows x_i of a small fixed dimension D (the reduced spans
/// of the population quadrature): `lane_sums`' order and shape, one block of 16 rows at a
/// time, so the thousands of quadrature nodes are summed with vector adds.
#[inline(always)]
fn small_score_sums<const D: usize>(x: &[f64], a: &[f64], b: &[f64], grad: &mut Grad) {
    let n = a.len().min(b.len()).min(x.len() / D);
    let mut acc_a = [[0.0f64; SUM_LANES]; D];
    let mut acc_b = [[0.0f64; SUM_LANES]; D];
    let full = n - n % SUM_LANES;
    let mut i = 0;
    while i < full {
        let rows = &x[i * D..(i + SUM_LANES) * D];
        let (ca, cb) = (&a[i..i + SUM_LANES], &b[i..i + SUM_LANES]);
        for j in 0..SUM_LANES {
            for k in 0..D {
                acc_a[k][j] += ca[j] * rows[j * D + k];
                acc_b[k][j] += cb[j] * rows[j * D + k];
            }
        }
        i += SUM_LANES;
    }
    for j in 0..n - full {
        for k in 0..D {
            acc_a[k][j] += a[full + j] * x[(full + j) * D + k];
            acc_b[k][j] += b[full + j] * x[(full + j) * D + k];
        }
    }
    for k in 0..D {
        grad.old[k] = lane_total(acc_a[k]);
        grad.new[k] = lane_total(acc_b[k]);
    }
}

/// The fixed pairwise tree over `lane_sums`' partial sums.
#[inline(always)]
fn lane_total(mut a: [f64; SUM_LANES]) -> f64 {
    let mut width = SUM_LANES;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            a[j] += a[j + width];
        }
    }
    a[0]
}

/// ĝ = Σ ω_i c_i s(x_i) for the model's score s: per-sample weights first (vectorised), then
/// the sums. With c_i in `batch.value` and r_i the old responsibility,
/// ∂/∂η = Σ ω c (r − α) (logit; r/α − (1−r)/(1−α) direct), ∂/∂μ_o = Σ⁻¹ Σ ω c r (x − μ_o),
/// ∂/∂μ_n = Σ⁻¹ Σ ω c (1−r) (x − μ_n).
#[inline(always)]
pub(crate) fn accumulate_score(wp: WeightParam, model: &Mix2, batch: &mut Batch, grad: &mut Grad) {
    let (n, d) = (batch.len, batch.dim);
    let alpha = model.alpha;
    let (coef_old, coef_new) = (&mut batch.part_a[..n], &mut batch.part_b[..n]);
    let (omega, value, resp) = (&batch.omega[..n], &batch.value[..n], &batch.resp_old[..n]);
    // ω c r and ω c (1 − r), kept for the scale score and the d > 1 sums.
    for i in 0..n {
        let wc = omega[i] * value[i];
        coef_old[i] = wc * resp[i];
        coef_new[i] = wc * (1.0 - resp[i]);
    }
    let weight_score = |r: f64| match wp {
        WeightParam::Logit => r - alpha,
        WeightParam::Direct => r / alpha - (1.0 - r) / (1.0 - alpha),
    };
    let (coef_old, coef_new) = (&*coef_old, &*coef_new);
    // One pass for every sum (for d = 1 the mean sums too): independent vector chains.
    let (mass_old, mass_new) = if d == 1 {
        let xs = &batch.x[..n];
        let [weight, mass_old, mass_new, old, new] = lane_sums(
            [omega, value, resp, coef_old, coef_new, xs],
            |[o, v, r, a, b, x]| [o * v * weight_score(r), a, b, a * x, b * x],
        );
        grad.weight = weight;
        grad.old[0] = old;
        grad.new[0] = new;
        (mass_old, mass_new)
    } else {
        let [weight, mass_old, mass_new] = lane_sums(
            [omega, value, resp, coef_old, coef_new],
            |[o, v, r, a, b]| [o * v * weight_score(r), a, b],
        );
        grad.weight = weight;
        let x = &batch.x[..n * d];
        match d {
            2 => small_score_sums::<2>(x, coef_old, coef_new, grad),
            3 => small_score_sums::<3>(x, coef_old, coef_new, grad),
            _ => {
                grad.old.iter_mut().for_each(|v| *v = 0.0);
                grad.new.iter_mut().for_each(|v| *v = 0.0);
                for ((row, a), b) in x.chunks_exact(d).zip(coef_old).zip(coef_new) {
                    for ((go, gn), xj) in grad.old.iter_mut().zip(grad.new.iter_mut()).zip(row) {
                        *go += a * xj;
                        *gn += b * xj;
                    }
                }
            }
        }
        (mass_old, mass_new)
    };
    // Σ c r (x − μ) = Σ c r x − μ Σ c r, then the precision Σ⁻¹ (docs: theory-scores).
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
}

impl Problem {
    /// One finite-batch estimate ĝ at `models`: draw the batch from the objective's sampling
    /// distribution (docs: theory-estimators), then the score-function core. Returns the
    /// old-labelled count.
    pub fn batch_gradient<O: Objective>(
        &self,
        objective: &O,
        models: &Models,
        rng: &mut LaneStream,
        batch: &mut Batch,
        grad: &mut Grad,
    ) -> usize {
        crate::fused::batch_gradient(
            objective,
            self.weight_param,
            self.scales.as_ref().map(|s| s.param),
            models,
            rng,
            batch,
            grad,
        )
    }

    /// Write record `k` of a replicate (α, μ_o, μ_n, cumulative starved count, (σ_o, σ_n))
    /// into its per-replicate slices of the recording buffers.
    #[allow(clippy::type_complexity)]
    pub fn record(
        &self,
        rep: &Replicate,
        k: usize,
        (weight, old, new, starved, scale): (
            &mut [f64],
            &mut [f64],
            &mut [f64],
            &mut [i64],
            &mut [f64],
        ),
    ) {
        let d = self.dim;
        weight[k] = rep.theta.alpha(self.weight_param);
        old[k * d..(k + 1) * d].copy_from_slice(&rep.theta.old);
        new[k * d..(k + 1) * d].copy_from_slice(&rep.theta.new);
        starved[k] = rep.starved;
        scale[2 * k..2 * k + 2].copy_from_slice(&self.scale_sd(&rep.theta));
    }

    /// θ ← θ − lr·m⊙ĝ, then the objective's extra state; a non-finite θ freezes the replicate.
    pub fn apply_update<O: Objective>(
        &self,
        objective: &O,
        r: &mut Replicate,
        grad: &Grad,
        previous: &mut Params,
    ) {
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
        if let Some(scales) = &self.scales {
            for k in 0..2 {
                let v = r.theta.scale[k] - lr * scales.lr_scale[k] * grad.scale[k];
                r.theta.scale[k] = match scales.param {
                    ScaleParam::Direct => v.max(SCALE_FLOOR),
                    ScaleParam::Log => v,
                };
            }
        }
        r.steps_done += 1;
        if !r.theta.is_finite() {
            r.theta.copy_from(previous);
            r.diverged = true;
            return;
        }
        if self.runaway(&r.theta) {
            // Frozen where it crossed the bound (finite, so the records show it).
            r.diverged = true;
            return;
        }
        objective.update_state(r);
    }

    /// Whether θ has left the documented bound ([`RUNAWAY_DISTANCE`], [`RUNAWAY_WEIGHT`]).
    pub fn runaway(&self, theta: &Params) -> bool {
        let weight_out = match self.weight_param {
            WeightParam::Logit => theta.weight.abs() >= (1.0 / RUNAWAY_WEIGHT - 1.0).ln(),
            WeightParam::Direct => {
                theta.weight <= RUNAWAY_WEIGHT || 1.0 - theta.weight <= RUNAWAY_WEIGHT
            }
        };
        if weight_out {
            return true;
        }
        let d = self.dim;
        // whitening scratch for full covariances, on the stack for the usual dimensions
        let mut small = [0.0; 16];
        let mut large = Vec::new();
        let scratch: &mut [f64] = if d <= small.len() {
            &mut small[..d]
        } else {
            large.resize(d, 0.0);
            &mut large
        };
        [
            (&theta.old, &self.target.old),
            (&theta.new, &self.target.new),
        ]
        .into_iter()
        .any(|(mean, mode)| {
            let q = mode
                .cov
                .mahalanobis_sq(|i| mean[i] - mode.mean[i], d, scratch);
            // NaN: an overflowing difference whitened (∞ − ∞), beyond the bound as well
            q.is_nan() || q.sqrt() > RUNAWAY_DISTANCE
        })
    }
}

/// Recording buffers for one chunk of steps: (R × n_rec), (R × n_rec × d) and, for the
/// scales, (R × n_rec × 2), row-major.
pub struct Records<'a> {
    pub weight: &'a mut [f64],
    pub old: &'a mut [f64],
    pub new: &'a mut [f64],
    pub starved: &'a mut [i64],
    pub scale: &'a mut [f64],
}

/// Number of records a chunk of `steps` steps after `done` steps holds: the steps s in
/// (done, done + steps] with s % record_every == 0 (records sit at absolute step counts, so
/// a run may be cut into chunks of any length with the same records).
pub fn records_in(done: u64, steps: u64, record_every: u64) -> usize {
    ((done + steps) / record_every - done / record_every) as usize
}

/// Finite-batch training of many replicates (docs: theory-training-loop), each on its own stream.
pub struct Simulation {
    pub problem: Problem,
    pub batch_size: usize,
    pub replicates: Vec<Replicate>,
    /// Steps run so far (the same for every replicate; a diverged one is frozen, not behind).
    pub steps_done: u64,
}

impl Simulation {
    pub fn new(
        problem: Problem,
        batch_size: usize,
        replicates: usize,
        key: [u64; 2],
    ) -> Result<Simulation, String> {
        let mut reps = Vec::new();
        reps.try_reserve_exact(replicates).map_err(|_| {
            format!(
                "{}cannot allocate the state of {replicates} replicates",
                crate::buffers::MEMORY_ERROR
            )
        })?;
        reps.extend((0..replicates).map(|r| problem.new_replicate(key, r as u64)));
        Ok(Simulation {
            problem,
            batch_size,
            replicates: reps,
            steps_done: 0,
        })
    }

    /// Records that `advance(steps, record_every)` writes per replicate.
    pub fn records_in(&self, steps: u64, record_every: u64) -> usize {
        records_in(self.steps_done, steps, record_every)
    }

    /// Advance every replicate by `steps`, recording at every absolute step count that is a
    /// multiple of `record_every` into `rec` (`records_in` records per replicate), so that
    /// the records do not depend on how a run is cut into calls. Parallel over replicates.
    pub fn advance(&mut self, steps: u64, record_every: u64, rec: Records) -> Result<(), String> {
        with_objective!(self.problem.objective, o => self.advance_with(&o, steps, record_every, rec))
    }

    fn advance_with<O: Objective>(
        &mut self,
        objective: &O,
        steps: u64,
        record_every: u64,
        rec: Records,
    ) -> Result<(), String> {
        let n_rec = self.records_in(steps, record_every);
        let d = self.problem.dim;
        let done = self.steps_done;
        let problem = &self.problem;
        let b = self.batch_size;
        let width = checked_len(&[n_rec, d], "the records")?;
        let r = self.replicates.len();
        if rec.weight.len() != r * n_rec
            || rec.old.len() != r * width
            || rec.scale.len() != r * n_rec * 2
        {
            return Err(format!(
                "record buffers of {} and {} values do not hold {r} replicates × {n_rec} records",
                rec.weight.len(),
                rec.old.len()
            ));
        }
        // Each replicate's slices of the records (empty ones for a chunk without records).
        type Outs<'s> = (
            &'s mut [f64],
            &'s mut [f64],
            &'s mut [f64],
            &'s mut [i64],
            &'s mut [f64],
        );
        let outs: Vec<Outs> = if n_rec == 0 {
            (0..r).map(|_| Outs::default()).collect()
        } else {
            rec.weight
                .chunks_mut(n_rec)
                .zip(rec.old.chunks_mut(width))
                .zip(rec.new.chunks_mut(width))
                .zip(rec.starved.chunks_mut(n_rec))
                .zip(rec.scale.chunks_mut(n_rec * 2))
                .map(|((((w, o), n), s), sc)| (w, o, n, s, sc))
                .collect()
        };
        self.replicates.par_iter_mut().zip(outs).try_for_each(
            |(rep, (w_out, o_out, n_out, s_out, sc_out))| {
                let mut models = problem.models_at(objective, rep);
                let mut batch = Batch::try_new(d, b)?;
                let mut grad = Grad::zeros(d);
                let mut previous = rep.theta.clone();
                let mut k = 0;
                for step in done + 1..=done + steps {
                    if !rep.diverged {
                        problem.refresh(objective, &mut models, rep);
                        let old_count = problem.batch_gradient(
                            objective,
                            &models,
                            &mut rep.rng,
                            &mut batch,
                            &mut grad,
                        );
                        rep.starved += (old_count == 0) as i64;
                        problem.apply_update(objective, rep, &grad, &mut previous);
                    }
                    if step % record_every == 0 {
                        problem.record(rep, k, (w_out, o_out, n_out, s_out, sc_out));
                        k += 1;
                    }
                }
                Ok::<(), String>(())
            },
        )?;
        self.steps_done += steps;
        Ok(())
    }
}

/// Batches drawn from one random stream by `estimate_gradient`: a study cut into calls at
/// multiples of this (with `first_stream` advanced by the streams used) gives the same
/// numbers as one call.
pub const BATCHES_PER_STREAM: usize = 256;

/// One-step Monte Carlo study: independent finite-batch gradients at the start state (one
/// row of `grads` and one entry of `old_counts` per batch), with old counts. The c-th run of
/// [`BATCHES_PER_STREAM`] batches uses stream (key, first_stream + c).
pub fn estimate_gradient(
    problem: &Problem,
    batch_size: usize,
    key: [u64; 2],
    first_stream: u64,
    grads: &mut [f64],
    old_counts: &mut [i64],
) -> Result<(), String> {
    with_objective!(problem.objective, o => {
        estimate_gradient_with(&o, problem, batch_size, key, first_stream, grads, old_counts)
    })
}

fn estimate_gradient_with<O: Objective>(
    objective: &O,
    problem: &Problem,
    batch_size: usize,
    key: [u64; 2],
    first_stream: u64,
    grads: &mut [f64],
    old_counts: &mut [i64],
) -> Result<(), String> {
    let d = problem.dim;
    let width = problem.grad_width();
    let rep = problem.new_replicate(key, 0);
    let models = problem.models_at(objective, &rep);
    grads
        .par_chunks_mut(BATCHES_PER_STREAM * width)
        .zip(old_counts.par_chunks_mut(BATCHES_PER_STREAM))
        .enumerate()
        .try_for_each(|(c, (g_out, n_out))| {
            let mut rng = LaneStream::new(key, first_stream + c as u64);
            let mut batch = Batch::try_new(d, batch_size)?;
            let mut grad = Grad::zeros(d);
            for (g_row, count) in g_out.chunks_mut(width).zip(n_out.iter_mut()) {
                *count = problem.batch_gradient(objective, &models, &mut rng, &mut batch, &mut grad)
                    as i64;
                grad.write_flat(g_row);
            }
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::objectives::ForwardKL;

    fn problem(objective: Spec) -> Problem {
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
            scales: None,
        }
    }

    #[test]
    fn forward_kl_forgets_mass_and_simulation_is_deterministic() {
        let p = problem(Spec::ForwardKL(ForwardKL {
            replay: 0.0,
            replay_slots: Slots::Bernoulli,
        }));
        let run = |threads: usize| {
            let mut sim = Simulation::new(p.clone(), 32, 8, [5, 6]).unwrap();
            let (mut w, mut o, mut n, mut s, mut sc) = (
                vec![0.0; 8 * 4],
                vec![0.0; 8 * 4],
                vec![0.0; 8 * 4],
                vec![0i64; 8 * 4],
                vec![0.0; 8 * 4 * 2],
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
                            scale: &mut sc,
                        },
                    )
                })
                .unwrap();
            (w, o, n, s)
        };
        let a = run(1);
        assert_eq!(a, run(2));
        assert!(a.0.iter().skip(3).step_by(4).all(|&w| w < 0.3), "{:?}", a.0);
        // every batch is starved without replay
        assert!(a.3.iter().skip(3).step_by(4).all(|&s| s == 200));
    }

    fn run_in_chunks(p: &Problem, chunks: &[u64], record_every: u64) -> (Vec<f64>, Vec<bool>) {
        let mut sim = Simulation::new(p.clone(), 16, 3, [7, 8]).unwrap();
        let mut weights = vec![Vec::new(); 3];
        for &n in chunks {
            let k = sim.records_in(n, record_every);
            let (mut w, mut o, mut m, mut s, mut sc) = (
                vec![0.0; 3 * k],
                vec![0.0; 3 * k],
                vec![0.0; 3 * k],
                vec![0i64; 3 * k],
                vec![0.0; 3 * k * 2],
            );
            let rec = Records {
                weight: &mut w,
                old: &mut o,
                new: &mut m,
                starved: &mut s,
                scale: &mut sc,
            };
            sim.advance(n, record_every, rec).unwrap();
            for (r, out) in weights.iter_mut().enumerate() {
                out.extend_from_slice(&w[r * k..(r + 1) * k]);
            }
        }
        let diverged = sim.replicates.iter().map(|r| r.diverged).collect();
        (weights.concat(), diverged)
    }

    #[test]
    fn records_do_not_depend_on_how_a_run_is_cut_into_calls() {
        let p = problem(Spec::ForwardKL(ForwardKL {
            replay: 0.2,
            replay_slots: Slots::Bernoulli,
        }));
        let whole = run_in_chunks(&p, &[120], 40);
        assert_eq!(whole.0.len(), 3 * 3);
        for cut in [&[1, 2, 37, 80][..], &[39, 1, 1, 79], &[8; 15]] {
            let total: u64 = cut.iter().sum();
            assert_eq!(
                run_in_chunks(&p, cut, 40).0[..],
                whole.0[..],
                "{cut:?} ({total})"
            );
        }
    }

    #[test]
    fn gradient_study_cut_at_stream_boundaries_matches_one_call() {
        let p = problem(Spec::ForwardKL(ForwardKL {
            replay: 0.0,
            replay_slots: Slots::Bernoulli,
        }));
        let (n, width) = (3 * BATCHES_PER_STREAM + 5, 3);
        let mut g = vec![0.0; n * width];
        let mut c = vec![0i64; n];
        estimate_gradient(&p, 8, [1, 2], 0, &mut g, &mut c).unwrap();
        let split = 2 * BATCHES_PER_STREAM;
        let mut g2 = vec![0.0; n * width];
        let mut c2 = vec![0i64; n];
        let (ga, gb) = g2.split_at_mut(split * width);
        let (ca, cb) = c2.split_at_mut(split);
        estimate_gradient(&p, 8, [1, 2], 0, ga, ca).unwrap();
        estimate_gradient(&p, 8, [1, 2], 2, gb, cb).unwrap();
        assert_eq!(g, g2);
        assert_eq!(c, c2);
    }

    #[test]
    fn runaway_replicates_are_flagged_and_frozen() {
        let mut p = problem(Spec::ForwardKL(ForwardKL {
            replay: 0.0,
            replay_slots: Slots::Bernoulli,
        }));
        let start = p.start.clone();
        assert!(!p.runaway(&start));
        let far = |shift: f64| Params {
            old: vec![start.old[0] + shift],
            ..start.clone()
        };
        assert!(!p.runaway(&far(0.99e6)));
        assert!(p.runaway(&far(1.01e6)));
        assert!(p.runaway(&far(-1e300 * 1e10)));
        let at = |eta: f64| Params {
            weight: eta,
            ..start.clone()
        };
        assert!(p.runaway(&at(-691.0)) && p.runaway(&at(691.0)));
        // α rounds to 1 from η ≈ 36.7 on: still inside the bound
        assert!(!p.runaway(&at(-690.0)) && !p.runaway(&at(100.0)));
        // lr = 10: the means run away within a few steps; afterwards the records stand still
        p.lr = 10.0;
        let (w, diverged) = run_in_chunks(&p, &[200], 1);
        assert!(diverged.iter().all(|&d| d), "{diverged:?}");
        for rep in w.chunks(200) {
            assert_eq!(rep[198], rep[199]);
        }
    }
}
