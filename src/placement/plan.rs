//! The placement planner: the whole trunk on the GPU (attention, GDN, norms, LM head, MTP
//! block), then the KV caches for `-c`, the GDN recurrent state, the MTP KV cache, the
//! speculative snapshot ring, the scratch buffers and a fixed runtime reserve, all reserved
//! in that order; then the dense FFN of layers 0, 1, 2, ... while they fit (the GPU engine
//! holds a prefix of the layers' FFN). The rest run on the CPU from the mmap.

use std::fmt;

use crate::model::qwen35::SizeBreakdown;

use super::scratch::ScratchModel;

/// Bandwidths for the expected per-token time split. Defaults: a 16 GB consumer card
/// (400 GB/s VRAM, ANCHORS: 288-448), dual-channel DDR5 (60 GB/s effective, ANCHORS:
/// 55-75) and 30 us per CPU-FFN layer for the activation copy down and back up plus the
/// synchronization (ANCHORS: a small copy plus sync costs 10-60 us).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bandwidths {
    pub gpu_bytes_per_s: f64,
    pub host_bytes_per_s: f64,
    pub copy_latency_per_cpu_layer_s: f64,
}

impl Default for Bandwidths {
    fn default() -> Self {
        Bandwidths {
            gpu_bytes_per_s: 400e9,
            host_bytes_per_s: 60e9,
            copy_latency_per_cpu_layer_s: 30e-6,
        }
    }
}

/// What the plan is asked to fit.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanRequest {
    /// Context length in tokens (`-c`): sizes the KV caches and attention scratch.
    pub n_ctx: u64,
    /// Speculative snapshot slots (`--draft-n`; 0 = no ring).
    pub draft_slots: u64,
    /// Device bytes the plan may use.
    pub budget_bytes: u64,
    /// Bytes kept free for what the planner does not itemize: the CUDA context and NVRTC
    /// modules (when the budget is a card's size) or allocator slack.
    pub runtime_reserve_bytes: u64,
    /// `--gpu-layers N`: exactly N FFN layers on the GPU (an error if they do not fit).
    pub forced_gpu_layers: Option<usize>,
    pub scratch: ScratchModel,
    pub bandwidths: Bandwidths,
}

impl PlanRequest {
    /// CUDA context + NVRTC modules of a fresh process (measured budgets already exclude it).
    pub const CARD_RUNTIME_RESERVE: u64 = 512 << 20;
    /// Slack kept below measured free memory.
    pub const FREE_MEMORY_MARGIN: u64 = 256 << 20;
}

/// One itemized reservation.
#[derive(Clone, Debug, PartialEq)]
pub struct Reservation {
    pub what: String,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// In reservation order: the trunk and its state first, then one line per GPU FFN layer.
    pub items: Vec<Reservation>,
    pub n_layer: usize,
    /// Layers `0..n_gpu_ffn` have their dense FFN on the GPU.
    pub n_gpu_ffn: usize,
    pub budget_bytes: u64,
    /// Bytes of the trunk part (everything before the FFN layers).
    pub trunk_reserved_bytes: u64,
    pub gpu_ffn_bytes: u64,
    pub cpu_ffn_bytes: u64,
    /// Weight bytes one decoded token reads on each side.
    pub gpu_read_bytes_per_token: u64,
    pub cpu_read_bytes_per_token: u64,
    pub bandwidths: Bandwidths,
}

/// Why no plan fits, with what would.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("the trunk does not fit in {}: it needs {} ({}). {}", gib(*budget), gib(*need), items_line(items), suggestion(*max_ctx, *max_slots, *n_ctx, *draft_slots))]
    TrunkDoesNotFit {
        need: u64,
        budget: u64,
        items: Vec<Reservation>,
        n_ctx: u64,
        draft_slots: u64,
        /// Largest `-c` that fits with the same drafts (None: not even a 1-token context).
        max_ctx: Option<u64>,
        /// Most snapshot slots that fit with the same `-c` (None: not even 0).
        max_slots: Option<u64>,
    },
    #[error("--gpu-layers {forced}: the dense FFN of {forced} layers does not fit in {} beside the trunk ({} of it left); at most {fit} fit (or use --gpu-layers auto)", gib(*budget), gib(*left))]
    ForcedLayersDoNotFit {
        forced: usize,
        fit: usize,
        budget: u64,
        left: u64,
    },
    #[error("--gpu-layers {forced}: the model has only {n_layer} layers")]
    TooManyLayers { forced: usize, n_layer: usize },
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

