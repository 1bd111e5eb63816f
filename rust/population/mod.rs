//! Population (infinite-batch) flow (docs: theory-population): the same update as the
//! finite-batch engine with exact expectations. With equal covariances every integrand depends
//! on a point only through its projection on the affine span of the means involved (in
//! whitened coordinates), so the expectations are k-dimensional quadratures (k ≤ 3) over each
//! component of the sampling distribution (or of the integrand's mass, importance-weighted:
//! `quadrature_batch`); orthogonal directions contribute nothing to the gradient.
//!
//! The quadrature is the tensor trapezoidal rule with Gaussian weights, one uniform spacing
//! per axis, which converges exponentially for these analytic integrands and, unlike
//! Gauss–Hermite, resolves the steep logistic responsibilities of well-separated modes. The
//! steepness comes only from the log-sum-exp / logistic share of one two-component mixture
//! (`steep_pairs`): its poles lie π/(Δ|u_j|) off the real axis along axis j, so each axis gets
//! h_j ≤ 0.75/max(Δ|u_j|) (error ~ exp(−2π²/(h_j Δ |u_j|)) < 1e-11), and the span is rotated
//! so that the steep directions fall on few axes; the smooth axes need only h ≤ 0.5/√(1+κ),
//! κ the curvature an objective's exponential factor adds (`axis_spacings`). Untilted
//! integrands drop the box's corners outside a ball of radius 9.5. Unequal covariances and
//! trained scales keep one spacing min(0.75/Δ_max, 0.1) over all pairs of components.
//!
//! Why one file over 800 lines: the span reduction, the quadrature rule and the exact gradient
//! share private helpers and invariants (node placement must match the reduction); about a
//! quarter is tests. Splitting it (reduction / quadrature / flow) is planned with the
//! K-component work that rewrites these parts.

use crate::engine::batch::Batch;
use crate::engine::problem::Problem;
use crate::engine::score::evaluate;
use crate::engine::state::{Averager, ExtraModels, Grad, MixtureBuilder, Models, Replicate};
use crate::engine::training::{records_in, Records, Run};
use crate::error::{KernelError, KernelResult};
use crate::model::mixture::{log_add_exp, Cov, Gaussian};
use crate::model::params::Params;
use crate::model::two_mode::Mix2;
use crate::objectives::sampling_components;
use crate::objectives::{with_objective, Objective, Source};

/// A direction of the means' span is dropped only when its residual is at the rounding level
/// of the whitened means (this times the largest whitened mean norm): what a dropped
/// direction loses is a gradient of the size of its residual in units of the component scale
/// (1, whitened), so it must be no larger than the means' own rounding. A larger tolerance
/// (1e-9) lost the gradient along a nearly degenerate direction and stalled the d = 2 flow
/// ~1e-9 from the target; keeping noise would spend quadrature dimensions on it.
const SPAN_RESIDUAL_TOL: f64 = 256.0 * f64::EPSILON;
/// Half-width of the quadrature grid in standard deviations.
const HALF_WIDTH: f64 = 9.5;
/// Largest number of grid points per sampling component (docs: theory-population: ~10^6).
const MAX_NODES: f64 = 1.2e6;
/// Spacing cap of the general rule (unequal covariances, trained scales), and of every axis
/// when the integrand's exponential factors have no curvature bound known in advance.
const FINE_CAP: f64 = 0.1;

/// The spacing constants of the quadrature on a whitened span (see `axis_spacings`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rule {
    /// h_j ≤ pole / s_j with s_j the steepest mixture's slope along axis j.
    pub pole: f64,
    /// h_j ≤ smooth / √(1 + κ) with κ the curvature the objective's exponentials add.
    pub smooth: f64,
    /// Nodes outside the ball of this radius (standard units) are left out.
    pub radius: f64,
    /// Largest number of nodes per component before every spacing is scaled up.
    pub max_nodes: f64,
}

impl Rule {
    pub(crate) const DEFAULT: Rule = Rule {
        pole: 0.75,
        smooth: 0.5,
        radius: HALF_WIDTH,
        max_nodes: MAX_NODES,
    };
}
pub const MAX_SPAN: usize = 3;

/// The whitened span in which an exact evaluation runs, and how to map gradients back.
struct Reduction {
    /// Orthonormal basis vectors (whitened coordinates), k of them; empty means "no reduction".
    basis: Vec<Vec<f64>>,
    whitening: Cov,
}

impl Reduction {
    fn lift(&self, reduced: &[f64], out: &mut [f64]) {
        if self.basis.is_empty() {
            out.copy_from_slice(reduced);
            return;
        }
        out.iter_mut().for_each(|v| *v = 0.0);
        for (g, b) in reduced.iter().zip(&self.basis) {
            out.iter_mut().zip(b).for_each(|(o, bv)| *o += g * bv);
        }
        // ∂/∂μ = L⁻ᵀ ∂/∂ν for ν = L⁻¹ μ.
        self.whitening.unwhiten_gradient(out);
    }
}

/// The means the span must hold: the model's, the target's and those of the objective's
/// extra models.
fn relevant_means<X: ExtraModels>(m: &Models<X>) -> Vec<Vec<f64>> {
    let mut means = vec![
        m.model.old.mean.clone(),
        m.model.new.mean.clone(),
        m.target.old.mean.clone(),
        m.target.new.mean.clone(),
    ];
    for mix in m.extra.mixtures() {
        means.extend([mix.old.mean.clone(), mix.new.mean.clone()]);
    }
    means
}

