//! The engine thread: owns the model file and its [`Generator`], runs queued requests one at
//! a time in arrival order (FIFO is the fairness rule: one model, one sequence), and streams
//! text back over a per-request channel. Dropping the receiving side cancels the request:
//! a queued one is skipped, a running one stops at its next token.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::generate::GenStats;
use crate::sample::{Sampler, SamplerConfig};
use crate::tokenizer::{StreamDecoder, Tokenizer};

use super::error::ServeError;
use super::generator::{Generator, GeneratorFactory};
use super::load::{log_startup, open, LoadProgress};
use super::stop::StopMatcher;

/// One validated, tokenized request.
#[derive(Clone, Debug)]
pub struct GenRequest {
    /// For logs.
    pub id: String,
    pub prompt: Vec<u32>,
    /// At most this many tokens (already clamped to the room left in the context).
    pub max_tokens: usize,
    pub sampling: SamplerConfig,
    pub stop: Vec<String>,
    /// Keep going through end-of-generation tokens (llama.cpp's `ignore_eos`).
    pub ignore_eos: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context is used up.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Finish {
    pub reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub stats: GenStats,
}

/// What the engine sends back for one request: any number of `Text`, then `Done` or `Error`.
#[derive(Clone, Debug)]
pub enum Event {
    Text(String),
    Done(Box<Finish>),
    Error(String),
}

/// Server-wide counters, shown by `GET /health`.
#[derive(Default)]
pub struct Metrics {
    queued: AtomicUsize,
    busy: AtomicBool,
    completed: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Requests waiting for the engine (not counting the running one).
    pub queued: usize,
    /// A request is running.
    pub busy: bool,
    pub completed: u64,
    /// Requests whose client went away before the end (queued or running).
    pub cancelled: u64,
    pub failed: u64,
    pub prompt_tokens: u64,
    /// Tokens generated, including those of cancelled requests.
    pub completion_tokens: u64,
}

impl Metrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            queued: self.queued.load(Ordering::SeqCst),
            busy: self.busy.load(Ordering::SeqCst),
            completed: self.completed.load(Ordering::SeqCst),
            cancelled: self.cancelled.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            prompt_tokens: self.prompt_tokens.load(Ordering::SeqCst),
            completion_tokens: self.completion_tokens.load(Ordering::SeqCst),
        }
    }
}

/// What the server needs to know about the loaded model.
pub struct EngineInfo {
    pub model_path: PathBuf,
    /// `general.name`, or the file stem.
    pub model_name: String,
    pub n_ctx: usize,
    pub tokenizer: Arc<Tokenizer>,
    pub plan: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Most requests waiting at once; more get "busy" (HTTP 503).
    pub max_queue: usize,
    /// Hide the load progress bars.
    pub hide_progress: bool,
    /// Read the model into huge-page memory (`GgufFile::open_resident`): for the CPU
    /// engine, which streams every weight each token. Off for GPU placements.
    pub resident_weights: bool,
}

struct Job {
    req: GenRequest,
    events: UnboundedSender<Event>,
    queued_at: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the server is busy: {0} requests are already waiting; retry later")]
    QueueFull(usize),
    #[error("the engine has stopped")]
    EngineGone,
}

/// Cloneable handle to the engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    tx: crossbeam_channel::Sender<Job>,
    metrics: Arc<Metrics>,
    info: Arc<EngineInfo>,
    max_queue: usize,
}

impl EngineHandle {
    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Queues `req`; the returned receiver gets its events. Dropping it cancels the request.
    pub fn submit(&self, req: GenRequest) -> Result<UnboundedReceiver<Event>, SubmitError> {
        let before = self.metrics.queued.fetch_add(1, Ordering::SeqCst);
        if before >= self.max_queue {
            self.metrics.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::QueueFull(before));
        }
        let (events, rx) = unbounded_channel();
        let job = Job {
            req,
            events,
            queued_at: Instant::now(),
        };
        if self.tx.send(job).is_err() {
            self.metrics.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::EngineGone);
        }
        Ok(rx)
    }
}

pub struct Engine;

impl Engine {
    /// Starts the engine thread: it opens `path`, builds the generator with `factory`, and
    /// then serves jobs until every [`EngineHandle`] is dropped. Returns once the model is
    /// loaded (or failed to load).
    pub fn start(
        path: &Path,
        factory: GeneratorFactory,
        opts: EngineOptions,
    ) -> Result<(EngineHandle, JoinHandle<()>), ServeError> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<EngineInfo, ServeError>>();
        let metrics = Arc::new(Metrics::default());
        let m = metrics.clone();
        let path_buf = path.to_path_buf();
        let (hide, resident) = (opts.hide_progress, opts.resident_weights);
        let thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || engine_main(path_buf, factory, hide, resident, rx, ready_tx, m))
            .map_err(|e| ServeError::Engine(format!("cannot start the engine thread: {e}")))?;
        let info = match ready_rx.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(ServeError::Engine(
                    "the engine thread ended while loading the model".into(),
                ));
            }
        };
        Ok((
            EngineHandle {
                tx,
                metrics,
                info: Arc::new(info),
                max_queue: opts.max_queue.max(1),
            },
            thread,
        ))
    }
}

fn model_name(file: &crate::gguf::GgufFile, path: &Path) -> String {
    file.get("general.name")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .filter(|s| !s.is_empty())
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into())
}

