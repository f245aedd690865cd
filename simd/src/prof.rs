//! Opt-in wall-clock accounting of named scopes (`HYBRID_OPPROF=1`): a development aid for
//! finding where a decode token's time goes. Off, each scope costs one relaxed load.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 off, 2 on
static TOTALS: Mutex<Vec<(&'static str, u64, Duration)>> = Mutex::new(Vec::new());

/// Whether `HYBRID_OPPROF` is set (read once).
#[inline]
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        2 => true,
        1 => false,
        _ => {
            let on = std::env::var_os("HYBRID_OPPROF").is_some();
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
    }
}

/// Adds `d` to `label`.
pub fn add(label: &'static str, d: Duration) {
    let mut t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = t
        .iter_mut()
        .find(|e| std::ptr::eq(e.0, label) || e.0 == label)
    {
        e.1 += 1;
        e.2 += d;
    } else {
        t.push((label, 1, d));
    }
}

/// Times until dropped.
pub struct Scope(Option<(&'static str, Instant)>);

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some((l, t)) = self.0 {
            add(l, t.elapsed());
        }
    }
}

/// A scope timing `label` (nothing when profiling is off).
#[inline]
pub fn scope(label: &'static str) -> Scope {
    Scope(enabled().then(|| (label, Instant::now())))
}

/// Clears the totals.
pub fn reset() {
    TOTALS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The totals: (label, count, total).
pub fn totals() -> Vec<(&'static str, u64, Duration)> {
    TOTALS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The median of benchmark timings (the upper one of an even count: the element at
/// `len / 2` once sorted), shared by the benchmark programs. Panics on an empty list.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[cfg(test)]
mod median_tests {
    #[test]
    fn median_is_the_middle_of_the_sorted_values() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(super::median(vec![f64::NAN, 1.0, 0.5]), 1.0);
    }
}
