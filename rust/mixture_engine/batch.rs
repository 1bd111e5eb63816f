//! One finite batch of the K-component engine: the model's state at θ ([`ModelState`]),
//! drawing a labelled batch from the objective's sampling distribution, and ĝ = (1/B) Σ_i c_i
//! s(x_i) with the scores ∂ log q/∂η_j = r_j − w_j (j < K−1), ∂ log q/∂μ_j = r_j Σ_j⁻¹(x − μ_j).
//!
//! The work arrays ([`Workspace`]) are allocated once per replicate and reused every step;
//! the densities are computed column by column (one component over the whole batch, loops
//! that vectorise) with the crate's branch-free exp and ln.

use crate::buffers::try_zeroed;
use crate::engine::batch::LooMean;
use crate::error::KernelResult;
use crate::math::fastmath;
use crate::math::lane_sums::lane_sums;
use crate::mixture_engine::problem::{softmax_pinned_with_logs, MixtureObjective, Problem};
use crate::model::mixture::{Cov, Gaussian};
use crate::objectives::reverse_kl::{replay_weight, Baseline};

mod kl_regularized;
use crate::random::simd_rng::{ln_positive, LaneStream};
use crate::random::starvation::{stratified_replay_count, Slots};
use kl_regularized::{kl_rl_coefficients, kl_rl_values};

/// Call `$body(args…)` through a copy compiled for AVX-512 (F, DQ, VL) or AVX2 when the
/// processor has it, else the portable one: the per-sample loops are inlined into each copy
/// and vectorise with its registers. No fused multiply-add is enabled, so every copy rounds
/// identically (the same bits on every machine).
macro_rules! dispatch {
    ($body:ident($($arg:ident: $ty:ty),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512dq,avx512vl")]
            unsafe fn avx512($($arg: $ty),*) {
                $body($($arg),*)
            }
            #[target_feature(enable = "avx2")]
            unsafe fn avx2($($arg: $ty),*) {
                $body($($arg),*)
            }
            if fastmath::has_avx512() {
                // SAFETY: the processor supports these AVX-512 subsets (checked just above).
                return unsafe { avx512($($arg),*) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the processor supports AVX2 (checked just above).
                return unsafe { avx2($($arg),*) };
            }
        }
        $body($($arg),*)
    }};
}

/// The model q_θ: weights from the pinned softmax and its components (covariances fixed).
#[derive(Clone, Debug)]
pub struct ModelState {
    pub weights: Vec<f64>,
    pub log_weights: Vec<f64>,
    pub components: Vec<Gaussian>,
}

impl ModelState {
    pub fn new(problem: &Problem, theta: &[f64]) -> ModelState {
        let mut m = ModelState {
            weights: vec![0.0; problem.k],
            log_weights: vec![0.0; problem.k],
            components: problem
                .model_covs
                .iter()
                .map(|c| Gaussian::new(vec![0.0; problem.dim], c.clone()))
                .collect(),
        };
        m.set(problem, theta);
        m
    }

    /// The state at θ, in place (no allocation).
    pub fn set(&mut self, problem: &Problem, theta: &[f64]) {
        let (free, d) = (problem.k - 1, problem.dim);
        softmax_pinned_with_logs(&theta[..free], &mut self.weights, &mut self.log_weights);
        for (j, c) in self.components.iter_mut().enumerate() {
            c.set_mean(&theta[free + j * d..free + (j + 1) * d]);
        }
    }
}

/// Cumulative table of a categorical distribution over `index`: a uniform u picks
/// index[#{m < n−1 : u ≥ cumulative[m]}] (branch-free).
#[derive(Clone, Debug)]
struct Categorical {
    cumulative: Vec<f64>,
    index: Vec<u8>,
}

impl Categorical {
    fn new(index: &[usize], weights: impl Iterator<Item = f64>) -> Categorical {
        let mut c = Categorical {
            cumulative: vec![0.0; index.len()],
            index: index.iter().map(|&j| j as u8).collect(),
        };
        c.set(weights);
        c
    }

    /// New weights (normalised here), same index.
    fn set(&mut self, weights: impl Iterator<Item = f64>) {
        let mut acc = 0.0;
        for (c, w) in self.cumulative.iter_mut().zip(weights) {
            acc += w;
            *c = acc;
        }
        self.cumulative.iter_mut().for_each(|c| *c /= acc);
    }

