//! `hybrid-run serve -m MODEL.gguf --host 127.0.0.1 --port 8080`: the OpenAI-compatible
//! HTTP server (see `crate::serve`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::gguf::GgufFile;
use crate::serve::api::Defaults;
use crate::serve::generator::{Generator, GeneratorError};
use crate::serve::gpu_generator::GpuGenerator;
use crate::serve::load::{cpu_factory, CpuOptions, LoadProgress, SpecChoice};
use crate::serve::{router, AppState, Engine, EngineOptions, GeneratorFactory, ServerConfig};
use crate::spec::DraftKind;

use super::run::resolve_model;

/// How the model is loaded and where it runs. Placement and speculation flags belong here.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// GGUF model file (the first shard of a split model is enough). Default: the built-in model.
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// CPU threads (default: physical cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Context length in tokens: prompt plus output of one request.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx: usize,
    /// Prompt tokens per forward batch.
    #[arg(short = 'b', long = "batch-size", default_value_t = 256)]
    pub batch: usize,
    /// Do not read every weight page at startup (first requests then pay the disk reads).
    #[arg(long = "no-prefault")]
    pub no_prefault: bool,
    /// Start every request from an empty state (never skip a cached prompt prefix).
    #[arg(long = "no-prefix-cache")]
    pub no_prefix_cache: bool,
    /// Speculative decoding: drafts verified per step (0 = off). Default: adaptive (at most 3
    /// per step) for greedy requests when the model has an MTP head (or --draft names a
    /// drafter), sampled requests decoded plainly; an explicit N applies to sampled requests
    /// too (rejection sampling).
    #[arg(long = "draft-n")]
    pub draft_n: Option<usize>,
    /// Drafter: the model's MTP head, n-gram lookup, or auto (MTP when present, else lookup).
    #[arg(long = "draft", value_enum, default_value_t = DraftKind::Auto)]
    pub draft: DraftKind,
    /// With --draft-n N: pick each step's draft length (at most N) from the running
    /// acceptance rate, as the default does.
    #[arg(long = "draft-adaptive")]
    pub draft_adaptive: bool,
    #[command(flatten)]
    pub place: super::gpu_run::PlacementArgs,
}

impl EngineArgs {
    fn cpu_options(&self) -> CpuOptions {
        CpuOptions {
            threads: self
                .threads
                .unwrap_or_else(simd::pool::physical_cores)
                .max(1),
            n_ctx: self.ctx,
            n_batch: self.batch.max(1),
            prefault: !self.no_prefault,
            reuse_prefix: !self.no_prefix_cache,
            spec: SpecChoice {
                draft_n: self.draft_n,
                kind: self.draft,
                adaptive: self.draft_adaptive,
            },
        }
    }

    /// The GPU engine's factory when `--gpu-layers` asks for one and a GPU is usable.
    fn gpu_factory(&self) -> anyhow::Result<Option<GeneratorFactory>> {
        if !self.place.wants_gpu()? {
            return Ok(None);
        }
        let spec = self.place.gpu_layers.clone();
        let budget = self.place.vram_budget.clone();
        let (threads, n_ctx, n_batch) = (
            self.threads
                .unwrap_or_else(simd::pool::physical_cores)
                .max(1),
            self.ctx,
            self.batch.max(1),
        );
        let cpu = self.cpu_options();
        Ok(Some(Box::new(
            move |file: &GgufFile, progress: &LoadProgress| {
                let cfg = crate::model::qwen35::Config::from_gguf(file)?;
                let sizes = crate::model::qwen35::SizeBreakdown::from_gguf(file, &cfg);
                // The snapshot ring of speculative decoding is reserved before FFN layers.
                let draft_slots = cpu
                    .spec
                    .resolve(cfg.mtp_block().is_some())
                    .map_or(0, |s| s.draft_n);
                match crate::cli::gpu_run::open_planned(
                    &spec,
                    budget.as_deref(),
                    &sizes,
                    &cfg,
                    n_ctx,
                    draft_slots,
                )
                .map_err(|e| GeneratorError::Backend(format!("{e:#}")))?
                {
                    Some(place) => {
                        let spec = cpu.spec.resolve(cfg.mtp_block().is_some());
                        let g = GpuGenerator::new(
                            file,
                            place.gpu,
                            place.n_gpu_ffn,
                            threads,
                            n_ctx,
                            n_batch,
                            spec,
                        )?;
                        Ok(Box::new(g) as Box<dyn Generator + '_>)
                    }
                    None => cpu_factory(cpu)(file, progress),
                }
            },
        )))
    }

    pub fn model_path(&self) -> anyhow::Result<PathBuf> {
        resolve_model(&self.model)
    }

    pub fn factory(&self) -> anyhow::Result<GeneratorFactory> {
        if self.ctx < 2 {
            bail!(
                "-c {} is too small: the context must hold at least 2 tokens",
                self.ctx
            );
        }
        if let Some(f) = self.gpu_factory()? {
            return Ok(f);
        }
        Ok(cpu_factory(self.cpu_options()))
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Address to listen on.
    #[arg(long = "host", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the log says which).
    #[arg(long = "port", default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on the /v1 routes (also from $HYBRID_RUN_API_KEY).
    #[arg(long = "api-key", env = "HYBRID_RUN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Model id reported by /v1/models and in responses (default: general.name or file stem).
    #[arg(long = "alias")]
    pub alias: Option<String>,
    /// Most requests waiting behind the running one; more are answered 503.
    #[arg(long = "max-queue", default_value_t = 64)]
    pub max_queue: usize,
    /// Default `max_tokens` when a request gives none (default: until the context is full).
    #[arg(short = 'n', long = "n-predict")]
    pub n_predict: Option<usize>,
    /// Default sampling temperature (requests override it).
    #[arg(long = "temp", default_value_t = 0.8)]
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
    /// Hide the load progress bars.
    #[arg(long = "no-progress")]
    pub no_progress: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.api_key.as_deref() == Some("") {
        bail!("--api-key is empty");
    }
    let path = a.engine.model_path()?;
    let factory = a.engine.factory()?;
    let (engine, engine_thread) = Engine::start(
        &path,
        factory,
        EngineOptions {
            max_queue: a.max_queue.max(1),
            hide_progress: a.no_progress,
            // CPU engine only: it streams every weight each token.
            resident_weights: !a.engine.place.wants_gpu()?,
        },
    )?;
    let cfg = ServerConfig {
        api_key: a.api_key.clone(),
        model_alias: a.alias.clone(),
        defaults: Defaults {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            repeat_last_n: a.repeat_last_n,
            max_tokens: a.n_predict,
        },
    };
    let app = router(AppState::new(engine, cfg));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", a.host, a.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local: SocketAddr = listener.local_addr()?;
        tracing::info!(
            "listening on http://{local} (POST /v1/chat/completions, /v1/completions; GET /v1/models, /health){}",
            if a.api_key.is_some() { "; API key required" } else { "" }
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving HTTP")
    })?;
    // The router (and with it every engine handle) is gone: the engine thread ends.
    let _ = engine_thread.join();
    tracing::info!("server stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM; a second Ctrl-C exits at once.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing open requests (Ctrl-C again to quit now)");
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}
