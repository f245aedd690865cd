//! `hybrid-run -m MODEL.gguf -p PROMPT`: the main job, text generation.

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::run_stats::{decode_read_bytes, peak_rss_bytes, RunStats};
use super::text_sink::TextSink;
use crate::generate::{generate, GenParams};
use crate::gguf::GgufFile;
use crate::model::qwen35::{Config, CpuModel, Qwen35Weights, SeqState, SizeBreakdown};
use crate::sample::{Sampler, SamplerConfig};
use crate::serve::load::SpecChoice;
use crate::spec::{generate_speculative, make_drafter, CpuTarget, DraftKind, SpecParams};
use crate::tokenizer::chat::{render, ChatMessage, ChatOptions};
use crate::tokenizer::Tokenizer;

/// The built-in model: generated from the repository's `models/` folder when no `-m` is given.
pub const BUILTIN_MODEL: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/models/qwen35-pystd-q8_0.gguf");
const DEFAULT_PROMPT: &str = "def fibonacci(n):\n";

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// GGUF model file (the first shard of a split model is enough). Default: the built-in model.
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Prompt text.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(short = 'f', long = "file", conflicts_with = "prompt")]
    pub file: Option<PathBuf>,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    /// CPU threads (default: physical cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Context length in tokens (KV cache and state are sized by it).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx: usize,
    /// Prompt tokens per forward batch.
    #[arg(short = 'b', long = "batch-size", default_value_t = 256)]
    pub batch: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long = "temp", default_value_t = 0.0)]
    pub temp: f32,
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
    #[arg(long = "seed", default_value_t = 0)]
    pub seed: u64,
    /// Wrap the prompt in the model's chat template.
    #[arg(long = "chat")]
    pub chat: bool,
    /// With --chat: pass enable_thinking=false to the template.
    #[arg(long = "no-thinking")]
    pub no_thinking: bool,
    /// With --chat: a system prompt.
    #[arg(long = "system")]
    pub system: Option<String>,
    /// Do not print the prompt before the generated text.
    #[arg(long = "no-display-prompt")]
    pub no_display_prompt: bool,
    /// Write the run's statistics as JSON to this file (for scripts).
    #[arg(long = "stats-json")]
    pub stats_json: Option<PathBuf>,
    /// Speculative decoding: drafts verified per step (0 = off). Default: on when decoding is
    /// greedy and the model has an MTP head (or --draft names a drafter), with the adaptive
    /// length (at most 3 per step); else off. A named N is N per step (see --draft-adaptive).
    #[arg(long = "draft-n")]
    pub draft_n: Option<usize>,
    /// Drafter: the model's MTP head, n-gram lookup in the prompt and output, or auto
    /// (MTP when the model has it, else lookup).
    #[arg(long = "draft", value_enum, default_value_t = DraftKind::Auto)]
    pub draft: DraftKind,
    /// With --draft-n N: pick each step's draft length (at most N) from the running
    /// acceptance rate and measured step times, as the default does (at most 3).
    #[arg(long = "draft-adaptive")]
    pub draft_adaptive: bool,
    #[command(flatten)]
    pub place: super::gpu_run::PlacementArgs,
    /// Print where each step's time went (GPU trunk, copies, CPU FFN per layer, waits) at
    /// the end.
    #[arg(long = "profile")]
    pub profile: bool,
}

/// Logs the `--profile` report, if anything was recorded.
fn log_profile() {
    let r = crate::placement::profile::report();
    if !r.is_empty() {
        tracing::info!("{r}");
    }
}

/// Speculative decoding for these arguments: drafts per step (0 = off) and whether the
/// length adapts, with a notice where the choice is not obvious. The policy is the server's,
/// [`SpecChoice::resolve`]: without `--draft-n`, greedy decoding of a model with an MTP head
/// (or a named drafter) drafts adaptively; a named N also speculates with temperature.
pub(super) fn draft_n(
    a: &Args,
    has_mtp: bool,
    sampler: &SamplerConfig,
) -> anyhow::Result<(usize, bool)> {
    let choice = SpecChoice {
        draft_n: a.draft_n,
        kind: a.draft,
        adaptive: a.draft_adaptive,
    };
    let (n, adaptive) = match choice.resolve(has_mtp) {
        None => (0, false),
        Some(c) if sampler.temperature > 0.0 && !c.with_temperature => {
            tracing::info!("speculative decoding is off by default with --temp > 0; --draft-n N turns it on (rejection sampling keeps the distribution)");
            (0, false)
        }
        Some(c) => (c.draft_n, c.adaptive),
    };
    if n > crate::spec::MAX_DRAFT_N {
        bail!(
            "--draft-n {n} is too large: at most {} (each draft costs a GDN snapshot slot)",
            crate::spec::MAX_DRAFT_N
        );
    }
    if n > 0 && sampler.temperature > 0.0 {
        tracing::info!("speculative decoding with temperature: drafts are checked by rejection sampling (same distribution as --draft-n 0, a different random stream)");
    }
    Ok((n, adaptive))
}

