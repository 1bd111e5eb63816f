//! Thread pools per requested thread count, and running a kernel on one with the GIL released
//! and panics caught.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use super::errors::*;
use crate::error::KernelResult;

/// Most thread pools kept alive at once. Each distinct `threads` value needs a pool of that
/// size (rayon cannot cap a pool's parallelism per call); keeping them all would leak OS
/// threads (one pool per value ever used), so the least recently used pool beyond this bound
/// is dropped, and its threads exit once the calls running on it return.
pub(crate) const MAX_POOLS: usize = 4;

/// Threads a pool of `threads` really gets: 0 means all cores, and more threads than cores
/// are capped at the core count (results do not depend on the thread count: each replicate
/// and chunk owns its random stream, so the cap changes speed only).
pub(crate) fn pool_size(threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 0 {
        cores
    } else {
        threads.min(cores)
    }
}

/// The pool for `threads` from a small LRU cache (most recently used last).
pub(crate) fn pool(threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
    /// (pool size, pool), least recently used first.
    type PoolCache = Vec<(usize, Arc<rayon::ThreadPool>)>;
    static POOLS: OnceLock<Mutex<PoolCache>> = OnceLock::new();
    let size = pool_size(threads);
    let mut pools = POOLS
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .map_err(|_| PyRuntimeError::new_err("thread-pool cache poisoned"))?;
    if let Some(at) = pools.iter().position(|(n, _)| *n == size) {
        let entry = pools.remove(at);
        let p = entry.1.clone();
        pools.push(entry);
        return Ok(p);
    }
    let p = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(size)
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start {size} threads: {e}")))?,
    );
    if pools.len() >= MAX_POOLS {
        pools.remove(0);
    }
    pools.push((size, p.clone()));
    Ok(p)
}

/// Run `f` without the GIL, on `threads` threads, turning errors and panics into exceptions.
pub(crate) fn run<T: Send>(
    py: Python<'_>,
    threads: usize,
    f: impl FnOnce() -> KernelResult<T> + Send,
) -> PyResult<T> {
    let p = pool(threads)?;
    let out = py.detach(|| catch_unwind(AssertUnwindSafe(|| p.install(f))));
    match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BindingError::Kernel(e).into()),
        Err(_) => Err(BindingError::Panicked.into()),
    }
}
