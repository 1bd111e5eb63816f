//! Random numbers: the scalar Xoshiro256++ streams (`rng`), the vectorised lane streams the
//! training loop draws its batches from (`simd_rng`, with the Ziggurat tables), and the
//! replay slots and starvation counts (`starvation`). Every stream is seeded from (root key,
//! stream index) only, so results do not depend on the number of threads.

pub mod rng;
pub mod simd_rng;
pub mod starvation;
