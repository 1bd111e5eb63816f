//! Fallible allocation of the buffers whose sizes come from the user (records, batches,
//! outputs): an allocation that fails becomes an error naming its size (MemoryError in
//! Python) instead of aborting the interpreter. The Python layer refuses sizes over the
//! memory limit before any work; this is the backstop when that limit is raised.

use crate::error::{KernelError, KernelResult};

/// The product of `factors` (element counts and dimensions), or an error when it overflows.
pub fn checked_len(factors: &[usize], what: &str) -> KernelResult<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| {
            let shape: Vec<String> = factors.iter().map(|f| f.to_string()).collect();
            KernelError::OutOfMemory(format!(
                "cannot allocate {what}: {} values overflow the address space",
                shape.join(" × ")
            ))
        })
}

/// `len` copies of `value`, reserved with `try_reserve_exact`.
pub fn try_filled<T: Clone>(len: usize, value: T, what: &str) -> KernelResult<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        let bytes = len as f64 * std::mem::size_of::<T>() as f64;
        KernelError::OutOfMemory(format!(
            "cannot allocate {what}: {len} values ({:.3} GiB)",
            bytes / (1u64 << 30) as f64
        ))
    })?;
    v.resize(len, value);
    Ok(v)
}

/// `try_filled` of the product of `factors`.
pub fn try_zeroed<T: Clone + Default>(factors: &[usize], what: &str) -> KernelResult<Vec<T>> {
    try_filled(checked_len(factors, what)?, T::default(), what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_sizes_are_errors_not_aborts() {
        let e = try_zeroed::<f64>(&[1 << 40, 1 << 20], "records").unwrap_err();
        assert!(
            matches!(&e, KernelError::OutOfMemory(m) if m.contains("records")),
            "{e}"
        );
        let e = try_zeroed::<f64>(&[usize::MAX, 2], "records").unwrap_err();
        assert!(e.to_string().contains("overflow"), "{e}");
        assert_eq!(try_zeroed::<i64>(&[3, 2], "x").unwrap(), vec![0i64; 6]);
    }
}
