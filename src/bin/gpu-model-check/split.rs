//! Benchmarks of a placement (issues #6 and #7), each measuring its own roofline inputs in
//! the same run:
//!
//! `--split-bench PATH [--vram-budget-gib G] [--split-ctx N] [--split-gpu-ffn N]`: the
//! planner's split under a VRAM budget (default 16 GiB, `-c` 32768, 3 snapshot slots), the
//! device memory in use measured (cuMemGetInfo) after every allocation step and after prefill
//! and decode, prefill t/s (pp512, pp2048, weight streaming), decode t/s against the roofline
//! `GPU bytes / copy bandwidth + CPU bytes / host read bandwidth + CPU layers x round trip`
//! with all three measured here.
//!
//! `--ctx-bench PATH`: the whole model on the GPU, decode t/s at 0, 8K and 32K tokens of
//! context against the roofline `(weights + KV read per token) / copy bandwidth`, with the
//! prefill t/s of each context.

use std::path::Path;
use std::time::Instant;

use hybrid_run::gguf::GgufFile;
use hybrid_run::gpu::{Gpu, GpuModel, GpuSeqState, GpuSnapshotRing, HostStaging};
use hybrid_run::model::qwen35::{Config, Qwen35Weights, SizeBreakdown};
use hybrid_run::placement::{Bandwidths, Plan, PlanRequest, ScratchModel};
use simd::Pool;

use super::{median, tokens, R};

const GIB: f64 = (1u64 << 30) as f64;

/// Device-to-device copy bandwidth (bytes read + written per second) over 1 GiB.
pub fn copy_bandwidth(g: &Gpu) -> R<f64> {
    let n = 1usize << 30;
    let src = g.upload(&vec![0x5au8; n], "copy source")?;
    let mut dst = g.alloc_zeros::<u8>(n, "copy destination")?;
    let mut ts = Vec::new();
    for _ in 0..7 {
        g.synchronize()?;
        let t = Instant::now();
        for _ in 0..5 {
            g.copy_bytes(src.view(), &mut dst.view_mut())?;
        }
        g.synchronize()?;
        ts.push(t.elapsed().as_secs_f64() / 5.0);
    }
    Ok(2.0 * n as f64 / median(ts))
}

/// Sequential read bandwidth (bytes/s) of `threads` pool workers over 2 GiB.
fn host_read_bandwidth(threads: usize) -> f64 {
    let buf: Vec<u64> = (0..(2usize << 30) / 8).map(|i| i as u64).collect();
    Pool::new(threads).read_bandwidth(&buf, 5)
}

/// One CPU-FFN layer's activation round trip: download n_embd floats to pinned memory, wait,
/// upload them back, wait (seconds, median of 2000).
fn round_trip(g: &Gpu, n_embd: usize) -> R<f64> {
    let mut stg = HostStaging::new(g, n_embd)?;
    let mut buf = g.alloc_zeros::<f32>(n_embd, "round-trip buffer")?;
    let mut ts = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        stg.download(g, buf.view())?;
        let _ = stg.io(n_embd, n_embd)?;
        stg.upload(g, buf.view_mut())?;
        g.synchronize()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    Ok(median(ts))
}

/// Device memory in use (all processes; total - free).
fn used(g: &Gpu) -> R<u64> {
    let (free, total) = g.mem_info()?;
    Ok((total - free) as u64)
}