/// Reduced models (k-dimensional, identity covariance) and the map back.
fn reduce<O: Objective>(
    objective: &O,
    problem: &Problem,
    m: &Models<O::ExtraModels>,
    rule: &Rule,
) -> KernelResult<(Models<O::ExtraModels>, Reduction, usize)> {
    let d = problem.dim;
    let cov = &m.target.old.cov;
    let equal = [&m.target.new.cov, &m.model.old.cov, &m.model.new.cov]
        .iter()
        .all(|c| *c == cov);
    if !equal {
        if d == 1 {
            return Ok((
                m.clone(),
                Reduction {
                    basis: vec![],
                    whitening: Cov::Scalar { sd: 1.0 },
                },
                0,
            ));
        }
        return Err(KernelError::NotImplemented(
            "exact population expectations with unequal covariances are available for d = 1 only"
                .into(),
        ));
    }
    let whitened: Vec<Vec<f64>> = relevant_means(m)
        .into_iter()
        .map(|mut v| {
            cov.whiten(&mut v);
            v
        })
        .collect();
    let anchor = whitened[0].clone();
    let scale = whitened
        .iter()
        .map(|v| v.iter().map(|x| x * x).sum::<f64>().sqrt())
        .fold(1.0, f64::max);
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for v in &whitened {
        let mut w: Vec<f64> = v.iter().zip(&anchor).map(|(a, b)| a - b).collect();
        for _ in 0..2 {
            for b in &basis {
                let dot: f64 = w.iter().zip(b).map(|(p, q)| p * q).sum();
                w.iter_mut().zip(b).for_each(|(p, q)| *p -= dot * q);
            }
        }
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > SPAN_RESIDUAL_TOL * scale {
            w.iter_mut().for_each(|x| *x /= norm);
            basis.push(w);
        }
    }
    if basis.is_empty() {
        let mut e = vec![0.0; d];
        e[0] = 1.0;
        basis.push(e);
    }
    let k = basis.len();
    if k > MAX_SPAN {
        return Err(KernelError::NotImplemented(format!("the means span {k} dimensions; exact population expectations support at most {MAX_SPAN}")));
    }
    let reduced = reduced_models(m, &basis, &anchor, cov);
    // Rotate the span so that the steep directions fall on as few axes as possible: candidate
    // frames by Gram–Schmidt over ordered choices of the steep pairs' directions (completed
    // with the current axes), the one with the fewest quadrature nodes wins.
    let directions: Vec<Vec<f64>> = steep_directions(objective, &reduced)
        .into_iter()
        .map(|(_, u)| u)
        .collect();
    let mut best = (
        node_count(objective, &reduced, rule),
        reduced,
        basis.clone(),
    );
    for order in ordered_choices(directions.len(), k.saturating_sub(1)) {
        let frame = gram_schmidt(order.iter().map(|&i| directions[i].as_slice()), k);
        let rotated: Vec<Vec<f64>> = frame
            .iter()
            .map(|row| {
                (0..d)
                    .map(|c| row.iter().zip(&basis).map(|(f, b)| f * b[c]).sum())
                    .collect()
            })
            .collect();
        let candidate = reduced_models(m, &rotated, &anchor, cov);
        let count = node_count(objective, &candidate, rule);
        if count < best.0 {
            best = (count, candidate, rotated);
        }
    }
    let (_, reduced, basis) = best;
    Ok((
        reduced,
        Reduction {
            basis,
            whitening: cov.clone(),
        },
        d - k,
    ))
}

/// The models' means in span coordinates y = Bᵀ L⁻¹ (μ − anchor) (B: the basis rows), unit
/// covariances.
fn reduced_models<X: ExtraModels>(
    m: &Models<X>,
    basis: &[Vec<f64>],
    anchor: &[f64],
    cov: &Cov,
) -> Models<X> {
    let project = |mean: &[f64]| -> Vec<f64> {
        let mut v = mean.to_vec();
        cov.whiten(&mut v);
        basis
            .iter()
            .map(|b| {
                b.iter()
                    .zip(v.iter().zip(anchor))
                    .map(|(bi, (vi, ai))| bi * (vi - ai))
                    .sum()
            })
            .collect()
    };
    let unit = Cov::Scalar { sd: 1.0 };
    let mix = |x: &Mix2| {
        Mix2::new(
            x.alpha,
            Gaussian::new(project(&x.old.mean), unit.clone()),
            Gaussian::new(project(&x.new.mean), unit.clone()),
        )
    };
    Models {
        model: mix(&m.model),
        target: mix(&m.target),
        extra: m.extra.map(mix),
    }
}

/// Every sequence of up to `len` distinct indices below `n` (the empty one excluded).
fn ordered_choices(n: usize, len: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut frontier: Vec<Vec<usize>> = vec![vec![]];
    for _ in 0..len {
        let mut next = Vec::new();
        for seq in &frontier {
            for i in (0..n).filter(|i| !seq.contains(i)) {
                let mut s = seq.clone();
                s.push(i);
                next.push(s);
            }
        }
        out.extend(next.iter().cloned());
        frontier = next;
    }
    out
}

/// An orthonormal frame of R^k whose first axes span the given vectors in turn (those
/// dependent on earlier ones skipped), completed with the coordinate axes.
fn gram_schmidt<'a>(vectors: impl Iterator<Item = &'a [f64]>, k: usize) -> Vec<Vec<f64>> {
    let axes = (0..k).map(|j| (0..k).map(|c| if c == j { 1.0 } else { 0.0 }).collect());
    let mut frame: Vec<Vec<f64>> = Vec::with_capacity(k);
    for v in vectors.map(|v| v.to_vec()).chain(axes) {
        if frame.len() == k {
            break;
        }
        let mut w: Vec<f64> = v;
        for _ in 0..2 {
            for b in &frame {
                let dot: f64 = w.iter().zip(b).map(|(p, q)| p * q).sum();
                w.iter_mut().zip(b).for_each(|(p, q)| *p -= dot * q);
            }
        }
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-6 {
            w.iter_mut().for_each(|x| *x /= norm);
            frame.push(w);
        }
    }
    frame
}

