//! `--profile`: where each step's time went. The engines call [`start`] and [`record`]
//! around their phases; when profiling is off [`start`] returns `None` and nothing is timed.
//! [`report`] sums the phases per step and per layer; the binary logs it at the end.
//!
//! On the GPU engine kernels run asynchronously, so the host sees GPU time only where it
//! waits: a download (device to host) first waits for every kernel queued before it. The
//! report therefore shows "GPU trunk + waits" as the step time minus the host-side phases
//! (CPU FFN, host-to-device uploads), with the download time (copy + wait for the queued
//! trunk kernels) beside it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<Totals> = Mutex::new(Totals::new());

/// A timed phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// One whole forward pass (a chunk of tokens) of an engine, wall clock.
    Step,
    /// Device to host copy, including the wait for the kernels queued before it.
    Download,
    /// Host to device copy.
    Upload,
    /// A layer's dense FFN on the CPU.
    CpuFfn,
    /// A layer's mixer (attention or GDN) on the CPU.
    CpuMixer,
    /// Inside a CPU FFN: waiting for the GPU's PCIe share of the rows after the CPU's own
    /// rows were done (`gpu::share`).
    ShareWait,
}

struct Totals {
    steps: u64,
    step: Duration,
    download: Duration,
    upload: Duration,
    n_download: u64,
    n_upload: u64,
    cpu_ffn: Vec<Duration>,
    cpu_mixer: Vec<Duration>,
    share_wait: Duration,
    n_share: u64,
}

impl Totals {
    const fn new() -> Totals {
        Totals {
            steps: 0,
            step: Duration::ZERO,
            download: Duration::ZERO,
            upload: Duration::ZERO,
            n_download: 0,
            n_upload: 0,
            cpu_ffn: Vec::new(),
            cpu_mixer: Vec::new(),
            share_wait: Duration::ZERO,
            n_share: 0,
        }
    }
}

/// Turns profiling on (for the rest of the process, or until [`disable`]).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Turns profiling off again (benchmarks that profile a few steps between timed runs).
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The start of a timed phase, or `None` when profiling is off.
#[inline]
pub fn start() -> Option<Instant> {
    enabled().then(Instant::now)
}

/// Adds the time since `t0` to `phase` (of layer `il` for the per-layer phases).
#[inline]
pub fn record(phase: Phase, il: usize, t0: Option<Instant>) {
    if let Some(t0) = t0 {
        add(phase, il, t0.elapsed());
    }
}

/// Adds `d` to `phase`.
pub fn add(phase: Phase, il: usize, d: Duration) {
    // A poisoned lock only means another thread panicked mid-update; the sums stay usable.
    let mut t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let per_layer = |v: &mut Vec<Duration>| {
        if v.len() <= il {
            v.resize(il + 1, Duration::ZERO);
        }
        v[il] += d;
    };
    match phase {
        Phase::Step => {
            t.steps += 1;
            t.step += d;
        }
        Phase::Download => {
            t.n_download += 1;
            t.download += d;
        }
        Phase::Upload => {
            t.n_upload += 1;
            t.upload += d;
        }
        Phase::CpuFfn => per_layer(&mut t.cpu_ffn),
        Phase::CpuMixer => per_layer(&mut t.cpu_mixer),
        Phase::ShareWait => {
            t.n_share += 1;
            t.share_wait += d;
        }
    }
}

/// Forgets everything recorded so far.
pub fn reset() {
    *TOTALS.lock().unwrap_or_else(|e| e.into_inner()) = Totals::new();
}

/// The time split per step so far (empty when nothing was recorded).
pub fn report() -> String {
    let t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    if t.steps == 0 {
        return String::new();
    }
    let n = t.steps as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / n;
    let ffn: Duration = t.cpu_ffn.iter().sum();
    let mixer: Duration = t.cpu_mixer.iter().sum();
    let host = ffn + mixer + t.upload + t.download;
    let rest = t.step.saturating_sub(host);
    let mut s = format!(
        "profile over {} steps, per step: total {:.2} ms | CPU FFN {:.2} ms | CPU mixers {:.2} ms | downloads+waits {:.2} ms ({} copies) | uploads {:.2} ms ({} copies) | {} {:.2} ms",
        t.steps,
        ms(t.step),
        ms(ffn),
        ms(mixer),
        ms(t.download),
        t.n_download,
        ms(t.upload),
        t.n_upload,
        if t.n_download > 0 {
            "GPU trunk (not overlapped by a download)"
        } else {
            "embedding, LM head, rest"
        },
        ms(rest),
    );
    if t.n_share > 0 {
        s.push_str(&format!(
            "\n  PCIe share (GPU rows of CPU-placed FFN layers): {} per step, CPU waited {:.3} ms per step for them (inside CPU FFN)",
            t.n_share as f64 / n,
            ms(t.share_wait)
        ));
    }
    let n_layers = t.cpu_ffn.len().max(t.cpu_mixer.len());
    for il in 0..n_layers {
        let f = t.cpu_ffn.get(il).copied().unwrap_or_default();
        let m = t.cpu_mixer.get(il).copied().unwrap_or_default();
        if f.is_zero() && m.is_zero() {
            continue;
        }
        s.push_str(&format!(
            "\n  layer {il:>3}: mixer {:.3} ms, FFN {:.3} ms",
            ms(m),
            ms(f)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_splits_step_time_into_phases_and_layers() {
        // The only test touching the global totals, so no other test races it.
        enable();
        reset();
        add(Phase::Step, 0, Duration::from_millis(10));
        add(Phase::Step, 0, Duration::from_millis(10));
        add(Phase::CpuFfn, 2, Duration::from_millis(6));
        add(Phase::CpuMixer, 0, Duration::from_millis(2));
        add(Phase::Download, 0, Duration::from_millis(4));
        add(Phase::Upload, 0, Duration::from_millis(2));
        add(Phase::ShareWait, 0, Duration::from_millis(1));
        record(Phase::CpuFfn, 1, None);
        let r = report();
        assert!(r.contains("PCIe share"), "{r}");
        assert!(r.contains("0.5 per step, CPU waited 0.500 ms"), "{r}");
        assert!(r.contains("over 2 steps"), "{r}");
        assert!(r.contains("total 10.00 ms"), "{r}");
        assert!(r.contains("CPU FFN 3.00 ms"), "{r}");
        // 20 ms of steps minus 14 ms on the host leaves 6 ms, 3 per step.
        assert!(r.contains("by a download) 3.00 ms"), "{r}");
        assert!(r.contains("layer   2: mixer 0.000 ms, FFN 3.000 ms"), "{r}");
        assert!(!r.contains("layer   1"), "{r}");
        reset();
        assert!(report().is_empty());
    }
}
