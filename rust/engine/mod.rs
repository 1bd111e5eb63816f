//! The generic training core (docs: theory-scores, theory-estimators, theory-training-loop),
//! written once, generic over the objective (`crate::objectives`, one module per objective)
//! and monomorphised: each entry point dispatches on the objective once per call.
//!
//! Every objective's gradient is ĝ = Σ_i ω_i c_i s(x_i): the objective contributes its
//! sampling distribution and the per-sample coefficient c_i; ω_i = 1/B for a finite batch,
//! quadrature weights for the exact expectation (`crate::population`). One core serves both.
//!
//! Layers, each importing only those above it:
//! - vocabulary: [`state`] (models, replicate, gradient, averaging) and [`batch`] (work arrays);
//!   the objectives build on these alone;
//! - one batch: [`sampling`] (draw), [`score`] (densities and ĝ), [`batch_gradient`] (the
//!   two fused into one vectorised pass per finite batch);
//! - the loop: [`problem`] (models, update, runaway rule, records) and [`training`]
//!   (replicates in parallel, the gradient study).

pub mod batch;
pub mod batch_gradient;
pub mod problem;
pub mod sampling;
pub mod score;
pub mod state;
pub mod training;
