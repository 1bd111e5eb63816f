//! The model family: Gaussians and their covariances, K-component mixtures (`mixture`), the
//! two-component mixture the engine trains (`two_mode`) and its trainable parameters
//! (`params`).

pub mod mixture;
pub mod params;
pub mod two_mode;
