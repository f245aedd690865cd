//! `hybrid-run synth`: writes a random-weight qwen35 GGUF (see `hybrid_run::synth`).

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::info::{fmt_bytes, render_report};
use crate::synth::{Preset, QuantMix, SynthOptions, SynthPlan};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model shape: tiny, small or 27b.
    #[arg(long, value_parser = parse_preset)]
    pub preset: Preset,
    /// Type mix as llama-quantize would produce it: f32, q8_0, q4_k_m, q5_k_m, q6_k.
    #[arg(long, value_parser = parse_mix, default_value = "q4_k_m")]
    pub quant: QuantMix,
    /// Seed of the random weights (same seed, same bytes).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file.
    #[arg(short = 'o', long = "output", required_unless_present = "dry_run")]
    pub output: Option<PathBuf>,
    /// Copy the tokenizer.* keys from this GGUF (padded with unused tokens to the
    /// preset's vocabulary size) instead of the built-in small BPE vocabulary.
    #[arg(long)]
    pub vocab_from: Option<PathBuf>,
    /// Print the planned file size and breakdown without writing anything.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    Preset::from_name(s).ok_or_else(|| format!("unknown preset {s:?} (tiny, small, 27b)"))
}

fn parse_mix(s: &str) -> Result<QuantMix, String> {
    QuantMix::from_name(s)
        .ok_or_else(|| format!("unknown quant {s:?} (f32, q8_0, q4_k_m, q5_k_m, q6_k)"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = SynthOptions {
        preset: args.preset,
        mix: args.quant,
        seed: args.seed,
        vocab_from: args.vocab_from,
    };
    let plan = SynthPlan::new(&opts)?;
    let planned = plan.file_size()?;
    if args.dry_run {
        println!(
            "planned file: {} bytes ({}), preset {}, quant {}, seed {}",
            planned,
            fmt_bytes(planned),
            args.preset.name(),
            args.quant,
            args.seed
        );
        let tensors: Vec<_> = plan.sized_tensors().collect();
        print!(
            "{}",
            render_report(plan.config(), plan.preset.tied_output, &tensors)
        );
        return Ok(());
    }
    let Some(out) = args.output else {
        anyhow::bail!("--output is required unless --dry-run is given");
    };
    let data_bytes: u64 = plan.tensors.iter().map(|t| t.n_bytes).sum();
    let bar = ProgressBar::new(data_bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Write next to the target and rename at the end, so an interrupted run leaves no
    // file that looks complete.
    let partial = out.with_extension("gguf.partial");
    let size = plan
        .write(&partial, &|n| bar.inc(n))
        .with_context(|| format!("writing {}", partial.display()))?;
    bar.finish_and_clear();
    std::fs::rename(&partial, &out)
        .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
    tracing::info!(path = %out.display(), bytes = size, "synthetic model written");
    eprintln!("wrote {} ({})", out.display(), fmt_bytes(size));
    Ok(())
}
