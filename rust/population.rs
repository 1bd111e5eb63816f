//! Population (infinite-batch) flow (docs: theory-population): the same update as the
//! finite-batch engine with exact expectations. With equal covariances every integrand depends
//! on a point only through its projection on the affine span of the means involved (in
//! whitened coordinates), so the expectations are k-dimensional quadratures (k ≤ 3) over each
//! component of the sampling distribution (or of the integrand's mass, importance-weighted:
//! `quadrature_batch`); orthogonal directions contribute nothing to the gradient. The
//! quadrature is
//! the trapezoidal rule on a uniform grid with Gaussian weights, which converges exponentially
//! for these analytic integrands and, unlike Gauss–Hermite, resolves the steep logistic
//! responsibilities of well-separated modes: node spacing h ≤ 0.75/Δ_max gives an error
//! ~ exp(−2π²/(h Δ_max)) < 1e-11.

use crate::engine::{
    evaluate, records_in, sampling_components, Batch, Exactness, Grad, Mix2, Models, Params,
    Problem, Records, Replicate,
};
use crate::mixture::{log_add_exp, Cov, Gaussian};
use crate::objectives::{with_objective, Objective};

/// Half-width of the quadrature grid in standard deviations.
const HALF_WIDTH: f64 = 9.5;
/// Largest number of grid points per sampling component (docs: theory-population: ~10^6).
const MAX_NODES: f64 = 1.2e6;
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

fn relevant_means<O: Objective>(objective: &O, m: &Models) -> Vec<Vec<f64>> {
    let mut means = vec![
        m.model.old.mean.clone(),
        m.model.new.mean.clone(),
        m.target.old.mean.clone(),
        m.target.new.mean.clone(),
    ];
    if let Some(state) = objective.state_model(m) {
        means.extend([state.old.mean.clone(), state.new.mean.clone()]);
    }
    means
}

