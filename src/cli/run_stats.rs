//! What `--stats-json` writes: the generation statistics plus the numbers a benchmark needs
//! beside them (where the model ran, the weight bytes one plain decode step reads from host
//! and device memory, and peak memory), so scripts never scrape the human-readable lines.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::generate::GenStats;
use crate::model::qwen35::SizeBreakdown;

/// The `--stats-json` document: [`GenStats`]' fields at the top level, then these.
#[derive(Clone, Debug, Serialize)]
pub struct RunStats {
    #[serde(flatten)]
    pub gen: GenStats,
    /// "cpu", "gpu" (whole model) or "hybrid" (dense FFN of layers `n_gpu_ffn_layers..` on
    /// the CPU).
    pub placement: String,
    pub n_layer: usize,
    pub n_gpu_ffn_layers: usize,
    /// Weight bytes one non-speculative decode step reads from host memory (CPU-side
    /// matrices) and from device memory (GPU-side matrices): every trunk matrix and the LM
    /// head; the token embedding (one row) and the MTP block are not counted.
    pub host_bytes_per_token: u64,
    pub gpu_bytes_per_token: u64,
    /// `--draft-n` asked for speculation but the engine that ran does not support it.
    pub spec_skipped: bool,
    /// Peak resident set of this process (Linux `VmHWM`); absent where not available.
    pub peak_rss_bytes: Option<u64>,
    /// Device memory in use (all processes) at the end of the run, and the device's name.
    pub gpu_mem_used_bytes: Option<u64>,
    pub gpu_name: Option<String>,
    /// The generated token ids (scripts compare runs by them: a synthetic model's text can
    /// be empty).
    pub tokens: Vec<u32>,
    /// Hybrid split: the GPU's PCIe share of the CPU-placed FFN rows (absent where off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcie_share: Option<crate::gpu::share::ShareStats>,
}

/// (host, device) weight bytes per plain decode step when the dense FFN of the first
/// `n_gpu_ffn` layers (and, if `n_gpu_ffn > 0`, everything but the other layers' FFN) is
/// on the GPU. `n_gpu_ffn == 0` means the CPU engine: everything from host memory.
pub fn decode_read_bytes(s: &SizeBreakdown, n_gpu_ffn: usize) -> (u64, u64) {
    let non_ffn = s.attention_bytes + s.gdn_bytes + s.norm_bytes + s.lm_head_bytes;
    let ffn_gpu: u64 = s.ffn_bytes_per_layer.iter().take(n_gpu_ffn).sum();
    let ffn_host: u64 = s.ffn_bytes_per_layer.iter().skip(n_gpu_ffn).sum();
    if n_gpu_ffn == 0 {
        (non_ffn + ffn_host, 0)
    } else {
        (ffn_host, non_ffn + ffn_gpu)
    }
}

/// Peak resident set size of this process in bytes (Linux: `VmHWM` of /proc/self/status).
#[cfg(target_os = "linux")]
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// Peak resident set size: not measured on this platform.
#[cfg(not(target_os = "linux"))]
pub fn peak_rss_bytes() -> Option<u64> {
    None
}

/// The `VmHWM:   1234 kB` line of a /proc status file, in bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(n * 1024),
        Some(_) => None,
    }
}

impl RunStats {
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_kilobytes_and_garbage_gives_none() {
        let s = "Name:\tx\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(s), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("VmHWM: lots kB"), None);
        assert_eq!(parse_vm_hwm("VmRSS: 5 kB"), None);
    }

    #[test]
    fn read_bytes_move_ffn_layers_from_host_to_device_and_keep_the_sum() {
        let s = SizeBreakdown {
            attention_bytes: 100,
            gdn_bytes: 200,
            norm_bytes: 1,
            lm_head_bytes: 50,
            embedding_bytes: 70,
            mtp_bytes: 30,
            ffn_bytes_per_layer: vec![10, 20, 40],
            ..Default::default()
        };
        assert_eq!(decode_read_bytes(&s, 0), (351 + 70, 0));
        assert_eq!(decode_read_bytes(&s, 1), (60, 351 + 10));
        assert_eq!(decode_read_bytes(&s, 3), (0, 351 + 70));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_peak_rss() {
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