fn engine_main(
    path: PathBuf,
    factory: GeneratorFactory,
    hide_progress: bool,
    resident_weights: bool,
    rx: crossbeam_channel::Receiver<Job>,
    ready: std::sync::mpsc::Sender<Result<EngineInfo, ServeError>>,
    metrics: Arc<Metrics>,
) {
    let t0 = Instant::now();
    let file = match open(&path, resident_weights) {
        Ok(f) => f,
        Err(e) => {
            let _ = ready.send(Err(ServeError::Load {
                path,
                msg: e.to_string(),
            }));
            return;
        }
    };
    let tok = match Tokenizer::from_gguf(&file) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            let _ = ready.send(Err(ServeError::Load {
                path,
                msg: e.to_string(),
            }));
            return;
        }
    };
    let progress = LoadProgress::new(hide_progress);
    let mut gen = match factory(&file, &progress) {
        Ok(g) => g,
        Err(e) => {
            let _ = ready.send(Err(ServeError::Load {
                path,
                msg: e.to_string(),
            }));
            return;
        }
    };
    log_startup(&path, gen.as_ref());
    tracing::info!("model loaded in {:.2} s", t0.elapsed().as_secs_f64());
    let info = EngineInfo {
        model_name: model_name(&file, &path),
        model_path: path,
        n_ctx: gen.n_ctx(),
        tokenizer: tok.clone(),
        plan: gen.plan(),
    };
    if ready.send(Ok(info)).is_err() {
        return;
    }
    while let Ok(job) = rx.recv() {
        metrics.queued.fetch_sub(1, Ordering::SeqCst);
        if job.events.is_closed() {
            metrics.cancelled.fetch_add(1, Ordering::SeqCst);
            tracing::info!(id = %job.req.id, "client gone before its turn; skipped");
            continue;
        }
        metrics.busy.store(true, Ordering::SeqCst);
        let id = job.req.id.clone();
        // A panic inside the model must not take the server down: the job's channel is
        // dropped during unwinding (its handler reports the failure) and the next job runs
        // from a reset state (generators reset on any mismatch between cache and state).
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_job(gen.as_mut(), &tok, job, &metrics)
        }));
        if r.is_err() {
            metrics.failed.fetch_add(1, Ordering::SeqCst);
            tracing::error!(%id, "generation panicked; the request failed");
        }
        metrics.busy.store(false, Ordering::SeqCst);
    }
    tracing::debug!("engine thread: all handles dropped, stopping");
}

/// Runs one job to its end, sending its events.
fn run_job(gen: &mut dyn Generator, tok: &Tokenizer, job: Job, metrics: &Metrics) {
    let Job {
        req,
        events,
        queued_at,
    } = job;
    let wait_ms = queued_at.elapsed().as_secs_f64() * 1e3;
    let mut sampler = Sampler::new(req.sampling.clone());
    let mut dec = StreamDecoder::new();
    let mut stop = StopMatcher::new(req.stop.clone());
    let mut stopped_by_string = false;
    let mut client_gone = false;
    let mut n_generated = 0usize;
    let is_eog = |t: u32| !req.ignore_eos && tok.is_eog(t);
    let res = gen.generate(
        &req.prompt,
        req.max_tokens,
        &mut sampler,
        &is_eog,
        &mut |t| {
            n_generated += 1;
            if events.is_closed() {
                client_gone = true;
                return false;
            }
            let piece = tok.token_to_piece(t, false).unwrap_or(&[]);
            let r = stop.push(&dec.push(piece));
            if !r.text.is_empty() && events.send(Event::Text(r.text)).is_err() {
                client_gone = true;
                return false;
            }
            if r.stopped {
                stopped_by_string = true;
                return false;
            }
            true
        },
    );
    metrics
        .prompt_tokens
        .fetch_add(req.prompt.len() as u64, Ordering::SeqCst);
    metrics
        .completion_tokens
        .fetch_add(n_generated as u64, Ordering::SeqCst);
    let stats = match res {
        Ok(s) => s,
        Err(e) => {
            metrics.failed.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(id = %req.id, "generation failed: {e}");
            let _ = events.send(Event::Error(e.to_string()));
            return;
        }
    };
    if client_gone || events.is_closed() {
        metrics.cancelled.fetch_add(1, Ordering::SeqCst);
        tracing::info!(
            id = %req.id,
            generated = n_generated,
            "client disconnected; generation cancelled"
        );
        return;
    }
    if !stopped_by_string {
        let tail = dec.finish();
        let r = stop.push(&tail);
        let mut text = r.text;
        if r.stopped {
            stopped_by_string = true;
        } else {
            text.push_str(&stop.finish());
        }
        if !text.is_empty() {
            let _ = events.send(Event::Text(text));
        }
    }
    let reason = if stopped_by_string || stats.stop == "eog" {
        FinishReason::Stop
    } else {
        FinishReason::Length
    };
    tracing::info!(
        id = %req.id,
        prompt = req.prompt.len(),
        processed = stats.n_prompt,
        generated = n_generated,
        wait_ms = format_args!("{wait_ms:.0}"),
        prompt_tps = format_args!("{:.1}", stats.prompt_tps),
        decode_tps = format_args!("{:.1}", stats.decode_tps),
        finish = reason.as_str(),
        "request done"
    );
    metrics.completed.fetch_add(1, Ordering::SeqCst);
    let _ = events.send(Event::Done(Box::new(Finish {
        reason,
        prompt_tokens: req.prompt.len(),
        completion_tokens: n_generated,
        stats,
    })));
}
