//! Memory-bound benchmark of the k-input mat-vec kernels on 27B FFN shapes.
//!
//! `kernel-bench [--threads N] [--types Q4_K,Q5_K,Q6_K,Q8_0] [--isas avx2,avx2vnni,avx512]
//!  [--ks 1,2,4,8 (up to 256)] [--shapes gate,down,narrow] [--reps R] [--rotate-mb MB]`
//!
//! Weights are replicated until the rotating set is at least 8× the last-level cache (at most
//! a quarter of RAM), and every call uses the copy read least recently, so each call streams
//! its weights from DRAM. (With 2× on the GPU host, Q4_K/Q6_K rows came out at 110-128% of
//! a read loop over the same 600 MiB; most likely its LLC keeps part of a cyclic working set
//! twice its size. Not yet re-measured there with 8×.) Prints a markdown report: the
//! machine's sequential read bandwidth (same thread count, same pool), dispatch latency of the
//! pool vs a crossbeam-channel pool, then per (type, shape, ISA, k) the median time,
//! effective weight GB/s, % of read bandwidth and T(k)/T(1).

use std::sync::Mutex;
use std::time::Instant;

use simd::pool::physical_cores;
use simd::prof::median;
use simd::{matvec_rows, GgmlType, Isa, MatRef, Pool, QuantizedActs};

