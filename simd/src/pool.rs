//! Persistent worker pool, pinned to physical cores, for the mat-vec kernels.
//!
//! The calling thread is worker 0 (unpinned); workers 1..n are pinned to one logical CPU
//! of distinct physical cores each. A job is published by bumping an epoch counter; idle
//! workers spin on it for a while (`SPIN_ITERS`) and then park, and the publisher unparks
//! only workers that said they were parked (spin-then-park barrier).
//!
//! Determinism: `matmul` splits rows into fixed chunks of `ROW_CHUNK` rows handed out by an
//! atomic counter; a row's result depends only on the kernel, never on which thread ran it,
//! so outputs are bit-identical for any thread count.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::kernels::{compute_rows, KernelSet};
use crate::{Isa, MatRef, QuantizedActs};

/// How long an idle worker (and the caller waiting for workers) spins before parking or
/// yielding. Long enough to cover the gap between the matmuls of one layer, short enough not
/// to burn a shared machine's cores. `HYBRID_POOL_SPIN_US` overrides it (0: park at once).
const DEFAULT_SPIN_US: u64 = 200;

fn spin_budget() -> std::time::Duration {
    static US: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let us = *US.get_or_init(|| {
        std::env::var("HYBRID_POOL_SPIN_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_SPIN_US)
    });
    std::time::Duration::from_micros(us)
}

/// Spins until `done()` or the spin budget runs out; returns whether `done()` became true.
fn spin_until(done: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    let budget = spin_budget();
    loop {
        for _ in 0..64 {
            if done() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= budget {
            return done();
        }
    }
}

type Job = *const (dyn Fn(usize, usize) + Sync);

struct Shared {
    n: usize,
    epoch: AtomicU64,
    /// The current job; written by the publisher before `epoch` is bumped (Release) and
    /// read by workers after they observe the new epoch (Acquire).
    job: UnsafeCell<Option<Job>>,
    /// Workers (1..n) that finished the current epoch's job.
    done: AtomicUsize,
    parked: Vec<AtomicBool>,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    /// `prof` only: each worker's start and end of the current job, ns since `base`.
    prof_times: Vec<(AtomicU64, AtomicU64)>,
    base: std::time::Instant,
}

// SAFETY: `job` is only written by the thread that owns `Pool::run` while no worker reads
// it (between epochs), and the closure it points at is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced while `run` keeps it alive.
unsafe impl Send for Shared {}

/// Persistent pinned worker pool; see the module docs.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    isa: Isa,
    /// Serialises `run` calls from several threads (the pool runs one job at a time).
    run_lock: Mutex<()>,
    acts_a: Mutex<QuantizedActs>,
    acts_b: Mutex<QuantizedActs>,
}

/// The number of physical cores: distinct (physical id, core id) pairs in /proc/cpuinfo on
/// Linux, else `available_parallelism`.
pub fn physical_cores() -> usize {
    physical_core_cpus().len().max(1)
}

/// One logical CPU id per physical core, in /proc/cpuinfo order.
fn physical_core_cpus() -> Vec<usize> {
    let fallback = || {
        (0..thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1))
            .collect::<Vec<_>>()
    };
    let Ok(text) = std::fs::read_to_string("/proc/cpuinfo") else {
        return fallback();
    };
    let mut seen = std::collections::HashSet::new();
    let mut cpus = Vec::new();
    for entry in text.split("\n\n") {
        let field = |name: &str| {
            entry.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name)
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            })
        };
        let Some(cpu) = field("processor") else {
            continue;
        };
        match (field("physical id"), field("core id")) {
            (Some(p), Some(c)) => {
                if seen.insert((p, c)) {
                    cpus.push(cpu);
                }
            }
            _ => return fallback(),
        }
    }
    if cpus.is_empty() {
        fallback()
    } else {
        cpus
    }
}

impl Pool {
    /// A pool of `n_threads` (≥ 1, counting the caller) using `Isa::detect()` kernels.
    pub fn new(n_threads: usize) -> Pool {
        Pool::with_isa(n_threads, Isa::detect())
    }

    /// A pool with one thread per physical core.
    pub fn with_physical_cores() -> Pool {
        Pool::new(physical_cores())
    }

