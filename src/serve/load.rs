//! Model loading with progress bars, and the startup summary (CPU features, placement plan).

use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::gguf::GgufFile;

use crate::spec::DraftKind;

use super::generator::{CpuGenerator, Generator, GeneratorError, GeneratorFactory, SpecConfig};

/// Progress display for the loading steps. Drawn on stderr when it is a terminal, hidden
/// otherwise (logs and tests stay clean).
pub struct LoadProgress {
    hidden: bool,
}

impl LoadProgress {
    pub fn new(hidden: bool) -> LoadProgress {
        LoadProgress { hidden }
    }

    /// A byte-counting bar for one loading step.
    pub fn bytes_bar(&self, total: u64, what: &str) -> ProgressBar {
        let target = if self.hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        // The template is a constant; a bad one would be a programming error caught by tests.
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// Reads one byte of every page of every tensor so that the weights are in memory before
    /// the first request (a cold memory map otherwise pays the disk reads during decoding).
    pub fn page_in(&self, file: &GgufFile) {
        const PAGE: usize = 4096;
        let total: u64 = file.tensors().iter().map(|t| t.n_bytes).sum();
        let bar = self.bytes_bar(total, "weights");
        let mut acc = 0u8;
        for info in file.tensors() {
            if let Some(v) = file.view(info) {
                for chunk in v.data.chunks(1 << 20) {
                    for i in (0..chunk.len()).step_by(PAGE) {
                        acc ^= chunk[i];
                    }
                    bar.inc(chunk.len() as u64);
                }
            }
        }
        std::hint::black_box(acc);
        bar.finish_and_clear();
    }
}

/// Opens the model file (all shards); `resident`: read into huge-page memory when it fits
/// (`GgufFile::open_resident`, for the CPU engine), else memory-mapped.
pub fn open(path: &Path, resident: bool) -> Result<GgufFile, crate::gguf::GgufError> {
    if resident {
        GgufFile::open_resident(path)
    } else {
        GgufFile::open(path)
    }
}

/// Options of the CPU engine.
#[derive(Clone, Debug)]
pub struct CpuOptions {
    pub threads: usize,
    pub n_ctx: usize,
    pub n_batch: usize,
    /// Touch every weight page at load time.
    pub prefault: bool,
    /// Keep the sequence state between requests and skip a cached prompt prefix.
    pub reuse_prefix: bool,
    pub spec: SpecChoice,
}

/// The most drafts per step of the default (adaptive) speculation: the old fixed default, so
/// the default plans the same snapshot ring (on the 27B one GDN state, ~150 MB of VRAM, per
/// draft), and with drafts that are usually kept it runs as the fixed length does, while it
/// stops over-drafting when they are not (two AVX2 cores, 256 tokens, simulated acceptance
/// 0.3 / 0.5 / 0.84, 2026-12-08: fixed N = 3 0.54x / 0.69x / 1.26x of plain decoding, adaptive
/// at most 3 0.98x / 0.97x / 1.22x; a random-weight MTP head: adaptive 97-98% of plain, where
/// a fixed N = 3 ran at 8.9 t/s against 22.9 on 2026-12-07;
/// docs/benchmarks/cpu-spec-sim-2core-2026-12-07.md). `--draft-n N --draft-adaptive` allows
/// longer drafts.
pub const DEFAULT_ADAPTIVE_MAX: usize = 3;

/// Speculative decoding as asked on the command line, resolved once the model is loaded.
#[derive(Clone, Debug)]
pub struct SpecChoice {
    /// `Some(0)`: off. `Some(n)`: n drafts per step for every request (sampled ones through
    /// rejection sampling). `None`: the default, see [`SpecChoice::resolve`].
    pub draft_n: Option<usize>,
    pub kind: DraftKind,
    pub adaptive: bool,
}

impl Default for SpecChoice {
    fn default() -> Self {
        SpecChoice {
            draft_n: None,
            kind: DraftKind::Auto,
            adaptive: false,
        }
    }
}

impl SpecChoice {
    /// The default (as `hybrid-run -p`): on for greedy requests when the model has an MTP
    /// head or a drafter was named, with the adaptive draft length (at most
    /// [`DEFAULT_ADAPTIVE_MAX`]); plain decoding for sampled requests. A named `--draft-n N`
    /// is N drafts per step, adaptive only with `--draft-adaptive`.
    pub fn resolve(&self, has_mtp: bool) -> Option<SpecConfig> {
        let (draft_n, adaptive, with_temperature) = match self.draft_n {
            Some(0) => return None,
            Some(n) => (n, self.adaptive, true),
            None if has_mtp || self.kind != DraftKind::Auto => (DEFAULT_ADAPTIVE_MAX, true, false),
            None => return None,
        };
        Some(SpecConfig {
            draft_n,
            kind: self.kind,
            adaptive,
            with_temperature,
        })
    }
}

/// The factory of the CPU engine.
pub fn cpu_factory(o: CpuOptions) -> GeneratorFactory {
    Box::new(move |file: &GgufFile, progress: &LoadProgress| {
        if o.prefault {
            progress.page_in(file);
        }
        let mut g = CpuGenerator::new(file, o.threads, o.n_ctx, o.n_batch)?;
        g.set_reuse_prefix(o.reuse_prefix);
        g.set_speculation(o.spec.resolve(g.has_mtp()))?;
        Ok(Box::new(g) as Box<dyn Generator + '_>)
    })
}

/// Logs the detected hardware features and the generator's placement plan.
pub fn log_startup(path: &Path, g: &dyn Generator) {
    tracing::info!(
        "CPU features: {:?} kernels, {} physical cores, {} logical",
        simd::Isa::detect(),
        simd::pool::physical_cores(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    tracing::info!(model = %path.display(), n_ctx = g.n_ctx(), "placement plan:");
    for line in g.plan() {
        tracing::info!("  {line}");
    }
}

/// Opens `path`, builds a generator with `factory` and hands it to `f` together with the
/// file (for the tokenizer and metadata). Everything lives on the calling thread.
pub fn with_generator<R>(
    path: &Path,
    factory: GeneratorFactory,
    hide_progress: bool,
    resident_weights: bool,
    f: impl FnOnce(&GgufFile, &mut dyn Generator) -> R,
) -> Result<R, GeneratorError> {
    let file = open(path, resident_weights).map_err(|e| GeneratorError::Model(e.into()))?;
    let progress = LoadProgress::new(hide_progress);
    let mut g = factory(&file, &progress)?;
    log_startup(path, g.as_ref());
    Ok(f(&file, g.as_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(draft_n: Option<usize>, kind: DraftKind, adaptive: bool) -> SpecChoice {
        SpecChoice {
            draft_n,
            kind,
            adaptive,
        }
    }

    /// The default drafts adaptively (at most 3) where there is a drafter, greedy requests
    /// only; a named N is that N, fixed unless --draft-adaptive, sampled requests included.
    #[test]
    fn the_default_is_adaptive_and_a_named_n_is_kept() {
        let d = choice(None, DraftKind::Auto, false).resolve(true).unwrap();
        assert_eq!(
            (d.draft_n, d.adaptive, d.with_temperature),
            (DEFAULT_ADAPTIVE_MAX, true, false)
        );
        assert!(choice(None, DraftKind::Auto, false)
            .resolve(false)
            .is_none());
        let l = choice(None, DraftKind::Lookup, false)
            .resolve(false)
            .unwrap();
        assert_eq!((l.draft_n, l.adaptive), (DEFAULT_ADAPTIVE_MAX, true));
        let n3 = choice(Some(3), DraftKind::Auto, false)
            .resolve(true)
            .unwrap();
        assert_eq!(
            (n3.draft_n, n3.adaptive, n3.with_temperature),
            (3, false, true)
        );
        let n3a = choice(Some(3), DraftKind::Auto, true)
            .resolve(true)
            .unwrap();
        assert_eq!((n3a.draft_n, n3a.adaptive), (3, true));
        assert!(choice(Some(0), DraftKind::Mtp, true)
            .resolve(true)
            .is_none());
    }
}
