//! The K-component engine (issue 20; the shared spec is docs/design.md, "The K-component
//! engine"): finite-batch training of a K-component Gaussian mixture q_θ = Σ_j w_j φ(μ_j, Σ_j)
//! against a K-component target p*, for ForwardKL, ReverseKL and KLRegularizedRL.
//!
//! Parameters θ = (η_0 … η_{K−2}, μ_0 … μ_{K−1}) in this flat order everywhere, with
//! w = softmax(η_0, …, η_{K−2}, 0) (the last logit pinned at 0, so K = 2 is the two-mode
//! engine's logit parametrisation). Covariances are fixed.
//!
//! Why a second engine: the two-mode engine (`crate::engine`) is specialised to K = 2 (one
//! logistic responsibility, SIMD-fused batch pass) and stays bit for bit as it is; this one
//! is written for any K ≥ 2, column by column over the batch. It reuses the model's
//! [`Gaussian`](crate::model::mixture::Gaussian)/[`Cov`](crate::model::mixture::Cov), the
//! replicate streams ([`LaneStream`](crate::random::simd_rng::LaneStream) from (key,
//! replicate)), the replay slots ([`Slots`](crate::random::starvation::Slots)), the objectives'
//! field structs and replay weight (`crate::objectives`), the leave-one-out mean and the
//! runaway constants (`crate::engine`).
//!
//! Layers: [`problem`] (validated problem, softmax, update, runaway rule), [`batch`] (drawing
//! a labelled batch, densities and the score sums of ĝ), [`simulation`] (replicates in
//! parallel with records; the one-step gradient study).

pub mod batch;
pub mod problem;
pub mod simulation;

pub use problem::{MixtureObjective, Problem, ProblemSpec, Update};
pub use simulation::{estimate_gradient, MixtureRecords, Simulation};