/// The largest Mahalanobis separation of any two components of the model, the target, the
/// start model q_θ0 and the objective's extra models.
fn largest_separation<X: ExtraModels>(m: &Models<X>, start: &Mix2) -> f64 {
    let mixtures = [&m.model, &m.target, start];
    let comps: Vec<&Gaussian> = mixtures
        .into_iter()
        .chain(m.extra.mixtures())
        .flat_map(|mix| [&mix.old, &mix.new])
        .collect();
    let mut best: f64 = 1.0;
    for &a in &comps {
        for &b in &comps {
            let mut scratch = vec![0.0; a.dim()];
            let q = a
                .cov
                .mahalanobis_sq(|i| a.mean[i] - b.mean[i], a.dim(), &mut scratch);
            let q2 = b
                .cov
                .mahalanobis_sq(|i| a.mean[i] - b.mean[i], a.dim(), &mut scratch);
            best = best.max(q.max(q2).sqrt());
        }
    }
    best
}

/// Boundary points (in the reduced coordinate) of an indicator reward, 1-D problems only.
fn indicator_jumps<O: Objective>(objective: &O, m: &Models<O::ExtraModels>) -> Option<(f64, f64)> {
    if m.target.new.dim() != 1 {
        return None;
    }
    if let Some(jumps) = objective.value_jumps_1d() {
        return Some(jumps);
    }
    let radius = objective.indicator_radius()?;
    let mut unit = [1.0];
    m.target.new.cov.color(&mut unit); // σ of the target's new component
    let c = m.target.new.mean[0];
    Some((c - radius * unit[0], c + radius * unit[0]))
}

/// 1-D nodes (standard units) and normalised Gaussian weights for one component: a uniform
/// grid of spacing ≤ h on [−W, W]. With jump points, the spacing divides their distance and
/// the grid passes through both; each boundary node is split into two half-weight nodes just
/// inside and just outside (±1e-10), so that any function of the reward — R itself, e^{βR},
/// e^{R/β1} — takes the trapezoidal rule's average of its one-sided limits there, which keeps
/// the rule second order across the jump (error ~ h², h ≤ 2.5e-4: ~1e-8).
fn nodes_1d(h: f64, half_width: f64, jumps: Option<(f64, f64)>) -> (Vec<f64>, Vec<f64>) {
    const SPLIT: f64 = 1e-10;
    let (grid, boundary): (Vec<f64>, Vec<bool>) = match jumps {
        None => {
            let per_dim = 2 * (half_width / h).ceil() as usize + 1;
            let step = 2.0 * half_width / (per_dim - 1) as f64;
            (
                (0..per_dim)
                    .map(|j| -half_width + j as f64 * step)
                    .collect(),
                vec![false; per_dim],
            )
        }
        Some((lo, hi)) => {
            let h = h.min(2.5e-4);
            let intervals = if hi > lo {
                ((hi - lo) / h).ceil().max(1.0) as i64
            } else {
                1
            };
            let step = if hi > lo {
                (hi - lo) / intervals as f64
            } else {
                h
            };
            let first = ((-half_width - lo) / step).ceil() as i64;
            let last = ((half_width - lo) / step).floor() as i64;
            (first..=last)
                .map(|j| (lo + j as f64 * step, j == 0 || j == intervals))
                .unzip()
        }
    };
    let mut nodes = Vec::with_capacity(grid.len() + 2);
    let mut weights = Vec::with_capacity(grid.len() + 2);
    for (t, on_jump) in grid.into_iter().zip(boundary) {
        let w = (-0.5 * t * t).exp();
        if on_jump {
            nodes.extend([t - SPLIT, t + SPLIT]);
            weights.extend([0.5 * w, 0.5 * w]);
        } else {
            nodes.push(t);
            weights.push(w);
        }
    }
    let total: f64 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= total);
    (nodes, weights)
}

/// The pairs of components whose log-sum-exp or logistic share the integrand contains: the
/// model's two components (log q_θ, responsibilities, score), the target's (log p*, rewards),
/// the second density's, the replay importance weight's q_θ/((1−λ) q_θ + λ p_old*) (each
/// source component against p_old*), and, when the nodes are reweighted, every pair of node
/// and sampling components. Pairs of components of different mixtures never meet in one
/// logistic, so they set no spacing.
fn steep_pairs<'a, O: Objective>(
    objective: &O,
    m: &'a Models<O::ExtraModels>,
) -> Vec<(&'a Gaussian, &'a Gaussian)> {
    let mut pairs = vec![(&m.model.old, &m.model.new), (&m.target.old, &m.target.new)];
    if let Some(second) = objective.compared_density(m) {
        pairs.push((&second.old, &second.new));
    }
    if objective.replay().0 > 0.0 {
        match objective.source(m) {
            Source::Mixture(mix) => {
                pairs.push((&mix.old, &m.target.old));
                pairs.push((&mix.new, &m.target.old));
            }
            Source::Single(g) => pairs.push((g, &m.target.old)),
        }
    }
    let sampling = sampling_components(objective, m);
    let comps = objective.quadrature_components(m);
    let same = sampling.len() == comps.len()
        && sampling
            .iter()
            .zip(&comps)
            .all(|(a, b)| a.0 == b.0 && std::ptr::eq(a.1, b.1));
    if !same {
        let all: Vec<&Gaussian> = sampling.iter().chain(&comps).map(|c| c.1).collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                pairs.push((a, b));
            }
        }
    }
    pairs
}

/// Separation Δ and unit direction of every steep pair (identity-covariance coordinates).
fn steep_directions<O: Objective>(
    objective: &O,
    m: &Models<O::ExtraModels>,
) -> Vec<(f64, Vec<f64>)> {
    steep_pairs(objective, m)
        .into_iter()
        .filter_map(|(a, b)| {
            let diff: Vec<f64> = b.mean.iter().zip(&a.mean).map(|(p, q)| p - q).collect();
            let sep = diff.iter().map(|v| v * v).sum::<f64>().sqrt();
            (sep > 0.0).then(|| (sep, diff.iter().map(|v| v / sep).collect()))
        })
        .collect()
}

