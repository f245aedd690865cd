//! The qwen35 forward pass with every layer on the GPU ("full-GPU mode"), spec
//! `qwen35-forward.md` step by step, with the same contract as
//! [`crate::model::qwen35::CpuModel::forward`].
//!
//! A call of T tokens runs in chunks of at most [`MAX_BATCH`] = 8 tokens (the widest
//! weight-stationary mat-vec): each chunk goes through every layer, each weight matrix read
//! once per chunk. A token's result does not depend on this chunking: the k-token mat-vec is
//! bit-equal to k one-token calls, and the conv, recurrence and attention kernels run token
//! by token.
//!
//! Prefill GEMM path: when cuBLAS loaded (not for the f32 reference model) and at least
//! [`GEMM_MIN_TOKENS`] tokens remain of a call that wants no more than the last logit row,
//! chunks of up to [`GEMM_CHUNK`] tokens run every trunk projection as one GEMM
//! ([`crate::gpu::Gemm`]: weights dequantized to f16, f16 activations, f32 accumulation); the
//! conv, recurrence and attention still run token by token (attention in groups of 8 query
//! tokens). The results differ from the mat-vec path at the activation-rounding level (f16
//! instead of 8 bits per 32 values), so they depend on the chunking.
//!
//! Numerics against the CPU reference: quantized weights see activations quantized to 8 bits
//! per 32 values with f32 scales (the CPU uses Q8_K 256-blocks for K-quants, Q8_0 with f16
//! scales for Q8_0); norm sums are f32, not f64; attention keeps q and the V accumulator in
//! f32 (the CPU rounds them to f16 like llama.cpp's CPU flash attention). Logits therefore
//! differ from the CPU at the 1e-3 (Q8_0, F32) to 1e-2 (K-quants) relative level.

use simd::{MatRef, Pool};

use crate::gguf::TensorView;
use crate::model::qwen35::{Config, FfnWeights, ForwardOutput, Logits, ModelError, Qwen35Weights};
use crate::placement::profile::{self, Phase};

use super::super::buffer::{GpuBuf, GpuMatrix, View, ViewMut};
use super::super::device::{Gpu, HostStaging};
use super::super::error::{GpuError, Result};
use super::super::graph::{graphs_enabled_by_env, Graph};
use super::super::kernels::MAX_K;
use super::super::ops::{
    AttnScratch, DevPos, GateRows, GdnConvArgs, GdnRecurrenceArgs, Gemm, KvCache, QuantActs,
    ATTN_HEAD_DIMS, GDN_HEAD_DIMS,
};
use super::super::share::{self, PcieShare};
use super::shared_ffn::{run_shared, FfnMats, OnGpu};
use super::snapshot::GpuSnapshotRing;
use super::state::{GpuLayerState, GpuSeqState};
use super::stream::{FfnStreamer, STREAM_MIN_TOKENS};
use super::weights::{GdnZba, GpuAttn, GpuFfn, GpuGdn, GpuLayer, GpuMixer, GpuWeights};

/// Most tokens per chunk (one launch of the k-token mat-vec).
pub const MAX_BATCH: usize = MAX_K;

/// Fewest tokens left in a call for a chunk to take the GEMM path (below it, chunks of 8).
/// Measured on an H200 with the 27B Q4_K_M (docs/benchmarks/gpu-prefill-2026-11-22.md): one
/// GEMM chunk vs chunks of 8, pp32 226 vs 308 t/s, pp48 332 vs 308 t/s (crossover ~44).
pub const GEMM_MIN_TOKENS: usize = 48;

/// Most tokens of one GEMM-path chunk (activation buffers are sized for it).
pub const GEMM_CHUNK: usize = 512;

/// Device activation buffers for one chunk, each `[MAX_BATCH][width]`.
struct Bufs {
    /// Residual stream [T][n_embd].
    x: GpuBuf<f32>,
    /// Normed input [T][n_embd] (the MTP concat [T][2·n_embd]).
    xn: GpuBuf<f32>,
    /// Projections: GDN qkv / attention q|gate / FFN gate.
    p0: GpuBuf<f32>,
    /// GDN z (or z | beta | alpha, stacked) / attention k / FFN up.
    p1: GpuBuf<f32>,
    /// GDN beta / attention v.
    p2: GpuBuf<f32>,
    /// GDN alpha / attention normed k.
    p3: GpuBuf<f32>,
    /// GDN conv output [T][conv_dim].
    u: GpuBuf<f32>,
    /// GDN recurrence output / attention q (normed, roped) [T][max(value_dim, q_dim)].
    g: GpuBuf<f32>,
    /// Input of the output projections: gated-norm output / gated attention / SwiGLU.
    y: GpuBuf<f32>,
    /// Mixer or FFN output [T][n_embd].
    o: GpuBuf<f32>,
    /// hN [T][n_embd].
    hidden: GpuBuf<f32>,
    /// [T][n_vocab].
    logits: GpuBuf<f32>,
    am_idx: GpuBuf<i32>,
    am_val: GpuBuf<f32>,
    qa: QuantActs,
    /// Tokens the activation buffers hold (MAX_BATCH, or GEMM_CHUNK with `gemm`).
    t_max: usize,
    /// The prefill GEMM path (None: chunks of MAX_BATCH only).
    gemm: Option<Gemm>,
    /// Residual adds and activation quantization fused into the norms and SwiGLU
    /// (bit-identical to the separate kernels; `HYBRID_FUSE=0` turns it off for A/B runs).
    fuse: bool,
}

impl Bufs {
    /// Buffers for `t` tokens per chunk; the logits, argmax and quantized activations only
    /// ever serve chunks of at most MAX_BATCH rows.
    fn new(gpu: &Gpu, c: &Config, t: usize, gemm: Option<Gemm>) -> Result<Bufs> {
        let tb = MAX_BATCH;
        let (d, ff, nv) = (c.n_embd, c.n_ff, c.n_vocab);
        let (cd, vd, hv) = (c.gdn_conv_dim(), c.gdn_value_dim(), c.ssm_dt_rank);
        let (qd, kvd) = (c.attn_out_dim(), c.attn_kv_dim());
        let a = |n: usize, what: &str| gpu.alloc_zeros::<f32>(t * n, what);
        Ok(Bufs {
            x: a(d, "residual")?,
            xn: a(2 * d, "normed input")?,
            p0: a(cd.max(2 * qd).max(ff), "projection 0")?,
            p1: a((vd + 2 * hv).max(kvd).max(ff), "projection 1")?,
            p2: a(hv.max(kvd), "projection 2")?,
            p3: a(hv.max(kvd), "projection 3")?,
            u: a(cd, "conv output")?,
            g: a(vd.max(qd), "mixer output")?,
            y: a(vd.max(qd).max(ff), "output-projection input")?,
            o: a(d, "block output")?,
            hidden: a(d, "final hidden")?,
            logits: gpu.alloc_zeros::<f32>(tb * nv, "logits")?,
            am_idx: gpu.alloc_zeros::<i32>(tb, "argmax index")?,
            am_val: gpu.alloc_zeros::<f32>(tb, "argmax value")?,
            qa: QuantActs::new(gpu, tb, (2 * d).max(ff).max(vd).max(qd))?,
            t_max: t,
            gemm,
            fuse: fuse_by_env(),
        })
    }
}

/// Quantizes `x` ([k][n]) for the quantized mat-vec. Float weights read `x` directly, and
/// every quantized row length is a multiple of 32, so a width that is not is left alone;
/// chunks wider than the mat-vec go through the GEMM, which reads `x` directly.
fn quant(gpu: &Gpu, x: View<'_, f32>, k: usize, n: usize, qa: &mut QuantActs) -> Result<()> {
    match quant_into(qa, k, n) {
        Some(qa) => gpu.quantize_acts(x, k, n, qa.0),
        None => Ok(()),
    }
}

/// `(qa, k)` when [`quant`] would quantize `k` rows of `n`: for the kernels that quantize
/// their own output.
fn quant_into(qa: &mut QuantActs, k: usize, n: usize) -> Option<(&mut QuantActs, usize)> {
    (n % 32 == 0 && k <= MAX_K).then_some((qa, k))
}

/// `HYBRID_FUSE=0` keeps the residual adds, norms, SwiGLU and activation quantization as
/// separate kernels (the A/B baseline); anything else fuses them.
fn fuse_by_env() -> bool {
    super::super::env_switch("HYBRID_FUSE", true)
}

