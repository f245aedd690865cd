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
