//! Every kernel function, loaded once at start-up into named fields (no lookup by string
//! during decode; a missing kernel fails `Gpu::new`).

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;
use simd::GgmlType;

use super::compile::{self, Kernel};
use super::error::{GpuError, Result};

/// Weight formats of the mat-vec, in the order of the `FMT_*` numbers in `cuda/`.
pub const MMV_FORMATS: [GgmlType; 7] = [
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_0,
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
];

/// Largest token count of one mat-vec launch.
pub const MAX_K: usize = 8;

/// The kernel index of a `ty` matrix in the file layout or, with `split`, in the row-split
/// layout of `gpu::layout`: [`MMV_FORMATS`] positions, then the row-split Q6_K and Q8_0
/// (as the `FMT_*` numbers of `cuda/quant.cuh`, 7 and 8). None for a format without one.
pub(crate) fn mmv_index(ty: GgmlType, split: bool) -> Option<usize> {
    match (split, ty) {
        (false, _) => MMV_FORMATS.iter().position(|&t| t == ty),
        (true, GgmlType::Q6_K) => Some(MMV_FORMATS.len()),
        (true, GgmlType::Q8_0) => Some(MMV_FORMATS.len() + 1),
        (true, _) => None,
    }
}

/// Kernel name suffixes of the row-split formats, in `mmv_index` order after the file ones.
const SPLIT_FORMATS: [&str; 2] = ["q6_k_r", "q8_0_r"];

pub struct Kernels {
    /// `mmv[format][k - 1]`, format as in [`mmv_index`].
    pub(crate) mmv: Vec<[CudaFunction; MAX_K]>,
    /// The tensor-core mat-vecs `mmv_{q4_k,q5_k}_t_k{1..8}` (sm_80 and newer; None before),
    /// `[Q4_K, Q5_K][k - 1]`.
    pub(crate) mmvt: Option<[[CudaFunction; MAX_K]; 2]>,
    pub(crate) quantize_q8_1: CudaFunction,
    pub(crate) rms_norm: CudaFunction,
    pub(crate) rms_norm_gated: CudaFunction,
    pub(crate) rope_neox: CudaFunction,
    pub(crate) add: CudaFunction,
    pub(crate) swiglu: CudaFunction,
    pub(crate) sigmoid_gate: CudaFunction,
    pub(crate) gdn_conv: CudaFunction,
    /// By d_k = d_v as in [`super::ops::GDN_HEAD_DIMS`].
    pub(crate) gdn_recurrence: [CudaFunction; 2],
    pub(crate) kv_store: CudaFunction,
    /// By head_dim as in [`super::ops::ATTN_HEAD_DIMS`].
    pub(crate) attn_partial: [CudaFunction; 3],
    pub(crate) attn_combine: CudaFunction,
    pub(crate) argmax: CudaFunction,
    /// The prefill GEMM's conversions (None when `cuda/dequant.cu` failed to build or load).
    pub(crate) dequant: Option<Dequant>,
    /// The CPU-order mat-vecs of `cuda/exact.cu` (Q4_K, Q6_K), for the GPU's share of
    /// CPU-placed rows (`gpu::share`); None when the module failed to build or load.
    pub(crate) exact: Option<[CudaFunction; 2]>,
}

/// Kernels of `cuda/dequant.cu`.
pub struct Dequant {
    /// Weights to f16, by format as in [`mmv_index`].
    pub(crate) by_fmt: Vec<CudaFunction>,
    pub(crate) f32_to_f16: CudaFunction,
}

/// How the modules were obtained, for the start-up log.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadStats {
    pub compiled: usize,
    pub cached: usize,
    pub compile_ms: f64,
}

struct Modules(Vec<(Kernel, Arc<CudaModule>)>);

impl Modules {
    fn get(&self, k: Kernel, name: &str) -> Result<CudaFunction> {
        let module = self.0.iter().find(|(m, _)| *m == k).map(|(_, m)| m).ok_or(
            GpuError::MissingKernel {
                module: k.name(),
                name: name.to_string(),
            },
        )?;
        module
            .load_function(name)
            .map_err(|_| GpuError::MissingKernel {
                module: k.name(),
                name: name.to_string(),
            })
    }
}

