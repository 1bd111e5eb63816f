//! Forward KL: supervised fine-tuning on new-task data (docs: theory-forward-kl); Python class
//! `mixforget.ForwardKL`.
//!
//! Loss KL(p_train ‖ q_θ) with p_train = (1−λ) p_new* + λ p_old*. The samples come from
//! p_train, not from the model, and
//!
//!   ĝ = −(1/B) Σ_i s(x_i),   x_i ~ p_train,
//!
//! so c_i = −1. Its optimum puts weight α = λ on the old mode: without replay (λ = 0) the
//! old mode's mass is forgotten. Replay slots: Bernoulli (each sample is replay with
//! probability λ) or stratified (exactly round(λB) replay samples per batch).

use super::{likelihood_coefficients, Objective, Source};
use crate::engine::batch::Batch;
use crate::engine::state::{Averager, Models};
use crate::model::two_mode::Mix2;
use crate::random::starvation::Slots;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForwardKL {
    /// λ ∈ [0, 1).
    pub replay: f64,
    pub replay_slots: Slots,
}

impl Objective for ForwardKL {
    const KIND: &'static str = "ForwardKL";

    fn replay(&self) -> (f64, Slots) {
        (self.replay, self.replay_slots)
    }

    /// The new-task data p_new* (replay adds p_old*).
    fn source<'a>(&self, m: &'a Models) -> Source<'a> {
        Source::Single(&m.target.new)
    }

    fn compared_density<'a>(&self, _m: &'a Models) -> Option<&'a Mix2> {
        None
    }

    #[inline(always)]
    fn values(&self, _m: &Models, _batch: &mut Batch) {}

    #[inline(always)]
    fn coefficients(&self, batch: &mut Batch, _how: Averager) {
        likelihood_coefficients(batch)
    }
}