    /// A pool using the kernels of `isa` (panics if this CPU lacks it).
    pub fn with_isa(n_threads: usize, isa: Isa) -> Pool {
        assert!(n_threads >= 1, "a pool needs at least one thread");
        assert!(isa.is_available(), "ISA {isa} is not available on this CPU");
        let shared = Arc::new(Shared {
            n: n_threads,
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            done: AtomicUsize::new(0),
            parked: (0..n_threads).map(|_| AtomicBool::new(false)).collect(),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            prof_times: (0..n_threads)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
            base: std::time::Instant::now(),
        });
        let cpus = physical_core_cpus();
        let core_ids = core_affinity::get_core_ids().unwrap_or_default();
        let threads = (1..n_threads)
            .map(|i| {
                let sh = Arc::clone(&shared);
                // Worker i takes the i-th physical core (wrapping if oversubscribed).
                let cpu = cpus.get(i % cpus.len().max(1)).copied();
                let core = cpu.and_then(|c| core_ids.iter().find(|id| id.id == c).copied());
                thread::Builder::new()
                    .name(format!("simd-pool-{i}"))
                    .spawn(move || {
                        if let Some(core) = core {
                            if !core_affinity::set_for_current(core) {
                                tracing::debug!(worker = i, cpu = core.id, "could not pin worker");
                            }
                        }
                        worker(&sh, i);
                    })
                    .expect("spawning a pool worker thread")
            })
            .collect();
        tracing::info!(threads = n_threads, isa = isa.name(), "simd pool started");
        Pool {
            shared,
            threads,
            isa,
            run_lock: Mutex::new(()),
            acts_a: Mutex::new(QuantizedActs::new()),
            acts_b: Mutex::new(QuantizedActs::new()),
        }
    }

