//! mixforget's Rust kernels, laid out by wing (each wing imports only the ones listed before
//! it): `math` and `random` (leaves), `buffers` (checked allocations), `model` (Gaussians,
//! mixtures, the trainable parameters), `engine` vocabulary (`engine::state`,
//! `engine::batch`), `objectives` (one module per objective), the `engine` loop, `population`
//! (the exact infinite-batch flow) and `bindings` (the `mixforget._core` extension module).

pub mod bindings;
pub mod buffers;
pub mod engine;
pub mod error;
pub mod math;
pub mod mixture_engine;
pub mod model;
pub mod objectives;
pub mod population;
pub mod random;