struct Args {
    threads: usize,
    types: Vec<GgmlType>,
    isas: Vec<Isa>,
    ks: Vec<usize>,
    shapes: Vec<&'static str>,
    reps: usize,
    rotate_mb: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        threads: physical_cores(),
        types: vec![
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::Q8_0,
        ],
        isas: Isa::available()
            .into_iter()
            .filter(|i| *i != Isa::Scalar)
            .collect(),
        ks: vec![1, 2, 4, 8],
        shapes: vec!["gate", "down"],
        reps: 7,
        rotate_mb: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].as_str();
        let val = argv
            .get(i + 1)
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let list = || val.split(',').map(str::trim).filter(|s| !s.is_empty());
        match flag {
            "--threads" => a.threads = val.parse().map_err(|_| format!("bad --threads {val}"))?,
            "--reps" => a.reps = val.parse().map_err(|_| format!("bad --reps {val}"))?,
            "--rotate-mb" => {
                a.rotate_mb = Some(val.parse().map_err(|_| format!("bad --rotate-mb {val}"))?)
            }
            "--types" => {
                a.types = list()
                    .map(|s| match s.parse::<GgmlType>()? {
                        t @ (GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K | GgmlType::Q8_0) => {
                            Ok(t)
                        }
                        _ => Err(format!("unsupported type {s}")),
                    })
                    .collect::<Result<_, String>>()?
            }
            "--isas" => {
                a.isas = list()
                    .map(|s| match Isa::from_name(s) {
                        Some(i) if i.is_available() => Ok(i),
                        Some(i) => Err(format!("ISA {i} not available on this CPU")),
                        None => Err(format!("unknown ISA {s}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--ks" => {
                a.ks = list()
                    .map(|s| s.parse().map_err(|_| format!("bad k {s}")))
                    .collect::<Result<_, _>>()?
            }
            "--shapes" => {
                a.shapes = list()
                    .map(|s| match s {
                        "gate" => Ok("gate"),
                        "down" => Ok("down"),
                        "narrow" => Ok("narrow"),
                        _ => Err(format!("unknown shape {s} (gate|down|narrow)")),
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
        i += 2;
    }
    if a.threads == 0 || a.reps == 0 {
        return Err("--threads and --reps must be ≥ 1".into());
    }
    if a.ks.iter().any(|&k| k == 0 || k > 256) {
        return Err("--ks values must be in 1..=256".into());
    }
    Ok(a)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Total RAM in bytes from /proc/meminfo, or 8 GiB.
fn mem_total_bytes() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<usize>().ok()
        })
        .map_or(8 << 30, |kib| kib << 10)
}

/// Last-level cache size in bytes from sysfs (largest cache index of cpu0), or 32 MiB.
fn llc_bytes() -> usize {
    let mut best = 0usize;
    for idx in 0..8 {
        let p = format!("/sys/devices/system/cpu/cpu0/cache/index{idx}/size");
        let Ok(s) = std::fs::read_to_string(p) else {
            continue;
        };
        let s = s.trim();
        let (num, mul) = match s.chars().last() {
            Some('K') => (&s[..s.len() - 1], 1 << 10),
            Some('M') => (&s[..s.len() - 1], 1 << 20),
            _ => (s, 1),
        };
        best = best.max(num.parse::<usize>().unwrap_or(0) * mul);
    }
    if best == 0 {
        32 << 20
    } else {
        best
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One matrix of 17408 × 5120 elements (the gate/up and down shapes have the same byte
/// size) with random quants and moderate, finite f16 scales.
fn prototype(ty: GgmlType, rng: &mut Rng) -> Vec<u8> {
    let bytes = 17408 * 5120 / ty.block_elems() * ty.block_bytes();
    let mut v = vec![0u8; bytes];
    for c in v.chunks_mut(8) {
        let r = rng.next().to_le_bytes();
        c.copy_from_slice(&r[..c.len()]);
    }
    let bb = ty.block_bytes();
    for b in v.chunks_exact_mut(bb) {
        let scale = simd::floats::f32_to_f16(0.001 + (b[1] as f32) * 1e-5).to_le_bytes();
        match ty {
            GgmlType::Q6_K => b[208..210].copy_from_slice(&scale),
            GgmlType::Q4_K | GgmlType::Q5_K => {
                b[0..2].copy_from_slice(&scale);
                b[2..4].copy_from_slice(&scale);
            }
            _ => b[0..2].copy_from_slice(&scale),
        }
    }
    v
}

/// Round-trip latency (µs) of an empty job on the pool and on a crossbeam-channel pool of
/// the same size (job sent to each worker, completion sent back).
fn dispatch_latency(pool: &Pool) -> (f64, f64) {
    let n = pool.n_threads();
    let iters = 2000;
    let t = Instant::now();
    for _ in 0..iters {
        pool.run(&|i, _| {
            std::hint::black_box(i);
        });
    }
    let ours = t.elapsed().as_secs_f64() / iters as f64 * 1e6;
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<()>();
    let mut txs = Vec::new();
    let mut handles = Vec::new();
    for i in 1..n {
        let (tx, rx) = crossbeam_channel::unbounded::<Option<usize>>();
        let done = done_tx.clone();
        txs.push(tx);
        handles.push(std::thread::spawn(move || {
            let cores = core_affinity::get_core_ids().unwrap_or_default();
            if let Some(c) = cores.get(i % cores.len().max(1)) {
                core_affinity::set_for_current(*c);
            }
            while let Ok(Some(v)) = rx.recv() {
                std::hint::black_box(v);
                let _ = done.send(());
            }
        }));
    }
    let t = Instant::now();
    for it in 0..iters {
        for tx in &txs {
            let _ = tx.send(Some(it));
        }
        for _ in 1..n {
            let _ = done_rx.recv();
        }
    }
    let chan = t.elapsed().as_secs_f64() / iters as f64 * 1e6;
    for tx in &txs {
        let _ = tx.send(None);
    }
    for h in handles {
        let _ = h.join();
    }
    (ours, chan)
}

/// Cache-resident (L2) rate of each kernel, independent of DRAM, for rows as long as the
/// 27B's gate/up (5120 columns) and down (17408: k tokens of activations no longer fit in
/// L1): once on one thread, and once on every thread at the same time, each looping over its
/// own L2-sized matrix. The second is the compute ceiling the floors below use: one thread's
/// rate times the thread count assumed perfect scaling, and on the GPU host (16 vCPUs) the
/// k = 8 rows ran at about half of that, so k = 4 rows it called memory-bound were not.
/// Best of many repetitions (robust on a shared machine); the activations are quantized
/// once, outside the timed calls.
/// (type, row length, ISA, k, ns per weight block on 1 thread, ns per block per thread with
/// all threads busy).
type Ceiling = (GgmlType, usize, Isa, usize, f64, f64);

fn compute_ceiling(args: &Args) -> Vec<Ceiling> {
    println!(
        "Compute ceiling, weights resident in L2 (256 rows × 5120 cols and 64 rows × 17408 cols), best of 50: 1 thread, then all {} threads at once (each on its own matrix, 8 passes per timing); the last column is the all-thread rate over the 1-thread rate × threads\n",
        args.threads
    );
    println!("| type | cols | ISA | k | ns per weight block, 1 thread | weight GB/s, 1 thread | ns per block per thread, all threads | all-thread GB/s | scaling |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rng = Rng(12345);
    let mut all = Vec::new();
    for &ty in &args.types {
        let full = prototype(ty, &mut rng);
        for (rows, cols) in [(256, 5120), (64, 17408)] {
            ceiling_of(args, ty, &full, rows, cols, &mut all);
        }
    }
    println!();
    all
}

fn ceiling_of(
    args: &Args,
    ty: GgmlType,
    full: &[u8],
    rows: usize,
    cols: usize,
    all: &mut Vec<Ceiling>,
) {
    const PASSES: usize = 8;
    let bytes = rows * cols / ty.block_elems() * ty.block_bytes();
    let w = MatRef {
        ty,
        data: &full[..bytes],
        rows,
        cols,
    };
    let blocks = (rows * cols / ty.block_elems()) as f64;
    // Every thread on its own copy (its own L2) for the all-thread timings.
    let copies: Vec<Vec<u8>> = (0..args.threads).map(|_| w.data.to_vec()).collect();
    for &isa in &args.isas {
        let pool = Pool::with_isa(args.threads, isa);
        for &k in &args.ks {
            let x: Vec<f32> = (0..k * cols)
                .map(|i| ((i * 31 % 97) as f32 - 48.0) * 0.01)
                .collect();
            // The kernel alone: activations quantized once, outside the timed calls.
            let mut acts = QuantizedActs::new();
            acts.quantize(ty, &x, k, cols);
            let mut out = vec![0.0f32; k * rows];
            let mut best = f64::INFINITY;
            for _ in 0..50 {
                let t = Instant::now();
                matvec_rows(isa, w, &acts, 0..rows, &mut out, rows);
                best = best.min(t.elapsed().as_secs_f64());
            }
            std::hint::black_box(&out);
            let outs: Vec<Mutex<Vec<f32>>> = (0..args.threads)
                .map(|_| Mutex::new(vec![0.0f32; k * rows]))
                .collect();
            // Up to three rounds of 50 while the threads scale below 0.8 of one thread: on a
            // VM whose vCPUs are taken away for seconds at a time (the 2-vCPU dev VM), one
            // round of 50 caught some rows at 0.5 and the same kernel on the other row length
            // at 1.0. Where the scaling is really that low (SMT siblings), the retries cost
            // time and change nothing.
            let mut best_all = f64::INFINITY;
            for _round in 0..3 {
                for _ in 0..50 {
                    let t = Instant::now();
                    pool.run(&|i, _| {
                        let wi = MatRef {
                            data: &copies[i],
                            ..w
                        };
                        let mut o = outs[i].lock().unwrap_or_else(|e| e.into_inner());
                        for _ in 0..PASSES {
                            matvec_rows(isa, wi, &acts, 0..rows, &mut o, rows);
                        }
                    });
                    best_all = best_all.min(t.elapsed().as_secs_f64() / PASSES as f64);
                }
                if best / best_all >= 0.8 {
                    break;
                }
            }
            std::hint::black_box(&outs);
            let (ns1, ns_all) = (best / blocks * 1e9, best_all / blocks * 1e9);
            let n = args.threads as f64;
            println!(
                "| {ty} | {cols} | {isa} | {k} | {ns1:.1} | {:.1} | {ns_all:.1} | {:.1} | {:.2} |",
                bytes as f64 / best / 1e9,
                n * bytes as f64 / best_all / 1e9,
                ns1 / ns_all,
            );
            all.push((ty, cols, isa, k, ns1, ns_all));
        }
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kernel-bench: {e}");
            std::process::exit(2);
        }
    };
    let llc = llc_bytes();
    let cmd: Vec<String> = std::env::args().collect();
    println!("# Kernel benchmark\n");
    println!(
        "- machine: {} ({} logical CPUs, {} physical cores, LLC {} MiB)",
        cpu_model(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        physical_cores(),
        llc >> 20
    );
    println!("- command: `{}`", cmd.join(" "));
    println!(
        "- threads: {}, reps: {} (median), ISAs available: {:?}",
        args.threads,
        args.reps,
        Isa::available()
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>()
    );
    let rotate = args
        .rotate_mb
        .map(|m| m << 20)
        .unwrap_or((8 * llc).min(mem_total_bytes() / 4));

    let best = *Isa::available().last().unwrap_or(&Isa::Scalar);
    let bw_pool = Pool::with_isa(args.threads, best);
    let words = (rotate.max(256 << 20)) / 8;
    let buf: Vec<u64> = (0..words as u64).collect();
    // The roofline is the faster of two read loops (software prefetch as in the kernels, or
    // the hardware prefetchers alone): with only the first, Q6_K/Q8_0 rows read their
    // weights at up to 120% of it on the GPU host.
    let bw_pf = bw_pool.read_bandwidth_with(&buf, args.reps.max(3), true) / 1e9;
    let bw_hw = bw_pool.read_bandwidth_with(&buf, args.reps.max(3), false) / 1e9;
    let bw = bw_pf.max(bw_hw);
    drop(buf);
    let (lat_pool, lat_chan) = dispatch_latency(&bw_pool);
    drop(bw_pool);
    println!(
        "- sequential read bandwidth ({} threads, {} MiB buffer): **{:.1} GB/s** (read loop with software prefetch {:.1}, without {:.1}; the faster is the roofline)",
        args.threads,
        (words * 8) >> 20,
        bw,
        bw_pf,
        bw_hw
    );
    println!("- empty-job dispatch round trip: spin-then-park pool {:.2} µs, crossbeam-channel pool {:.2} µs\n", lat_pool, lat_chan);

    // The two floors of every row below: bytes / the read bandwidth above, and the kernel's
    // cost per block per thread with all threads computing at once (measured first) ×
    // blocks / threads. A row is memory-bound when the first is the larger; the T(k)/T(1)
    // targets of issue 3 speak of memory-bound rows.
    let ceilings = compute_ceiling(&args);
    let floor_ms = |ty: GgmlType, cols: usize, isa: Isa, k: usize, blocks: f64| {
        ceilings
            .iter()
            .find(|c| c.0 == ty && c.1 == cols && c.2 == isa && c.3 == k)
            .map(|c| c.5 * blocks / args.threads as f64 / 1e6)
    };
    println!("| type | shape (rows×cols) | ISA | k | median ms | weight GB/s | % of read BW | T(k)/T(1) | floors ms: memory / compute |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut single_q4k = None;
    let mut summary = Vec::new();
    for &ty in &args.types {
        let proto = prototype(ty, &mut rng);
        let copies = rotate.div_ceil(proto.len()).max(2);
        let mut all = Vec::with_capacity(copies * proto.len());
        for _ in 0..copies {
            all.extend_from_slice(&proto);
        }
        drop(proto);
        let mbytes = all.len() / copies;
        // One rotation over all measurements of this type: every call reads the copy read
        // least recently, so the whole rotating set passes between two reads of one copy. (Each
        // measurement restarting at copy 0 re-read the copies the one before had just pulled
        // into a 300 MiB LLC: 120-170% of the read loop on the GPU host.)
        let mut next = 0usize;
        let mut copy = || {
            let c = next;
            next = (next + 1) % copies;
            &all[c * mbytes..(c + 1) * mbytes]
        };
        for &shape in &args.shapes {
            // "narrow": the same bytes as 43520 rows of 2048 (the `small` preset's width).
            let (rows, cols) = match shape {
                "gate" => (17408, 5120),
                "narrow" => (43520, 2048),
                _ => (5120, 17408),
            };
            for &isa in &args.isas {
                let pool = Pool::with_isa(args.threads, isa);
                let mut t1 = None;
                for &k in &args.ks {
                    let x: Vec<f32> = (0..k * cols)
                        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3)
                        .collect();
                    let mut out = vec![0.0f32; k * rows];
                    let mut times = Vec::new();
                    for rep in 0..args.reps + 1 {
                        let w = MatRef {
                            ty,
                            data: copy(),
                            rows,
                            cols,
                        };
                        let t = Instant::now();
                        pool.matmul(w, &x, k, &mut out);
                        if rep > 0 {
                            times.push(t.elapsed().as_secs_f64());
                        }
                    }
                    std::hint::black_box(&out);
                    let m = median(times);
                    if k == 1 {
                        t1 = Some(m);
                    }
                    let gbs = mbytes as f64 / m / 1e9;
                    let ratio = t1
                        .map(|t| format!("{:.2}", m / t))
                        .unwrap_or_else(|| "–".into());
                    let mem = mbytes as f64 / (bw * 1e9) * 1e3;
                    let blocks = (rows * cols / ty.block_elems()) as f64;
                    let comp = floor_ms(ty, cols, isa, k, blocks);
                    let floors = match comp {
                        Some(c) => format!(
                            "{mem:.2} / {c:.2}{}",
                            if c > mem { " (compute-bound)" } else { "" }
                        ),
                        None => format!("{mem:.2} / –"),
                    };
                    println!("| {ty} | {shape} {rows}×{cols} | {isa} | {k} | {:.2} | {:.1} | {:.0}% | {ratio} | {floors} |", m * 1e3, gbs, gbs / bw * 100.0);
                    let memory_bound = comp.is_none_or(|c| c <= mem);
                    summary.push((ty, shape, isa, k, m, gbs, memory_bound));
                }
            }
            if ty == GgmlType::Q4_K && shape == "gate" && single_q4k.is_none() {
                let pool = Pool::with_isa(1, best);
                let x: Vec<f32> = (0..cols).map(|i| (i % 13) as f32 * 0.01).collect();
                let mut out = vec![0.0f32; rows];
                let mut times = Vec::new();
                for rep in 0..args.reps + 1 {
                    let w = MatRef {
                        ty,
                        data: copy(),
                        rows,
                        cols,
                    };
                    let t = Instant::now();
                    pool.matmul(w, &x, 1, &mut out);
                    if rep > 0 {
                        times.push(t.elapsed().as_secs_f64());
                    }
                }
                single_q4k = Some(mbytes as f64 / median(times) / 1e9);
            }
        }
    }
    println!();
    if let Some(g) = single_q4k {
        println!("- single-thread Q4_K MatVec1In ({best}, gate shape): **{g:.1} GB/s** of weights");
    }
    // Targets from issue 3.
    for &isa in &args.isas {
        let rows: Vec<_> = summary.iter().filter(|s| s.2 == isa).collect();
        let k1: Vec<f64> = rows.iter().filter(|s| s.3 == 1).map(|s| s.5 / bw).collect();
        let worst_k1 = k1.iter().cloned().fold(f64::INFINITY, f64::min);
        let (mut worst_t4, mut bound_by_compute) = (0.0f64, Vec::new());
        for s in rows.iter().filter(|s| s.3 == 4) {
            if let Some(one) = rows.iter().find(|o| o.0 == s.0 && o.1 == s.1 && o.3 == 1) {
                if s.6 {
                    worst_t4 = worst_t4.max(s.4 / one.4);
                } else {
                    bound_by_compute.push(format!("{} {} {:.2}", s.0, s.1, s.4 / one.4));
                }
            }
        }
        // Issue 3: <= 1.2 on the AVX-512 tiers (AMX decodes with the AVX-512 kernels), 1.4 on AVX2.
        let t4_target = if matches!(isa, Isa::Avx512 | Isa::Amx) {
            1.2
        } else {
            1.4
        };
        if !k1.is_empty() {
            let t4 = if worst_t4 == 0.0 {
                "no memory-bound k = 4 row".to_string()
            } else {
                format!(
                    "{worst_t4:.2} (target ≤ {t4_target}: {})",
                    if worst_t4 <= t4_target {
                        "met"
                    } else {
                        "NOT met"
                    }
                )
            };
            println!(
                "- {isa}: worst MatVec1In = {:.0}% of read BW (target ≥ 85%: {}); worst memory-bound T(4)/T(1) = {t4}",
                worst_k1 * 100.0,
                if worst_k1 >= 0.85 { "met" } else { "NOT met" },
            );
            if !bound_by_compute.is_empty() {
                println!(
                    "  - compute-bound at k = 4 on this machine (compute floor above the memory floor; T(4)/T(1) not counted above): {}",
                    bound_by_compute.join(", ")
                );
            }
        }
    }
}