    #[inline(always)]
    fn pick(&self, u: f64) -> u8 {
        let n = self.cumulative.len();
        let at: usize = self.cumulative[..n - 1]
            .iter()
            .map(|&c| (u >= c) as usize)
            .sum();
        self.index[at]
    }
}

/// A batch's points, labels and per-sample work arrays.
pub struct Workspace {
    pub len: usize,
    pub x: Vec<f64>,
    /// Component label of each sample: the model component of an on-policy draw, the
    /// target component of a data or replay draw.
    pub label: Vec<u8>,
    /// Whether sample i was drawn from the target (data or replay) rather than the model.
    from_target: Vec<bool>,
    uniforms: Vec<f64>,
    /// Whether batch has a sample of component j (the complement is starvation).
    pub seen: Vec<bool>,
    /// Replay fraction of the importance weights (λ, or round(λB)/B when stratified).
    pub replay_used: f64,
    /// K columns of B: log w_j φ_j(x_i) of the model, then r_j(x_i).
    model_part: Vec<f64>,
    /// K columns of B: log w*_j φ*_j(x_i) of the target (ReverseKL, KLRegularizedRL).
    target_part: Vec<f64>,
    /// K columns of B: log w_j φ_j(x_i) of the start model (KLRegularizedRL's reference).
    reference_part: Vec<f64>,
    /// KLRegularizedRL: the reward r_i, log q_ref(x_i), and the uniform weights 1/B.
    reward: Vec<f64>,
    log_reference: Vec<f64>,
    omega: Vec<f64>,
    /// The start model q_0 (KLRegularizedRL's 'start' reference).
    start_model: ModelState,
    log_q: Vec<f64>,
    log_target: Vec<f64>,
    log_old: Vec<f64>,
    /// The per-sample coefficient c_i (first the value v_i).
    coefficient: Vec<f64>,
    importance: Vec<f64>,
    column_max: Vec<f64>,
    column_sum: Vec<f64>,
    scratch: Vec<f64>,
    /// (mean, sd) per source of a one-dimensional draw: model components, then target ones.
    source_table: Vec<(f64, f64)>,
    /// Sampling tables: new-task data, replay over the old components, the model.
    new_data: Categorical,
    replay: Categorical,
    model: Categorical,
    /// (component, shift) of log Σ_j e^{part_j + shift_j} for p* and for p_old = Σ ρ_j φ*_j.
    all_columns: Vec<(usize, f64)>,
    old_columns: Vec<(usize, f64)>,
    /// (component, shift) of log p_new*(x) = log Σ_{j new} (w*_j / W_new) φ*_j(x).
    new_columns: Vec<(usize, f64)>,
}

impl Workspace {
    /// Work arrays for batches of `len` samples of `problem`; an error naming the size when
    /// they cannot be allocated.
    pub fn try_new(problem: &Problem, len: usize) -> KernelResult<Workspace> {
        let (k, d) = (problem.k, problem.dim);
        let what = "the batch buffers";
        let column = || try_zeroed::<f64>(&[len], what);
        let tw = &problem.target_log_weights;
        let all: Vec<usize> = (0..k).collect();
        Ok(Workspace {
            len,
            x: try_zeroed(&[len, d], what)?,
            label: try_zeroed(&[len], what)?,
            from_target: try_zeroed(&[len], what)?,
            uniforms: column()?,
            seen: vec![false; k],
            replay_used: 0.0,
            model_part: try_zeroed(&[k, len], what)?,
            target_part: try_zeroed(&[k, len], what)?,
            reference_part: try_zeroed(&[k, len], what)?,
            reward: column()?,
            log_reference: column()?,
            omega: vec![1.0 / len.max(1) as f64; len],
            start_model: ModelState::new(problem, &problem.start),
            log_q: column()?,
            log_target: column()?,
            log_old: column()?,
            coefficient: column()?,
            importance: column()?,
            column_max: column()?,
            column_sum: column()?,
            scratch: vec![0.0; d],
            source_table: vec![(0.0, 0.0); 2 * k],
            new_data: Categorical::new(
                &problem.new_components,
                problem.new_components.iter().map(|&j| tw[j].exp()),
            ),
            replay: Categorical::new(&problem.old_components, problem.replay_mix.iter().copied()),
            model: Categorical::new(&all, std::iter::repeat_n(1.0, k)),
            all_columns: all.iter().map(|&j| (j, 0.0)).collect(),
            old_columns: problem
                .old_components
                .iter()
                .zip(&problem.replay_mix)
                .filter(|(_, &rho)| rho > 0.0)
                .map(|(&j, &rho)| (j, rho.ln() - tw[j]))
                .collect(),
            new_columns: {
                let w_new: f64 = problem.new_components.iter().map(|&j| tw[j].exp()).sum();
                let shift = -w_new.ln();
                problem.new_components.iter().map(|&j| (j, shift)).collect()
            },
        })
    }
}

