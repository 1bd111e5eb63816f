//! Gaussian components and K-component mixtures: log densities, responsibilities
//! (log-sum-exp, with the equal-covariance two-component logistic fast path of
//! docs: theory-geometry) and sampling. Pure Rust; parallel over fixed-size chunks with rayon.

use crate::error::KernelResult;
use crate::random::rng::{normal, Stream};
use rayon::prelude::*;

pub const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Rows (or samples) per parallel chunk. Fixed, so that random streams (key, chunk index)
/// and therefore the output do not depend on the number of threads.
pub const CHUNK: usize = 8192;

/// A covariance, factorised once: Σ = L Lᵀ.
#[derive(Clone, Debug, PartialEq)]
pub enum Cov {
    /// σ² I, stored as σ.
    Scalar { sd: f64 },
    /// diag(σ_i²), stored as σ_i.
    Diag { sd: Vec<f64> },
    /// Full SPD, stored as its lower Cholesky factor (row-major d×d).
    Full { chol: Vec<f64>, dim: usize },
}

impl Cov {
    pub fn scalar(var: f64) -> KernelResult<Cov> {
        if !(var.is_finite() && var > 0.0) {
            return Err(format!("variance must be finite and > 0, got {var}").into());
        }
        Ok(Cov::Scalar { sd: var.sqrt() })
    }