/// `out = x · wᵀ` for t tokens: the mat-vec up to MAX_K tokens (`qa` holds `x` quantized),
/// the GEMM beyond.
fn mm(
    gpu: &Gpu,
    gemm: &mut Option<Gemm>,
    qa: &QuantActs,
    w: &GpuMatrix,
    x: View<'_, f32>,
    t: usize,
    out: ViewMut<'_, f32>,
) -> Result<()> {
    if t <= MAX_K {
        return gpu.matvec(w, x, qa, t, out);
    }
    match gemm.as_mut() {
        Some(g) => gpu.gemm(g, w, x, t, out),
        None => Err(GpuError::shape(
            "GpuModel",
            format!("{}: a chunk of {t} tokens without the GEMM path", w.name),
        )),
    }
}

/// `outs[i] = x · ws[i]ᵀ` for t tokens, for matrices that read the same input `x` (`qa`
/// holds it quantized). (One launch per matrix: a multi-matrix launch measured no faster,
/// docs/benchmarks/gpu-graphs-2026-11-22.md, and was removed.)
fn mm_many(
    gpu: &Gpu,
    gemm: &mut Option<Gemm>,
    qa: &QuantActs,
    ws: &[&GpuMatrix],
    x: View<'_, f32>,
    t: usize,
    outs: Vec<ViewMut<'_, f32>>,
) -> Result<()> {
    for (w, o) in ws.iter().zip(outs) {
        mm(gpu, gemm, qa, w, x, t, o)?;
    }
    Ok(())
}

/// Largest trunk matrix (elements) and widest trunk input (columns): the GEMM scratch sizes.
fn gemm_sizes(w: &GpuWeights) -> (usize, usize) {
    let mut mats: Vec<&GpuMatrix> = Vec::new();
    for l in &w.layers {
        match &l.mixer {
            GpuMixer::Gdn(g) => {
                mats.extend([&g.qkv, &g.out]);
                mats.extend(g.zba.matrices());
            }
            GpuMixer::Attention(a) => mats.extend([&a.q, &a.k, &a.v, &a.o]),
        }
        if let Some(f) = &l.ffn {
            mats.extend([&f.gate, &f.up, &f.down]);
        }
    }
    let elems = mats.iter().map(|m| m.rows * m.cols).max().unwrap_or(0);
    let cols = mats.iter().map(|m| m.cols).max().unwrap_or(0);
    (elems, cols)
}

fn first<'a>(b: &'a GpuBuf<f32>, n: usize) -> Result<View<'a, f32>> {
    b.view().sub(0, n)
}

/// A qwen35 model with every layer, the LM head and the MTP block on one GPU.
pub struct GpuModel<'a> {
    pub cfg: Config,
    gpu: Gpu,
    w: GpuWeights,
    /// Token embeddings stay in host memory (rows dequantized on the CPU).
    token_embd: TensorView<'a>,
    mtp_embd: Option<TensorView<'a>>,
    b: Bufs,
    host: Vec<f32>,
    /// Hybrid split: the FFN weights (mmap views) of the layers whose FFN runs on the CPU,
    /// by layer index (`None`: on the device), and the CPU thread pool that runs them.
    host_ffn: Vec<Option<FfnWeights<'a>>>,
    pool: Option<Pool>,
    cpu_scratch: CpuFfnScratch,
    /// Fewest remaining tokens for a GEMM-path chunk ([`GEMM_MIN_TOKENS`] by default).
    gemm_min: usize,
    /// Hybrid split with the GEMM path: streams the CPU-placed FFN weights to the GPU for
    /// chunks of at least `stream_min` tokens (`stream.rs`).
    streamer: Option<FfnStreamer>,
    stream_min: usize,
    /// Device positions the kernels read: [0] the trunk's, [1] the MTP block's.
    pos: GpuBuf<i32>,
    graphs: GraphCache,
}

/// What a captured chunk depends on besides the contents of device memory: the sequence
/// state and snapshot ring whose buffers it addresses, the token count, the logit rows and
/// the snapshot slots written.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct GraphKey {
    state: u64,
    ring: Option<(u64, usize)>,
    t: usize,
    rows: (usize, usize),
}

/// One step of a captured chunk: a graph, or a CPU-placed FFN layer between two graphs
/// (download, CPU kernels, upload: host work a graph cannot hold).
enum GraphStep {
    Graph(Graph),
    HostFfn(usize),
}

/// Captured chunks. A shape is captured the second time it is seen (one-off shapes such as
/// a short prompt stay eager: a capture costs more than one eager run).
struct GraphCache {
    enabled: bool,
    seen: std::collections::HashMap<GraphKey, u32>,
    graphs: std::collections::HashMap<GraphKey, Vec<GraphStep>>,
    /// Replays and captures since the model was built (statistics).
    replays: u64,
    captures: u64,
}

/// Most cached chunk shapes; past it the cache starts over (states and rings come and go).
const MAX_GRAPHS: usize = 64;

impl GraphCache {
    fn new() -> GraphCache {
        GraphCache {
            enabled: graphs_enabled_by_env(),
            seen: Default::default(),
            graphs: Default::default(),
            replays: 0,
            captures: 0,
        }
    }

    /// Whether `key` should run from a graph now (captured, or seen before).
    fn wants(&mut self, key: GraphKey) -> bool {
        if !self.enabled {
            return false;
        }
        if self.graphs.contains_key(&key) {
            return true;
        }
        if self.seen.len() >= 4 * MAX_GRAPHS {
            self.seen.clear();
        }
        let n = self.seen.entry(key).or_insert(0);
        *n += 1;
        *n >= 2
    }

    /// Drops every captured graph and sighting (they hold launches as they were made).
    fn clear(&mut self) {
        self.graphs.clear();
        self.seen.clear();
    }

    fn insert(&mut self, key: GraphKey, steps: Vec<GraphStep>) {
        if self.graphs.len() >= MAX_GRAPHS {
            self.graphs.clear();
        }
        self.graphs.insert(key, steps);
        self.captures += 1;
    }
}

/// Collects the steps of a chunk being captured: a CPU-placed FFN layer ends the current
/// graph, records the host step, and starts the next graph.
#[derive(Default)]
struct Recorder {
    steps: Vec<GraphStep>,
}

impl Recorder {
    fn host_ffn(&mut self, gpu: &Gpu, il: usize) -> Result<()> {
        let g = gpu.end_capture()?;
        self.steps.push(GraphStep::Graph(g));
        self.steps.push(GraphStep::HostFfn(il));
        gpu.begin_capture()
    }
}

/// Host activation buffers of the CPU FFN (grown to the largest chunk, never shrunk).
#[derive(Default)]
struct CpuFfnScratch {
    hid: Vec<f32>,
    /// Pinned buffers for the normed input going down and the FFN output coming back
    /// ([t_max][n_embd] each; allocated for the hybrid split).
    staging: Option<HostStaging>,
    /// Wall time spent in the CPU FFN (download, CPU matmuls, upload) since the last
    /// [`GpuModel::take_cpu_ffn_secs`].
    secs: f64,
    /// The GPU's share of CPU-placed rows, read over PCIe (`gpu::share`), when on.
    share: Option<PcieShare>,
}

/// Registers the CPU-placed FFN weights for the GPU's PCIe share and allocates its buffers;
/// `None` (with the reason logged) when it is off, unsupported, or the driver refuses.
fn share_setup(gpu: &Gpu, host_ffn: &[Option<FfnWeights<'_>>]) -> Option<PcieShare> {
    let min_k = share::min_k_from_env()?;
    if !gpu.has_exact() {
        return None;
    }
    let layers: Vec<&FfnWeights<'_>> = host_ffn.iter().flatten().collect();
    let usable = |f: &&&FfnWeights<'_>| {
        [f.gate, f.up, f.down]
            .iter()
            .all(|m| share::exact_supported(m.info.ty))
    };
    let slices: Vec<&[u8]> = layers
        .iter()
        .filter(usable)
        .flat_map(|f| [f.gate.data, f.up.data, f.down.data])
        .collect();
    if slices.is_empty() {
        return None;
    }
    let max_cols = layers
        .iter()
        .map(|f| f.down.info.row_len() as usize)
        .chain(layers.iter().map(|f| f.gate.info.row_len() as usize))
        .max()?;
    let max_rows = layers
        .iter()
        .map(|f| (f.gate.info.rows() as usize).max(f.down.info.rows() as usize))
        .max()?;
    let t0 = std::time::Instant::now();
    let bytes: usize = slices.iter().map(|s| s.len()).sum();
    let made = share::register_all(gpu, &slices)
        .and_then(|regions| PcieShare::new(gpu, regions, min_k, max_cols, max_rows));
    match made {
        Ok(s) => {
            tracing::info!(
                "PCIe share: {:.1} GiB of CPU-placed FFN weights mapped for the GPU in {} region(s) ({:.1} s); the GPU takes part of their rows at k >= {min_k}",
                bytes as f64 / (1u64 << 30) as f64,
                s.regions.len(),
                t0.elapsed().as_secs_f64()
            );
            Some(s)
        }
        Err(e) => {
            tracing::warn!("PCIe share off: {e}");
            None
        }
    }
}

