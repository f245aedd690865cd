//! `hybrid-run info MODEL.gguf`: architecture, dimensions, layer schedule, quant types per
//! tensor kind and the size breakdown the placement planner works from.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use crate::gguf::GgufFile;
use crate::model::qwen35::size::{sized_tensors, type_mix};
use crate::model::qwen35::{Config, LayerType, Qwen35Weights, SizeBreakdown, SizedTensor};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (for split models, the `-00001-of-0000N.gguf` shard).
    pub model: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let file =
        GgufFile::open(&args.model).with_context(|| format!("opening {}", args.model.display()))?;
    let cfg = Config::from_gguf(&file)?;
    let weights = Qwen35Weights::load(&file, &cfg)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model: {} ({}, {} tensors, GGUF v{})",
        args.model.display(),
        fmt_bytes(file.file_size()),
        file.tensors().len(),
        file.version()
    );
    if let Ok(name) = file.get_str("general.name") {
        let _ = writeln!(out, "name: {name}");
    }
    if let Some(ft) = file.get("general.file_type").and_then(|v| v.as_u64()) {
        let _ = writeln!(out, "file type: {} ({ft})", file_type_name(ft));
    }
    let tensors: Vec<SizedTensor> = sized_tensors(&file).collect();
    out.push_str(&render_report(&cfg, weights.output_tied, &tensors));
    print!("{out}");
    Ok(())
}

/// `general.file_type` names (llama.h `enum llama_ftype`) for the common ones.
pub fn file_type_name(ft: u64) -> &'static str {
    match ft {
        0 => "F32",
        1 => "F16",
        7 => "Q8_0",
        15 => "Q4_K_M",
        14 => "Q4_K_S",
        17 => "Q5_K_M",
        16 => "Q5_K_S",
        18 => "Q6_K",
        32 => "BF16",
        _ => "other",
    }
}

/// Architecture, schedule, type mix and size breakdown as text (shared with
/// `synth --dry-run`).
pub fn render_report(cfg: &Config, output_tied: bool, tensors: &[SizedTensor]) -> String {
    let s = SizeBreakdown::compute(cfg, tensors.iter().cloned());
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "architecture: qwen35");
    let _ = writeln!(
        w,
        "dimensions: n_embd {}, n_ff {}, vocab {}, trained context {}",
        cfg.n_embd, cfg.n_ff, cfg.n_vocab, cfg.n_ctx_train
    );
    let _ = writeln!(
        w,
        "attention: {} q heads / {} kv heads x {} (GQA {}), rope dims {} sections {:?} base {}",
        cfg.n_head,
        cfg.n_head_kv,
        cfg.head_dim,
        cfg.gqa(),
        cfg.n_rot,
        cfg.rope_sections,
        cfg.rope_freq_base
    );
    let _ = writeln!(
        w,
        "GDN: {} k heads / {} v heads x {} (r = {}, tiled V order), conv {} taps over {} channels",
        cfg.ssm_n_group,
        cfg.ssm_dt_rank,
        cfg.ssm_d_state,
        cfg.gdn_v_per_k(),
        cfg.ssm_d_conv,
        cfg.gdn_conv_dim()
    );
    let mtp = match cfg.mtp_block() {
        Some(b) => format!(" + {} MTP (block {b})", cfg.n_nextn),
        None => " + no MTP".into(),
    };
    let _ = writeln!(
        w,
        "layers: {} trunk ({} GDN + {} attention){mtp}; rms eps {:e}; output {}",
        cfg.n_layer(),
        cfg.n_gdn_layers(),
        cfg.n_attention_layers(),
        cfg.rms_eps,
        if output_tied {
            "tied to token_embd"
        } else {
            "untied"
        }
    );
    let schedule: String = (0..cfg.n_layer())
        .map(|i| match cfg.layer_type(i) {
            LayerType::Gdn => 'G',
            LayerType::Attention => 'A',
        })
        .collect();
    let _ = writeln!(w, "schedule (G = GDN, A = attention): {schedule}");

    let _ = writeln!(w, "tensor types:");
    for (label, types) in type_mix(tensors.iter().cloned()) {
        let list: Vec<String> = types.iter().map(|(t, n)| format!("{t} x {n}")).collect();
        let _ = writeln!(w, "  {label:<28} {}", list.join(", "));
    }

    let _ = writeln!(w, "size:");
    let row = |w: &mut String, label: &str, b: u64| {
        let _ = writeln!(w, "  {label:<32} {:>12}", fmt_bytes(b));
    };
    row(w, "all tensors", s.total_bytes);
    row(w, "trunk (everything but dense FFN)", s.trunk_bytes());
    row(w, "  token embeddings", s.embedding_bytes);
    row(w, "  lm_head (output)", s.lm_head_bytes);
    row(w, "  attention layers", s.attention_bytes);
    row(w, "  GDN layers", s.gdn_bytes);
    row(w, "  norms", s.norm_bytes);
    row(w, "  MTP block", s.mtp_bytes);
    if s.other_bytes > 0 {
        row(w, "  other (not qwen35)", s.other_bytes);
    }
    let n = s.ffn_bytes_per_layer.len().max(1) as u64;
    let _ = writeln!(
        w,
        "  {:<32} {:>12}  ({} layers, {} per layer on average; {:.1}% of parameters)",
        "dense FFN",
        fmt_bytes(s.ffn_bytes),
        s.ffn_bytes_per_layer.len(),
        fmt_bytes(s.ffn_bytes / n),
        100.0 * s.ffn_param_fraction()
    );
    let _ = writeln!(w, "  FFN per layer: {}", group_runs(&s.ffn_bytes_per_layer));
    let _ = writeln!(
        w,
        "  KV cache (f16): {} per token ({} attention layers) + MTP {} per token",
        fmt_binary(s.kv_bytes_per_token),
        cfg.n_attention_layers(),
        fmt_binary(s.mtp_kv_bytes_per_token)
    );
    let _ = writeln!(
        w,
        "  recurrent state (f32) per sequence: {} = conv {} + SSM {} ({} GDN layers)",
        fmt_binary(s.recurrent_state_bytes()),
        fmt_binary(s.conv_state_bytes),
        fmt_binary(s.ssm_state_bytes),
        cfg.n_gdn_layers()
    );
    let _ = writeln!(
        w,
        "  snapshot slot (one rollback point): {}",
        fmt_binary(s.snapshot_slot_bytes())
    );
    o
}

/// "32 x 173.4 MB, 32 x 150.4 MB": per-layer sizes grouped by value, largest first.
fn group_runs(v: &[u64]) -> String {
    let mut groups: Vec<(u64, usize)> = Vec::new();
    for &x in v {
        match groups.iter_mut().find(|(y, _)| *y == x) {
            Some((_, n)) => *n += 1,
            None => groups.push((x, 1)),
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.0));
    let parts: Vec<String> = groups
        .iter()
        .map(|(x, n)| format!("{n} x {}", fmt_bytes(*x)))
        .collect();
    parts.join(", ")
}

/// Decimal units (file and weight sizes).
pub fn fmt_bytes(b: u64) -> String {
    let f = b as f64;
    if f >= 1e9 {
        format!("{:.2} GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1} MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1} kB", f / 1e3)
    } else {
        format!("{b} B")
    }
}

/// Binary units (caches and states, allocated in powers of two).
pub fn fmt_binary(b: u64) -> String {
    let f = b as f64;
    const K: f64 = 1024.0;
    if f >= K * K * K {
        format!("{:.2} GiB", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.1} MiB", f / (K * K))
    } else if f >= K {
        format!("{:.1} KiB", f / K)
    } else {
        format!("{b} B")
    }
}