    pub fn diag(var: &[f64]) -> KernelResult<Cov> {
        if var.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err("diagonal variances must be finite and > 0".into());
        }
        Ok(Cov::Diag {
            sd: var.iter().map(|v| v.sqrt()).collect(),
        })
    }

    /// Cholesky of a symmetric matrix (row-major); Err if not positive definite.
    pub fn full(matrix: &[f64], dim: usize) -> KernelResult<Cov> {
        if matrix.len() != dim * dim {
            return Err(format!("covariance matrix must be {dim}x{dim}").into());
        }
        let mut l = vec![0.0; dim * dim];
        for i in 0..dim {
            for j in 0..=i {
                if (matrix[i * dim + j] - matrix[j * dim + i]).abs()
                    > 1e-10 * (matrix[i * dim + j].abs() + matrix[j * dim + i].abs()) + 1e-12
                {
                    return Err("covariance matrix must be symmetric".into());
                }
                let mut s = matrix[i * dim + j];
                for k in 0..j {
                    s -= l[i * dim + k] * l[j * dim + k];
                }
                if i == j {
                    if !(s.is_finite() && s > 0.0) {
                        return Err("covariance matrix must be positive definite".into());
                    }
                    l[i * dim + i] = s.sqrt();
                } else {
                    l[i * dim + j] = s / l[j * dim + j];
                }
            }
        }
        Ok(Cov::Full { chol: l, dim })
    }

    /// Σ·f² (the Cholesky factor times f): a covariance of the same shape scaled by f.
    pub fn scaled(&self, f: f64) -> Cov {
        let mut out = self.clone();
        out.set_scaled(self, f);
        out
    }

    /// self ← `shape`·f² in place (no allocation when the kinds match, as they do for a
    /// component whose scale trains).
    pub fn set_scaled(&mut self, shape: &Cov, f: f64) {
        match (&mut *self, shape) {
            (Cov::Scalar { sd }, Cov::Scalar { sd: s }) => *sd = s * f,
            (Cov::Diag { sd }, Cov::Diag { sd: s }) if sd.len() == s.len() => {
                sd.iter_mut().zip(s).for_each(|(a, b)| *a = b * f)
            }
            (Cov::Full { chol, dim }, Cov::Full { chol: c, dim: e }) if dim == e => {
                chol.iter_mut().zip(c).for_each(|(a, b)| *a = b * f)
            }
            (me, _) => {
                *me = shape.clone();
                me.set_scaled(shape, f);
            }
        }
    }

    /// The scale det(Σ)^{1/(2d)} (the standard deviation when d = 1).
    pub fn scale(&self, dim: usize) -> f64 {
        match self {
            Cov::Scalar { sd } => *sd,
            _ => (self.half_log_det(dim) / dim as f64).exp(),
        }
    }

    /// ½ log det Σ in dimension `dim`.
    pub fn half_log_det(&self, dim: usize) -> f64 {
        match self {
            Cov::Scalar { sd } => dim as f64 * sd.ln(),
            Cov::Diag { sd } => sd.iter().map(|s| s.ln()).sum(),
            Cov::Full { chol, dim } => (0..*dim).map(|i| chol[i * dim + i].ln()).sum(),
        }
    }

    /// v ← L⁻¹ v.
    #[inline]
    pub fn whiten(&self, v: &mut [f64]) {
        match self {
            Cov::Scalar { sd } => {
                let inv = 1.0 / sd;
                v.iter_mut().for_each(|x| *x *= inv);
            }
            Cov::Diag { sd } => v.iter_mut().zip(sd).for_each(|(x, s)| *x /= s),
            Cov::Full { chol, dim } => {
                for i in 0..*dim {
                    let row = &chol[i * dim..i * dim + i];
                    let s: f64 = row.iter().zip(&v[..i]).map(|(a, b)| a * b).sum();
                    v[i] = (v[i] - s) / chol[i * dim + i];
                }
            }
        }
    }

    /// z ← L z.
    #[inline]
    pub fn color(&self, z: &mut [f64]) {
        match self {
            Cov::Scalar { sd } => z.iter_mut().for_each(|x| *x *= sd),
            Cov::Diag { sd } => z.iter_mut().zip(sd).for_each(|(x, s)| *x *= s),
            Cov::Full { chol, dim } => {
                for i in (0..*dim).rev() {
                    let row = &chol[i * dim..i * dim + i + 1];
                    z[i] = row.iter().zip(&z[..=i]).map(|(a, b)| a * b).sum();
                }
            }
        }
    }

    /// v ← Σ⁻¹ v = L⁻ᵀ L⁻¹ v.
    pub fn precision_apply(&self, v: &mut [f64]) {
        match self {
            Cov::Scalar { sd } => {
                let inv = 1.0 / (sd * sd);
                v.iter_mut().for_each(|x| *x *= inv);
            }
            Cov::Diag { sd } => v.iter_mut().zip(sd).for_each(|(x, s)| *x /= s * s),
            Cov::Full { chol, dim } => {
                self.whiten(v);
                for i in (0..*dim).rev() {
                    let mut s = v[i];
                    for k in i + 1..*dim {
                        s -= chol[k * dim + i] * v[k];
                    }
                    v[i] = s / chol[i * dim + i];
                }
            }
        }
    }

    /// v ← L⁻ᵀ v (maps a gradient in whitened coordinates back to the original ones).
    pub fn unwhiten_gradient(&self, v: &mut [f64]) {
        match self {
            Cov::Scalar { sd } => v.iter_mut().for_each(|x| *x /= sd),
            Cov::Diag { sd } => v.iter_mut().zip(sd).for_each(|(x, s)| *x /= s),
            Cov::Full { chol, dim } => {
                for i in (0..*dim).rev() {
                    let mut s = v[i];
                    for k in i + 1..*dim {
                        s -= chol[k * dim + i] * v[k];
                    }
                    v[i] = s / chol[i * dim + i];
                }
            }
        }
    }

    /// Squared Mahalanobis norm ‖δ‖²_Σ, using `scratch` (len d) for the full case.
    #[inline(always)]
    pub fn mahalanobis_sq(
        &self,
        delta_of: impl Fn(usize) -> f64,
        dim: usize,
        scratch: &mut [f64],
    ) -> f64 {
        match self {
            Cov::Scalar { sd } => {
                let inv = 1.0 / (sd * sd);
                (0..dim).map(|i| delta_of(i).powi(2)).sum::<f64>() * inv
            }
            Cov::Diag { sd } => (0..dim).map(|i| (delta_of(i) / sd[i]).powi(2)).sum(),
            Cov::Full { .. } => {
                for (i, s) in scratch.iter_mut().enumerate().take(dim) {
                    *s = delta_of(i);
                }
                self.whiten(&mut scratch[..dim]);
                scratch[..dim].iter().map(|x| x * x).sum()
            }
        }
    }
}