/// Where one layer's dense FFN runs, decided by the placement in [`GpuModel::chunk`]; the
/// layer code only calls [`FfnAt::run`].
enum FfnAt<'w, 'a> {
    Device(&'w GpuFfn),
    /// On the CPU with the `simd` kernels; activations go down and up through host memory.
    /// Fields: the weights, the pool, the host buffers, the layer index, and while a graph is
    /// being captured its recorder (the host step is then recorded, not run).
    Host(
        &'w FfnWeights<'a>,
        &'w Pool,
        &'w mut CpuFfnScratch,
        usize,
        Option<&'w mut Recorder>,
    ),
    /// A CPU-placed layer whose weights are streamed to the GPU for this chunk (large
    /// prefill chunks): the FFN runs on the device on the streamed copies. Fields: the
    /// streamer, every layer's host placement, the layer index.
    Streamed(&'w mut FfnStreamer, &'w [Option<FfnWeights<'a>>], usize),
}

fn mat<'v>(v: &TensorView<'v>) -> MatRef<'v> {
    MatRef {
        ty: v.info.ty,
        data: v.data,
        rows: v.info.rows() as usize,
        cols: v.info.row_len() as usize,
    }
}

impl FfnAt<'_, '_> {
    /// `x += b.o` (the mixer's output), then `b.o = down(swiglu(gate·n, up·n))` with
    /// `n = RMSNorm(x)·post_norm` (the norm on the device in every case); the caller's next
    /// norm adds `b.o` into `x`.
    fn run(
        self,
        gpu: &Gpu,
        cfg: &Config,
        b: &mut Bufs,
        post_norm: &GpuBuf<f32>,
        t: usize,
    ) -> Result<()> {
        match self {
            FfnAt::Device(f) => ffn(gpu, cfg, b, post_norm, DevMats::Resident(f), f.gate.rows, t),
            FfnAt::Streamed(st, host, il) => {
                let ff = host[il]
                    .as_ref()
                    .map(|f| f.gate.info.rows() as usize)
                    .ok_or_else(|| {
                        GpuError::shape("FfnAt::Streamed", format!("layer {il} is not on the host"))
                    })?;
                ffn(
                    gpu,
                    cfg,
                    b,
                    post_norm,
                    DevMats::Streamed(st, host, il),
                    ff,
                    t,
                )
            }
            FfnAt::Host(f, pool, s, il, rec) => {
                norm_to(gpu, cfg, b, post_norm, NormOut::Xn, true, t)?;
                match rec {
                    Some(r) => r.host_ffn(gpu, il),
                    None => cpu_ffn(gpu, cfg, b, f, pool, s, il, t),
                }
            }
        }
    }
}

/// The host part of a CPU-placed FFN layer: `b.o = down(swiglu(gate·n, up·n))` for the
/// normed input `n` in `b.xn`, which goes down to pinned memory; the result comes back up.
#[allow(clippy::too_many_arguments)]
fn cpu_ffn(
    gpu: &Gpu,
    cfg: &Config,
    b: &mut Bufs,
    f: &FfnWeights<'_>,
    pool: &Pool,
    s: &mut CpuFfnScratch,
    il: usize,
    t: usize,
) -> Result<()> {
    let d = cfg.n_embd;
    let ff = f.gate.info.rows() as usize;
    let t0 = std::time::Instant::now();
    let n = t * d;
    let stg = s
        .staging
        .as_mut()
        .ok_or_else(|| GpuError::shape("FfnAt::Host", "no pinned activation buffers"))?;
    let p0 = profile::start();
    stg.download(gpu, first(&b.xn, n)?)?;
    profile::record(Phase::Download, il, p0);
    let p0 = profile::start();
    if s.hid.len() < t * ff {
        s.hid.resize(t * ff, 0.0);
    }
    let (xn, o) = stg.io(n, n)?;
    let hid = &mut s.hid[..t * ff];
    let mats = s.share.as_ref().and_then(|sh| shared_mats(sh, f, t));
    match (mats, s.share.as_mut()) {
        (Some(m), Some(sh)) => run_shared(&mut OnGpu { sh, gpu }, &m, pool, xn, t, hid, o)?,
        _ => {
            pool.ffn_gate_up_swiglu(mat(&f.gate), mat(&f.up), xn, t, hid);
            pool.matmul(mat(&f.down), hid, t, o);
        }
    }
    profile::record(Phase::CpuFfn, il, p0);
    let p0 = profile::start();
    stg.upload(gpu, b.o.view_mut().sub(0, n)?)?;
    profile::record(Phase::Upload, il, p0);
    s.secs += t0.elapsed().as_secs_f64();
    Ok(())
}

/// The matrices of a CPU-placed FFN layer for the PCIe share at k = t tokens: `None` when
/// the share does not apply (k below its minimum, a weight type without an exact kernel,
/// weights not registered).
fn shared_mats<'w>(
    sh: &PcieShare,
    f: &FfnWeights<'w>,
    t: usize,
) -> Option<FfnMats<'w, share::SharedMat>> {
    if !sh.active_at(t) {
        return None;
    }
    let m = |v: &TensorView<'w>| -> Option<(MatRef<'w>, share::SharedMat)> {
        share::exact_supported(v.info.ty).then_some(())?;
        let cpu = mat(v);
        let dev = share::SharedMat {
            ty: cpu.ty,
            rows: cpu.rows,
            cols: cpu.cols,
            w: sh.device_ptr(v.data)?,
        };
        Some((cpu, dev))
    };
    Some(FfnMats {
        gate: m(&f.gate)?,
        up: m(&f.up)?,
        down: m(&f.down)?,
    })
}

fn unsupported(msg: String) -> ModelError {
    ModelError::Gpu(GpuError::shape("GpuModel", msg))
}

impl<'a> GpuModel<'a> {
    /// Uploads every tensor of `w` (progress bar on stderr) and allocates the activation
    /// buffers. Shapes the kernels are not built for are a typed error.
    pub fn new(gpu: Gpu, cfg: Config, w: &Qwen35Weights<'a>) -> Result<GpuModel<'a>, ModelError> {
        let n = cfg.n_layer();
        GpuModel::build(gpu, cfg, w, false, n, 1)
    }

    /// Hybrid split: everything on the GPU except the dense FFN of layers `n_gpu_ffn..`,
    /// which runs on the CPU (`threads` threads, weights read from the mmap).
    pub fn new_hybrid(
        gpu: Gpu,
        cfg: Config,
        w: &Qwen35Weights<'a>,
        n_gpu_ffn: usize,
        threads: usize,
    ) -> Result<GpuModel<'a>, ModelError> {
        GpuModel::build(gpu, cfg, w, false, n_gpu_ffn, threads)
    }