fn items_line(items: &[Reservation]) -> String {
    items
        .iter()
        .map(|r| format!("{} {}", r.what, mib(r.bytes)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn suggestion(max_ctx: Option<u64>, max_slots: Option<u64>, n_ctx: u64, slots: u64) -> String {
    let mut s = Vec::new();
    if let Some(c) = max_ctx.filter(|&c| c < n_ctx) {
        s.push(format!("-c {c} (instead of {n_ctx}) would fit"));
    }
    if let Some(k) = max_slots.filter(|&k| k < slots) {
        s.push(format!(
            "--draft-n {k} (instead of {slots}) would fit with -c {n_ctx}"
        ));
    }
    if s.is_empty() {
        "Even a minimal context does not fit: use a larger budget, a smaller quantization or --gpu-layers 0 (CPU only).".into()
    } else {
        format!("{}; or run on the CPU with --gpu-layers 0.", s.join("; "))
    }
}

impl Plan {
    /// The trunk reservations for a context and ring size, in order.
    fn trunk_items(
        sizes: &SizeBreakdown,
        req: &PlanRequest,
        n_ctx: u64,
        slots: u64,
    ) -> Vec<Reservation> {
        // The token embedding stays in host memory unless it is also the LM head (tied).
        let embd_on_gpu = if sizes.lm_head_bytes == 0 {
            sizes.embedding_bytes
        } else {
            0
        };
        let r = |what: &str, bytes: u64| Reservation {
            what: what.to_owned(),
            bytes,
        };
        let mut v = vec![
            r(
                "trunk weights (attention, GDN, norms, LM head)",
                sizes.trunk_bytes() - sizes.embedding_bytes - sizes.mtp_bytes + embd_on_gpu,
            ),
            r("MTP head weights", sizes.mtp_bytes),
            r("KV cache (f16)", sizes.kv_bytes_per_token * n_ctx),
            r("GDN recurrent state", sizes.recurrent_state_bytes()),
            r("MTP KV cache (f16)", sizes.mtp_kv_bytes_per_token * n_ctx),
            r(
                "speculative snapshot ring",
                sizes.snapshot_slot_bytes() * slots,
            ),
            r(
                "scratch (activations, attention partials)",
                req.scratch.bytes(n_ctx),
            ),
            r(
                "runtime reserve (CUDA context, modules, slack)",
                req.runtime_reserve_bytes,
            ),
        ];
        v.retain(|x| x.bytes > 0);
        v
    }

    /// Fits the trunk, its state and the ring under `req.budget_bytes`, then as many FFN
    /// layers (first to last) as fit, or exactly `req.forced_gpu_layers`.
    pub fn compute(sizes: &SizeBreakdown, req: &PlanRequest) -> Result<Plan, PlanError> {
        let n_layer = sizes.ffn_bytes_per_layer.len();
        if let Some(f) = req.forced_gpu_layers.filter(|&f| f > n_layer) {
            return Err(PlanError::TooManyLayers { forced: f, n_layer });
        }
        let need = |n_ctx: u64, slots: u64| -> u64 {
            Self::trunk_items(sizes, req, n_ctx, slots)
                .iter()
                .map(|r| r.bytes)
                .sum()
        };
        let mut items = Self::trunk_items(sizes, req, req.n_ctx, req.draft_slots);
        let trunk: u64 = items.iter().map(|r| r.bytes).sum();
        if trunk > req.budget_bytes {
            let fits = |c: u64, k: u64| need(c, k) <= req.budget_bytes;
            // Largest context with the same drafts: need() is monotone in n_ctx.
            let max_ctx = if fits(1, req.draft_slots) {
                let (mut lo, mut hi) = (1u64, req.n_ctx);
                while lo + 1 < hi {
                    let mid = lo + (hi - lo) / 2;
                    if fits(mid, req.draft_slots) {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                // Round down to a tidy multiple of 256 when that is possible.
                Some(if lo >= 256 { lo / 256 * 256 } else { lo })
            } else {
                None
            };
            let max_slots = (0..req.draft_slots).rev().find(|&k| fits(req.n_ctx, k));
            return Err(PlanError::TrunkDoesNotFit {
                need: trunk,
                budget: req.budget_bytes,
                items,
                n_ctx: req.n_ctx,
                draft_slots: req.draft_slots,
                max_ctx,
                max_slots,
            });
        }
        let mut left = req.budget_bytes - trunk;
        // A split (some FFN layers on the CPU) also needs the two prefill weight-streaming
        // slots; when every layer fits without them, none is needed.
        let slots = 2 * sizes.ffn_max_matrix_bytes;
        let all_fit = sizes.ffn_bytes <= left && req.forced_gpu_layers.is_none_or(|f| f == n_layer);
        let stream_bytes = if all_fit || slots > left { 0 } else { slots };
        left -= stream_bytes;
        let left_for_ffn = left;
        let mut n_fit = 0;
        for &b in &sizes.ffn_bytes_per_layer {
            if b > left {
                break;
            }
            left -= b;
            n_fit += 1;
        }
        let n_gpu_ffn = match req.forced_gpu_layers {
            Some(f) if f > n_fit => {
                return Err(PlanError::ForcedLayersDoNotFit {
                    forced: f,
                    fit: n_fit,
                    budget: req.budget_bytes,
                    left: left_for_ffn,
                })
            }
            Some(f) => f,
            None => n_fit,
        };
        let mut trunk = trunk;
        if stream_bytes > 0 && n_gpu_ffn < n_layer {
            items.push(Reservation {
                what: "prefill weight-streaming slots (2 x largest FFN matrix)".into(),
                bytes: stream_bytes,
            });
            trunk += stream_bytes;
        }
        for (i, &b) in sizes.ffn_bytes_per_layer[..n_gpu_ffn].iter().enumerate() {
            items.push(Reservation {
                what: format!("layer {i} dense FFN"),
                bytes: b,
            });
        }
        let gpu_ffn_bytes: u64 = sizes.ffn_bytes_per_layer[..n_gpu_ffn].iter().sum();
        let trunk_read = sizes.trunk_bytes() - sizes.embedding_bytes - sizes.mtp_bytes
            + if sizes.lm_head_bytes == 0 {
                sizes.embedding_bytes
            } else {
                0
            };
        Ok(Plan {
            items,
            n_layer,
            n_gpu_ffn,
            budget_bytes: req.budget_bytes,
            trunk_reserved_bytes: trunk,
            gpu_ffn_bytes,
            cpu_ffn_bytes: sizes.ffn_bytes - gpu_ffn_bytes,
            gpu_read_bytes_per_token: trunk_read + gpu_ffn_bytes,
            cpu_read_bytes_per_token: sizes.ffn_bytes - gpu_ffn_bytes,
            bandwidths: req.bandwidths,
        })
    }

    /// Device bytes the plan reserves.
    pub fn total_bytes(&self) -> u64 {
        self.items.iter().map(|r| r.bytes).sum()
    }

    /// Expected seconds per decoded token: (GPU weight reads, CPU weight reads, copies).
    pub fn expected_token_time_s(&self) -> (f64, f64, f64) {
        let b = &self.bandwidths;
        (
            self.gpu_read_bytes_per_token as f64 / b.gpu_bytes_per_s,
            self.cpu_read_bytes_per_token as f64 / b.host_bytes_per_s,
            (self.n_layer - self.n_gpu_ffn) as f64 * b.copy_latency_per_cpu_layer_s,
        )
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "placement plan: dense FFN of {} of {} layers on the GPU ({}), {} on the CPU from the mmap ({})",
            self.n_gpu_ffn,
            self.n_layer,
            gib(self.gpu_ffn_bytes),
            self.n_layer - self.n_gpu_ffn,
            gib(self.cpu_ffn_bytes)
        )?;
        let n_trunk_items = self.items.len() - self.n_gpu_ffn;
        for r in &self.items[..n_trunk_items] {
            writeln!(f, "  GPU  {:>11}  {}", mib(r.bytes), r.what)?;
        }
        if self.n_gpu_ffn > 0 {
            writeln!(
                f,
                "  GPU  {:>11}  dense FFN of layers 0..{}",
                mib(self.gpu_ffn_bytes),
                self.n_gpu_ffn
            )?;
        }
        if self.n_gpu_ffn < self.n_layer {
            writeln!(
                f,
                "  CPU  {:>11}  dense FFN of layers {}..{}",
                mib(self.cpu_ffn_bytes),
                self.n_gpu_ffn,
                self.n_layer
            )?;
        }
        writeln!(
            f,
            "  total on the GPU {} of a {} budget ({} unused)",
            gib(self.total_bytes()),
            gib(self.budget_bytes),
            mib(self.budget_bytes.saturating_sub(self.total_bytes()))
        )?;
        let (g, c, x) = self.expected_token_time_s();
        let b = &self.bandwidths;
        write!(
            f,
            "  expected per token: GPU {:.1} ms ({} at {:.0} GB/s) + CPU {:.1} ms ({} at {:.0} GB/s) + copies {:.2} ms ({} layers x {:.0} us) = {:.1} ms ({:.1} t/s roofline)",
            g * 1e3,
            gib(self.gpu_read_bytes_per_token),
            b.gpu_bytes_per_s / 1e9,
            c * 1e3,
            gib(self.cpu_read_bytes_per_token),
            b.host_bytes_per_s / 1e9,
            x * 1e3,
            self.n_layer - self.n_gpu_ffn,
            b.copy_latency_per_cpu_layer_s * 1e6,
            (g + c + x) * 1e3,
            1.0 / (g + c + x)
        )
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