/// out_i = log Σ_{(c, shift)} exp(parts[c][i] + shift) over the listed columns of `parts`
/// (columns of n), shifted by the largest term.
#[inline(always)]
fn log_sum_exp_columns(
    parts: &[f64],
    n: usize,
    columns: &[(usize, f64)],
    max: &mut [f64],
    acc: &mut [f64],
    out: &mut [f64],
) {
    let (max, acc, out) = (&mut max[..n], &mut acc[..n], &mut out[..n]);
    max.fill(f64::NEG_INFINITY);
    for &(c, shift) in columns {
        for (m, p) in max.iter_mut().zip(&parts[c * n..(c + 1) * n]) {
            *m = m.max(p + shift);
        }
    }
    acc.fill(0.0);
    for &(c, shift) in columns {
        for ((a, p), m) in acc.iter_mut().zip(&parts[c * n..(c + 1) * n]).zip(&*max) {
            *a += fastmath::exp(p + shift - m);
        }
    }
    for ((o, m), a) in out.iter_mut().zip(&*max).zip(&*acc) {
        *o = m + ln_positive(*a);
    }
}

/// The model's log density and responsibilities from its K columns of log parts (of n):
/// out_i = log Σ_j e^{part_j(i)}, and each part overwritten by its share r_j(i) =
/// e^{part_j(i) − max_i} / Σ_k e^{part_k(i) − max_i} (one exponential per part).
#[inline(always)]
fn responsibilities_and_log_sum(
    parts: &mut [f64],
    n: usize,
    max: &mut [f64],
    acc: &mut [f64],
    out: &mut [f64],
) {
    let (max, acc, out) = (&mut max[..n], &mut acc[..n], &mut out[..n]);
    max.fill(f64::NEG_INFINITY);
    for col in parts.chunks_exact(n) {
        for (m, p) in max.iter_mut().zip(col) {
            *m = m.max(*p);
        }
    }
    acc.fill(0.0);
    for col in parts.chunks_exact_mut(n) {
        for ((a, p), m) in acc.iter_mut().zip(col.iter_mut()).zip(&*max) {
            *p = fastmath::exp(*p - m);
            *a += *p;
        }
    }
    for ((o, m), a) in out.iter_mut().zip(&*max).zip(acc.iter_mut()) {
        *o = m + ln_positive(*a);
        *a = 1.0 / *a;
    }
    for col in parts.chunks_exact_mut(n) {
        for (p, inv) in col.iter_mut().zip(&*acc) {
            *p *= inv;
        }
    }
}

/// log w_j φ_j(x_i) for every component into K columns of n.
#[inline(always)]
fn component_parts(
    components: &[Gaussian],
    log_weight: impl Fn(usize) -> f64,
    x: &[f64],
    n: usize,
    parts: &mut [f64],
    scratch: &mut [f64],
) {
    for (j, (g, col)) in components.iter().zip(parts.chunks_exact_mut(n)).enumerate() {
        g.logpdf_rows(x, log_weight(j), col, scratch);
    }
}