impl Kernels {
    pub fn load(
        ctx: &Arc<CudaContext>,
        cc: (i32, i32),
        driver_version: i32,
    ) -> Result<(Kernels, LoadStats)> {
        let mut stats = LoadStats::default();
        let t0 = std::time::Instant::now();
        let mut mods = Vec::new();
        for k in Kernel::ALL {
            let loaded = compile::cubin(k, cc, driver_version).and_then(|(image, cached)| {
                let m = ctx
                    .load_module(Ptx::from_binary(image))
                    .map_err(GpuError::driver(format!("loading module {}", k.name())))?;
                Ok((m, cached))
            });
            let (m, cached) = match loaded {
                Ok(x) => x,
                // The prefill GEMM's conversions are optional: without them prefill keeps
                // the mat-vec path.
                Err(e) if k == Kernel::Dequant => {
                    tracing::warn!("prefill GEMM kernels unavailable: {e}");
                    continue;
                }
                // So is the PCIe share of CPU-placed rows.
                Err(e) if k == Kernel::Exact => {
                    tracing::warn!("exact mat-vec kernels unavailable (no PCIe share): {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if cached {
                stats.cached += 1;
            } else {
                stats.compiled += 1;
            }
            mods.push((k, m));
        }
        stats.compile_ms = t0.elapsed().as_secs_f64() * 1e3;
        let m = Modules(mods);
        // `{prefix}_k1` .. `{prefix}_k8` of the mat-vec module.
        let per_k = |prefix: &str| -> Result<[CudaFunction; MAX_K]> {
            let f = |k: usize| m.get(Kernel::Mmvq, &format!("{prefix}_k{k}"));
            Ok([f(1)?, f(2)?, f(3)?, f(4)?, f(5)?, f(6)?, f(7)?, f(8)?])
        };
        let mut mmv = Vec::new();
        for ty in MMV_FORMATS {
            mmv.push(per_k(&format!("mmv_{}", ty.to_string().to_lowercase()))?);
        }
        for fmt in SPLIT_FORMATS {
            mmv.push(per_k(&format!("mmv_{fmt}"))?);
        }
        let mmvt = if cc >= (8, 0) {
            Some([per_k("mmv_q4_k_t")?, per_k("mmv_q5_k_t")?])
        } else {
            None
        };
        let dequant = (|| -> Result<Dequant> {
            let mut by_fmt = Vec::new();
            let names = MMV_FORMATS.iter().map(|ty| ty.to_string().to_lowercase());
            for fmt in names.chain(SPLIT_FORMATS.iter().map(|s| s.to_string())) {
                by_fmt.push(m.get(Kernel::Dequant, &format!("dequant_{fmt}_f16"))?);
            }
            Ok(Dequant {
                by_fmt,
                f32_to_f16: m.get(Kernel::Dequant, "f32_to_f16_rn")?,
            })
        })()
        .ok();
        let exact = (|| -> Result<[CudaFunction; 2]> {
            Ok([
                m.get(Kernel::Exact, "exact_q4_k")?,
                m.get(Kernel::Exact, "exact_q6_k")?,
            ])
        })()
        .ok();
        let k = Kernels {
            mmv,
            mmvt,
            dequant,
            exact,
            quantize_q8_1: m.get(Kernel::Mmvq, "quantize_q8_1")?,
            rms_norm: m.get(Kernel::Norm, "rms_norm")?,
            rms_norm_gated: m.get(Kernel::Norm, "rms_norm_gated")?,
            rope_neox: m.get(Kernel::Rope, "rope_neox")?,
            add: m.get(Kernel::Elementwise, "add_f32")?,
            swiglu: m.get(Kernel::Elementwise, "swiglu_f32")?,
            sigmoid_gate: m.get(Kernel::Elementwise, "sigmoid_gate_f32")?,
            gdn_conv: m.get(Kernel::Gdn, "gdn_conv")?,
            gdn_recurrence: [
                m.get(Kernel::Gdn, "gdn_recurrence_d64")?,
                m.get(Kernel::Gdn, "gdn_recurrence_d128")?,
            ],
            kv_store: m.get(Kernel::Attn, "kv_store")?,
            attn_partial: [
                m.get(Kernel::Attn, "attn_partial_hd64")?,
                m.get(Kernel::Attn, "attn_partial_hd128")?,
                m.get(Kernel::Attn, "attn_partial_hd256")?,
            ],
            attn_combine: m.get(Kernel::Attn, "attn_combine")?,
            argmax: m.get(Kernel::Argmax, "argmax_f32")?,
        };
        Ok((k, stats))
    }
}