    /// The same model with every matrix dequantized to F32 on the device, so no activation is
    /// quantized: f32 arithmetic throughout, the reference both the quantized GPU path and
    /// the CPU are measured against (tests; needs 4 bytes per weight).
    pub fn new_f32_reference(
        gpu: Gpu,
        cfg: Config,
        w: &Qwen35Weights<'a>,
    ) -> Result<GpuModel<'a>, ModelError> {
        let n = cfg.n_layer();
        GpuModel::build(gpu, cfg, w, true, n, 1)
    }

    fn build(
        gpu: Gpu,
        cfg: Config,
        w: &Qwen35Weights<'a>,
        dequantize: bool,
        n_gpu_ffn: usize,
        threads: usize,
    ) -> Result<GpuModel<'a>, ModelError> {
        if !ATTN_HEAD_DIMS.contains(&cfg.head_dim) {
            return Err(unsupported(format!(
                "attention head_dim {} (kernels: {ATTN_HEAD_DIMS:?})",
                cfg.head_dim
            )));
        }
        if !GDN_HEAD_DIMS.contains(&cfg.ssm_d_state) || cfg.gdn_head_v_dim() != cfg.ssm_d_state {
            return Err(unsupported(format!(
                "GDN head dim d_k {} / d_v {} (kernels: d_k = d_v in {GDN_HEAD_DIMS:?})",
                cfg.ssm_d_state,
                cfg.gdn_head_v_dim()
            )));
        }
        if cfg.ssm_d_conv != 4 {
            return Err(unsupported(format!(
                "conv kernel {} (the kernel is built for 4 taps)",
                cfg.ssm_d_conv
            )));
        }
        let t0 = std::time::Instant::now();
        let n_gpu_ffn = n_gpu_ffn.min(cfg.n_layer());
        let gw = GpuWeights::upload(&gpu, w, dequantize, n_gpu_ffn)?;
        let host_ffn: Vec<Option<FfnWeights<'a>>> = w
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (i >= n_gpu_ffn).then_some(FfnWeights {
                    gate: l.ffn.gate,
                    up: l.ffn.up,
                    down: l.ffn.down,
                })
            })
            .collect();
        let pool = (n_gpu_ffn < cfg.n_layer()).then(|| Pool::new(threads.max(1)));
        // The prefill GEMM path: not for the f32 reference (its point is f32 arithmetic), and
        // any failure (no libcublas, no memory) keeps the chunk-of-8 path.
        let mut b = None;
        if !dequantize {
            let (elems, cols) = gemm_sizes(&gw);
            match Gemm::new(&gpu, elems, GEMM_CHUNK * cols)
                .and_then(|g| Bufs::new(&gpu, &cfg, GEMM_CHUNK, Some(g)))
            {
                Ok(bufs) => b = Some(bufs),
                Err(e) => tracing::warn!("prefill GEMM path off: {e}"),
            }
        }
        let b = match b {
            Some(b) => b,
            None => Bufs::new(&gpu, &cfg, MAX_BATCH, None)?,
        };
        tracing::info!(
            "GPU: all {} layers (dense FFN of {} on the GPU, {} on the CPU){}, output norm and LM head uploaded: {:.1} MiB in {:.1} s; token embedding on the host",
            cfg.n_layer(),
            n_gpu_ffn,
            cfg.n_layer() - n_gpu_ffn,
            if gw.mtp.is_some() { " + MTP block" } else { "" },
            gw.bytes as f64 / (1u64 << 20) as f64,
            t0.elapsed().as_secs_f64()
        );
        // Prefill weight streaming (hybrid split with the GEMM path); without the memory for
        // it, large chunks run their CPU-placed FFN layers on the CPU.
        let streamer = if b.gemm.is_some() {
            match FfnStreamer::new(&gpu, &host_ffn) {
                Ok(s) => {
                    if let Some(s) = &s {
                        tracing::info!(
                            "prefill weight streaming: 2 slots of {:.1} MiB on the GPU (chunks of >= {STREAM_MIN_TOKENS} tokens run CPU-placed FFN layers on the GPU)",
                            s.device_bytes() as f64 / 2.0 / (1u64 << 20) as f64
                        );
                    }
                    s
                }
                Err(e) => {
                    tracing::warn!("prefill weight streaming off: {e}");
                    None
                }
            }
        } else {
            None
        };
        let host = vec![0.0; b.t_max * cfg.n_embd];
        let pos = gpu.alloc_zeros::<i32>(2, "token positions")?;
        let mut cpu_scratch = CpuFfnScratch::default();
        if pool.is_some() {
            cpu_scratch.staging = Some(HostStaging::new(&gpu, b.t_max * cfg.n_embd)?);
            // Sized once for the largest chunk, so the per-token path never allocates.
            let ff_max = host_ffn
                .iter()
                .flatten()
                .map(|f| f.gate.info.rows() as usize)
                .max()
                .unwrap_or(0);
            cpu_scratch.hid = vec![0.0; b.t_max * ff_max];
            if !dequantize {
                cpu_scratch.share = share_setup(&gpu, &host_ffn);
            }
        }
        Ok(GpuModel {
            token_embd: w.token_embd,
            mtp_embd: w.mtp.as_ref().map(|m| m.embed_tokens),
            cfg,
            gpu,
            w: gw,
            b,
            host,
            host_ffn,
            pool,
            cpu_scratch,
            gemm_min: GEMM_MIN_TOKENS,
            streamer,
            stream_min: STREAM_MIN_TOKENS,
            pos,
            graphs: GraphCache::new(),
        })
    }

    /// Whether the GPU's PCIe share of CPU-placed rows is set up (`gpu::share`).
    pub fn has_pcie_share(&self) -> bool {
        self.cpu_scratch.share.is_some()
    }

    /// The smallest chunk that uses the PCIe share (`None`: off), where it is set up.
    pub fn set_pcie_share_min_k(&mut self, min_k: Option<usize>) {
        if let Some(s) = self.cpu_scratch.share.as_mut() {
            s.set_min_k(min_k);
        }
    }

    /// The PCIe share's counters since the last call, and its current fractions of rows by
    /// k (gate/up, down).
    pub fn take_share_stats(&mut self) -> Option<(share::ShareStats, [[f64; MAX_K + 1]; 2])> {
        self.cpu_scratch
            .share
            .as_mut()
            .map(|s| (s.take_stats(), s.fractions()))
    }

    /// Turns CUDA graphs for chunks of up to [`MAX_BATCH`] tokens on or off (on by default
    /// unless `HYBRID_CUDA_GRAPHS=0`; tests and benchmarks compare both).
    pub fn set_graphs(&mut self, on: bool) {
        self.graphs.enabled = on;
        if !on {
            self.graphs.clear();
        }
    }

    /// Turns programmatic dependent launch on or off (devices that have it; captured graphs
    /// are dropped, they hold the launches as they were made).
    pub fn set_pdl(&mut self, on: bool) {
        self.gpu.set_pdl(on);
        self.graphs.clear();
    }

    /// Fuses the residual adds and the activation quantization into the norms and SwiGLU
    /// (the default unless `HYBRID_FUSE=0`) or launches them as separate kernels; the
    /// results are the same bits either way (captured graphs are dropped).
    pub fn set_fused(&mut self, on: bool) {
        self.b.fuse = on;
        self.graphs.clear();
    }

    /// Starts or stops the kernel profile (`Gpu::set_kernel_profile`); graphs are turned off
    /// while it runs (the profile times eager launches).
    pub fn set_kernel_profile(&mut self, on: bool) {
        if on {
            self.set_graphs(false);
        }
        self.gpu.set_kernel_profile(on);
    }

    /// Whether chunks may run from CUDA graphs.
    pub fn graphs_enabled(&self) -> bool {
        self.graphs.enabled
    }

    /// (replays, captures) of chunk graphs since the model was built.
    pub fn graph_stats(&self) -> (u64, u64) {
        (self.graphs.replays, self.graphs.captures)
    }

    /// Whether prefill chunks can take the GEMM path (cuBLAS loaded, buffers allocated).
    pub fn gemm_available(&self) -> bool {
        self.b.gemm.is_some()
    }

    /// Fewest remaining tokens for a GEMM-path chunk; `usize::MAX` turns the path off (tests
    /// and benchmarks compare both paths).
    pub fn set_gemm_min_tokens(&mut self, n: usize) {
        self.gemm_min = n.max(MAX_BATCH + 1);
    }

    /// Fewest tokens in a chunk for prefill weight streaming (hybrid split); `usize::MAX`
    /// turns it off (tests and benchmarks compare both).
    pub fn set_stream_min_tokens(&mut self, n: usize) {
        self.stream_min = n.max(1);
    }

    /// Whether CPU-placed FFN layers can be streamed to the GPU for large prefill chunks.
    pub fn streaming_available(&self) -> bool {
        self.streamer.is_some()
    }

    /// (bytes streamed, host seconds copying into pinned memory) since the last call.
    pub fn take_stream_stats(&mut self) -> (u64, f64) {
        match self.streamer.as_mut() {
            Some(s) => (
                std::mem::take(&mut s.bytes),
                std::mem::take(&mut s.host_copy_secs),
            ),
            None => (0, 0.0),
        }
    }

    /// Seconds spent in CPU FFN layers (hybrid split) since the last call.
    pub fn take_cpu_ffn_secs(&mut self) -> f64 {
        std::mem::take(&mut self.cpu_scratch.secs)
    }

    /// Tokens of the next chunk with `remaining` tokens left: a GEMM chunk when allowed and
    /// at most the last logit row is wanted, else at most MAX_BATCH.
    fn chunk_len(&self, remaining: usize, logits_all: bool) -> usize {
        if self.b.gemm.is_some() && !logits_all && remaining >= self.gemm_min {
            remaining.min(self.b.t_max)
        } else {
            remaining.min(MAX_BATCH)
        }
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Bytes of weights on the device.
    pub fn weight_bytes(&self) -> usize {
        self.w.bytes
    }

    /// Weight bytes one decoded token reads (trunk matrices + LM head): the numerator of the
    /// bandwidth roofline.
    pub fn bytes_per_token(&self) -> usize {
        self.w.trunk_bytes_per_token
    }

    pub fn has_mtp(&self) -> bool {
        self.w.mtp.is_some()
    }

    /// A fresh sequence state on the device for `n_ctx` tokens.
    pub fn new_state(&self, n_ctx: usize) -> Result<GpuSeqState, ModelError> {
        Ok(GpuSeqState::new(&self.gpu, &self.cfg, n_ctx)?)
    }

    fn check_tokens(&self, n_ctx: usize, n_past: usize, tokens: &[u32]) -> Result<(), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        if n_past + tokens.len() > n_ctx {
            return Err(ModelError::ContextFull {
                n_ctx,
                needed: n_past + tokens.len(),
            });
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.cfg.n_vocab) {
            return Err(ModelError::BadToken {
                token: t,
                n_vocab: self.cfg.n_vocab,
            });
        }
        Ok(())
    }

    /// Dequantizes the embedding rows of `tokens` (at most `b.t_max`) and uploads them to `x`.
    fn embed(&mut self, table: &TensorView<'_>, tokens: &[u32]) -> Result<(), ModelError> {
        let d = self.cfg.n_embd;
        for (t, &tok) in tokens.iter().enumerate() {
            let row = table.row(tok as u64).ok_or(ModelError::BadToken {
                token: tok,
                n_vocab: table.info.rows() as usize,
            })?;
            simd::dequantize_row(table.info.ty, row, &mut self.host[t * d..(t + 1) * d]);
        }
        self.gpu
            .write(&self.host[..tokens.len() * d], &mut self.b.x)?;
        Ok(())
    }

    /// Runs one chunk through the trunk, leaving hN in `b.hidden` and the logits of batch
    /// rows `rows` in `b.logits` (row `rows.start` first). With `ring`, the GDN kernels also
    /// write the state after each token into the slots `ring.begin` prepared. Chunks of up to
    /// MAX_BATCH tokens whose shape was seen before run from a captured CUDA graph.
    fn chunk(
        &mut self,
        st: &mut GpuSeqState,
        tokens: &[u32],
        rows: std::ops::Range<usize>,
        mut ring: Option<&mut GpuSnapshotRing>,
    ) -> Result<(), ModelError> {
        let step_t0 = profile::start();
        let table = self.token_embd;
        self.embed(&table, tokens)?;
        let t = tokens.len();
        let pos0 = i32::try_from(st.n_past + t)
            .map_err(|_| unsupported(format!("position {} past i32", st.n_past + t)))?
            - t as i32;
        self.gpu.set_i32(&mut self.pos.view_mut(), pos0)?;
        let streamed = self.streamer.is_some() && t >= self.stream_min && t > MAX_BATCH;
        let key = GraphKey {
            state: st.id,
            ring: ring.as_deref().map(|r| (r.id, r.recording())),
            t,
            rows: (rows.start, rows.end),
        };
        if t <= MAX_BATCH
            && !streamed
            && self.graphs.wants(key)
            && !self.graphs.graphs.contains_key(&key)
        {
            match self.capture(st, t, rows.clone(), ring.as_deref_mut()) {
                Ok(steps) => self.graphs.insert(key, steps),
                Err(e) => {
                    tracing::warn!("CUDA graphs off: capturing a decode step failed: {e}");
                    self.set_graphs(false);
                }
            }
        }
        if self.graphs.enabled && self.graphs.graphs.contains_key(&key) {
            self.replay(key, t)?;
        } else {
            self.layers(st, t, rows, ring, None)?;
        }
        st.n_past += t;
        if step_t0.is_some() {
            // --profile: wait for the queued kernels so the step time includes them.
            self.gpu.synchronize()?;
            profile::record(Phase::Step, 0, step_t0);
        }
        Ok(())
    }

    /// Records the chunk's launches (nothing runs): one graph per stretch of device work,
    /// with the CPU-placed FFN layers as host steps between them.
    fn capture(
        &mut self,
        st: &mut GpuSeqState,
        t: usize,
        rows: std::ops::Range<usize>,
        ring: Option<&mut GpuSnapshotRing>,
    ) -> Result<Vec<GraphStep>, ModelError> {
        self.gpu.begin_capture()?;
        st.attn_scratch.whole_context_grid = true;
        let mut rec = Recorder::default();
        let r = self.layers(st, t, rows, ring, Some(&mut rec));
        st.attn_scratch.whole_context_grid = false;
        match r.and_then(|()| Ok(self.gpu.end_capture()?)) {
            Ok(g) => {
                rec.steps.push(GraphStep::Graph(g));
                Ok(rec.steps)
            }
            Err(e) => {
                self.gpu.abort_capture();
                Err(e)
            }
        }
    }

    /// Replays the captured chunk `key` of `t` tokens (the embeddings and the position are
    /// already on the device), running the CPU-placed FFN layers between its graphs.
    fn replay(&mut self, key: GraphKey, t: usize) -> Result<(), ModelError> {
        let GpuModel {
            cfg,
            gpu,
            b,
            host_ffn,
            pool,
            cpu_scratch,
            graphs,
            ..
        } = self;
        let steps = graphs
            .graphs
            .get(&key)
            .ok_or_else(|| ModelError::Inconsistent("a chunk graph vanished".into()))?;
        for step in steps {
            match step {
                GraphStep::Graph(g) => g.launch()?,
                GraphStep::HostFfn(il) => {
                    let (Some(f), Some(p)) = (host_ffn[*il].as_ref(), pool.as_ref()) else {
                        return Err(ModelError::Inconsistent(format!(
                            "layer {il}: a host FFN step without host weights"
                        )));
                    };
                    cpu_ffn(gpu, cfg, b, f, p, cpu_scratch, *il, t)?;
                }
            }
        }
        graphs.replays += 1;
        Ok(())
    }

    /// The chunk's work after the embedding: every layer, the final norm and the LM head
    /// for `rows`. With `rec`, a graph capture is in progress.
    fn layers(
        &mut self,
        st: &mut GpuSeqState,
        t: usize,
        rows: std::ops::Range<usize>,
        mut ring: Option<&mut GpuSnapshotRing>,
        mut rec: Option<&mut Recorder>,
    ) -> Result<(), ModelError> {
        let GpuModel {
            cfg,
            gpu,
            w,
            b,
            host_ffn,
            pool,
            cpu_scratch,
            streamer,
            stream_min,
            pos,
            ..
        } = self;
        let pos = DevPos::new(pos.view().sub(0, 1)?, st.n_past);
        // Large chunks stream the CPU-placed FFN weights to the GPU (needs the GEMM path,
        // which chunks wider than MAX_BATCH always take).
        let mut streamer = streamer
            .as_mut()
            .filter(|_| t >= *stream_min && t > MAX_BATCH);
        if let Some(s) = streamer.as_deref_mut() {
            s.begin(host_ffn)?;
        }
        for (il, (lw, ls)) in w.layers.iter().zip(st.layers.iter_mut()).enumerate() {
            let _span = tracing::trace_span!("gpu layer", il).entered();
            // Placement: where this layer's FFN lives (decided at load time).
            let ffn_at = match (&lw.ffn, &host_ffn[il], pool.as_ref()) {
                (Some(f), _, _) => FfnAt::Device(f),
                (None, Some(_), _) if streamer.is_some() => {
                    let s = streamer.as_deref_mut().ok_or_else(|| {
                        ModelError::Inconsistent("the weight streamer vanished".into())
                    })?;
                    FfnAt::Streamed(s, host_ffn, il)
                }
                (None, Some(f), Some(p)) => {
                    FfnAt::Host(f, p, &mut *cpu_scratch, il, rec.as_deref_mut())
                }
                _ => {
                    return Err(ModelError::Inconsistent(format!(
                        "layer {il}: its FFN is neither on the GPU nor on the CPU"
                    )))
                }
            };
            let snap = match ring.as_deref_mut() {
                Some(r) => r.layer_views(il)?,
                None => None,
            };
            layer(
                gpu,
                cfg,
                b,
                lw,
                ls,
                ffn_at,
                &mut st.attn_scratch,
                snap,
                pos,
                t,
                il > 0,
            )?;
        }
        // The last layer's FFN output is still in b.o (see `layer`).
        let added = !w.layers.is_empty();
        norm_to(gpu, cfg, b, &w.output_norm, NormOut::Hidden, added, t)?;
        lm_head(gpu, cfg, b, &w.output, rows)?;
        Ok(())
    }

    /// Runs `tokens` at positions `st.n_past..` and advances the state; `out` as
    /// [`crate::model::qwen35::CpuModel::forward`] (logit rows per `want`, hN of every token).
    pub fn forward(
        &mut self,
        st: &mut GpuSeqState,
        tokens: &[u32],
        want: Logits,
        out: &mut ForwardOutput,
    ) -> Result<(), ModelError> {
        self.check_tokens(st.n_ctx, st.n_past, tokens)?;
        out.logits.clear();
        out.hidden.clear();
        let (d, nv) = (self.cfg.n_embd, self.cfg.n_vocab);
        let mut pos = 0;
        while pos < tokens.len() {
            let t = self.chunk_len(tokens.len() - pos, matches!(want, Logits::All));
            let chunk = &tokens[pos..pos + t];
            pos += t;
            let rows = match want {
                Logits::All => 0..t,
                Logits::Last if pos == tokens.len() => t - 1..t,
                _ => 0..0,
            };
            self.chunk(st, chunk, rows.clone(), None)?;
            out.hidden
                .extend_from_slice(&self.gpu.download(first(&self.b.hidden, t * d)?)?);
            if !rows.is_empty() {
                out.logits.extend_from_slice(
                    &self.gpu.download(first(&self.b.logits, rows.len() * nv)?)?,
                );
            }
        }
        Ok(())
    }

    /// The verify forward of speculative decoding: `tokens` (at most [`MAX_BATCH`], one
    /// weight-stationary pass) with the logits and hN rows of every token in `out`, and the
    /// GDN state after each token but the last recorded into `ring` (by the GDN kernels).
    pub fn forward_with_snapshots(
        &mut self,
        st: &mut GpuSeqState,
        tokens: &[u32],
        out: &mut ForwardOutput,
        ring: &mut GpuSnapshotRing,
    ) -> Result<(), ModelError> {
        self.forward_with_snapshots_impl(st, tokens, out, ring, None)
    }

    /// [`GpuModel::forward_with_snapshots`] for greedy verification: the argmax of every
    /// token's logit row is taken on the device and only the `t` indices come back (not `t`
    /// vocabulary-sized rows); `out.hidden` gets the hN rows, `out.logits` is left empty.
    pub fn forward_with_snapshots_argmax(
        &mut self,
        st: &mut GpuSeqState,
        tokens: &[u32],
        out: &mut ForwardOutput,
        ring: &mut GpuSnapshotRing,
        argmax: &mut Vec<u32>,
    ) -> Result<(), ModelError> {
        self.forward_with_snapshots_impl(st, tokens, out, ring, Some(argmax))
    }

    fn forward_with_snapshots_impl(
        &mut self,
        st: &mut GpuSeqState,
        tokens: &[u32],
        out: &mut ForwardOutput,
        ring: &mut GpuSnapshotRing,
        argmax: Option<&mut Vec<u32>>,
    ) -> Result<(), ModelError> {
        self.check_tokens(st.n_ctx, st.n_past, tokens)?;
        let t = tokens.len();
        if t > MAX_BATCH || !ring.begin(t) {
            return Err(unsupported(format!(
                "a verify batch of {t} tokens (at most {MAX_BATCH}, and {} snapshot slots)",
                ring.n_slots()
            )));
        }
        let (d, nv) = (self.cfg.n_embd, self.cfg.n_vocab);
        self.chunk(st, tokens, 0..t, Some(ring))?;
        out.hidden.clear();
        out.logits.clear();
        out.hidden
            .extend_from_slice(&self.gpu.download(first(&self.b.hidden, t * d)?)?);
        match argmax {
            Some(a) => self.device_argmax(t, a)?,
            None => out
                .logits
                .extend_from_slice(&self.gpu.download(first(&self.b.logits, t * nv)?)?),
        }
        Ok(())
    }

    /// Appends the argmax of logit rows `0..rows` of `b.logits`, taken on the device.
    fn device_argmax(&mut self, rows: usize, argmax: &mut Vec<u32>) -> Result<(), ModelError> {
        let nv = self.cfg.n_vocab;
        let b = &mut self.b;
        self.gpu.argmax(
            first(&b.logits, rows * nv)?,
            rows,
            nv,
            b.am_idx.view_mut(),
            b.am_val.view_mut(),
        )?;
        let idx = self.gpu.download(b.am_idx.view().sub(0, rows)?)?;
        for i in idx {
            if i < 0 || i as usize >= nv {
                return Err(ModelError::Gpu(GpuError::shape(
                    "device argmax",
                    "every logit of a row is NaN",
                )));
            }
            argmax.push(i as u32);
        }
        Ok(())
    }

    /// Rolls `st`'s GDN layers back to slot `t` of `ring` (the state after token `t` of the
    /// last verify batch) and sets the position to `n_past`.
    pub fn restore_snapshot(
        &self,
        ring: &GpuSnapshotRing,
        t: usize,
        st: &mut GpuSeqState,
        n_past: usize,
    ) -> Result<(), ModelError> {
        ring.restore(&self.gpu, t, st)?;
        st.n_past = n_past;
        Ok(())
    }

    /// Runs `tokens` like [`GpuModel::forward`] and returns the greedy pick (index, logit) for
    /// the last one, computed on the device: only 8 bytes come back, no logits or hidden rows.
    pub fn forward_greedy(
        &mut self,
        st: &mut GpuSeqState,
        tokens: &[u32],
    ) -> Result<(u32, f32), ModelError> {
        self.check_tokens(st.n_ctx, st.n_past, tokens)?;
        let mut pos = 0;
        while pos < tokens.len() {
            let t = self.chunk_len(tokens.len() - pos, false);
            let chunk = &tokens[pos..pos + t];
            pos += t;
            let rows = if pos == tokens.len() { t - 1..t } else { 0..0 };
            self.chunk(st, chunk, rows, None)?;
        }
        let mut idx = Vec::with_capacity(1);
        self.device_argmax(1, &mut idx)?;
        let val = self.gpu.download(self.b.am_val.view().sub(0, 1)?)?[0];
        Ok((idx[0], val))
    }

    /// The MTP block on `tokens` at positions `st.mtp_n_past..`, each paired with a row of
    /// `hidden_in` ([T][n_embd], spec §7.2); as
    /// [`crate::model::qwen35::CpuModel::mtp_forward`]: logits of every token and each
    /// token's hM in `out`.
    pub fn mtp_forward(
        &mut self,
        st: &mut GpuSeqState,
        tokens: &[u32],
        hidden_in: &[f32],
        out: &mut ForwardOutput,
    ) -> Result<(), ModelError> {
        self.mtp_forward_rows(st, tokens, hidden_in, Logits::All, out)
    }

    /// [`GpuModel::mtp_forward`] with a choice of logit rows, as
    /// [`crate::model::qwen35::CpuModel::mtp_forward_rows`]: the speculative catch-up only
    /// fills the MTP KV cache and asks for none, which skips the LM head (a read of its
    /// whole matrix) and the download of vocabulary-sized rows.
    pub fn mtp_forward_rows(
        &mut self,
        st: &mut GpuSeqState,
        tokens: &[u32],
        hidden_in: &[f32],
        want: Logits,
        out: &mut ForwardOutput,
    ) -> Result<(), ModelError> {
        self.mtp_forward_impl(st, tokens, hidden_in, want, out, None)
    }

    /// [`GpuModel::mtp_forward`] for greedy drafting: `argmax` gets the argmax of every
    /// token's logit row, taken on the device; `out.logits` is left empty.
    pub fn mtp_forward_argmax(
        &mut self,
        st: &mut GpuSeqState,
        tokens: &[u32],
        hidden_in: &[f32],
        out: &mut ForwardOutput,
        argmax: &mut Vec<u32>,
    ) -> Result<(), ModelError> {
        self.mtp_forward_impl(st, tokens, hidden_in, Logits::All, out, Some(argmax))
    }

    fn mtp_forward_impl(
        &mut self,
        st: &mut GpuSeqState,
        tokens: &[u32],
        hidden_in: &[f32],
        want: Logits,
        out: &mut ForwardOutput,
        mut argmax: Option<&mut Vec<u32>>,
    ) -> Result<(), ModelError> {
        self.check_tokens(st.n_ctx, st.mtp_n_past, tokens)?;
        let (d, nv) = (self.cfg.n_embd, self.cfg.n_vocab);
        if hidden_in.len() != tokens.len() * d {
            return Err(ModelError::Inconsistent(format!(
                "mtp_forward: {} hidden values for {} tokens of {d}",
                hidden_in.len(),
                tokens.len()
            )));
        }
        let (Some(table), true) = (self.mtp_embd, self.w.mtp.is_some()) else {
            return Err(ModelError::Inconsistent(
                "this model has no MTP block".into(),
            ));
        };
        out.logits.clear();
        out.hidden.clear();
        let n_chunks = tokens.len().div_ceil(MAX_BATCH);
        for (ci, chunk) in tokens.chunks(MAX_BATCH).enumerate() {
            let t = chunk.len();
            // This chunk's logit rows: every row for the argmax form, the last row of the last
            // chunk for Last.
            let rows = if argmax.is_some() {
                0..t
            } else if want == Logits::Last && ci + 1 < n_chunks {
                0..0
            } else {
                want.rows(t)
            };
            self.embed(&table, chunk)?;
            let h = &hidden_in[ci * MAX_BATCH * d..][..t * d];
            self.gpu.write(h, &mut self.b.hidden)?;
            let mtp_pos = i32::try_from(st.mtp_n_past)
                .map_err(|_| unsupported(format!("MTP position {} past i32", st.mtp_n_past)))?;
            let GpuModel {
                cfg,
                gpu,
                w,
                b,
                pos,
                ..
            } = self;
            let mut slot = pos.view_mut().sub(1, 1)?;
            gpu.set_i32(&mut slot, mtp_pos)?;
            let pos0 = DevPos::new(pos.view().sub(1, 1)?, st.mtp_n_past);
            let (Some(m), Some(kv)) = (w.mtp.as_ref(), st.mtp_kv.as_mut()) else {
                return Err(ModelError::Inconsistent(
                    "MTP weights without an MTP cache".into(),
                ));
            };
            let eps = cfg.rms_eps;
            // u = eh_proj · [enorm(embed(x)) | hnorm(h)]
            gpu.rms_norm(
                b.x.view(),
                d,
                m.enorm.view(),
                b.xn.view_mut(),
                2 * d,
                t,
                d,
                eps,
            )?;
            let xn_h = b.xn.view_mut().sub(d, (2 * t - 1) * d)?;
            gpu.rms_norm(b.hidden.view(), d, m.hnorm.view(), xn_h, 2 * d, t, d, eps)?;
            quant(gpu, first(&b.xn, t * 2 * d)?, t, 2 * d, &mut b.qa)?;
            gpu.matvec(&m.eh_proj, b.xn.view(), &b.qa, t, b.x.view_mut())?;
            // One gated-attention decoder block, then the head norm and the LM head.
            norm_to(gpu, cfg, b, &m.attn_norm, NormOut::Xn, false, t)?;
            attention(gpu, cfg, b, &m.attn, kv, &mut st.attn_scratch, pos0, t)?;
            ffn(
                gpu,
                cfg,
                b,
                &m.post_norm,
                DevMats::Resident(&m.ffn),
                m.ffn.gate.rows,
                t,
            )?;
            norm_to(gpu, cfg, b, &m.head_norm, NormOut::Hidden, true, t)?;
            let n_rows = rows.len();
            lm_head(gpu, cfg, b, m.head.as_ref().unwrap_or(&w.output), rows)?;
            st.mtp_n_past += t;
            out.hidden
                .extend_from_slice(&gpu.download(first(&b.hidden, t * d)?)?);
            match argmax.as_deref_mut() {
                Some(a) => self.device_argmax(t, a)?,
                None if n_rows > 0 => out
                    .logits
                    .extend_from_slice(&gpu.download(first(&b.logits, n_rows * nv)?)?),
                None => {}
            }
        }
        Ok(())
    }
}