/// Node spacing per axis of the span (identity covariance). The share e^a/(e^a + e^b) of a
/// pair at separation Δ along unit u is analytic up to its poles, which lie at distance
/// π/(Δ|u_j|) from the real axis along axis j, so the trapezoidal error from that pair along
/// axis j is ~ exp(−2π²/(h_j Δ |u_j|)): h_j ≤ pole/max_pairs(Δ|u_j|) (pole = 0.75: < 4e-12).
/// Along axes without a steep pair the integrand is a Gaussian times a slowly varying factor,
/// whose trapezoidal error ~ exp(−2π²/((1+κ) h²)) sets the cap smooth/√(1+κ), κ the
/// curvature of the objective's exponential factors (`Objective::quadrature_curvature`; the
/// old fine cap where it is unknown). Beyond `max_nodes` nodes every spacing grows alike.
fn axis_spacings<O: Objective>(objective: &O, m: &Models<O::ExtraModels>, rule: &Rule) -> Vec<f64> {
    let k = m.model.old.dim();
    let cap = match objective.quadrature_curvature() {
        Some(kappa) => rule.smooth / (1.0 + kappa).sqrt(),
        None => FINE_CAP * rule.smooth / Rule::DEFAULT.smooth,
    };
    let directions = steep_directions(objective, m);
    let mut h: Vec<f64> = (0..k)
        .map(|j| {
            let slope = directions
                .iter()
                .map(|(sep, u)| sep * u[j].abs())
                .fold(0.0, f64::max);
            if slope > 0.0 {
                (rule.pole / slope).min(cap)
            } else {
                cap
            }
        })
        .collect();
    let count = |h: &[f64]| -> f64 {
        h.iter()
            .map(|hj| 2.0 * (rule.radius / hj).ceil() + 1.0)
            .product()
    };
    while count(&h) > rule.max_nodes {
        let grow = (count(&h) / rule.max_nodes)
            .powf(1.0 / k as f64)
            .max(1.0 + 1e-3);
        h.iter_mut().for_each(|v| *v *= grow);
    }
    h
}

/// Predicted node count per component of the spacings `axis_spacings` gives.
fn node_count<O: Objective>(objective: &O, m: &Models<O::ExtraModels>, rule: &Rule) -> f64 {
    axis_spacings(objective, m, rule)
        .iter()
        .map(|hj| 2.0 * (rule.radius / hj).ceil() + 1.0)
        .product()
}

/// Nodes whose sampling density is below e^LOG_RATIO_FLOOR times the node mixture's are left
/// out of an importance-weighted quadrature: their weight would underflow while an
/// objective's own importance ratio (the reciprocal) overflows, 0·∞. Their share of an
/// expectation under the sampling distribution is below e^-600.
const LOG_RATIO_FLOOR: f64 = -600.0;

/// The quadrature "batch": every grid node of every component the objective's integrand lives
/// on (`Objective::quadrature_components`; by default the sampling components), with weights
/// ω of the expectation under the sampling distribution p_s. When the node components are not
/// the sampling components, node x of component j (mixing weight π_j, normalised trapezoid
/// weight w) gets ω = π_j w p_s(x)/m(x) with m = Σ_j π_j φ_j the node mixture: Σ_j π_j ∫ φ_j
/// f p_s/m = ∫ p_s f.
///
/// `rule`: on a whitened span (identity covariances) the per-axis spacings of
/// `axis_spacings` and the nodes inside a ball; None: the general rule (unequal covariances,
/// trained scales), one spacing min(0.75/Δ_max, 0.1) on every axis of a box, Δ_max the
/// largest Mahalanobis separation of any two components.
#[inline(always)]
fn quadrature_batch<O: Objective>(
    objective: &O,
    m: &Models<O::ExtraModels>,
    start: &Mix2,
    batch: &mut Batch,
    rule: Option<&Rule>,
) {
    fn positive(v: Vec<(f64, &Gaussian)>) -> Vec<(f64, &Gaussian)> {
        v.into_iter().filter(|c| c.0 > 0.0).collect()
    }
    let sampling = positive(sampling_components(objective, m));
    let comps = positive(objective.quadrature_components(m));
    let same = |a: &(f64, &Gaussian), b: &(f64, &Gaussian)| a.0 == b.0 && std::ptr::eq(a.1, b.1);
    let reweight =
        sampling.len() != comps.len() || !sampling.iter().zip(&comps).all(|(a, b)| same(a, b));
    let k = m.model.old.dim();
    let (spacing, half_width, radius) = match rule {
        // An exponential tilt (κ > 0) moves the integrand's mass toward the box's corners
        // (measured: the ball loses up to 1e-3 of a TTT-Discover gradient whose reward peak
        // lies far off the model), so only untilted integrands drop the corners.
        Some(rule) => {
            let ball = objective.quadrature_curvature() == Some(0.0);
            let radius = if ball { rule.radius } else { f64::INFINITY };
            (axis_spacings(objective, m, rule), rule.radius, radius)
        }
        None => {
            let mut h = (0.75 / largest_separation(m, start)).min(FINE_CAP);
            let per_dim_budget = MAX_NODES.powf(1.0 / k as f64).floor();
            if (2.0 * HALF_WIDTH / h + 1.0) > per_dim_budget {
                h = 2.0 * HALF_WIDTH / (per_dim_budget - 1.0);
            }
            (vec![h; k], HALF_WIDTH, f64::INFINITY)
        }
    };
    // a ball's boundary nodes stay in despite rounding
    let radius_sq = radius * radius * (1.0 + 1e-12);
    let jumps = indicator_jumps(objective, m);
    // Per component and axis: its 1-D nodes (in the component's own standard units) and
    // weights.
    let grids: Vec<Vec<(Vec<f64>, Vec<f64>)>> = comps
        .iter()
        .map(|(_, g)| {
            let local = jumps.map(|(lo, hi)| {
                let mut sd = [1.0];
                g.cov.color(&mut sd);
                ((lo - g.mean[0]) / sd[0], (hi - g.mean[0]) / sd[0])
            });
            spacing
                .iter()
                .map(|&h| nodes_1d(h, half_width, local))
                .collect()
        })
        .collect();
    let total: usize = grids
        .iter()
        .map(|axes| axes.iter().map(|(n, _)| n.len()).product::<usize>())
        .sum();
    batch.reset(k, total);
    let log_mix = |parts: &[(f64, &Gaussian)], x: &[f64], scratch: &mut [f64]| {
        parts.iter().fold(f64::NEG_INFINITY, |acc, (p, g)| {
            log_add_exp(acc, p.ln() + g.logpdf(x, scratch))
        })
    };
    let mut scratch = vec![0.0; k];
    let mut idx = vec![0usize; k];
    let mut i = 0;
    for ((prob, g), axes) in comps.iter().zip(&grids) {
        if let (Cov::Scalar { sd }, false) = (&g.cov, reweight) {
            i = scalar_component_nodes(*prob, &g.mean, *sd, axes, radius_sq, batch, i);
            continue;
        }
        let count: usize = axes.iter().map(|(n, _)| n.len()).product();
        idx.iter_mut().for_each(|v| *v = 0);
        for _ in 0..count {
            let x = &mut batch.x[i * k..(i + 1) * k];
            let mut w = *prob;
            let mut norm_sq = 0.0;
            for ((v, &j), (nodes, w1)) in x.iter_mut().zip(&idx).zip(axes) {
                *v = nodes[j];
                norm_sq += nodes[j] * nodes[j];
                w *= w1[j];
            }
            let mut keep = norm_sq <= radius_sq;
            if keep {
                g.cov.color(x);
                x.iter_mut().zip(&g.mean).for_each(|(v, mu)| *v += mu);
                if reweight {
                    let log_ratio =
                        log_mix(&sampling, x, &mut scratch) - log_mix(&comps, x, &mut scratch);
                    keep = log_ratio >= LOG_RATIO_FLOOR;
                    w *= log_ratio.exp();
                }
            }
            if keep {
                batch.omega[i] = w;
                i += 1;
            }
            for (v, (nodes, _)) in idx.iter_mut().zip(axes) {
                *v += 1;
                if *v < nodes.len() {
                    break;
                }
                *v = 0;
            }
        }
    }
    // dropped nodes (if any) shorten the batch; the kept ones are in place
    batch.shorten(i);
    batch.replay_used = objective.replay().0;
}