pub fn split_bench(
    path: &Path,
    budget_gib: f64,
    n_ctx: usize,
    forced: Option<usize>,
    threads: usize,
) -> R<()> {
    let file = GgufFile::open(path)?;
    let cfg = Config::from_gguf(&file)?;
    let sizes = SizeBreakdown::from_gguf(&file, &cfg);
    let gpu = Gpu::new(0)?;
    let base = used(&gpu)?;
    println!(
        "split-bench: {} on {}, {threads} CPU threads; device memory in use before anything of ours beyond the context: {:.2} GiB",
        path.display(),
        gpu.info().name,
        base as f64 / GIB
    );
    let copy_bw = copy_bandwidth(&gpu)?;
    let host_bw = host_read_bandwidth(threads);
    let rt = round_trip(&gpu, cfg.n_embd)?;
    println!(
        "measured: device copy {:.0} GB/s, host read {:.1} GB/s ({threads} threads), CPU-layer activation round trip {:.1} us",
        copy_bw / 1e9,
        host_bw / 1e9,
        rt * 1e6
    );
    let budget = (budget_gib * GIB) as u64;
    let draft_slots = 3u64;
    let plan = Plan::compute(
        &sizes,
        &PlanRequest {
            n_ctx: n_ctx as u64,
            draft_slots,
            budget_bytes: budget,
            runtime_reserve_bytes: PlanRequest::CARD_RUNTIME_RESERVE,
            forced_gpu_layers: forced,
            scratch: ScratchModel::from_config(&cfg),
            bandwidths: Bandwidths {
                gpu_bytes_per_s: copy_bw,
                host_bytes_per_s: host_bw,
                copy_latency_per_cpu_layer_s: rt,
            },
        },
    )?;
    println!("{plan}");
    let (g_s, c_s, x_s) = plan.expected_token_time_s();
    let roof = 1.0 / (g_s + c_s + x_s);
    let mut peak = used(&gpu)?;
    let note = |what: &str, g: &Gpu, peak: &mut u64| -> R<()> {
        let u = used(g)?;
        *peak = (*peak).max(u);
        println!(
            "device memory in use after {what}: {:.2} GiB",
            u as f64 / GIB
        );
        Ok(())
    };
    let ring = GpuSnapshotRing::new(&gpu, &cfg, draft_slots as usize)?;
    note("the snapshot ring", &gpu, &mut peak)?;
    let w = Qwen35Weights::load(&file, &cfg)?;
    let t0 = Instant::now();
    let mut m = if plan.n_gpu_ffn >= cfg.n_layer() {
        GpuModel::new(gpu, cfg.clone(), &w)?
    } else {
        GpuModel::new_hybrid(gpu, cfg.clone(), &w, plan.n_gpu_ffn, threads)?
    };
    println!("loaded in {:.1} s", t0.elapsed().as_secs_f64());
    note("the weights and buffers", m.gpu(), &mut peak)?;
    let mut st = m.new_state(n_ctx)?;
    note(&format!("the state for {n_ctx} tokens"), m.gpu(), &mut peak)?;
    let nv = cfg.n_vocab;
    let toks = tokens(2048, nv, 21);
    for n in [512usize, 2048] {
        st.reset(m.gpu())?;
        m.take_stream_stats();
        let t = Instant::now();
        m.forward_greedy(&mut st, &toks[..n])?;
        let s = t.elapsed().as_secs_f64();
        let (bytes, host_s) = m.take_stream_stats();
        println!(
            "prefill pp{n}: {:.1} t/s ({s:.2} s; {:.2} GB of FFN weights streamed, host copy {host_s:.2} s)",
            n as f64 / s,
            bytes as f64 / 1e9
        );
        note(&format!("pp{n}"), m.gpu(), &mut peak)?;
    }
    // Decode after a 512-token prompt: 8 warm-up steps, 64 timed.
    st.reset(m.gpu())?;
    let (mut t, _) = m.forward_greedy(&mut st, &toks[..512])?;
    timed_decode(&mut m, &mut st, &mut t, 8, 0)?;
    let n_dec = 64;
    m.take_cpu_ffn_secs();
    let dec = timed_decode(&mut m, &mut st, &mut t, 0, n_dec)?;
    let cpu = m.take_cpu_ffn_secs();
    note("decoding", m.gpu(), &mut peak)?;
    let tg = n_dec as f64 / dec;
    println!(
        "decode tg{n_dec} after pp512: {tg:.2} t/s ({:.1} ms/token; CPU FFN incl. copies {:.1} ms/token) = {:.0}% of the {roof:.2} t/s roofline (GPU {:.1} ms + CPU {:.1} ms + round trips {:.2} ms)",
        1e3 * dec / n_dec as f64,
        1e3 * cpu / n_dec as f64,
        100.0 * tg / roof,
        g_s * 1e3,
        c_s * 1e3,
        x_s * 1e3
    );
    // Same call: eager launches, graphs without PDL, then both again.
    let pdl = m.gpu().pdl();
    for (graphs, p) in [(false, pdl), (true, false), (true, pdl)] {
        m.set_graphs(graphs);
        m.set_pdl(p);
        let secs = timed_decode(&mut m, &mut st, &mut t, 4, n_dec)?;
        println!(
            "decode tg{n_dec}, CUDA graphs {}, PDL {}: {:.2} t/s",
            if graphs { "on " } else { "off" },
            if p { "on " } else { "off" },
            n_dec as f64 / secs
        );
    }
    // Where a decode step goes (the `--profile` split: CPU FFN, waits for the GPU part
    // before each hand-off, copies), over 16 steps after the timed runs.
    {
        use hybrid_run::placement::profile;
        profile::enable();
        profile::reset();
        timed_decode(&mut m, &mut st, &mut t, 0, 16)?;
        if let Some(line) = profile::report().lines().next() {
            println!("decode {line}");
        }
        profile::reset();
        profile::disable();
    }
    println!(
        "peak device memory in use (total - free, CUDA context and ring included): {:.2} GiB ({:.2} GiB before our allocations); budget {budget_gib:.2} GiB: {}",
        peak as f64 / GIB,
        base as f64 / GIB,
        if peak <= budget { "under" } else { "OVER" }
    );
    drop(ring);
    drop(st);
    drop(m);
    if plan.n_gpu_ffn < cfg.n_layer() {
        // When the kernels outrun the read loop, the roofline must use their rate.
        let rate = cpu_ffn_alone(&w, &cfg, plan.n_gpu_ffn, threads, host_bw)?;
        let bw = rate.max(host_bw);
        let roof2 = 1.0 / (g_s + c_s * host_bw / bw + x_s);
        println!(
            "decode / roofline with the host bandwidth taken as max(read loop, CPU FFN alone at t = 1) = {:.1} GB/s: {tg:.2} / {roof2:.2} t/s = {:.0}%",
            bw / 1e9,
            100.0 * tg / roof2
        );
    }
    Ok(())
}