/// ‖a − b‖² with eight partial sums (coordinate j into sum j mod 8, combined pairwise): a
/// fixed order, so the same bits on every machine, that vectorises (one sequential sum
/// would be a dependency chain of d additions). For d ≤ 3 it equals the sequential sum.
#[inline(always)]
pub fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let full = n - n % 8;
    for (ca, cb) in a[..full].chunks_exact(8).zip(b[..full].chunks_exact(8)) {
        for j in 0..8 {
            let t = ca[j] - cb[j];
            acc[j] += t * t;
        }
    }
    for (j, (x, y)) in a[full..].iter().zip(&b[full..]).enumerate() {
        let t = x - y;
        acc[j] += t * t;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// base + c‖x_i − μ‖² for the rows of x (n × D) with D fixed at compile time (the reduced
/// spans of the population quadrature, D = 2, 3): the row loop vectorises. The squares are
/// added in `squared_distance`'s order (((t_0² + t_1²) + t_2²) for D ≤ 3), so the values are
/// the same bits as the general path's.
#[inline(always)]
fn small_rows<const D: usize>(x: &[f64], mean: &[f64], base: f64, c: f64, out: &mut [f64]) {
    let mu: [f64; D] = std::array::from_fn(|k| mean[k]);
    for (o, row) in out.iter_mut().zip(x.chunks_exact(D)) {
        let mut s = 0.0;
        for k in 0..D {
            let t = row[k] - mu[k];
            s = if k == 0 { t * t } else { s + t * t };
        }
        *o = base + c * s;
    }
}

/// A Gaussian component N(mean, Σ) with its normalising constant.
#[derive(Clone, Debug, PartialEq)]
pub struct Gaussian {
    pub mean: Vec<f64>,
    pub cov: Cov,
    log_norm: f64,
}

impl Gaussian {
    pub fn new(mean: Vec<f64>, cov: Cov) -> Gaussian {
        let d = mean.len();
        let log_norm = -cov.half_log_det(d) - 0.5 * d as f64 * LN_2PI;
        Gaussian {
            mean,
            cov,
            log_norm,
        }
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Covariance ← `shape`·σ² in place, with its normalising constant.
    #[inline]
    pub fn set_scaled_cov(&mut self, shape: &Cov, sd: f64) {
        let d = self.mean.len();
        self.cov.set_scaled(shape, sd);
        self.log_norm = -self.cov.half_log_det(d) - 0.5 * d as f64 * LN_2PI;
    }

    /// The scale det(Σ)^{1/(2d)} of the covariance.
    pub fn scale(&self) -> f64 {
        self.cov.scale(self.mean.len())
    }

    /// Overwrite the mean in place (no allocation).
    #[inline]
    pub fn set_mean(&mut self, mean: &[f64]) {
        self.mean.copy_from_slice(mean);
    }

    /// log φ(x); `scratch` must hold d values (used only for full covariances).
    #[inline(always)]
    pub fn logpdf(&self, x: &[f64], scratch: &mut [f64]) -> f64 {
        let m = &self.mean;
        let q = self.cov.mahalanobis_sq(|i| x[i] - m[i], m.len(), scratch);
        self.log_norm - 0.5 * q
    }

    /// out[i] = offset + log φ(x_i) for the rows of x (n × d), one covariance dispatch per
    /// call and simple loops that vectorise (the engine's hot path).
    #[inline(always)]
    pub fn logpdf_rows(&self, x: &[f64], offset: f64, out: &mut [f64], scratch: &mut [f64]) {
        let d = self.mean.len();
        let base = offset + self.log_norm;
        let n = out.len().min(x.len() / d);
        match &self.cov {
            Cov::Scalar { sd } => {
                let c = -0.5 / (sd * sd);
                if d == 1 {
                    let mu = self.mean[0];
                    for (o, xi) in out[..n].iter_mut().zip(&x[..n]) {
                        let t = xi - mu;
                        *o = base + c * t * t;
                    }
                } else if d == 2 {
                    small_rows::<2>(x, &self.mean, base, c, &mut out[..n]);
                } else if d == 3 {
                    small_rows::<3>(x, &self.mean, base, c, &mut out[..n]);
                } else {
                    for (o, row) in out[..n].iter_mut().zip(x.chunks_exact(d)) {
                        *o = base + c * squared_distance(row, &self.mean);
                    }
                }
            }
            _ => {
                for (o, row) in out[..n].iter_mut().zip(x.chunks_exact(d)) {
                    *o = offset + self.logpdf(row, scratch);
                }
            }
        }
    }

    /// x ← mean + L z for z standard normal (z is overwritten into x).
    #[inline]
    pub fn draw_into(&self, rng: &mut Stream, x: &mut [f64]) {
        for v in x.iter_mut() {
            *v = normal(rng);
        }
        self.cov.color(x);
        x.iter_mut().zip(&self.mean).for_each(|(v, m)| *v += m);
    }
}

/// σ(z), stable for large |z|.
#[inline(always)]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// log(e^a + e^b) without overflow.
#[inline(always)]
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// A K-component mixture Σ_k w_k φ_k.
pub struct Mixture {
    pub log_weights: Vec<f64>,
    pub components: Vec<Gaussian>,
    /// Equal-covariance two-component case: r_0(x) = σ(aᵀx + b) (docs: theory-geometry).
    logistic: Option<(Vec<f64>, f64)>,
}

impl Mixture {
    pub fn new(weights: &[f64], components: Vec<Gaussian>) -> Mixture {
        let logistic = if components.len() == 2 && components[0].cov == components[1].cov {
            let (c0, c1) = (&components[0], &components[1]);
            let mut a: Vec<f64> = c0.mean.iter().zip(&c1.mean).map(|(p, q)| p - q).collect();
            c0.cov.precision_apply(&mut a);
            let mid: f64 = a
                .iter()
                .zip(c0.mean.iter().zip(&c1.mean))
                .map(|(ai, (p, q))| ai * 0.5 * (p + q))
                .sum();
            Some((a, weights[0].ln() - weights[1].ln() - mid))
        } else {
            None
        };
        Mixture {
            log_weights: weights.iter().map(|w| w.ln()).collect(),
            components,
            logistic,
        }
    }

    pub fn dim(&self) -> usize {
        self.components[0].dim()
    }

    /// Responsibilities of one point into `out` (len K).
    #[inline]
    pub fn responsibilities_into(&self, x: &[f64], out: &mut [f64], scratch: &mut [f64]) {
        if let Some((a, b)) = &self.logistic {
            let z: f64 = a.iter().zip(x).map(|(p, q)| p * q).sum::<f64>() + b;
            // σ(z) and σ(−z) from one exponential.
            let e = crate::math::fastmath::exp(-z.abs());
            let inv = 1.0 / (1.0 + e);
            let (hi, lo) = (inv, e * inv);
            out[0] = if z >= 0.0 { hi } else { lo };
            out[1] = if z >= 0.0 { lo } else { hi };
            return;
        }
        let mut max = f64::NEG_INFINITY;
        for (k, c) in self.components.iter().enumerate() {
            out[k] = self.log_weights[k] + c.logpdf(x, scratch);
            max = max.max(out[k]);
        }
        let mut total = 0.0;
        for v in out.iter_mut() {
            *v = (*v - max).exp();
            total += *v;
        }
        out.iter_mut().for_each(|v| *v /= total);
    }

    /// log Σ_k w_k φ_k(x).
    #[inline]
    pub fn logpdf(&self, x: &[f64], scratch: &mut [f64]) -> f64 {
        let mut acc = f64::NEG_INFINITY;
        for (k, c) in self.components.iter().enumerate() {
            acc = log_add_exp(acc, self.log_weights[k] + c.logpdf(x, scratch));
        }
        acc
    }

    /// Responsibilities of n points (row-major n×d) into out (n×K), in parallel.
    pub fn responsibilities(&self, x: &[f64], out: &mut [f64]) {
        let (d, k) = (self.dim(), self.components.len());
        if let Some((a, b)) = &self.logistic {
            // Equal-covariance two components: z = aᵀx + b per point, then σ(±z) in one
            // vectorised pass (crate::math::fastmath::logistic_pairs).
            out.par_chunks_mut(CHUNK * 2)
                .zip(x.par_chunks(CHUNK * d))
                .for_each(|(o, xs)| {
                    let z: Vec<f64> = if d == 1 {
                        xs.iter().map(|xi| a[0] * xi + b).collect()
                    } else {
                        xs.chunks_exact(d)
                            .map(|row| a.iter().zip(row).map(|(p, q)| p * q).sum::<f64>() + b)
                            .collect()
                    };
                    crate::math::fastmath::logistic_pairs(&z, o);
                });
            return;
        }
        out.par_chunks_mut(CHUNK * k)
            .zip(x.par_chunks(CHUNK * d))
            .for_each(|(o, xs)| {
                let mut scratch = vec![0.0; d];
                for (orow, xrow) in o.chunks_mut(k).zip(xs.chunks(d)) {
                    self.responsibilities_into(xrow, orow, &mut scratch);
                }
            });
    }

    /// log q of n points into out (n), in parallel.
    pub fn logpdf_many(&self, x: &[f64], out: &mut [f64]) {
        let d = self.dim();
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK * d))
            .for_each(|(o, xs)| {
                let mut scratch = vec![0.0; d];
                for (ov, xrow) in o.iter_mut().zip(xs.chunks(d)) {
                    *ov = self.logpdf(xrow, &mut scratch);
                }
            });
    }

    /// Draw n points: label k from the weights, then x ~ φ_k. Chunk c (of [`CHUNK`] points)
    /// uses stream (key, first_stream + c), so draws cut at chunk boundaries reproduce one call.
    pub fn sample(&self, key: [u64; 2], first_stream: u64, x: &mut [f64], labels: &mut [i64]) {
        let d = self.dim();
        let cumulative: Vec<f64> = self
            .log_weights
            .iter()
            .scan(0.0, |acc, lw| {
                *acc += lw.exp();
                Some(*acc)
            })
            .collect();
        let last = self.components.len() - 1;
        x.par_chunks_mut(CHUNK * d)
            .zip(labels.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, (xs, ls))| {
                let mut rng = Stream::new(key, first_stream + c as u64);
                for (xrow, label) in xs.chunks_mut(d).zip(ls.iter_mut()) {
                    let u = rng.uniform() * cumulative[last];
                    let k = cumulative.iter().position(|&cw| u < cw).unwrap_or(last);
                    *label = k as i64;
                    self.components[k].draw_into(&mut rng, xrow);
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squared_distance_is_the_sum_of_squares_in_a_fixed_order() {
        let a: Vec<f64> = (0..37).map(|i| (i as f64 * 0.731).sin() * 3.0).collect();
        let b: Vec<f64> = (0..37).map(|i| (i as f64 * 0.377).cos()).collect();
        for d in 0..=37 {
            let naive: f64 = (0..d).map(|i| (a[i] - b[i]).powi(2)).sum();
            let fast = squared_distance(&a[..d], &b[..d]);
            if d <= 3 {
                assert_eq!(fast, naive, "d = {d}"); // the documented equality
            } else {
                assert!(
                    (fast - naive).abs() <= 1e-14 * naive,
                    "d = {d}: {fast} vs {naive}"
                );
            }
        }
    }

    #[test]
    fn cholesky_and_solves_roundtrip() {
        let m = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let cov = Cov::full(&m, 3).unwrap();
        let v = [1.0, -2.0, 0.5];
        let mut w = v;
        cov.precision_apply(&mut w);
        // Σ w = v
        for i in 0..3 {
            let s: f64 = (0..3).map(|j| m[i * 3 + j] * w[j]).sum();
            assert!((s - v[i]).abs() < 1e-12);
        }
        let mut z = v;
        cov.color(&mut z);
        cov.whiten(&mut z);
        for i in 0..3 {
            assert!((z[i] - v[i]).abs() < 1e-12);
        }
        assert!(Cov::full(&[1.0, 2.0, 2.0, 1.0], 2).is_err());
    }

    #[test]
    fn fast_path_equals_log_sum_exp() {
        let comps = vec![
            Gaussian::new(vec![-1.0, 0.5], Cov::scalar(2.0).unwrap()),
            Gaussian::new(vec![2.0, 1.0], Cov::scalar(2.0).unwrap()),
        ];
        let fast = Mixture::new(&[0.3, 0.7], comps.clone());
        let mut slow = Mixture::new(&[0.3, 0.7], comps);
        slow.logistic = None;
        let mut scratch = [0.0; 2];
        for x in [[0.0, 0.0], [30.0, -4.0], [-1e3, 1e3]] {
            let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
            fast.responsibilities_into(&x, &mut a, &mut scratch);
            slow.responsibilities_into(&x, &mut b, &mut scratch);
            assert!(
                (a[0] - b[0]).abs() < 1e-12 && (a[1] - b[1]).abs() < 1e-12,
                "{a:?} {b:?}"
            );
            assert!((a[0] + a[1] - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn sampling_is_chunk_deterministic() {
        let comps = vec![
            Gaussian::new(vec![0.0], Cov::scalar(1.0).unwrap()),
            Gaussian::new(vec![5.0], Cov::scalar(1.0).unwrap()),
        ];
        let mix = Mixture::new(&[0.25, 0.75], comps);
        let n = 3 * CHUNK + 7;
        let (mut x1, mut l1) = (vec![0.0; n], vec![0i64; n]);
        let (mut x2, mut l2) = (vec![0.0; n], vec![0i64; n]);
        mix.sample([1, 2], 0, &mut x1, &mut l1);
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| mix.sample([1, 2], 0, &mut x2, &mut l2));
        assert_eq!(x1, x2);
        assert_eq!(l1, l2);
        let frac = l1.iter().filter(|&&l| l == 0).count() as f64 / n as f64;
        assert!((frac - 0.25).abs() < 5.0 * (0.25f64 * 0.75 / n as f64).sqrt());
    }
}