/// Draw a batch from the objective's sampling distribution: replay slots first (Bernoulli
/// with probability λ, or the first round(λB) slots), then a label from one uniform per
/// sample (replay: ρ over the old components; otherwise ForwardKL's new-task data w*_j/Σ_new
/// w*, or ReverseKL's model weights), then the point x = μ + L z from B·d normals. The
/// stream's fills, in order: B uniforms for Bernoulli slots (only when λ > 0), B uniforms for
/// the labels, B·d normals. Marks in `ws.seen` the components with a sample.
pub fn draw(problem: &Problem, model: &ModelState, rng: &mut LaneStream, ws: &mut Workspace) {
    dispatch!(draw_body(problem: &Problem, model: &ModelState, rng: &mut LaneStream, ws: &mut Workspace))
}

#[inline(always)]
fn draw_body(problem: &Problem, model: &ModelState, rng: &mut LaneStream, ws: &mut Workspace) {
    let (b, d, k) = (ws.len, problem.dim, problem.k);
    let (replay, slots) = problem.objective.replay();
    let n_strat = match slots {
        Slots::Stratified => stratified_replay_count(replay, b).min(b),
        Slots::Bernoulli => 0,
    };
    ws.replay_used = match slots {
        Slots::Stratified => n_strat as f64 / b as f64,
        Slots::Bernoulli => replay,
    };
    let is_replay = &mut ws.from_target[..b];
    if slots == Slots::Bernoulli && replay > 0.0 {
        rng.fill_uniform(&mut ws.uniforms[..b]);
        for (r, u) in is_replay.iter_mut().zip(&ws.uniforms[..b]) {
            *r = *u < replay;
        }
    } else {
        for (i, r) in is_replay.iter_mut().enumerate() {
            *r = i < n_strat;
        }
    }
    let on_policy = problem.objective.on_policy();
    ws.model.set(model.weights.iter().copied());
    let source = if on_policy { &ws.model } else { &ws.new_data };
    rng.fill_uniform(&mut ws.uniforms[..b]);
    for ((label, from_target), u) in ws.label[..b]
        .iter_mut()
        .zip(ws.from_target[..b].iter_mut())
        .zip(&ws.uniforms[..b])
    {
        if *from_target {
            *label = ws.replay.pick(*u);
        } else {
            *label = source.pick(*u);
            *from_target = !on_policy;
        }
    }
    ws.seen.fill(false);
    for &label in &ws.label[..b] {
        ws.seen[label as usize] = true;
    }
    rng.fill_normal(&mut ws.x[..b * d]);
    let gaussian = |label: u8, from_target: bool| {
        if from_target {
            &problem.target[label as usize]
        } else {
            &model.components[label as usize]
        }
    };
    let all_scalar = problem
        .target
        .iter()
        .chain(&model.components)
        .all(|g| matches!(g.cov, Cov::Scalar { .. }));
    if d == 1 && all_scalar {
        // (mean, sd) per source, model components first: a gather, no covariance dispatch
        let table = &mut ws.source_table;
        for (s, g) in model.components.iter().chain(&problem.target).enumerate() {
            if let Cov::Scalar { sd } = g.cov {
                table[s] = (g.mean[0], sd);
            }
        }
        for ((x, &label), &from_target) in ws.x[..b]
            .iter_mut()
            .zip(&ws.label[..b])
            .zip(&ws.from_target[..b])
        {
            let (mu, sd) = table[label as usize + k * from_target as usize];
            *x = mu + sd * *x;
        }
    } else {
        for ((row, &label), &from_target) in ws.x[..b * d]
            .chunks_exact_mut(d)
            .zip(&ws.label[..b])
            .zip(&ws.from_target[..b])
        {
            let g = gaussian(label, from_target);
            g.cov.color(row);
            row.iter_mut().zip(&g.mean).for_each(|(v, mu)| *v += mu);
        }
    }
}

/// The objective's coefficients c_i into `ws.coefficient`, from the model parts (already
/// holding log w_j φ_j) and `ws.log_q`.
/// log p*(x_i) of the batch's b points into `ws.log_target` (the target's per-component parts
/// in `ws.target_part`), shared by ReverseKL's and KLRegularizedRL's batch values.
fn log_target_density(problem: &Problem, ws: &mut Workspace, b: usize) {
    let tw = &problem.target_log_weights;
    component_parts(
        &problem.target,
        |j| tw[j],
        &ws.x,
        b,
        &mut ws.target_part,
        &mut ws.scratch,
    );
    log_sum_exp_columns(
        &ws.target_part,
        b,
        &ws.all_columns,
        &mut ws.column_max,
        &mut ws.column_sum,
        &mut ws.log_target,
    );
}