fn mat<'v>(v: &hybrid_run::gguf::TensorView<'v>) -> simd::MatRef<'v> {
    simd::MatRef {
        ty: v.info.ty,
        data: v.data,
        rows: v.info.rows() as usize,
        cols: v.info.row_len() as usize,
    }
}

/// The CPU-placed FFN layers alone, no GPU in the loop: the same weights (mmap), a pool of
/// the same size, t = 1 and t = 4 tokens; weight GB/s against the host read bandwidth. The
/// gap between this and the hybrid decode's CPU FFN time is the cost of the hand-offs.
fn cpu_ffn_alone(
    w: &Qwen35Weights<'_>,
    cfg: &Config,
    n_gpu_ffn: usize,
    threads: usize,
    host_bw: f64,
) -> R<f64> {
    let pool = Pool::new(threads);
    let layers = &w.layers[n_gpu_ffn..];
    let bytes: usize = layers
        .iter()
        .map(|l| l.ffn.gate.data.len() + l.ffn.up.data.len() + l.ffn.down.data.len())
        .sum();
    let (d, ff) = (cfg.n_embd, cfg.n_ff);
    let x: Vec<f32> = (0..8 * d)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0)
        .collect();
    let mut hid = vec![0.0f32; 8 * ff];
    let mut o = vec![0.0f32; 8 * d];
    let mut t1 = 0.0;
    for t in [1usize, 2, 4, 8] {
        let mut ts = Vec::new();
        for _ in 0..6 {
            let a = Instant::now();
            for l in layers {
                pool.ffn_gate_up_swiglu(
                    mat(&l.ffn.gate),
                    mat(&l.ffn.up),
                    &x[..t * d],
                    t,
                    &mut hid[..t * ff],
                );
                pool.matmul(mat(&l.ffn.down), &hid[..t * ff], t, &mut o[..t * d]);
            }
            ts.push(a.elapsed().as_secs_f64());
        }
        ts.remove(0);
        let s = median(ts);
        if t == 1 {
            t1 = s;
        }
        println!(
            "CPU FFN alone, {} layers, t = {t}: {:.1} ms per pass, {:.1} GB/s of weights = {:.0}% of host read; T({t})/T(1) = {:.2}",
            layers.len(),
            s * 1e3,
            bytes as f64 / s / 1e9,
            100.0 * bytes as f64 / s / host_bw,
            s / t1
        );
    }
    Ok(bytes as f64 / t1)
}