/// `logits[i] = head · hidden[rows.start + i]` for the rows asked.
fn lm_head(
    gpu: &Gpu,
    cfg: &Config,
    b: &mut Bufs,
    head: &GpuMatrix,
    rows: std::ops::Range<usize>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let d = cfg.n_embd;
    let h = b.hidden.view().sub(rows.start * d, rows.len() * d)?;
    quant(gpu, h, rows.len(), d, &mut b.qa)?;
    gpu.matvec(head, h, &b.qa, rows.len(), b.logits.view_mut())
}

/// One trunk layer: `x += mixer(attn_norm(x)); x += ffn(post_norm(x))`, with each residual
/// add done by the next norm: `pending` says the previous layer's FFN output waits in `b.o`,
/// and this layer leaves its own there (the caller's next norm adds it).
#[allow(clippy::too_many_arguments)]
fn layer(
    gpu: &Gpu,
    cfg: &Config,
    b: &mut Bufs,
    lw: &GpuLayer,
    ls: &mut GpuLayerState,
    ffn_at: FfnAt<'_, '_>,
    scratch: &mut AttnScratch,
    snap: Option<(ViewMut<'_, f32>, ViewMut<'_, f32>)>,
    pos0: DevPos<'_>,
    t: usize,
    pending: bool,
) -> Result<()> {
    norm_to(gpu, cfg, b, &lw.attn_norm, NormOut::Xn, pending, t)?;
    match (&lw.mixer, ls) {
        (GpuMixer::Gdn(g), GpuLayerState::Gdn { conv, ssm }) => {
            gdn(gpu, cfg, b, g, conv, ssm, snap, t)?
        }
        (GpuMixer::Attention(a), GpuLayerState::Attention(kv)) => {
            attention(gpu, cfg, b, a, kv, scratch, pos0, t)?
        }
        _ => {
            return Err(GpuError::shape(
                "layer",
                "weights and state disagree on the layer kind",
            ))
        }
    }
    ffn_at.run(gpu, cfg, b, &lw.post_norm, t)
}

