//! A structurally valid GGUF whose qwen35 hyperparameters are hostile (zero or absurd sizes)
//! must be refused with an error by the loader, never a panic or a huge allocation.

mod common;

use hybrid_run::gguf::{GgufFile, GgufWriter, Value};
use hybrid_run::model::qwen35::{Config, CpuModel, ForwardOutput, Logits, Qwen35Weights, SeqState};
use hybrid_run::synth::{Preset, QuantMix};

/// Rewrites `src` with metadata key `key` set to `value` (u32), tensors copied as they are.
fn with_key(src: &GgufFile, key: &str, value: u32) -> Vec<u8> {
    let mut w = GgufWriter::new(Vec::new());
    for (k, v) in src.metadata() {
        if k == key {
            w.add_kv(k, Value::U32(value));
        } else {
            w.add_kv(k, v.clone());
        }
    }
    for t in src.tensors() {
        w.add_tensor(&t.name, t.ty, &t.dims).unwrap();
    }
    w.write_header().unwrap();
    for t in src.tensors() {
        w.write_tensor_data(&t.name, src.tensor(&t.name).unwrap().data)
            .unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn hostile_hyperparameters_are_refused_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::synth(dir.path(), Preset::Tiny, QuantMix::Q8_0, 5);
    let src = GgufFile::open(&path).unwrap();
    let cases: &[(&str, u32)] = &[
        ("qwen35.embedding_length", 0),
        ("qwen35.embedding_length", u32::MAX),
        ("qwen35.block_count", 0),
        ("qwen35.block_count", 1_000_000),
        ("qwen35.attention.head_count", 0),
        ("qwen35.attention.head_count_kv", 0),
        ("qwen35.attention.head_count_kv", 3),
        ("qwen35.attention.key_length", 0),
        ("qwen35.rope.dimension_count", 10_000),
        ("qwen35.ssm.group_count", 0),
        ("qwen35.ssm.time_step_rank", 0),
        ("qwen35.ssm.time_step_rank", 3),
        ("qwen35.ssm.state_size", 0),
        ("qwen35.ssm.conv_kernel", 0),
        ("qwen35.ssm.inner_size", 7),
        ("qwen35.feed_forward_length", 0),
        ("qwen35.full_attention_interval", 0),
        ("qwen35.nextn_predict_layers", 100),
    ];
    for &(key, value) in cases {
        assert!(src.get(key).is_some(), "the tiny preset writes {key}");
        let bytes = with_key(&src, key, value);
        let file = GgufFile::from_bytes(bytes).expect("the container itself is valid");
        let loaded = Config::from_gguf(&file)
            .and_then(|cfg| Qwen35Weights::load(&file, &cfg).map(|w| (cfg, w)));
        match loaded {
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.is_empty(), "{key} = {value}: empty error");
            }
            Ok((cfg, w)) => {
                // Accepted only if the model really runs.
                let mut m = CpuModel::new(cfg.clone(), w, 1);
                let mut st = SeqState::new(&cfg, 8);
                let mut out = ForwardOutput::default();
                m.forward(&mut st, &[1, 2], Logits::Last, &mut out)
                    .unwrap_or_else(|e| panic!("{key} = {value} loaded but failed to run: {e}"));
                assert!(
                    out.logits.iter().all(|v| v.is_finite()),
                    "{key} = {value}: non-finite logits"
                );
            }
        }
    }
}