pub fn ctx_bench(path: &Path, depths: &[usize]) -> R<()> {
    let file = GgufFile::open(path)?;
    let cfg = Config::from_gguf(&file)?;
    let sizes = SizeBreakdown::from_gguf(&file, &cfg);
    let w = Qwen35Weights::load(&file, &cfg)?;
    let gpu = Gpu::new(0)?;
    let copy_bw = copy_bandwidth(&gpu)?;
    let mut m = GpuModel::new(gpu, cfg.clone(), &w)?;
    // Room for the prompt and 4 x (4 + 32) decoded tokens.
    let n_ctx = depths.iter().max().copied().unwrap_or(0).max(16) + 256;
    let mut st = m.new_state(n_ctx)?;
    let toks = tokens(n_ctx, cfg.n_vocab, 31);
    println!(
        "ctx-bench: {} on {}: {:.2} GiB read per token at depth 0, KV {} KiB per token of context, device copy {:.0} GB/s",
        path.display(),
        m.gpu().info().name,
        m.bytes_per_token() as f64 / GIB,
        sizes.kv_bytes_per_token >> 10,
        copy_bw / 1e9
    );
    println!("| context | prefill t/s | decode t/s | roofline t/s | fraction |");
    println!("|---:|---:|---:|---:|---:|");
    for &d in depths {
        st.reset(m.gpu())?;
        let n = d.max(16);
        let t = Instant::now();
        let (mut tok, _) = m.forward_greedy(&mut st, &toks[..n])?;
        let pp = n as f64 / t.elapsed().as_secs_f64();
        // Graphs and PDL on, graphs off, PDL off, both on again (same call); the first and
        // last are averaged.
        let n_dec = 32;
        let mut tgs = [0.0f64; 4];
        let pdl = m.gpu().pdl();
        for (i, (graphs, p)) in [(true, pdl), (false, pdl), (true, false), (true, pdl)]
            .into_iter()
            .enumerate()
        {
            m.set_graphs(graphs);
            m.set_pdl(p);
            tgs[i] = n_dec as f64 / timed_decode(&mut m, &mut st, &mut tok, 4, n_dec)?;
        }
        let tg = (tgs[0] + tgs[3]) / 2.0;
        println!(
            "depth {d}: decode t/s: graphs+PDL {:.1} / {:.1}, eager (PDL {}) {:.1}, graphs without PDL {:.1}",
            tgs[0],
            tgs[3],
            if pdl { "on" } else { "off" },
            tgs[1],
            tgs[2]
        );
        let bytes =
            m.bytes_per_token() as f64 + (sizes.kv_bytes_per_token as f64) * (n + 20) as f64;
        let roof = copy_bw / bytes;
        println!(
            "| {d} | {pp:.0} | {tg:.1} | {roof:.1} | {:.0}% |",
            100.0 * tg / roof
        );
        if d == depths[0] {
            kernel_breakdown(&mut m, &mut st, &mut tok)?;
        }
    }
    Ok(())
}

/// Greedy decoding from `*tok`: `warm` untimed steps, then `n` timed ones; the seconds the
/// timed steps took (`*tok` ends at the last pick).
fn timed_decode(
    m: &mut GpuModel<'_>,
    st: &mut GpuSeqState,
    tok: &mut u32,
    warm: usize,
    n: usize,
) -> R<f64> {
    for _ in 0..warm {
        *tok = m.forward_greedy(st, &[*tok])?.0;
    }
    let t = Instant::now();
    for _ in 0..n {
        *tok = m.forward_greedy(st, &[*tok])?.0;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// GPU time per kind of launch over 8 eager decode steps (events around every launch).
fn kernel_breakdown(m: &mut GpuModel<'_>, st: &mut GpuSeqState, tok: &mut u32) -> R<()> {
    let steps = 8;
    m.set_kernel_profile(true);
    let wall = timed_decode(m, st, tok, 0, steps)?;
    let rows = m.gpu().take_kernel_profile()?;
    m.set_kernel_profile(false);
    m.set_graphs(true);
    let total: f64 = rows.iter().map(|r| r.ms).sum();
    println!(
        "kernel breakdown, {steps} eager decode steps with an event pair around every launch: {:.2} ms of kernel time per token ({:.2} ms wall per token, events included)",
        total / steps as f64,
        1e3 * wall / steps as f64
    );
    println!("| launch | per token | us per token | share |");
    println!("|---|---:|---:|---:|");
    for r in rows.iter().take(24) {
        println!(
            "| {} | {} | {:.1} | {:.1}% |",
            r.label,
            r.launches / steps,
            1e3 * r.ms / steps as f64,
            100.0 * r.ms / total
        );
    }
    Ok(())
}