fn prompt_text(a: &Args) -> anyhow::Result<String> {
    let text = match (&a.prompt, &a.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading prompt file {}", f.display()))?,
        (None, None) => DEFAULT_PROMPT.to_string(),
    };
    if text.is_empty() {
        bail!("the prompt is empty: give some text with -p or -f");
    }
    Ok(text)
}

impl Args {
    /// The sampler settings of `--temp`, `--top-k`, `--top-p`, `--min-p`, `--repeat-penalty`,
    /// `--repeat-last-n` and `--seed` (the CPU and GPU engines share them).
    pub fn sampler_config(&self) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed,
        }
    }
}

/// The per-user cache folder (`$HYBRID_CACHE`, else `~/.cache/hybrid-run`).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HYBRID_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
    match home {
        Some(h) => PathBuf::from(h).join(".cache").join("hybrid-run"),
        None => std::env::temp_dir().join("hybrid-run"),
    }
}

/// `-m` if given; else the built-in model; else (a checkout without it) a synthetic tiny
/// model written once into the cache.
pub fn resolve_model(m: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = m {
        return Ok(p.clone());
    }
    let builtin = PathBuf::from(BUILTIN_MODEL);
    if builtin.exists() {
        return Ok(builtin);
    }
    let dir = cache_dir();
    let path = dir.join("synthetic-tiny-q8_0.gguf");
    if !path.exists() {
        tracing::warn!(path = %path.display(), "built-in model missing; writing the synthetic tiny model (random weights) instead");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let opts = crate::synth::SynthOptions {
            preset: crate::synth::Preset::Tiny,
            mix: crate::synth::QuantMix::Q8_0,
            seed: 1,
            vocab_from: None,
        };
        let tmp = path.with_extension("gguf.tmp");
        crate::synth::SynthPlan::new(&opts)?.write(&tmp, &|_| {})?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.chat && a.prompt.is_none() && a.file.is_none() {
        return super::chat::run(&a);
    }
    let path = resolve_model(&a.model)?;
    // CPU only (no GPU placement asked for): the CPU engine streams every weight, so read
    // them into huge-page memory. A malformed placement flag is reported by the GPU path.
    let cpu_only = !a.place.wants_gpu().unwrap_or(true);
    let file = if cpu_only {
        GgufFile::open_resident(&path)
    } else {
        GgufFile::open(&path)
    }
    .with_context(|| format!("opening {}", path.display()))?;
    let cfg = Config::from_gguf(&file)?;
    let weights = Qwen35Weights::load(&file, &cfg)?;
    let tok = Tokenizer::from_gguf(&file)?;
    let threads = a.threads.unwrap_or_else(simd::pool::physical_cores).max(1);
    tracing::info!(
        model = %path.display(),
        layers = cfg.n_layer(),
        n_embd = cfg.n_embd,
        isa = ?simd::Isa::detect(),
        threads,
        "model loaded"
    );

    let text = prompt_text(&a)?;
    let (rendered, parse_special) = if a.chat {
        let opts = ChatOptions {
            system: a.system.clone(),
            enable_thinking: a.no_thinking.then_some(false),
            ..Default::default()
        };
        (
            render(
                tok.chat_template(),
                &[ChatMessage::new("user", text)],
                &opts,
            )?,
            true,
        )
    } else {
        (text, false)
    };
    let prompt = tok.tokenize(&rendered, tok.add_bos(), parse_special)?;
    if prompt.is_empty() {
        bail!("the prompt tokenized to nothing");
    }
    if prompt.len() >= a.ctx {
        bail!("the prompt has {} tokens but the context holds {} (-c): shorten the prompt or raise -c", prompt.len(), a.ctx);
    }

    let sizes = SizeBreakdown::from_gguf(&file, &cfg);
    if a.profile {
        crate::placement::profile::enable();
    }
    let sampler_cfg = a.sampler_config();
    let wants_plan = a.place.wants_plan();
    let draft_slots = if wants_plan {
        draft_n(&a, cfg.mtp_block().is_some(), &sampler_cfg)?.0
    } else {
        0
    };
    if let Some(gpu) = super::gpu_run::open_planned(
        &a.place.gpu_layers,
        a.place.vram_budget.as_deref(),
        &sizes,
        &cfg,
        a.ctx,
        draft_slots,
    )? {
        let n_gpu_ffn = gpu.n_gpu_ffn;
        let done = super::gpu_run::run(&a, gpu, &cfg, &weights, &tok, &rendered, &prompt)?;
        log_profile();
        let tokens = done.tokens;
        let spec_skipped = a.draft_n.unwrap_or(0) > 0 && done.stats.spec.is_none();
        if let Some(p) = &a.stats_json {
            let (host, dev) = decode_read_bytes(&sizes, n_gpu_ffn);
            RunStats {
                gen: done.stats,
                placement: if n_gpu_ffn >= cfg.n_layer() {
                    "gpu"
                } else {
                    "hybrid"
                }
                .into(),
                n_layer: cfg.n_layer(),
                n_gpu_ffn_layers: n_gpu_ffn,
                host_bytes_per_token: host,
                gpu_bytes_per_token: dev,
                spec_skipped,
                peak_rss_bytes: peak_rss_bytes(),
                gpu_mem_used_bytes: done.gpu_mem_used_bytes,
                gpu_name: Some(done.gpu_name),
                tokens,
                pcie_share: done.pcie_share,
            }
            .write(p)?;
        }
        return Ok(());
    }
    let mut model = CpuModel::new(cfg.clone(), weights, threads);
    let mut st = SeqState::new(&cfg, a.ctx);
    let mut sampler = Sampler::new(sampler_cfg);
    let mut sink = TextSink::new(&tok, &rendered, !a.no_display_prompt)?;
    let params = GenParams {
        n_predict: a.n_predict.min(a.ctx - prompt.len()),
        n_batch: a.batch,
    };
    let (n_draft, adaptive) = draft_n(&a, model.has_mtp(), sampler.config())?;
    let mut on_token = |t: u32| sink.push(t);
    let stats = if n_draft == 0 {
        generate(
            &mut model,
            &mut st,
            &prompt,
            &params,
            &mut sampler,
            &|t| tok.is_eog(t),
            &mut on_token,
        )?
    } else {
        let mut target = CpuTarget::new(&mut model, &mut st, n_draft);
        let mut drafter = make_drafter(a.draft, &target)?;
        tracing::info!(
            drafter = drafter.name(),
            draft_n = n_draft,
            adaptive,
            "speculative decoding on"
        );
        generate_speculative(
            &mut target,
            drafter.as_mut(),
            &prompt,
            &params,
            &SpecParams::new(n_draft, adaptive),
            &mut sampler,
            &|t| tok.is_eog(t),
            &mut on_token,
        )?
    };
    let ids = sink.finish()?;
    eprintln!(
        "prompt: {} tokens, {:.1} t/s | decode: {} tokens, {:.2} t/s | threads {} | stop: {}",
        stats.n_prompt,
        stats.prompt_tps,
        stats.n_decode,
        stats.decode_tps,
        stats.n_threads,
        stats.stop
    );
    if let Some(spec) = &stats.spec {
        eprintln!("{}", spec.summary());
    }
    log_profile();
    if let Some(p) = &a.stats_json {
        let (host, dev) = decode_read_bytes(&sizes, 0);
        RunStats {
            gen: stats,
            placement: "cpu".into(),
            n_layer: cfg.n_layer(),
            n_gpu_ffn_layers: 0,
            host_bytes_per_token: host,
            gpu_bytes_per_token: dev,
            spec_skipped: false,
            peak_rss_bytes: peak_rss_bytes(),
            gpu_mem_used_bytes: None,
            gpu_name: None,
            tokens: ids,
            pcie_share: None,
        }
        .write(p)?;
    }
    Ok(())
}