/// Gated DeltaNet (spec §4) on the normed input in `b.xn` (already quantized), into `b.o`;
/// `snap`: conv and ssm snapshot slots for the state after each token (verify batches).
#[allow(clippy::too_many_arguments)]
fn gdn(
    gpu: &Gpu,
    cfg: &Config,
    b: &mut Bufs,
    g: &GpuGdn,
    conv: &mut GpuBuf<f32>,
    ssm: &mut GpuBuf<f32>,
    snap: Option<(ViewMut<'_, f32>, ViewMut<'_, f32>)>,
    t: usize,
) -> Result<()> {
    let (snap_conv, snap_ssm) = match snap {
        Some((c, s)) => (Some(c), Some(s)),
        None => (None, None),
    };
    let (hk, hv, dk) = (cfg.ssm_n_group, cfg.ssm_dt_rank, cfg.ssm_d_state);
    let (cd, vd) = (cfg.gdn_conv_dim(), cfg.gdn_value_dim());
    {
        let Bufs {
            xn,
            p0,
            p1,
            p2,
            p3,
            qa,
            gemm,
            ..
        } = &mut *b;
        mm(gpu, gemm, qa, &g.qkv, xn.view(), t, p0.view_mut())?;
        match &g.zba {
            GdnZba::Stacked(m) => mm(gpu, gemm, qa, m, xn.view(), t, p1.view_mut())?,
            GdnZba::Separate { gate, beta, alpha } => mm_many(
                gpu,
                gemm,
                qa,
                &[gate, beta, alpha],
                xn.view(),
                t,
                vec![p1.view_mut(), p2.view_mut(), p3.view_mut()],
            )?,
        }
    }
    // Token t's z, beta and alpha: one row z | beta | alpha of p1 (stacked), or rows of p1,
    // p2 and p3.
    let (z, z_stride, beta, alpha, ba_stride) = match &g.zba {
        GdnZba::Stacked(_) => {
            let w = vd + 2 * hv;
            let p1 = b.p1.view();
            (
                p1,
                w,
                p1.sub(vd, p1.len() - vd)?,
                p1.sub(vd + hv, p1.len() - vd - hv)?,
                w,
            )
        }
        GdnZba::Separate { .. } => (b.p1.view(), vd, b.p2.view(), b.p3.view(), hv),
    };
    gpu.gdn_conv(GdnConvArgs {
        x: b.p0.view(),
        w: g.conv_w.view(),
        state: conv.view_mut(),
        u: b.u.view_mut(),
        snapshot: snap_conv,
        channels: cd,
        ntok: t,
    })?;
    gpu.gdn_recurrence(GdnRecurrenceArgs {
        u: b.u.view(),
        u_stride: cd,
        beta,
        alpha,
        ba_stride,
        dt_bias: g.dt_bias.view(),
        ssm_a: g.ssm_a.view(),
        state: ssm.view_mut(),
        out: b.g.view_mut(),
        snapshot: snap_ssm,
        h_k: hk,
        h_v: hv,
        d: dk,
        ntok: t,
        eps: cfg.rms_eps,
    })?;
    let fused = b.fuse && dk % 32 == 0;
    let z = GateRows {
        v: z,
        heads: hv,
        stride: z_stride,
    };
    gpu.rms_norm_gated(
        b.g.view(),
        g.ssm_norm.view(),
        z,
        b.y.view_mut(),
        t * hv,
        dk,
        cfg.rms_eps,
        if fused {
            quant_into(&mut b.qa, t, vd)
        } else {
            None
        },
    )?;
    if !fused {
        quant(gpu, first(&b.y, t * vd)?, t, vd, &mut b.qa)?;
    }
    mm(
        gpu,
        &mut b.gemm,
        &b.qa,
        &g.out,
        b.y.view(),
        t,
        b.o.view_mut(),
    )
}

