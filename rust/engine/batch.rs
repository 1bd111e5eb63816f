//! A batch and its per-sample work arrays ([`Batch`]), and the leave-one-out mean the
//! baselines use ([`LooMean`]). Nothing here depends on the objectives or the loop.

use crate::buffers::{try_filled, try_zeroed};
use crate::error::KernelResult;
use crate::math::lane_sums::{lane_sums, lane_sums_padded, sum, SUM_LANES};

/// The fused finite-batch pass (`engine::batch_gradient`) runs a batch's last, short block of
/// densities padded to a multiple of this many rows (one AVX-512 vector, two AVX2 ones): a
/// length the vectoriser covers, where a batch of 4 would run scalar.
pub const TAIL_ROWS: usize = 8;
/// A batch from [`Batch::try_new`] has every per-sample array padded to a multiple of this
/// many rows (the partial sums' block, a multiple of [`TAIL_ROWS`]), so that the last block of
/// densities and of every batch sum runs whole (`lane_sums_padded`); the padding rows of x
/// and ω stay 0 and no result reads a padding row.
const PAD_ROWS: usize = SUM_LANES;
const _: () = assert!(PAD_ROWS.is_multiple_of(TAIL_ROWS));

/// A batch of points with their averaging weights ω (Σ ω = 1) and old labels, plus
/// per-sample work arrays: allocated once per replicate, reused every step.
pub struct Batch {
    pub dim: usize,
    pub len: usize,
    pub x: Vec<f64>,
    pub omega: Vec<f64>,
    /// Which sampling component each point came from (see `draw_batch`).
    pub(crate) component: Vec<u8>,
    /// Raw random words of the replay and label draws (see `draw_batch`).
    pub(crate) words: Vec<u64>,
    /// Replay fraction used by the importance weights (λ, or round(λB)/B when stratified).
    pub replay_used: f64,
    /// log q_θ(x_i).
    pub(crate) log_q: Vec<f64>,
    /// The model's old-component responsibility r_o(x_i).
    pub(crate) resp_old: Vec<f64>,
    /// log α φ_o(x_i) and log (1−α) φ_n(x_i) of the model; then the per-sample score
    /// coefficients of the old and new means (`accumulate_score`).
    pub(crate) model_old_part: Vec<f64>,
    pub(crate) model_new_part: Vec<f64>,
    /// The two log parts of the density the objective compares with
    /// (`Objective::compared_density`); `compared_new` then holds the weight score.
    pub(crate) compared_old: Vec<f64>,
    pub(crate) compared_new: Vec<f64>,
    /// log of the compared density.
    pub(crate) log_compared: Vec<f64>,
    /// The objective's per-sample value, then its coefficient c_i.
    pub(crate) value: Vec<f64>,
    /// The objective's second per-sample quantity beside its value: an importance weight
    /// (1 without one) or a log-ratio log q_θ(x_i) − log q_2(x_i) against the compared
    /// density.
    pub(crate) weight_or_log_ratio: Vec<f64>,
    pub(crate) scratch: Vec<f64>,
}

impl Batch {
    /// The batch's length rounded up to [`PAD_ROWS`] when every per-sample array has room for
    /// that many rows (always for a [`Batch::try_new`] batch; not after `reset`, which
    /// exact evaluations use).
    #[inline(always)]
    pub(crate) fn padded_len(&self) -> Option<usize> {
        let padded = self.len.next_multiple_of(PAD_ROWS);
        let columns = [
            &self.omega,
            &self.log_q,
            &self.resp_old,
            &self.model_old_part,
            &self.model_new_part,
            &self.compared_old,
            &self.compared_new,
            &self.log_compared,
            &self.value,
            &self.weight_or_log_ratio,
        ];
        let room = self.x.len() >= padded * self.dim && columns.iter().all(|c| c.len() >= padded);
        room.then_some(padded)
    }
}

impl Batch {
    /// A batch buffer for internal, bounded sizes (panics if it cannot be allocated).
    pub fn new(dim: usize, capacity: usize) -> Batch {
        Batch::try_new(dim, capacity).expect("batch buffer")
    }

    /// A batch buffer whose size comes from the user: an error naming the size when it
    /// cannot be allocated.
    pub fn try_new(dim: usize, capacity: usize) -> KernelResult<Batch> {
        let what = "the batch buffers";
        // room for a padded last block (`PAD_ROWS`)
        let padded = capacity
            .checked_next_multiple_of(PAD_ROWS)
            .ok_or_else(|| format!("{what}: {capacity} points overflow"))?;
        let column = || try_zeroed::<f64>(&[padded], what);
        Ok(Batch {
            dim,
            len: capacity,
            x: try_zeroed(&[padded, dim], what)?,
            omega: {
                let mut omega = try_filled(padded, 1.0 / capacity.max(1) as f64, what)?;
                omega[capacity..].iter_mut().for_each(|w| *w = 0.0);
                omega
            },
            component: try_zeroed(&[capacity], what)?,
            words: try_zeroed(&[capacity], what)?,
            replay_used: 0.0,
            log_q: column()?,
            resp_old: column()?,
            model_old_part: column()?,
            model_new_part: column()?,
            compared_old: column()?,
            compared_new: column()?,
            log_compared: column()?,
            value: column()?,
            weight_or_log_ratio: column()?,
            scratch: vec![0.0; dim],
        })
    }

    /// Reshape for `len` points in `dim` dimensions, reusing the allocations (exact
    /// evaluations rebuild their quadrature batch every step). ω is left for the caller to
    /// fill. The arrays are cut to `len` (no padding: exact evaluations do not use it).
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
            &mut self.model_old_part,
            &mut self.model_new_part,
            &mut self.compared_old,
            &mut self.compared_new,
            &mut self.log_compared,
            &mut self.value,
            &mut self.weight_or_log_ratio,
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
        match self.padded_len() {
            Some(_) => lane_sums_padded([&self.omega[..]], self.len, |[o]| [o])[0],
            None => sum(&self.omega[..self.len]),
        }
    }

    /// (Σ ω_i v_i, Σ ω_i) in one pass.
    #[inline(always)]
    pub(crate) fn weighted_value_and_weight_sums(&self) -> (f64, f64) {
        let term = |[o, v]: [f64; 2]| [o * v, o];
        let [wv, w] = match self.padded_len() {
            Some(p) => lane_sums_padded([&self.omega[..p], &self.value[..p]], self.len, term),
            None => lane_sums([&self.omega[..self.len], &self.value[..self.len]], term),
        };
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

/// 1/sd of ω-weighted values about their weighted `mean` (population sd, Σω given as `sum_w`);
/// 0 when the values are all equal, so a normalised advantage is then 0. The normalisation of
/// NewModeREINFORCE's 'normalised' and KLRegularizedRL's 'group' advantages.
#[inline(always)]
pub fn inverse_weighted_sd(omega: &[f64], values: &[f64], mean: f64, sum_w: f64) -> f64 {
    let var = omega
        .iter()
        .zip(values)
        .map(|(w, v)| w * (v - mean) * (v - mean))
        .sum::<f64>()
        / sum_w;
    if var > 0.0 {
        1.0 / var.sqrt()
    } else {
        0.0
    }
}