/// Reduced models (k-dimensional, identity covariance) and the map back.
fn reduce<O: Objective>(
    objective: &O,
    problem: &Problem,
    m: &Models,
) -> Result<(Models, Reduction, usize), String> {
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
        return Err("NotImplemented: exact population expectations with unequal covariances are available for d = 1 only".into());
    }
    let whitened: Vec<Vec<f64>> = relevant_means(objective, m)
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
        if norm > 1e-9 * scale {
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
        return Err(format!("NotImplemented: the means span {k} dimensions; exact population expectations support at most {MAX_SPAN}"));
    }
    let project = |mean: &[f64]| -> Vec<f64> {
        let mut v = mean.to_vec();
        cov.whiten(&mut v);
        basis
            .iter()
            .map(|b| {
                b.iter()
                    .zip(v.iter().zip(&anchor))
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
    let reduced = Models {
        model: mix(&m.model),
        target: mix(&m.target),
        teacher: mix(&m.teacher),
        start: mix(&m.start),
        lag: mix(&m.lag),
    };
    Ok((
        reduced,
        Reduction {
            basis,
            whitening: cov.clone(),
        },
        d - k,
    ))
}

fn largest_separation(m: &Models) -> f64 {
    let comps = [
        &m.model.old,
        &m.model.new,
        &m.target.old,
        &m.target.new,
        &m.teacher.old,
        &m.teacher.new,
        &m.start.old,
        &m.start.new,
        &m.lag.old,
        &m.lag.new,
    ];
    let mut best: f64 = 1.0;
    for a in comps {
        for b in comps {
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
fn indicator_jumps<O: Objective>(objective: &O, m: &Models) -> Option<(f64, f64)> {
    let radius = objective.indicator_radius()?;
    if m.target.new.dim() != 1 {
        return None;
    }
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
fn nodes_1d(h: f64, jumps: Option<(f64, f64)>) -> (Vec<f64>, Vec<f64>) {
    const SPLIT: f64 = 1e-10;
    let (grid, boundary): (Vec<f64>, Vec<bool>) = match jumps {
        None => {
            let per_dim = 2 * (HALF_WIDTH / h).ceil() as usize + 1;
            let step = 2.0 * HALF_WIDTH / (per_dim - 1) as f64;
            (
                (0..per_dim)
                    .map(|j| -HALF_WIDTH + j as f64 * step)
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
            let first = ((-HALF_WIDTH - lo) / step).ceil() as i64;
            let last = ((HALF_WIDTH - lo) / step).floor() as i64;
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
fn quadrature_batch<O: Objective>(objective: &O, m: &Models, batch: &mut Batch) {
    fn positive(v: Vec<(f64, &Gaussian)>) -> Vec<(f64, &Gaussian)> {
        v.into_iter().filter(|c| c.0 > 0.0).collect()
    }
    let sampling = positive(sampling_components(objective, m));
    let comps = positive(objective.quadrature_components(m));
    let same = |a: &(f64, &Gaussian), b: &(f64, &Gaussian)| a.0 == b.0 && std::ptr::eq(a.1, b.1);
    let reweight =
        sampling.len() != comps.len() || !sampling.iter().zip(&comps).all(|(a, b)| same(a, b));
    let k = m.model.old.dim();
    let mut h = (0.75 / largest_separation(m)).min(0.1);
    let per_dim_budget = MAX_NODES.powf(1.0 / k as f64).floor();
    if (2.0 * HALF_WIDTH / h + 1.0) > per_dim_budget {
        h = 2.0 * HALF_WIDTH / (per_dim_budget - 1.0);
    }
    let jumps = indicator_jumps(objective, m);
    // Per component: its 1-D nodes (in its own standard units) and weights.
    let grids: Vec<(Vec<f64>, Vec<f64>)> = comps
        .iter()
        .map(|(_, g)| {
            let local = jumps.map(|(lo, hi)| {
                let mut sd = [1.0];
                g.cov.color(&mut sd);
                ((lo - g.mean[0]) / sd[0], (hi - g.mean[0]) / sd[0])
            });
            nodes_1d(h, local)
        })
        .collect();
    let total: usize = grids.iter().map(|(n, _)| n.len().pow(k as u32)).sum();
    batch.reset(k, total);
    let log_mix = |parts: &[(f64, &Gaussian)], x: &[f64], scratch: &mut [f64]| {
        parts.iter().fold(f64::NEG_INFINITY, |acc, (p, g)| {
            log_add_exp(acc, p.ln() + g.logpdf(x, scratch))
        })
    };
    let mut scratch = vec![0.0; k];
    let mut idx = vec![0usize; k];
    let mut i = 0;
    for ((prob, g), (nodes, w1)) in comps.iter().zip(&grids) {
        let per_dim = nodes.len();
        idx.iter_mut().for_each(|v| *v = 0);
        for _ in 0..per_dim.pow(k as u32) {
            let x = &mut batch.x[i * k..(i + 1) * k];
            let mut w = *prob;
            for (dim, &j) in idx.iter().enumerate() {
                x[dim] = nodes[j];
                w *= w1[j];
            }
            g.cov.color(x);
            x.iter_mut().zip(&g.mean).for_each(|(v, mu)| *v += mu);
            let mut keep = true;
            if reweight {
                let log_ratio =
                    log_mix(&sampling, x, &mut scratch) - log_mix(&comps, x, &mut scratch);
                keep = log_ratio >= LOG_RATIO_FLOOR;
                w *= log_ratio.exp();
            }
            if keep {
                batch.omega[i] = w;
                i += 1;
            }
            for v in idx.iter_mut() {
                *v += 1;
                if *v < per_dim {
                    break;
                }
                *v = 0;
            }
        }
    }
    // dropped nodes (if any) shorten the batch; the kept ones are in place
    batch.reset(k, i);
    batch.replay_used = objective.replay().0;
}

/// The exact gradient of the objective at a replicate's state, in original coordinates.
pub fn exact_gradient(problem: &Problem, rep: &Replicate) -> Result<Grad, String> {
    with_objective!(problem.objective, o => {
        exact_gradient_in(&o, problem, rep, &mut Batch::new(1, 0))
    })
}

/// `exact_gradient` with a caller-owned quadrature buffer, reused across a flow's steps.
fn exact_gradient_in<O: Objective>(
    objective: &O,
    problem: &Problem,
    rep: &Replicate,
    batch: &mut Batch,
) -> Result<Grad, String> {
    let models = problem.models_at(objective, rep);
    let (reduced, reduction, perp_dims) = if problem.scales.is_some() {
        // The scale score needs ‖x − μ‖² in every direction, and trained scales make the
        // covariances unequal: quadrature over all d dimensions, no span reduction.
        if problem.dim > MAX_SPAN {
            return Err(format!("NotImplemented: exact population expectations with train_scales=True are available for d <= {MAX_SPAN} (a quadrature over all d dimensions), got d = {}", problem.dim));
        }
        let none = Reduction {
            basis: vec![],
            whitening: Cov::Scalar { sd: 1.0 },
        };
        (models, none, 0)
    } else {
        reduce(objective, problem, &models)?
    };
    objective.check_exact(perp_dims)?;
    quadrature_batch(objective, &reduced, batch);
    let k = reduced.model.old.dim();
    let mut g = Grad::zeros(k);
    evaluate(
        objective,
        problem.weight_param,
        problem.scales.as_ref().map(|s| s.param),
        &reduced,
        batch,
        Exactness {
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
pub struct Flow {
    pub problem: Problem,
    pub rep: Replicate,
    done: u64,
    previous: Params,
    /// The quadrature buffer, reused across steps.
    batch: Batch,
}

impl Flow {
    pub fn new(problem: Problem) -> Flow {
        let rep = problem.new_replicate([0, 0], 0);
        Flow {
            previous: rep.theta.clone(),
            rep,
            done: 0,
            problem,
            batch: Batch::new(1, 0),
        }
    }

    /// Steps run so far (`Replicate::steps_done` stops at a divergence; this does not).
    pub fn steps_done(&self) -> u64 {
        self.done
    }

    /// Advance by `steps`, recording at every absolute step count that is a multiple of
    /// `record_every` (`engine::records_in(steps_done, steps, record_every)` records).
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
        if self.problem.scales.is_some() && self.problem.dim > 1 {
            return Err(format!("NotImplemented: population_flow with train_scales=True is implemented for d = 1 only (every step would need a quadrature over all d dimensions), got d = {}; population_gradient supports d <= {MAX_SPAN}", self.problem.dim));
        }
        let n_rec = records_in(self.done, steps, record_every);
        let d = self.problem.dim;
        if rec.weight.len() != n_rec || rec.old.len() != n_rec * d || rec.scale.len() != n_rec * 2 {
            return Err(format!(
                "record buffers of {} values do not hold {n_rec} records",
                rec.weight.len()
            ));
        }
        let mut k = 0;
        for step in self.done + 1..=self.done + steps {
            if !self.rep.diverged {
                let g = exact_gradient_in(objective, &self.problem, &self.rep, &mut self.batch)?;
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
    use crate::engine::{estimate_gradient, WeightParam};
    use crate::objectives::{Advantage, Baseline, ForwardKL, NewModeREINFORCE, ReverseKL, Spec};
    use crate::starvation::Slots;

    fn problem(objective: Spec, d: usize) -> Problem {
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
        }
    }

    #[test]
    fn exact_gradient_matches_monte_carlo_mean() {
        for objective in [
            Spec::ReverseKL(ReverseKL {
                replay: 0.0,
                replay_slots: Slots::Bernoulli,
                weight_cap: None,
                baseline: Baseline::Loo,
            }),
            Spec::ReverseKL(ReverseKL {
                replay: 0.3,
                replay_slots: Slots::Bernoulli,
                weight_cap: None,
                baseline: Baseline::Loo,
            }),
            Spec::ForwardKL(ForwardKL {
                replay: 0.3,
                replay_slots: Slots::Bernoulli,
            }),
            Spec::NewModeREINFORCE(NewModeREINFORCE {
                beta: 0.1,
                advantage: Advantage::Raw,
            }),
        ] {
            for d in [1, 3] {
                let p = problem(objective, d);
                let exact = exact_gradient(&p, &p.new_replicate([1, 1], 0)).unwrap();
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
}