    pub fn n_threads(&self) -> usize {
        self.shared.n
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Runs `f(thread_index, n_threads)` on every worker (the caller is index 0) and returns
    /// when all have finished. A panic in any worker is re-raised here. Not re-entrant:
    /// `f` must not call back into this pool (that would deadlock on `run_lock`).
    pub fn run(&self, f: &(dyn Fn(usize, usize) + Sync)) {
        self.run_with_lead(&mut || {}, f);
    }

    /// `run`, with the caller doing `lead()` after the workers were woken and before it
    /// takes its own part (`f(0, n)`): host work that must happen once per job (e.g.
    /// queuing the GPU's share of the rows) without holding the other workers back.
    pub fn run_with_lead(&self, lead: &mut dyn FnMut(), f: &(dyn Fn(usize, usize) + Sync)) {
        let sh = &*self.shared;
        if sh.n == 1 {
            lead();
            f(0, 1);
            return;
        }
        // Poisoning only means an earlier job panicked; the pool itself is still consistent.
        let _guard = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the 'static lifetime is a lie only for the duration of this call: workers
        // dereference the pointer only between the epoch bump below and their `done`
        // increment, and we wait for all `done` increments before returning.
        let job: Job = unsafe {
            std::mem::transmute::<
                &(dyn Fn(usize, usize) + Sync),
                &'static (dyn Fn(usize, usize) + Sync),
            >(f)
        };
        // SAFETY: no worker reads `job` now: all finished the previous epoch (we waited).
        unsafe { *sh.job.get() = Some(job) };
        sh.done.store(0, Ordering::Relaxed);
        let prof = crate::prof::enabled();
        let t_pub = sh.base.elapsed().as_nanos() as u64;
        sh.epoch.fetch_add(1, Ordering::SeqCst);
        for (i, p) in sh.parked.iter().enumerate().skip(1) {
            if p.swap(false, Ordering::SeqCst) {
                self.threads[i - 1].thread().unpark();
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| {
            lead();
            f(0, sh.n)
        }));
        let t_mine = prof.then(std::time::Instant::now);
        let all_done = || sh.done.load(Ordering::Acquire) >= sh.n - 1;
        if !spin_until(all_done) {
            while !all_done() {
                thread::yield_now();
            }
        }
        if let Some(t) = t_mine {
            let end = sh.base.elapsed().as_nanos() as u64;
            crate::prof::add("pool: caller waits for workers", t.elapsed());
            let ns = |v: u64| std::time::Duration::from_nanos(v);
            for (s, e) in &sh.prof_times[1..] {
                let (s, e) = (s.load(Ordering::Relaxed), e.load(Ordering::Relaxed));
                crate::prof::add("pool: worker wake latency", ns(s.saturating_sub(t_pub)));
                crate::prof::add("pool: worker idle at end", ns(end.saturating_sub(e)));
            }
        }
        if let Err(e) = mine {
            std::panic::resume_unwind(e);
        }
        if sh.panicked.swap(false, Ordering::SeqCst) {
            panic!("a simd pool worker panicked");
        }
    }

    /// Sequential read bandwidth (bytes/s) of this pool's threads over `buf` (each thread
    /// reads its share with the widest vector loads, prefetching ahead like the kernels;
    /// give a buffer several times the last-level cache): the median of `reps` timed passes
    /// after one warm-up. The roofline the benchmarks divide by.
    pub fn read_bandwidth(&self, buf: &[u64], reps: usize) -> f64 {
        self.read_bandwidth_with(buf, reps, true)
    }

    /// `read_bandwidth` with the read loop's software prefetch on or off (`x86::stream_xor_with`).
    pub fn read_bandwidth_with(&self, buf: &[u64], reps: usize, prefetch: bool) -> f64 {
        let n = self.n_threads();
        let sink = AtomicU64::new(0);
        let mut times = Vec::new();
        for _ in 0..reps.max(1) + 1 {
            let t = std::time::Instant::now();
            self.run(&|i, _| {
                let part = buf.len() / n;
                let mine = &buf[i * part..(i + 1) * part];
                // The widest loads and (with `prefetch`) the kernels' software prefetch, or
                // they would beat their roofline; without it, the hardware prefetchers alone.
                #[cfg(target_arch = "x86_64")]
                let x = crate::x86::stream_xor_with(mine, prefetch);
                #[cfg(not(target_arch = "x86_64"))]
                let x = {
                    let _ = prefetch;
                    mine.iter().fold(0, |a, w| a ^ w)
                };
                sink.fetch_add(x, Ordering::Relaxed);
            });
            times.push(t.elapsed().as_secs_f64());
        }
        std::hint::black_box(sink.load(Ordering::Relaxed));
        times.remove(0);
        times.sort_by(|a, b| a.total_cmp(b));
        (buf.len() / n * n * 8) as f64 / times[times.len() / 2]
    }

    /// `out[t * rows + r] = W[r] · x_t` for the k tokens of `x` (k × cols, row-major).
    pub fn matmul(&self, w: MatRef<'_>, x: &[f32], k: usize, out: &mut [f32]) {
        self.matmul_from(w, x, k, out, 0, &mut |_| {});
    }

    /// `matmul` for rows `r0..` only (the cells of rows below `r0` are left as they are):
    /// `with_acts` sees the converted input on the calling thread once the other workers are
    /// on their rows (before the caller takes its own), so that another device
    /// can compute rows `..r0` from the same bits meanwhile (the GPU's PCIe share,
    /// `hybrid-run`'s `gpu::share`). Every value is bit-identical to `matmul`'s.
    pub fn matmul_from(
        &self,
        w: MatRef<'_>,
        x: &[f32],
        k: usize,
        out: &mut [f32],
        r0: usize,
        with_acts: &mut dyn FnMut(&QuantizedActs),
    ) {
        assert_eq!(
            x.len(),
            k * w.cols,
            "matmul: x has {} values, k × cols = {}",
            x.len(),
            k * w.cols
        );
        assert_eq!(
            out.len(),
            k * w.rows,
            "matmul: out has {} values, k × rows = {}",
            out.len(),
            k * w.rows
        );
        let ks = KernelSet::new(w.ty, self.isa);
        let mut acts = self.acts_a.lock().unwrap_or_else(|e| e.into_inner());
        let pq = crate::prof::scope("acts.quantize (inside mm)");
        acts.quantize_with(w.ty, x, k, w.cols, self);
        drop(pq);
        #[cfg(target_arch = "x86_64")]
        if ks.wants_amx(k) {
            acts.build_amx(Some(self));
        }
        let acts = &*acts;
        let rows = w.rows;
        let r0 = r0.min(rows);
        let out_ptr = SendPtr(out.as_mut_ptr());
        let chunk = ks.chunk_rows(w.cols, k);
        let n_chunks = (rows - r0).div_ceil(chunk);
        let shares = Shares::new(n_chunks, self.n_threads());
        self.run_with_lead(&mut || with_acts(acts), &|i, _| {
            while let Some(c) = shares.next(i) {
                let r = r0 + c * chunk..(r0 + (c + 1) * chunk).min(rows);
                // SAFETY (of the stores): t < k and r < rows, so the cells are inside `out`
                // (k × rows, checked above); each (r, t) belongs to exactly one chunk, claimed
                // by one thread.
                compute_rows(&ks, &w, acts, r, Store { out: out_ptr, rows });
            }
        });
    }

    /// `matmul` of several matrices that read the same input `x` (k × cols), e.g. the input
    /// projections of one layer: `jobs[j].1[t * rows_j + r] = W_j[r] · x_t`. When every
    /// weight type takes the same activation format (the K-quants all take Q8_K) the input
    /// is converted once and all rows go through one parallel region; otherwise each matrix
    /// runs as its own `matmul`. Every value is bit-identical to `matmul`'s.
    pub fn matmul_many(&self, x: &[f32], k: usize, jobs: &mut [(MatRef<'_>, &mut [f32])]) {
        let Some(first) = jobs.first().map(|j| j.0) else {
            return;
        };
        if jobs
            .iter()
            .any(|(w, _)| !crate::acts::same_acts(first.ty, w.ty) || w.cols != first.cols)
        {
            for (w, out) in jobs.iter_mut() {
                self.matmul(*w, x, k, out);
            }
            return;
        }
        assert_eq!(
            x.len(),
            k * first.cols,
            "matmul_many: x has {} values, k × cols = {}",
            x.len(),
            k * first.cols
        );
        struct Part<'w> {
            w: MatRef<'w>,
            ks: KernelSet,
            out: SendPtr,
            chunk: usize,
            /// Index of this matrix's first work item.
            start: usize,
        }
        let mut parts = Vec::with_capacity(jobs.len());
        let mut n_items = 0;
        for (w, out) in jobs.iter_mut() {
            assert_eq!(
                out.len(),
                k * w.rows,
                "matmul_many: out has {} values, k × rows = {}",
                out.len(),
                k * w.rows
            );
            let ks = KernelSet::new(w.ty, self.isa);
            let chunk = ks.chunk_rows(w.cols, k);
            parts.push(Part {
                w: *w,
                ks,
                out: SendPtr(out.as_mut_ptr()),
                chunk,
                start: n_items,
            });
            n_items += w.rows.div_ceil(chunk);
        }
        let mut acts = self.acts_a.lock().unwrap_or_else(|e| e.into_inner());
        acts.quantize_with(first.ty, x, k, first.cols, self);
        #[cfg(target_arch = "x86_64")]
        if parts.iter().any(|p| p.ks.wants_amx(k)) {
            acts.build_amx(Some(self));
        }
        let acts = &*acts;
        let parts = &parts;
        let shares = Shares::new(n_items, self.n_threads());
        self.run(&|i, _| {
            while let Some(c) = shares.next(i) {
                let p = parts
                    .iter()
                    .rev()
                    .find(|p| p.start <= c)
                    .expect("part 0 starts at item 0");
                let c = c - p.start;
                let rows = p.w.rows;
                let r = c * p.chunk..((c + 1) * p.chunk).min(rows);
                // SAFETY (of the stores): t < k and r < rows_j, inside job j's output
                // (k × rows_j, checked above); each (j, r, t) belongs to one work item,
                // claimed by one thread.
                compute_rows(&p.ks, &p.w, acts, r, Store { out: p.out, rows });
            }
        });
    }

    /// `out[t * n_ff + r] = silu(Wg[r]·x_t) · (Wu[r]·x_t)`: gate and up rows of one chunk are
    /// computed back to back by the same thread. `silu(g) = g / (1 + exp(−g))` in f32 with
    /// Rust's `f32::exp` (the platform libm `expf`).
    pub fn ffn_gate_up_swiglu(
        &self,
        gate: MatRef<'_>,
        up: MatRef<'_>,
        x: &[f32],
        k: usize,
        out: &mut [f32],
    ) {
        self.ffn_gate_up_swiglu_from(gate, up, x, k, out, 0, &mut |_| {});
    }

    /// `ffn_gate_up_swiglu` for rows `r0..` only, with `with_acts` seeing the converted input
    /// first (as [`Pool::matmul_from`]; when gate and up take different activation formats
    /// it sees the gate's).
    #[allow(clippy::too_many_arguments)]
    pub fn ffn_gate_up_swiglu_from(
        &self,
        gate: MatRef<'_>,
        up: MatRef<'_>,
        x: &[f32],
        k: usize,
        out: &mut [f32],
        r0: usize,
        with_acts: &mut dyn FnMut(&QuantizedActs),
    ) {
        assert_eq!(
            (gate.rows, gate.cols),
            (up.rows, up.cols),
            "gate is {}x{}, up is {}x{}",
            gate.rows,
            gate.cols,
            up.rows,
            up.cols
        );
        assert_eq!(
            x.len(),
            k * gate.cols,
            "ffn: x has {} values, k × cols = {}",
            x.len(),
            k * gate.cols
        );
        assert_eq!(
            out.len(),
            k * gate.rows,
            "ffn: out has {} values, k × n_ff = {}",
            out.len(),
            k * gate.rows
        );
        let (kg, ku) = (
            KernelSet::new(gate.ty, self.isa),
            KernelSet::new(up.ty, self.isa),
        );
        let mut acts_g = self.acts_a.lock().unwrap_or_else(|e| e.into_inner());
        let mut acts_u = self.acts_b.lock().unwrap_or_else(|e| e.into_inner());
        let pq = crate::prof::scope("acts.quantize (inside mm)");
        acts_g.quantize_with(gate.ty, x, k, gate.cols, self);
        drop(pq);
        let same = crate::acts::same_acts(gate.ty, up.ty);
        if !same {
            acts_u.quantize_with(up.ty, x, k, up.cols, self);
        }
        #[cfg(target_arch = "x86_64")]
        {
            if kg.wants_amx(k) || (same && ku.wants_amx(k)) {
                acts_g.build_amx(Some(self));
            }
            if !same && ku.wants_amx(k) {
                acts_u.build_amx(Some(self));
            }
        }
        let (ag, au) = (&*acts_g, if same { &*acts_g } else { &*acts_u });
        let rows = gate.rows;
        let r0 = r0.min(rows);
        let out_ptr = SendPtr(out.as_mut_ptr());
        let chunk = kg.chunk_rows(gate.cols, k).max(ku.chunk_rows(up.cols, k));
        let n_chunks = (rows - r0).div_ceil(chunk);
        let shares = Shares::new(n_chunks, self.n_threads());
        self.run_with_lead(&mut || with_acts(ag), &|i, _| {
            while let Some(c) = shares.next(i) {
                let r = r0 + c * chunk..(r0 + (c + 1) * chunk).min(rows);
                // The chunk's (r, t) cells are touched only by this thread: first the gate value
                // is stored, then combined with the up value.
                // SAFETY (of both sinks): t < k, r < rows: inside `out` (k × rows, checked
                // above); this chunk's cells belong to this thread only, and the up pass reads
                // the gate values this thread stored.
                compute_rows(&kg, &gate, ag, r.clone(), Store { out: out_ptr, rows });
                compute_rows(&ku, &up, au, r, Swiglu { out: out_ptr, rows });
            }
        });
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        for t in &self.threads {
            t.thread().unpark();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Work items `0..n` of one `Pool::run`, handed out so that each thread streams one
/// contiguous stretch of a matrix: thread i owns items `n·i/nt .. n·(i+1)/nt` and takes them
/// front to back; once its share is empty it takes the last remaining item of another
/// share (back to front), so a thread that was held up elsewhere is still helped.
///
/// Handing every thread interleaved 16-row chunks from one counter (the previous scheme)
/// breaks each core's access stream every chunk: the hardware prefetchers restart and the
/// kernels' software prefetch runs into rows another thread reads. On the 2-core dev VM,
/// a 6144×2048 Q4_K mat-vec streamed at ~17 GB/s that way and ~21 GB/s with contiguous
/// shares. Which thread computes an item never changes a result.
struct Shares {
    /// Per thread, `front | back << 32`: its remaining items are `front..back`.
    slots: Vec<Slot>,
}

/// One share's bounds on a cache line of its own (the owner updates it for every item).
#[repr(align(64))]
struct Slot(AtomicU64);

impl Shares {
    fn new(n: usize, threads: usize) -> Shares {
        assert!(n < 1 << 32, "too many work items");
        let slots = (0..threads)
            .map(|i| {
                let (f, b) = (n * i / threads, n * (i + 1) / threads);
                Slot(AtomicU64::new(f as u64 | (b as u64) << 32))
            })
            .collect();
        Shares { slots }
    }

    /// The next item for thread `i`, or `None` when every share is empty. Every item is
    /// returned exactly once (each is claimed by one compare-exchange on its share).
    fn next(&self, i: usize) -> Option<usize> {
        let nt = self.slots.len();
        let own = &self.slots[i % nt].0;
        let mut v = own.load(Ordering::Relaxed);
        loop {
            let (f, b) = (v & 0xFFFF_FFFF, v >> 32);
            if f >= b {
                break;
            }
            match own.compare_exchange_weak(v, v + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(f as usize),
                Err(now) => v = now,
            }
        }
        for j in 1..nt {
            let other = &self.slots[(i + j) % nt].0;
            let mut v = other.load(Ordering::Relaxed);
            loop {
                let (f, b) = (v & 0xFFFF_FFFF, v >> 32);
                if f >= b {
                    break;
                }
                let taken = f | (b - 1) << 32;
                match other.compare_exchange_weak(v, taken, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return Some(b as usize - 1),
                    Err(now) => v = now,
                }
            }
        }
        None
    }
}

/// A raw output pointer that may cross into the workers (they write disjoint cells).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only for disjoint writes while `run` blocks the owner of the buffer.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Matmul sink: `out[t · rows + r] = v`. Only built where every (r, t) it receives is a
/// cell of `out` that no other thread writes.
struct Store {
    out: SendPtr,
    rows: usize,
}

impl crate::kernels::Sink for Store {
    fn put(&mut self, r: usize, t: usize, v: f32) {
        // SAFETY: see the type's contract.
        unsafe { *self.out.get().add(t * self.rows + r) = v }
    }

    fn put_rows(&mut self, r0: usize, t: usize, v: &[f32]) {
        // SAFETY: see the type's contract (cells r0 .. r0 + v.len() of token t).
        let o = unsafe {
            std::slice::from_raw_parts_mut(self.out.get().add(t * self.rows + r0), v.len())
        };
        o.copy_from_slice(v);
    }
}

/// Fused-FFN up sink: `out[t · rows + r] = silu(out[t · rows + r]) · u`, the cell holding
/// the gate value. Same contract as `Store`.
struct Swiglu {
    out: SendPtr,
    rows: usize,
}

impl crate::kernels::Sink for Swiglu {
    fn put(&mut self, r: usize, t: usize, u: f32) {
        // SAFETY: see the type's contract.
        let p = unsafe { &mut *self.out.get().add(t * self.rows + r) };
        *p = crate::act::silu(*p) * u;
    }

    fn put_rows(&mut self, r0: usize, t: usize, u: &[f32]) {
        // SAFETY: see the type's contract.
        let g = unsafe {
            std::slice::from_raw_parts_mut(self.out.get().add(t * self.rows + r0), u.len())
        };
        crate::act::swiglu_inplace(g, u);
    }
}

fn worker(sh: &Shared, i: usize) {
    let mut seen = 0u64;
    loop {
        let epoch = loop {
            if spin_until(|| sh.epoch.load(Ordering::Acquire) != seen) {
                break sh.epoch.load(Ordering::Acquire);
            }
            sh.parked[i].store(true, Ordering::SeqCst);
            // Re-check after announcing: the publisher bumps the epoch before it looks at
            // `parked`, so either we see the bump or it sees our flag and unparks us.
            if sh.epoch.load(Ordering::SeqCst) == seen {
                thread::park();
            }
            sh.parked[i].store(false, Ordering::SeqCst);
        };
        seen = epoch;
        if sh.shutdown.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: the publisher wrote `job` before the Release bump we just Acquired, and
        // keeps the closure alive until our `done` increment below.
        let job = unsafe { (*sh.job.get()).expect("a job is set before each epoch") };
        // SAFETY: see above; the pointer is valid until `done` reaches n - 1.
        let f = unsafe { &*job };
        let prof = crate::prof::enabled();
        if prof {
            let t = sh.base.elapsed().as_nanos() as u64;
            sh.prof_times[i].0.store(t, Ordering::Relaxed);
        }
        if catch_unwind(AssertUnwindSafe(|| f(i, sh.n))).is_err() {
            sh.panicked.store(true, Ordering::SeqCst);
        }
        if prof {
            let t = sh.base.elapsed().as_nanos() as u64;
            sh.prof_times[i].1.store(t, Ordering::Relaxed);
        }
        sh.done.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{rand_acts, Rng};
    use crate::{matvec_rows, GgmlType};

    fn rand_matrix(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
        let mut data = vec![0u8; rows * cols / ty.block_elems() * ty.block_bytes()];
        rng.fill(&mut data);
        // Keep f16 scales finite and moderate: overwrite each block's scale bytes.
        let bb = ty.block_bytes();
        for b in data.chunks_exact_mut(bb) {
            let off = if ty == GgmlType::Q6_K { 208 } else { 0 };
            let d = crate::floats::f32_to_f16(0.01 + (b[off] as f32) * 1e-4).to_le_bytes();
            b[off..off + 2].copy_from_slice(&d);
            if matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K) {
                b[2..4].copy_from_slice(&d);
            }
        }
        data
    }

    #[test]
    fn pool_results_do_not_depend_on_the_thread_count() {
        let mut rng = Rng::new(3);
        for ty in [
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::Q8_0,
        ] {
            // 37 rows: not a multiple of the chunk size nor of 2 or 3 threads.
            let (rows, cols) = (37, 512);
            let data = rand_matrix(&mut rng, ty, rows, cols);
            let w = MatRef {
                ty,
                data: &data,
                rows,
                cols,
            };
            for k in [1usize, 3, 9] {
                let x = rand_acts(&mut rng, k, cols);
                let mut want = vec![0.0f32; k * rows];
                let mut acts = QuantizedActs::new();
                acts.quantize(ty, &x, k, cols);
                matvec_rows(Isa::detect(), w, &acts, 0..rows, &mut want, rows);
                for n in [1usize, 2, 3] {
                    let pool = Pool::with_isa(n, Isa::detect());
                    let mut got = vec![f32::NAN; k * rows];
                    pool.matmul(w, &x, k, &mut got);
                    assert_eq!(
                        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{ty} k={k} threads={n}"
                    );
                }
            }
        }
    }

    /// The `_from` forms compute rows r0.. bit-identically, leave rows ..r0 untouched, and show
    /// the hook the same activations a fresh quantization gives (what the GPU's share reads).
    #[test]
    fn from_forms_skip_the_first_rows_and_show_the_activations() {
        let mut rng = Rng::new(17);
        let (rows, cols) = (70, 512);
        let g = rand_matrix(&mut rng, GgmlType::Q4_K, rows, cols);
        let u = rand_matrix(&mut rng, GgmlType::Q6_K, rows, cols);
        let gw = MatRef {
            ty: GgmlType::Q4_K,
            data: &g,
            rows,
            cols,
        };
        let uw = MatRef {
            ty: GgmlType::Q6_K,
            data: &u,
            rows,
            cols,
        };
        let pool = Pool::with_isa(3, Isa::detect());
        for (k, r0) in [(1usize, 0usize), (4, 19), (3, 64), (2, 70)] {
            let x = rand_acts(&mut rng, k, cols);
            let mut fresh = QuantizedActs::new();
            fresh.quantize(GgmlType::Q4_K, &x, k, cols);
            let (mut full, mut part) = (vec![0.0f32; k * rows], vec![f32::NAN; k * rows]);
            pool.matmul(gw, &x, k, &mut full);
            let mut seen = 0;
            pool.matmul_from(gw, &x, k, &mut part, r0, &mut |a| {
                assert_eq!(a.q8_k_all(), fresh.q8_k_all(), "k={k}");
                seen += 1;
            });
            assert_eq!(seen, 1);
            let (mut ffull, mut fpart) = (vec![0.0f32; k * rows], vec![f32::NAN; k * rows]);
            pool.ffn_gate_up_swiglu(gw, uw, &x, k, &mut ffull);
            pool.ffn_gate_up_swiglu_from(gw, uw, &x, k, &mut fpart, r0, &mut |a| {
                assert_eq!(a.q8_k_all(), fresh.q8_k_all(), "k={k}");
            });
            for t in 0..k {
                for r in 0..rows {
                    let i = t * rows + r;
                    if r < r0 {
                        assert!(
                            part[i].is_nan() && fpart[i].is_nan(),
                            "row {r} < {r0} written"
                        );
                    } else {
                        assert_eq!(
                            part[i].to_bits(),
                            full[i].to_bits(),
                            "k={k} r0={r0} row {r}"
                        );
                        assert_eq!(
                            fpart[i].to_bits(),
                            ffull[i].to_bits(),
                            "k={k} r0={r0} row {r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn fused_gate_up_equals_silu_of_gate_times_up() {
        let mut rng = Rng::new(5);
        let (rows, cols, k) = (45, 512, 5);
        let g = rand_matrix(&mut rng, GgmlType::Q4_K, rows, cols);
        let u = rand_matrix(&mut rng, GgmlType::Q6_K, rows, cols);
        let (gw, uw) = (
            MatRef {
                ty: GgmlType::Q4_K,
                data: &g,
                rows,
                cols,
            },
            MatRef {
                ty: GgmlType::Q6_K,
                data: &u,
                rows,
                cols,
            },
        );
        let x = rand_acts(&mut rng, k, cols);
        let one = Pool::with_isa(1, Isa::detect());
        let (mut gv, mut uv) = (vec![0.0f32; k * rows], vec![0.0f32; k * rows]);
        one.matmul(gw, &x, k, &mut gv);
        one.matmul(uw, &x, k, &mut uv);
        let want: Vec<u32> = gv
            .iter()
            .zip(&uv)
            .map(|(&g, &u)| (crate::act::silu(g) * u).to_bits())
            .collect();
        for n in [1usize, 2, 3] {
            let pool = Pool::with_isa(n, Isa::detect());
            let mut out = vec![f32::NAN; k * rows];
            pool.ffn_gate_up_swiglu(gw, uw, &x, k, &mut out);
            assert_eq!(
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want,
                "threads={n}"
            );
        }
    }

    #[test]
    fn run_gives_every_worker_its_index_and_survives_many_jobs() {
        let pool = Pool::new(3);
        for _ in 0..200 {
            let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
            pool.run(&|i, n| {
                assert_eq!(n, 3);
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn matmul_many_equals_one_matmul_per_matrix() {
        let mut rng = Rng::new(9);
        let cols = 512;
        // Mixed K-quants (one conversion, one region), and a Q8_0 that forces the fallback.
        for tys in [
            vec![
                GgmlType::Q6_K,
                GgmlType::Q4_K,
                GgmlType::Q4_K,
                GgmlType::Q5_K,
            ],
            vec![GgmlType::Q4_K, GgmlType::Q8_0],
        ] {
            let shapes = [37usize, 16, 3, 70];
            let mats: Vec<Vec<u8>> = tys
                .iter()
                .zip(shapes)
                .map(|(&ty, rows)| rand_matrix(&mut rng, ty, rows, cols))
                .collect();
            let ws: Vec<MatRef> = tys
                .iter()
                .zip(shapes)
                .zip(&mats)
                .map(|((&ty, rows), data)| MatRef {
                    ty,
                    data,
                    rows,
                    cols,
                })
                .collect();
            for k in [1usize, 2, 9] {
                let x = rand_acts(&mut rng, k, cols);
                let one = Pool::with_isa(1, Isa::detect());
                let want: Vec<Vec<u32>> = ws
                    .iter()
                    .map(|w| {
                        let mut o = vec![0.0f32; k * w.rows];
                        one.matmul(*w, &x, k, &mut o);
                        o.iter().map(|v| v.to_bits()).collect()
                    })
                    .collect();
                for n in [1usize, 2, 3] {
                    let pool = Pool::with_isa(n, Isa::detect());
                    let mut outs: Vec<Vec<f32>> =
                        ws.iter().map(|w| vec![f32::NAN; k * w.rows]).collect();
                    let mut jobs: Vec<(MatRef, &mut [f32])> = ws
                        .iter()
                        .copied()
                        .zip(outs.iter_mut().map(|o| o.as_mut_slice()))
                        .collect();
                    pool.matmul_many(&x, k, &mut jobs);
                    for (j, o) in outs.iter().enumerate() {
                        let got: Vec<u32> = o.iter().map(|v| v.to_bits()).collect();
                        assert_eq!(got, want[j], "{tys:?} matrix {j} k={k} threads={n}");
                    }
                }
            }
        }
    }

    #[test]
    fn shares_hand_out_every_item_exactly_once() {
        for threads in 1..=5 {
            for n in [0usize, 1, 2, 3, 7, 64, 1000] {
                let shares = Shares::new(n, threads);
                let seen: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                std::thread::scope(|s| {
                    for i in 0..threads {
                        let (shares, seen) = (&shares, &seen);
                        s.spawn(move || {
                            let mut last = None;
                            while let Some(c) = shares.next(i) {
                                // Within its own share a thread goes front to back.
                                if c >= n * i / threads && c < n * (i + 1) / threads {
                                    assert!(last.is_none_or(|l| l < c), "thread {i}: {c}");
                                    last = Some(c);
                                }
                                seen[c].fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                });
                assert!(
                    seen.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                    "threads {threads}, n {n}"
                );
            }
        }
    }

    #[test]
    fn a_thread_alone_takes_every_share() {
        let shares = Shares::new(10, 3);
        let got: Vec<usize> = std::iter::from_fn(|| shares.next(1)).collect();
        // Its own share 3..6 front to back, then share 2 and share 0 back to front.
        assert_eq!(got, vec![3, 4, 5, 9, 8, 7, 6, 2, 1, 0]);
    }

    #[test]
    fn physical_core_count_is_positive() {
        assert!(physical_cores() >= 1);
    }
}