#[inline(always)]
fn coefficients(problem: &Problem, ws: &mut Workspace) {
    let b = ws.len;
    let objective = match problem.objective {
        MixtureObjective::ForwardKL(_) => {
            // ĝ = −(1/B) Σ s(x_i)
            ws.coefficient[..b].fill(-1.0);
            return;
        }
        MixtureObjective::ReverseKL(o) => o,
        MixtureObjective::KLRegularizedRL(o) => {
            kl_rl_values(problem, &o, ws);
            kl_rl_coefficients(&o, ws);
            return;
        }
    };
    log_target_density(problem, ws, b);
    let replay = ws.replay_used;
    if replay > 0.0 {
        log_sum_exp_columns(
            &ws.target_part,
            b,
            &ws.old_columns,
            &mut ws.column_max,
            &mut ws.column_sum,
            &mut ws.log_old,
        );
        let cap = objective.cap();
        for (((v, a), lq), (lt, lo)) in ws.coefficient[..b]
            .iter_mut()
            .zip(&mut ws.importance[..b])
            .zip(&ws.log_q[..b])
            .zip(ws.log_target[..b].iter().zip(&ws.log_old[..b]))
        {
            let w = replay_weight(*lq, *lo, replay, cap);
            *v = w * (lq - lt);
            *a = w;
        }
    } else {
        // no replay: unit weights (as the two-mode engine: the cap bounds replay weights)
        for (((v, a), lq), lt) in ws.coefficient[..b]
            .iter_mut()
            .zip(&mut ws.importance[..b])
            .zip(&ws.log_q[..b])
            .zip(&ws.log_target[..b])
        {
            *v = lq - lt;
            *a = 1.0;
        }
    }
    if objective.baseline == Baseline::Loo {
        let omega = 1.0 / b as f64;
        let [sum_v] = lane_sums([&ws.coefficient[..b]], |[v]| [v]);
        let baseline = LooMean::new(sum_v * omega, 1.0, omega, false);
        for (v, a) in ws.coefficient[..b].iter_mut().zip(&ws.importance[..b]) {
            *v -= a * baseline.at(*v);
        }
    }
}

/// ĝ at `model` for the batch in `ws` (drawn by [`draw`]) into `grad` (the flat order
/// [η_0 … η_{K−2}, μ_0 … μ_{K−1}]).
pub fn gradient(problem: &Problem, model: &ModelState, ws: &mut Workspace, grad: &mut [f64]) {
    dispatch!(gradient_body(problem: &Problem, model: &ModelState, ws: &mut Workspace, grad: &mut [f64]))
}

