//! Numerical building blocks: branch-free exp/ln and their slice passes (`fastmath`), and the
//! deterministic vectorised sums every batch statistic uses (`lane_sums`).

pub mod fastmath;
pub mod lane_sums;
