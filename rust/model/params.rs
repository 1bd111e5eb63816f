//! The trainable parameters θ = (weight parameter, μ_o, μ_n, scale parameters) and how the
//! weight and the scales are parametrised.

/// Clip bounds of the direct weight parametrisation (2510.18874's code).
pub const DIRECT_EPS: f64 = 1e-3;

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
    /// log σ from the stored parameter value (no overflow for the log parametrisation).
    #[inline]
    pub fn log_sd(self, value: f64) -> f64 {
        match self {
            ScaleParam::Direct => value.ln(),
            ScaleParam::Log => value,
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

/// Trainable parameters θ = (weight parameter, μ_o, μ_n, scale parameters); the weight
/// parameter is η = logit α or α itself (direct). `scale` holds the parameters of (σ_o, σ_n)
/// (σ itself or log σ, [`ScaleParam`]); they move only when the problem trains scales, and
/// otherwise hold the start σ (direct) for the records. A new trainable group is one field here
/// and in [`Grad`], one entry of `Problem::lr_scale`, one score term in `accumulate_score` and
/// one line in `Problem::apply_update` (and in the extra states that copy θ).
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub weight: f64,
    pub old_mean: Vec<f64>,
    pub new_mean: Vec<f64>,
    pub scale: [f64; 2],
}

impl Params {
    pub fn alpha(&self, wp: WeightParam) -> f64 {
        match wp {
            WeightParam::Logit => crate::model::mixture::sigmoid(self.weight),
            WeightParam::Direct => self.weight,
        }
    }
    pub fn from_alpha(
        alpha: f64,
        old_mean: Vec<f64>,
        new_mean: Vec<f64>,
        wp: WeightParam,
    ) -> Params {
        let weight = match wp {
            WeightParam::Logit => (alpha / (1.0 - alpha)).ln(),
            WeightParam::Direct => alpha,
        };
        Params {
            weight,
            old_mean,
            new_mean,
            scale: [1.0, 1.0],
        }
    }
    pub(crate) fn is_finite(&self) -> bool {
        self.weight.is_finite()
            && self
                .old_mean
                .iter()
                .chain(&self.new_mean)
                .chain(&self.scale)
                .all(|v| v.is_finite())
    }
    pub(crate) fn copy_from(&mut self, other: &Params) {
        self.weight = other.weight;
        self.old_mean.copy_from_slice(&other.old_mean);
        self.new_mean.copy_from_slice(&other.new_mean);
        self.scale = other.scale;
    }
}