/// Gated attention (spec §3) for t tokens at positions pos0.. on `b.xn` (already quantized):
/// stores their K/V, attends causally, gates, and projects into `b.o`.
#[allow(clippy::too_many_arguments)]
fn attention(
    gpu: &Gpu,
    cfg: &Config,
    b: &mut Bufs,
    a: &GpuAttn,
    kv: &mut KvCache,
    scratch: &mut AttnScratch,
    pos0: DevPos<'_>,
    t: usize,
) -> Result<()> {
    let (nh, nkv, hd) = (cfg.n_head, cfg.n_head_kv, cfg.head_dim);
    let qd = nh * hd;
    let eps = cfg.rms_eps;
    {
        let Bufs {
            xn,
            p0,
            p1,
            p2,
            qa,
            gemm,
            ..
        } = &mut *b;
        mm_many(
            gpu,
            gemm,
            qa,
            &[&a.q, &a.k, &a.v],
            xn.view(),
            t,
            vec![p0.view_mut(), p1.view_mut(), p2.view_mut()],
        )?;
    }
    // Per head the projection is [q_h | gate_h]: the q norm reads every other hd-row.
    gpu.rms_norm(
        b.p0.view(),
        2 * hd,
        a.q_norm.view(),
        b.g.view_mut(),
        hd,
        t * nh,
        hd,
        eps,
    )?;
    gpu.rms_norm(
        b.p1.view(),
        hd,
        a.k_norm.view(),
        b.p3.view_mut(),
        hd,
        t * nkv,
        hd,
        eps,
    )?;
    gpu.rope_neox(
        b.g.view_mut(),
        t,
        nh,
        hd,
        cfg.n_rot,
        pos0,
        cfg.rope_freq_base,
    )?;
    gpu.rope_neox(
        b.p3.view_mut(),
        t,
        nkv,
        hd,
        cfg.n_rot,
        pos0,
        cfg.rope_freq_base,
    )?;
    gpu.kv_store(kv, b.p3.view(), b.p2.view(), t, pos0)?;
    let scale = 1.0 / (hd as f32).sqrt();
    // The attention scratch serves MAX_BATCH query tokens: longer chunks go in groups (their
    // K/V are all stored above; each group attends causally up to its own positions).
    let qd_all = nh * hd;
    let mut s0 = 0;
    while s0 < t {
        let n = (t - s0).min(MAX_BATCH);
        let q = b.g.view().sub(s0 * qd_all, n * qd_all)?;
        let out = b.y.view_mut().sub(s0 * qd_all, n * qd_all)?;
        gpu.attn_decode(q, kv, scratch, out, nh, n, pos0.offset(s0), scale)?;
        s0 += n;
    }
    let gates = b.p0.view().sub(hd, b.p0.len() - hd)?;
    gpu.sigmoid_gate(b.y.view_mut(), gates, t * nh, hd, 2 * hd)?;
    quant(gpu, first(&b.y, t * qd)?, t, qd, &mut b.qa)?;
    mm(gpu, &mut b.gemm, &b.qa, &a.o, b.y.view(), t, b.o.view_mut())
}

