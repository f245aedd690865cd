//! Random-weight qwen35 GGUF models (`hybrid-run synth`): the exact tensor names, shapes and
//! llama.cpp quantization mixes of a real model, with seeded random values and a small BPE
//! vocabulary, streamed to disk.
//!
//! - [`presets`]: the model shapes (tiny, small, 27b);
//! - [`quant_mix`]: per-tensor types of Q4_K_M, Q5_K_M, Q6_K, Q8_0 and F32 files;
//! - [`random_blocks`]: valid random blocks of each type and per-tensor distributions;
//! - [`vocab`]: the tokenizer keys;
//! - [`stream`]: parallel generation and the ordered write.

pub mod presets;
pub mod quant_mix;
pub mod random_blocks;
pub mod stream;
pub mod vocab;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::gguf::{GgmlType, GgufError, GgufFile, GgufWriter, Value};
use crate::model::qwen35::{
    expected_tensors, Config, SizeBreakdown, SizedTensor, TensorKind, TensorSpec,
};

pub use presets::{Preset, PresetSpec};
pub use quant_mix::{MixError, QuantMix};

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Mix(#[from] MixError),
    #[error(transparent)]
    Vocab(#[from] vocab::VocabError),
    #[error(transparent)]
    Block(#[from] random_blocks::BlockError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("tensor {name}: {n_bytes} bytes do not fit in memory on this platform")]
    TooLarge { name: String, n_bytes: u64 },
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub preset: Preset,
    pub mix: QuantMix,
    pub seed: u64,
    /// Copy the `tokenizer.*` keys of this GGUF instead of building a vocabulary.
    pub vocab_from: Option<PathBuf>,
}

/// One tensor to write.
#[derive(Clone, Debug)]
pub struct PlannedTensor {
    pub spec: TensorSpec,
    pub ty: GgmlType,
    pub n_bytes: u64,
}

/// Everything about a synthetic file except the tensor values.
#[derive(Clone, Debug)]
pub struct SynthPlan {
    pub preset: PresetSpec,
    pub mix: QuantMix,
    pub seed: u64,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<PlannedTensor>,
}

impl SynthPlan {
    pub fn new(opts: &SynthOptions) -> Result<Self, SynthError> {
        let preset = opts.preset.spec();
        let cfg = &preset.config;
        let specs: Vec<TensorSpec> = expected_tensors(cfg)
            .into_iter()
            .filter(|s| match s.kind {
                TensorKind::Output => !preset.tied_output,
                // the converter writes the MTP final norm; dedicated embeddings / head: no
                TensorKind::NextnSharedHeadNorm => true,
                _ => s.required,
            })
            .collect();
        let refs: Vec<(&str, &[u64])> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.dims.as_slice()))
            .collect();
        let types = quant_mix::assign_types(opts.mix, &refs, cfg.n_block)?;
        let mut tensors = Vec::with_capacity(specs.len());
        for (spec, ty) in specs.into_iter().zip(types) {
            let n_bytes = ty
                .row_bytes(spec.dims[0])
                .map(|rb| rb * spec.dims[1..].iter().product::<u64>());
            let n_bytes = n_bytes.ok_or_else(|| MixError::RowNotBlockMultiple {
                name: spec.name.clone(),
                row_len: spec.dims[0],
                block: ty.block_elems() as u64,
                ty,
            })?;
            tensors.push(PlannedTensor { spec, ty, n_bytes });
        }

        let name = format!("hybrid-run synthetic {} {}", opts.preset.name(), opts.mix);
        let mut metadata = presets::model_metadata(
            &preset,
            &name,
            opts.mix.file_type(),
            opts.mix.base_type().is_quantized(),
        );
        metadata.push(("general.synthetic.seed".into(), Value::U64(opts.seed)));
        match &opts.vocab_from {
            None => {
                let v = vocab::build_vocab(cfg.n_vocab, preset.n_merges)?;
                metadata.extend(vocab::tokenizer_metadata(&v));
            }
            Some(path) => {
                let file = GgufFile::open(path)?;
                metadata.extend(vocab::tokenizer_metadata_from(
                    &file,
                    &path.display().to_string(),
                    cfg.n_vocab,
                )?);
            }
        }
        Ok(SynthPlan {
            preset,
            mix: opts.mix,
            seed: opts.seed,
            metadata,
            tensors,
        })
    }

    pub fn config(&self) -> &Config {
        &self.preset.config
    }

    /// A writer with all keys and tensor infos declared, header not yet written.
    fn declare<W: Write>(&self, out: W) -> Result<GgufWriter<W>, SynthError> {
        let mut w = GgufWriter::new(out);
        for (k, v) in &self.metadata {
            w.add_kv(k, v.clone());
        }
        for t in &self.tensors {
            w.add_tensor(&t.spec.name, t.ty, &t.spec.dims)?;
        }
        Ok(w)
    }

    /// Exact size of the file [`write`](Self::write) produces, computed without the data:
    /// the serialized header plus each tensor padded to the 32-byte alignment.
    pub fn file_size(&self) -> Result<u64, SynthError> {
        let mut w = self.declare(io::sink())?;
        w.write_header()?;
        let data: u64 = self
            .tensors
            .iter()
            .map(|t| t.n_bytes.div_ceil(32) * 32)
            .sum();
        Ok(w.bytes_written() + data)
    }

    pub fn sized_tensors(&self) -> impl Iterator<Item = SizedTensor> + '_ {
        self.tensors.iter().map(|t| SizedTensor {
            name: t.spec.name.clone(),
            ty: t.ty,
            n_elements: t.spec.n_elements(),
            n_bytes: t.n_bytes,
        })
    }

    pub fn size_breakdown(&self) -> SizeBreakdown {
        SizeBreakdown::compute(self.config(), self.sized_tensors())
    }

    /// Writes the file to `path`; `progress` is called with the data bytes of each chunk
    /// as it is written. Returns the file size.
    pub fn write(&self, path: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<u64, SynthError> {
        let file = std::fs::File::create(path).map_err(|source| SynthError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let out = io::BufWriter::with_capacity(4 << 20, file);
        let w = self.declare(out)?;
        let (_, size) = stream::write_all(self, w, progress)?;
        Ok(size)
    }

    /// Writes the file into any writer (tests use a `Vec<u8>`).
    pub fn write_to<W: Write + Send>(
        &self,
        out: W,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<W, SynthError> {
        let w = self.declare(out)?;
        Ok(stream::write_all(self, w, progress)?.0)
    }
}