#[inline(always)]
fn gradient_body(problem: &Problem, model: &ModelState, ws: &mut Workspace, grad: &mut [f64]) {
    let (b, d, k) = (ws.len, problem.dim, problem.k);
    let (w, log_w) = (&model.weights, &model.log_weights);
    component_parts(
        &model.components,
        |j| log_w[j],
        &ws.x,
        b,
        &mut ws.model_part,
        &mut ws.scratch,
    );
    responsibilities_and_log_sum(
        &mut ws.model_part,
        b,
        &mut ws.column_max,
        &mut ws.column_sum,
        &mut ws.log_q,
    );
    coefficients(problem, ws);
    let omega = 1.0 / b as f64;
    let [total] = lane_sums([&ws.coefficient[..b]], |[c]| [c]);
    let total = total * omega;
    let free = k - 1;
    for (j, col) in ws.model_part.chunks_exact(b).enumerate() {
        let mean = &model.components[j].mean;
        let out = &mut grad[free + j * d..free + (j + 1) * d];
        let along;
        if d == 1 {
            let mu = mean[0];
            let [a, m] = lane_sums([&ws.coefficient[..b], col, &ws.x[..b]], |[c, r, x]| {
                let cr = c * r;
                [cr, cr * (x - mu)]
            });
            along = a;
            out[0] = m * omega;
        } else {
            out.fill(0.0);
            let mut a = 0.0;
            for ((c, r), row) in ws.coefficient[..b]
                .iter()
                .zip(col)
                .zip(ws.x[..b * d].chunks_exact(d))
            {
                let cr = c * r;
                a += cr;
                for ((o, xi), mi) in out.iter_mut().zip(row).zip(mean) {
                    *o += cr * (xi - mi);
                }
            }
            along = a;
            out.iter_mut().for_each(|o| *o *= omega);
        }
        model.components[j].cov.precision_apply(out);
        if j < free {
            grad[j] = along * omega - w[j] * total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categorical_picks_by_cumulative_weight() {
        let c = Categorical::new(&[1, 3, 4], [0.2, 0.0, 0.8].into_iter());
        assert_eq!(c.pick(0.0), 1);
        assert_eq!(c.pick(0.199), 1);
        assert_eq!(c.pick(0.2), 4); // zero-weight component 3 is never picked
        assert_eq!(c.pick(0.999_999), 4);
    }

    /// ForwardKL's ĝ = −(1/B) Σ ∇ log q(x_i): against central differences of the batch's
    /// mean log-likelihood in the flat order (the score algebra, K = 3, d = 2).
    #[test]
    fn forward_kl_gradient_is_minus_the_score_of_the_log_likelihood() {
        use crate::mixture_engine::problem::{ProblemSpec, Update};
        use crate::objectives::ForwardKL;
        let covs = || {
            vec![
                Cov::scalar(1.5).unwrap(),
                Cov::diag(&[0.5, 2.0]).unwrap(),
                Cov::full(&[1.0, 0.3, 0.3, 0.8], 2).unwrap(),
            ]
        };
        let p = Problem::new(ProblemSpec {
            dim: 2,
            target_weights: &[0.3, 0.3, 0.4],
            target_means: &[-3.0, 0.0, 0.0, 1.0, 3.0, -1.0],
            target_covs: covs(),
            model_covs: covs(),
            start_weights: &[0.2, 0.5, 0.3],
            start_means: &[-2.0, 0.5, 0.5, 0.5, 2.0, -0.5],
            objective: MixtureObjective::ForwardKL(ForwardKL {
                replay: 0.4,
                replay_slots: Slots::Bernoulli,
            }),
            new_components: &[2],
            replay_mix: &[0.5, 0.5],
            label_rewards: &[],
            lr: 0.1,
            lr_weight: 1.0,
            lr_means: 1.0,
            update: Update::Sgd,
        })
        .unwrap();
        let model = ModelState::new(&p, &p.start);
        let mut ws = Workspace::try_new(&p, 40).unwrap();
        let mut rng = LaneStream::new([2, 3], 0);
        draw(&p, &model, &mut rng, &mut ws);
        let mut grad = vec![0.0; p.width()];
        gradient(&p, &model, &mut ws, &mut grad);
        let mean_log_q = |theta: &[f64]| {
            let m = ModelState::new(&p, theta);
            let mix = crate::model::mixture::Mixture::new(&m.weights, m.components.clone());
            let mut scratch = [0.0; 2];
            ws.x.chunks(2)
                .map(|x| mix.logpdf(x, &mut scratch))
                .sum::<f64>()
                / 40.0
        };
        for (i, g) in grad.iter().enumerate() {
            let h = 1e-5;
            let (mut up, mut down) = (p.start.clone(), p.start.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = -(mean_log_q(&up) - mean_log_q(&down)) / (2.0 * h);
            assert!((g - numeric).abs() < 1e-7, "entry {i}: {g} vs {numeric}");
        }
    }

    #[test]
    fn log_sum_exp_of_columns() {
        let n = 3;
        let parts = [0.0, -1000.0, 5.0, 1.0, -1000.5, -3.0];
        let (mut m, mut a, mut out) = ([0.0; 3], [0.0; 3], [0.0; 3]);
        log_sum_exp_columns(&parts, n, &[(0, 0.0), (1, 0.0)], &mut m, &mut a, &mut out);
        for i in 0..n {
            let exact = (parts[i] - out[i]).exp() + (parts[n + i] - out[i]).exp();
            assert!((exact - 1.0).abs() < 1e-14, "{i}: {out:?}");
        }
        log_sum_exp_columns(&parts, n, &[(1, 2.0)], &mut m, &mut a, &mut out);
        assert!((out[1] - (-998.5)).abs() < 1e-12);
    }
}