/// The tensor grid of one component with covariance σ²I and no reweighting (the case of
/// every reduced span), written from row `first` on; returns the next free row. Axis 0 runs
/// fastest, as in the general loop; the other axes' coordinates, weights and squared norm
/// are computed once per line of axis-0 nodes, and the ball keeps the axis-0 nodes with
/// t² ≤ r² − (the others' squared norm).
fn scalar_component_nodes(
    prob: f64,
    mean: &[f64],
    sd: f64,
    axes: &[(Vec<f64>, Vec<f64>)],
    radius_sq: f64,
    batch: &mut Batch,
    first: usize,
) -> usize {
    match axes.len() {
        1 => scalar_nodes_fixed::<1>(prob, mean, sd, axes, radius_sq, batch, first),
        2 => scalar_nodes_fixed::<2>(prob, mean, sd, axes, radius_sq, batch, first),
        3 => scalar_nodes_fixed::<3>(prob, mean, sd, axes, radius_sq, batch, first),
        k => unreachable!("quadrature spans have 1 to {MAX_SPAN} axes, not {k}"),
    }
}

/// `scalar_component_nodes` for K axes (fixed-size rows: plain stores, no copy calls).
fn scalar_nodes_fixed<const K: usize>(
    prob: f64,
    mean: &[f64],
    sd: f64,
    axes: &[(Vec<f64>, Vec<f64>)],
    radius_sq: f64,
    batch: &mut Batch,
    first: usize,
) -> usize {
    let (nodes0, weights0) = &axes[0];
    let lines: usize = axes[1..].iter().map(|(n, _)| n.len()).product();
    let mut idx = [0usize; K];
    let mut row = [0.0; K];
    let mut i = first;
    for _ in 0..lines {
        let mut w_line = prob;
        let mut norm_sq_line = 0.0;
        for dim in 1..K {
            let t = axes[dim].0[idx[dim]];
            w_line *= axes[dim].1[idx[dim]];
            norm_sq_line += t * t;
            row[dim] = t * sd + mean[dim];
        }
        for (t, w) in nodes0.iter().zip(weights0) {
            if norm_sq_line + t * t <= radius_sq {
                row[0] = t * sd + mean[0];
                let out: &mut [f64; K] = (&mut batch.x[i * K..(i + 1) * K])
                    .try_into()
                    .expect("a row of K coordinates");
                *out = row;
                batch.omega[i] = w_line * w;
                i += 1;
            }
        }
        for dim in 1..K {
            idx[dim] += 1;
            if idx[dim] < axes[dim].0.len() {
                break;
            }
            idx[dim] = 0;
        }
    }
    i
}

/// The exact gradient of the problem's objective at the start state, in original coordinates.
pub fn exact_gradient(problem: &Problem) -> KernelResult<Grad> {
    with_objective!(problem.objective, o => {
        let rep = problem.new_replicate(&o, [0, 0], 0);
        exact_gradient_in(&o, problem, &rep, &mut Batch::new(1, 0), &Rule::DEFAULT)
    })
}

