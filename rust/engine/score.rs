//! The score-function core (docs: theory-scores): the densities of a batch, the objective's
//! values and coefficients c_i, then ĝ = Σ ω_i c_i s(x_i) with s the model's score. Serves
//! finite batches and the exact (quadrature) expectations alike.

use crate::engine::batch::Batch;
use crate::engine::state::{Averager, Grad, Models};
use crate::math::fastmath;
use crate::math::lane_sums::{lane_sums, lane_sums_padded, lane_total, SUM_LANES};
use crate::model::params::{ScaleParam, WeightParam};
use crate::model::two_mode::Mix2;
use crate::objectives::Objective;
use rayon::prelude::*;

/// Points per parallel chunk of an exact (quadrature) evaluation.
const PAR_CHUNK: usize = 8192;

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
    log_compared: &'a mut [f64],
}

impl<'a> DensityRows<'a> {
    /// The batch's first `len` rows, and its scratch row.
    fn of(batch: &'a mut Batch) -> (DensityRows<'a>, &'a mut [f64]) {
        let (n, d) = (batch.len, batch.dim);
        let Batch {
            x,
            model_old_part,
            model_new_part,
            compared_old,
            compared_new,
            log_q,
            resp_old,
            log_compared,
            scratch,
            ..
        } = batch;
        let rows = DensityRows {
            x: &x[..n * d],
            model_old: &mut model_old_part[..n],
            model_new: &mut model_new_part[..n],
            second_old: &mut compared_old[..n],
            second_new: &mut compared_new[..n],
            log_q: &mut log_q[..n],
            resp_old: &mut resp_old[..n],
            log_compared: &mut log_compared[..n],
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
        let (ls0, ls1) = self.log_compared.split_at_mut(mid);
        (
            DensityRows {
                x: x0,
                model_old: mo0,
                model_new: mn0,
                second_old: so0,
                second_new: sn0,
                log_q: lq0,
                resp_old: ro0,
                log_compared: ls0,
            },
            DensityRows {
                x: x1,
                model_old: mo1,
                model_new: mn1,
                second_old: so1,
                second_new: sn1,
                log_q: lq1,
                resp_old: ro1,
                log_compared: ls1,
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
            if crate::math::fastmath::has_avx512() {
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

    /// The same operations as the fused pass's density block (`batch_gradient::density_block`), so
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
                    self.log_compared,
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
    m: &Models<O::ExtraModels>,
    batch: &mut Batch,
    how: Averager,
    grad: &mut Grad,
) {
    let (n, d) = (batch.len, batch.dim);
    let model = &m.model;
    let second = objective.compared_density(m);
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
/// `accumulate_score` leaves in `model_old_part`/`model_new_part`.
pub(crate) fn accumulate_scale_score(
    param: ScaleParam,
    model: &Mix2,
    batch: &mut Batch,
    grad: &mut Grad,
) {
    let (n, d) = (batch.len, batch.dim);
    for (k, (comp, coef)) in [
        (&model.old, &batch.model_old_part),
        (&model.new, &batch.model_new_part),
    ]
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

/// ĝ = Σ ω_i c_i s(x_i) for the model's score s: per-sample weights first (vectorised), then
/// the sums. With c_i in `batch.value` and r_i the old responsibility,
/// ∂/∂η = Σ ω c (r − α) (logit; r/α − (1−r)/(1−α) direct), ∂/∂μ_o = Σ⁻¹ Σ ω c r (x − μ_o),
/// ∂/∂μ_n = Σ⁻¹ Σ ω c (1−r) (x − μ_n).
#[inline(always)]
pub(crate) fn accumulate_score(wp: WeightParam, model: &Mix2, batch: &mut Batch, grad: &mut Grad) {
    let (n, d) = (batch.len, batch.dim);
    let alpha = model.alpha;
    // A padded batch (`Batch::padded_len`) runs its loops over whole blocks, the padding rows
    // computed and left out of the sums: the same bits, without a scalar tail.
    let padded = batch.padded_len();
    let rows = padded.unwrap_or(n);
    let (coef_old, coef_new) = (
        &mut batch.model_old_part[..rows],
        &mut batch.model_new_part[..rows],
    );
    let (omega, value, resp) = (
        &batch.omega[..rows],
        &batch.value[..rows],
        &batch.resp_old[..rows],
    );
    // ω c r and ω c (1 − r), kept for the scale score and the d > 1 sums.
    for i in 0..rows {
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
        let xs = &batch.x[..rows];
        let inputs = [omega, value, resp, coef_old, coef_new, xs];
        let term = |[o, v, r, a, b, x]: [f64; 6]| [o * v * weight_score(r), a, b, a * x, b * x];
        let [weight, mass_old, mass_new, old, new] = match padded {
            Some(_) => lane_sums_padded(inputs, n, term),
            None => lane_sums(inputs, term),
        };
        grad.weight = weight;
        grad.old[0] = old;
        grad.new[0] = new;
        (mass_old, mass_new)
    } else {
        let inputs = [omega, value, resp, coef_old, coef_new];
        let term = |[o, v, r, a, b]: [f64; 5]| [o * v * weight_score(r), a, b];
        let [weight, mass_old, mass_new] = match padded {
            Some(_) => lane_sums_padded(inputs, n, term),
            None => lane_sums(inputs, term),
        };
        grad.weight = weight;
        let (coef_old, coef_new) = (&coef_old[..n], &coef_new[..n]);
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