/// Where a device FFN's three matrices come from: resident in VRAM, or streamed from the host
/// for this chunk (taken in the order gate, up, down, each released once its GEMM is queued so
/// its slot can take the next matrix).
enum DevMats<'w, 'a> {
    Resident(&'w GpuFfn),
    Streamed(&'w mut FfnStreamer, &'w [Option<FfnWeights<'a>>], usize),
}

impl DevMats<'_, '_> {
    /// Runs `f` on matrix `which` (0 gate, 1 up, 2 down).
    fn with(
        &mut self,
        gpu: &Gpu,
        which: usize,
        f: impl FnOnce(&GpuMatrix) -> Result<()>,
    ) -> Result<()> {
        match self {
            DevMats::Resident(m) => f([&m.gate, &m.up, &m.down][which.min(2)]),
            DevMats::Streamed(st, host, il) => st.with_matrix(gpu, host, *il, which, f),
        }
    }
}

/// Where [`norm_to`] writes.
enum NormOut {
    /// `b.xn`, quantized into `b.qa` too (the input of the next mat-vecs).
    Xn,
    /// `b.hidden` (hN, the LM head's input).
    Hidden,
}

/// `out = RMSNorm(b.x) · norm` for t tokens, with `b.x += b.o` first when `add` (the block
/// output the previous block left in `b.o`). Fused (`b.fuse`): one kernel; otherwise
/// add_inplace, rms_norm and quantize_acts, with bit-identical results.
fn norm_to(
    gpu: &Gpu,
    cfg: &Config,
    b: &mut Bufs,
    norm: &GpuBuf<f32>,
    out: NormOut,
    add: bool,
    t: usize,
) -> Result<()> {
    let (d, eps) = (cfg.n_embd, cfg.rms_eps);
    let (y, qa) = match out {
        NormOut::Xn => (&mut b.xn, quant_into(&mut b.qa, t, d)),
        NormOut::Hidden => (&mut b.hidden, None),
    };
    if b.fuse {
        let o = add.then(|| b.o.view());
        let qa = qa.map(|(qa, _)| qa);
        return gpu.add_rms_norm(b.x.view_mut(), o, norm.view(), y.view_mut(), t, d, eps, qa);
    }
    if add {
        gpu.add_inplace(b.x.view_mut(), b.o.view(), t * d)?;
    }
    gpu.rms_norm(b.x.view(), d, norm.view(), y.view_mut(), d, t, d, eps)?;
    match qa {
        Some((qa, k)) => gpu.quantize_acts(first(y, t * d)?, k, d, qa),
        None => Ok(()),
    }
}

/// `x += b.o`, then `b.o = down(swiglu(gate·n, up·n))` with `n = RMSNorm(x)·post_norm`, on
/// the device (the caller's next norm adds `b.o`); `ff` is the FFN width (rows of gate).
fn ffn(
    gpu: &Gpu,
    cfg: &Config,
    b: &mut Bufs,
    post_norm: &GpuBuf<f32>,
    mut mats: DevMats<'_, '_>,
    ff: usize,
    t: usize,
) -> Result<()> {
    norm_to(gpu, cfg, b, post_norm, NormOut::Xn, true, t)?;
    let Bufs {
        xn,
        p0,
        p1,
        y,
        o,
        qa,
        gemm,
        fuse,
        ..
    } = &mut *b;
    match &mats {
        DevMats::Resident(f) => mm_many(
            gpu,
            gemm,
            qa,
            &[&f.gate, &f.up],
            xn.view(),
            t,
            vec![p0.view_mut(), p1.view_mut()],
        )?,
        DevMats::Streamed(..) => {
            mats.with(gpu, 0, |w| {
                mm(gpu, gemm, qa, w, xn.view(), t, p0.view_mut())
            })?;
            mats.with(gpu, 1, |w| {
                mm(gpu, gemm, qa, w, xn.view(), t, p1.view_mut())
            })?;
        }
    }
    if *fuse {
        gpu.swiglu_q8(
            p0.view(),
            p1.view(),
            y.view_mut(),
            t * ff,
            quant_into(qa, t, ff),
        )?;
    } else {
        gpu.swiglu(p0.view(), p1.view(), y.view_mut(), t * ff)?;
        quant(gpu, first(y, t * ff)?, t, ff, qa)?;
    }
    mats.with(gpu, 2, |w| mm(gpu, gemm, qa, w, y.view(), t, o.view_mut()))
}