/// `exact_gradient` with a caller-owned quadrature buffer, reused across a flow's steps.
fn exact_gradient_in<O: Objective>(
    objective: &O,
    problem: &Problem,
    rep: &Replicate<O::Extra>,
    batch: &mut Batch,
    rule: &Rule,
) -> KernelResult<Grad> {
    // The node construction and the exact evaluation are long vectorisable loops: run them
    // with the widest instruction set present. No FMA contraction happens in Rust, so every
    // copy gives the same bits.
    #[cfg(target_arch = "x86_64")]
    {
        if crate::math::fastmath::has_avx512() {
            // SAFETY: the processor supports these AVX-512 subsets (checked just above).
            return unsafe { exact_gradient_avx512(objective, problem, rep, batch, rule) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor supports AVX2 (checked just above).
            return unsafe { exact_gradient_avx2(objective, problem, rep, batch, rule) };
        }
    }
    exact_gradient_body(objective, problem, rep, batch, rule)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn exact_gradient_avx512<O: Objective>(
    objective: &O,
    problem: &Problem,
    rep: &Replicate<O::Extra>,
    batch: &mut Batch,
    rule: &Rule,
) -> KernelResult<Grad> {
    exact_gradient_body(objective, problem, rep, batch, rule)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn exact_gradient_avx2<O: Objective>(
    objective: &O,
    problem: &Problem,
    rep: &Replicate<O::Extra>,
    batch: &mut Batch,
    rule: &Rule,
) -> KernelResult<Grad> {
    exact_gradient_body(objective, problem, rep, batch, rule)
}

#[inline(always)]
fn exact_gradient_body<O: Objective>(
    objective: &O,
    problem: &Problem,
    rep: &Replicate<O::Extra>,
    batch: &mut Batch,
    rule: &Rule,
) -> KernelResult<Grad> {
    let models = problem.models_at(objective, rep);
    let full = problem.scales.is_some() || objective.needs_original_coordinates();
    let (reduced, reduction, perp_dims) = if full {
        // The scale score needs ‖x − μ‖² in every direction, and trained scales make the
        // covariances unequal; a reward with its own geometry reads x itself: quadrature
        // over all d dimensions, no span reduction.
        if problem.dim > MAX_SPAN {
            let why = if problem.scales.is_some() {
                "train_scales=True"
            } else {
                "a reward with its own geometry (half-space, ball, bump)"
            };
            return Err(KernelError::NotImplemented(format!("exact population expectations with {why} are available for d <= {MAX_SPAN} (a quadrature over all d dimensions), got d = {}", problem.dim)));
        }
        let none = Reduction {
            basis: vec![],
            whitening: Cov::Scalar { sd: 1.0 },
        };
        (models, none, 0)
    } else {
        reduce(objective, problem, &models, rule)?
    };
    objective.check_exact(perp_dims)?;
    // the span rule needs identity covariances: a whitened span
    let span_rule = (!reduction.basis.is_empty()).then_some(rule);
    // the general rule's spacing resolves the start model's separations too (it always has)
    let start = problem.mixture(&problem.start);
    quadrature_batch(objective, &reduced, &start, batch, span_rule);
    let k = reduced.model.old.dim();
    let mut g = Grad::zeros(k);
    evaluate(
        objective,
        problem.weight_param,
        problem.scales.as_ref().map(|s| s.param),
        &reduced,
        batch,
        Averager {
            exact: true,
            perp_dims,
        },
        &mut g,
    );
    let mut out = Grad::zeros(problem.dim);
    out.weight = g.weight;
    out.scale = g.scale;
    reduction.lift(&g.old, &mut out.old);
    reduction.lift(&g.new, &mut out.new);
    Ok(out)
}

/// Deterministic flow θ ← θ − lr·m⊙∇L(θ), advanced call by call (so that a long flow can be
/// interrupted between calls); records sit at absolute step counts, as in `Simulation`.
pub struct Flow<O: Objective> {
    pub objective: O,
    pub problem: Problem,
    pub rep: Replicate<O::Extra>,
    done: u64,
    previous: Params,
    /// The quadrature buffer, reused across steps.
    batch: Batch,
}

/// A [`Flow`] of the problem's objective.
pub fn flow(problem: Problem) -> Box<dyn Run> {
    with_objective!(problem.objective, o => Box::new(Flow::new(o, problem)) as Box<dyn Run>)
}

impl<O: Objective> Flow<O> {
    pub fn new(objective: O, problem: Problem) -> Flow<O> {
        let rep = problem.new_replicate(&objective, [0, 0], 0);
        Flow {
            objective,
            previous: rep.theta.clone(),
            rep,
            done: 0,
            problem,
            batch: Batch::new(1, 0),
        }
    }
}

impl<O: Objective> Run for Flow<O> {
    fn problem(&self) -> &Problem {
        &self.problem
    }

    /// Steps run so far (`Replicate::steps_done` stops at a divergence; this does not).
    fn steps_done(&self) -> u64 {
        self.done
    }

    fn diverged(&self) -> Vec<bool> {
        vec![self.rep.diverged]
    }

    fn advance(&mut self, steps: u64, record_every: u64, rec: Records) -> KernelResult<()> {
        if self.problem.scales.is_some() && self.problem.dim > 1 {
            return Err(KernelError::NotImplemented(format!("population_flow with train_scales=True is implemented for d = 1 only (every step would need a quadrature over all d dimensions), got d = {}; population_gradient supports d <= {MAX_SPAN}", self.problem.dim)));
        }
        let n_rec = records_in(self.done, steps, record_every);
        let d = self.problem.dim;
        if rec.weight.len() != n_rec || rec.old.len() != n_rec * d || rec.scale.len() != n_rec * 2 {
            return Err(format!(
                "record buffers of {} values do not hold {n_rec} records",
                rec.weight.len()
            )
            .into());
        }
        let objective = &self.objective;
        let mut k = 0;
        for step in self.done + 1..=self.done + steps {
            if !self.rep.diverged {
                let g = exact_gradient_in(
                    objective,
                    &self.problem,
                    &self.rep,
                    &mut self.batch,
                    &Rule::DEFAULT,
                )?;
                self.problem
                    .apply_update(objective, &mut self.rep, &g, &mut self.previous);
            }
            if step % record_every == 0 {
                self.problem.record(
                    &self.rep,
                    k,
                    (
                        &mut *rec.weight,
                        &mut *rec.old,
                        &mut *rec.new,
                        &mut *rec.starved,
                        &mut *rec.scale,
                    ),
                );
                k += 1;
            }
            // counted per step: an error (NotImplemented at some state) leaves a consistent
            // count
            self.done = step;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::training::estimate_gradient;
    use crate::model::params::WeightParam;
    use crate::objectives::{
        Advantage, Baseline, Beta, Direction, ForwardKL, NewModeREINFORCE, ObjectiveSpec,
        ReverseKL, Reward, TTTDiscover, OAPL, SDFT,
    };
    use crate::random::starvation::Slots;

    fn problem(objective: ObjectiveSpec, d: usize) -> Problem {
        let cov = Cov::scalar(1.0).unwrap();
        let point = |v: f64| {
            let mut m = vec![0.0; d];
            m[0] = v;
            if d > 1 {
                m[1] = 0.3 * v;
            }
            m
        };
        Problem {
            dim: d,
            target: Mix2::new(
                0.6,
                Gaussian::new(point(-1.5), cov.clone()),
                Gaussian::new(point(1.5), cov.clone()),
            ),
            model_old_cov: cov.clone(),
            model_new_cov: cov,
            start: Params::from_alpha(0.6, point(-1.5), point(0.2), WeightParam::Logit),
            objective,
            weight_param: WeightParam::Logit,
            lr: 0.05,
            lr_scale: [1.0; 3],
            scales: None,
            update: Default::default(),
        }
    }

    #[test]
    fn exact_gradient_matches_monte_carlo_mean() {
        for objective in [
            ObjectiveSpec::ReverseKL(ReverseKL {
                replay: 0.0,
                replay_slots: Slots::Bernoulli,
                weight_cap: None,
                baseline: Baseline::Loo,
            }),
            ObjectiveSpec::ReverseKL(ReverseKL {
                replay: 0.3,
                replay_slots: Slots::Bernoulli,
                weight_cap: None,
                baseline: Baseline::Loo,
            }),
            ObjectiveSpec::ForwardKL(ForwardKL {
                replay: 0.3,
                replay_slots: Slots::Bernoulli,
            }),
            ObjectiveSpec::NewModeREINFORCE(NewModeREINFORCE {
                beta: 0.1,
                advantage: Advantage::Raw,
            }),
        ] {
            for d in [1, 3] {
                let p = problem(objective, d);
                let exact = exact_gradient(&p).unwrap();
                let n = 20_000;
                let width = p.grad_width();
                let mut grads = vec![0.0; n * width];
                let mut counts = vec![0i64; n];
                estimate_gradient(&p, 32, [9, 9], 0, &mut grads, &mut counts).unwrap();
                let mut flat = vec![0.0; width];
                exact.write_flat(&mut flat);
                for (j, expected) in flat.iter().enumerate() {
                    let col: Vec<f64> = grads.iter().skip(j).step_by(width).cloned().collect();
                    let mean = col.iter().sum::<f64>() / n as f64;
                    let sd = (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64)
                        .sqrt();
                    assert!(
                        (mean - expected).abs() < 5.0 * sd / (n as f64).sqrt() + 1e-12,
                        "{objective:?} d={d} j={j}: {mean} vs {expected}"
                    );
                }
            }
        }
    }
    /// Means along fixed, non-collinear directions of an `span`-dimensional subspace of R^d
    /// (rotated off the coordinate axes), with separate start, current, teacher and lag
    /// models, so that every mixture the objectives evaluate has its own direction.
    fn spanning_problem(objective: ObjectiveSpec, d: usize, span: usize) -> (Problem, SpanState) {
        // an orthonormal frame of the subspace: rotated coordinate axes
        let frame: Vec<Vec<f64>> = (0..span)
            .map(|j| {
                let mut v = vec![0.0; d];
                v[j] = 0.8;
                v[(j + 1) % d] = 0.6;
                v
            })
            .collect();
        let at = |coords: &[f64]| -> Vec<f64> {
            (0..d)
                .map(|c| coords.iter().zip(&frame).map(|(a, f)| a * f[c]).sum())
                .collect()
        };
        let pick = |v: [f64; 3]| at(&v[..span]);
        let cov = Cov::scalar(if d == 3 { 0.7 } else { 1.0 }).unwrap();
        let wp = WeightParam::Logit;
        let p = Problem {
            dim: d,
            target: Mix2::new(
                0.7,
                Gaussian::new(pick([-2.0, 0.0, 0.0]), cov.clone()),
                Gaussian::new(pick([2.5, 0.5, 0.0]), cov.clone()),
            ),
            model_old_cov: cov.clone(),
            model_new_cov: cov,
            start: Params::from_alpha(0.6, pick([-2.0, 0.3, 0.4]), pick([0.0, 1.5, 0.0]), wp),
            objective,
            weight_param: wp,
            lr: 0.05,
            lr_scale: [1.0; 3],
            scales: None,
            update: Default::default(),
        };
        let state = SpanState {
            theta: Params::from_alpha(0.55, pick([-1.6, -0.4, 0.2]), pick([0.8, 1.2, -0.6]), wp),
            teacher: Params::from_alpha(0.65, pick([-1.8, 0.2, -0.3]), pick([0.4, 1.8, 0.5]), wp),
            lag: Params::from_alpha(0.5, pick([-2.2, 0.0, 0.6]), pick([1.0, 0.9, -0.2]), wp),
        };
        (p, state)
    }

    /// The current, teacher and lagged parameters of a spanning problem.
    struct SpanState {
        theta: Params,
        teacher: Params,
        lag: Params,
    }

    /// The replicate of a spanning problem for `o`: θ and, as its extra state, the teacher
    /// (SDFT), the lagged parameters (OAPL) or the start (the others).
    fn spanning_replicate<O: Objective>(o: &O, p: &Problem, s: &SpanState) -> Replicate<O::Extra> {
        let mut rep = p.new_replicate(o, [1, 1], 0);
        rep.theta = s.theta.clone();
        let state = match O::KIND {
            "SDFT" => &s.teacher,
            "OAPL" => &s.lag,
            _ => &p.start,
        };
        rep.extra = o.reset(state);
        rep
    }

    fn exact_gradient_with<O: Objective>(
        o: &O,
        p: &Problem,
        rep: &Replicate<O::Extra>,
        rule: &Rule,
    ) -> Grad {
        exact_gradient_in(o, p, rep, &mut Batch::new(1, 0), rule).unwrap()
    }

    /// The span rule against the same rule with every spacing halved and a wider ball (error
    /// exponents doubled): ≤ 1e-9 of the gradient's size, for every objective on genuinely 2-
    /// and 3-dimensional spans, in d = 2, 3 and 5.
    #[test]
    fn span_quadrature_matches_a_finer_one() {
        let fine = Rule {
            pole: Rule::DEFAULT.pole / 2.0,
            smooth: Rule::DEFAULT.smooth / 2.0,
            radius: Rule::DEFAULT.radius + 1.0,
            max_nodes: 1.5e6,
        };
        let reverse = |replay: f64, weight_cap: Option<f64>| {
            ObjectiveSpec::ReverseKL(ReverseKL {
                replay,
                replay_slots: Slots::Bernoulli,
                weight_cap,
                baseline: Baseline::Loo,
            })
        };
        let objectives = [
            ObjectiveSpec::ForwardKL(ForwardKL {
                replay: 0.3,
                replay_slots: Slots::Bernoulli,
            }),
            reverse(0.0, None),
            reverse(0.3, None),
            // a cap above 1/(1−λ) never binds: no kink
            reverse(0.3, Some(2.0)),
            ObjectiveSpec::SDFT(SDFT {
                ema: 0.02,
                anchor: 0.5,
                direction: Direction::Reverse,
            }),
            ObjectiveSpec::SDFT(SDFT {
                ema: 0.02,
                anchor: 0.5,
                direction: Direction::Forward,
            }),
            ObjectiveSpec::TTTDiscover(TTTDiscover {
                beta: Beta::Fixed(2.0),
                kl_penalty: 0.1,
                reward: Reward::NewLogpdf,
                radius: 1.0,
            }),
            ObjectiveSpec::TTTDiscover(TTTDiscover {
                beta: Beta::Fixed(3.0),
                kl_penalty: 0.0,
                reward: Reward::TargetLogpdf,
                radius: 1.0,
            }),
            ObjectiveSpec::OAPL(OAPL {
                beta1: 0.5,
                beta2: 1.0,
                lag: 10,
                reward: Reward::NewLogpdf,
                radius: 1.0,
            }),
            ObjectiveSpec::NewModeREINFORCE(NewModeREINFORCE {
                beta: 0.1,
                advantage: Advantage::Raw,
            }),
            ObjectiveSpec::NewModeREINFORCE(NewModeREINFORCE {
                beta: 0.1,
                advantage: Advantage::Normalised,
            }),
        ];
        for (d, span) in [(2, 2), (3, 3), (5, 3)] {
            for objective in objectives {
                let (p, state) = spanning_problem(objective, d, span);
                let (g, reference) = with_objective!(objective, o => {
                    let rep = spanning_replicate(&o, &p, &state);
                    (
                        exact_gradient_with(&o, &p, &rep, &Rule::DEFAULT),
                        exact_gradient_with(&o, &p, &rep, &fine),
                    )
                });
                let width = p.grad_width();
                let (mut a, mut b) = (vec![0.0; width], vec![0.0; width]);
                g.write_flat(&mut a);
                reference.write_flat(&mut b);
                let size = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let err = a
                    .iter()
                    .zip(&b)
                    .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
                assert!(size > 1e-3, "{objective:?} d={d}: gradient {b:?}");
                assert!(
                    err <= 1e-9 * size,
                    "{objective:?} d={d} span={span}: error {err:e} of {size:e}"
                );
            }
        }
    }

    /// The span's axes follow the steep directions: a 2-D problem whose target separation
    /// is oblique to the coordinate axes needs no more nodes than the same problem with it
    /// along an axis.
    #[test]
    fn rotation_puts_the_steep_direction_on_one_axis() {
        let (p, state) = spanning_problem(reverse_default(), 2, 2);
        let o = ReverseKL {
            replay: 0.0,
            replay_slots: Slots::Bernoulli,
            weight_cap: None,
            baseline: Baseline::Loo,
        };
        let rep = spanning_replicate(&o, &p, &state);
        let models = p.models_at(&o, &rep);
        let (reduced, _, _) = reduce(&o, &p, &models, &Rule::DEFAULT).unwrap();
        let h = axis_spacings(&o, &reduced, &Rule::DEFAULT);
        // one steep axis; the other at (or near) the smooth cap, not at the steep spacing
        let (steep, smooth) = (h[0].min(h[1]), h[0].max(h[1]));
        assert!(smooth > 2.0 * steep, "spacings {h:?}");
    }

    fn reverse_default() -> ObjectiveSpec {
        ObjectiveSpec::ReverseKL(ReverseKL {
            replay: 0.0,
            replay_slots: Slots::Bernoulli,
            weight_cap: None,
            baseline: Baseline::Loo,
        })
    }
}
