//! Synthetic models: write -> read -> describe round trips, determinism, and the planned
//! sizes of the 27B preset against the published Qwen3.5-27B numbers (ANCHORS.md).

use hybrid_run::gguf::{GgmlType, GgufFile};
use hybrid_run::model::qwen35::{Config, LayerKind, Qwen35Weights, SizeBreakdown};
use hybrid_run::synth::{Preset, QuantMix, SynthOptions, SynthPlan};

fn plan(preset: Preset, mix: QuantMix, seed: u64) -> SynthPlan {
    SynthPlan::new(&SynthOptions {
        preset,
        mix,
        seed,
        vocab_from: None,
    })
    .expect("presets plan without errors")
}

fn bytes(p: &SynthPlan) -> Vec<u8> {
    p.write_to(Vec::new(), &|_| {}).expect("writing to memory")
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn tiny_round_trips_through_the_reader_at_every_quant() {
    for mix in QuantMix::ALL {
        let p = plan(Preset::Tiny, mix, 3);
        let data = bytes(&p);
        assert_eq!(data.len() as u64, p.file_size().expect("size"), "{mix}");
        let file = GgufFile::from_bytes(data).expect("valid GGUF");
        let cfg = Config::from_gguf(&file).expect("valid config");
        assert_eq!(&cfg, p.config(), "{mix}");
        let w = Qwen35Weights::load(&file, &cfg).expect("all tensors valid");
        assert_eq!(w.layers.len(), 8);
        assert!(!w.output_tied);
        let mtp = w.mtp.as_ref().expect("tiny has an MTP block");
        assert_eq!(mtp.index, 8);
        // the MTP block has no dedicated head: it falls back to the model's output
        assert_eq!(mtp.shared_head_head.info.name, "output.weight");
        assert_eq!(mtp.embed_tokens.info.name, "token_embd.weight");
        assert_eq!(
            mtp.shared_head_norm.info.name,
            "blk.8.nextn.shared_head_norm.weight"
        );
        for t in &p.tensors {
            let info = file
                .tensor_info(&t.spec.name)
                .expect("planned tensor present");
            assert_eq!(info.ty, t.ty, "{}", t.spec.name);
            assert_eq!(info.n_bytes, t.n_bytes, "{}", t.spec.name);
        }
        assert_eq!(
            file.get("general.file_type").and_then(|v| v.as_u64()),
            Some(u64::from(mix.file_type()))
        );
        let from_file = SizeBreakdown::from_gguf(&file, &cfg);
        assert_eq!(from_file, p.size_breakdown(), "{mix}");
    }
}

#[test]
fn layers_follow_the_interval_schedule_and_float_tensors_have_sane_values() {
    let p = plan(Preset::Tiny, QuantMix::Q4KM, 11);
    let file = GgufFile::from_bytes(bytes(&p)).expect("valid GGUF");
    let cfg = Config::from_gguf(&file).expect("config");
    let w = Qwen35Weights::load(&file, &cfg).expect("weights");
    for l in &w.layers {
        let is_attn = (l.index + 1) % 4 == 0;
        match &l.kind {
            LayerKind::Attention(_) => assert!(is_attn, "layer {}", l.index),
            LayerKind::Gdn(g) => {
                assert!(!is_attn, "layer {}", l.index);
                let a = f32s(g.ssm_a.data);
                assert!(a.iter().all(|&x| x < 0.0 && x.is_finite()), "ssm_a {a:?}");
                let conv = f32s(g.ssm_conv1d.data);
                assert_eq!(conv.len(), 4 * cfg.gdn_conv_dim());
                assert!(conv.iter().all(|x| x.abs() < 1.0));
            }
        }
        let norm = f32s(l.attn_norm.data);
        assert!(norm.iter().all(|&x| (0.9..=1.1).contains(&x)));
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let a = bytes(&plan(Preset::Tiny, QuantMix::Q5KM, 42));
    let b = bytes(&plan(Preset::Tiny, QuantMix::Q5KM, 42));
    let c = bytes(&plan(Preset::Tiny, QuantMix::Q5KM, 43));
    assert_eq!(a, b);
    assert_eq!(a.len(), c.len());
    assert_ne!(a, c);
}

#[test]
fn writing_to_a_file_matches_writing_to_memory_and_reports_progress() {
    let p = plan(Preset::Tiny, QuantMix::Q6K, 5);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.gguf");
    let seen = std::sync::atomic::AtomicU64::new(0);
    let size = p
        .write(&path, &|n| {
            seen.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        })
        .expect("write");
    let on_disk = std::fs::read(&path).expect("read back");
    assert_eq!(size, on_disk.len() as u64);
    assert_eq!(on_disk, bytes(&p));
    let data: u64 = p.tensors.iter().map(|t| t.n_bytes).sum();
    assert_eq!(seen.into_inner(), data);
}

/// Published Qwen3.5-27B Q4_K_M file: ~16.8 GB (ANCHORS.md; llama.cpp's Q4_K_M of the
/// synthetic 27B measured 15.62 GiB).
#[test]
fn the_27b_q4_k_m_plan_is_within_2_percent_of_the_real_file() {
    let p = plan(Preset::Qwen27B, QuantMix::Q4KM, 0);
    let size = p.file_size().expect("size") as f64;
    assert!((size / 16.8e9 - 1.0).abs() < 0.02, "planned {size}");
    let gib = 15.62 * (1u64 << 30) as f64;
    assert!((size / gib - 1.0).abs() < 0.02, "planned {size}");
}

/// The ANCHORS.md numbers for the 27B, each from a source independent of this code.
#[test]
fn the_27b_size_breakdown_matches_the_published_numbers() {
    let p = plan(Preset::Qwen27B, QuantMix::Q4KM, 0);
    let s = p.size_breakdown();
    // "KV cache (16 attention layers, f16) 64 KiB/token"
    assert_eq!(s.kv_bytes_per_token, 64 * 1024);
    assert_eq!(s.mtp_kv_bytes_per_token, 4 * 1024);
    // spec §2.1: conv 30720 f32 + SSM 786432 f32 per GDN layer, 48 layers ("~150 MB")
    assert_eq!(s.recurrent_state_bytes(), 48 * (30720 + 786_432) * 4);
    assert_eq!(s.snapshot_slot_bytes(), s.recurrent_state_bytes());
    // "Dense FFN = 64% of parameters"
    let frac = s.ffn_param_fraction();
    assert!((0.62..=0.66).contains(&frac), "FFN fraction {frac}");
    // "~0.161 GB per layer at Q4_K_M"
    let per_layer = s.ffn_bytes as f64 / 64.0 / 1e9;
    assert!(
        (per_layer / 0.161 - 1.0).abs() < 0.02,
        "{per_layer} GB per layer"
    );
    // FFN of a layer with a Q6_K ffn_down: 2 x Q4_K + 1 x Q6_K of 5120 x 17408
    let q4 = 5120 * 17408 / 256 * 144;
    let q6 = 5120 * 17408 / 256 * 210;
    assert_eq!(s.ffn_bytes_per_layer[0], 2 * q4 + q6);
    assert_eq!(s.ffn_bytes_per_layer[8], 3 * q4);
    // "Attention + GDN + norms + lm_head ~5.8 GB" (with the MTP head, which also stays on
    // the GPU; token_embd is read by row and is not counted there)
    let gpu_trunk = s.attention_bytes + s.gdn_bytes + s.norm_bytes + s.lm_head_bytes + s.mtp_bytes;
    assert!((gpu_trunk as f64 / 5.8e9 - 1.0).abs() < 0.03, "{gpu_trunk}");
    assert_eq!(s.lm_head_bytes, 5120 * 248_320 / 256 * 210);
    assert_eq!(s.embedding_bytes, 5120 * 248_320 / 256 * 144);
    assert_eq!(s.trunk_bytes() + s.ffn_bytes, s.total_bytes);
}

#[test]
fn the_small_preset_is_between_half_and_one_gigabyte_at_q4_k_m_with_tied_output() {
    let p = plan(Preset::Small, QuantMix::Q4KM, 0);
    let size = p.file_size().expect("size");
    assert!((500_000_000..1_000_000_000).contains(&size), "{size}");
    assert!(p.preset.tied_output);
    let embd = p
        .tensors
        .iter()
        .find(|t| t.spec.name == "token_embd.weight")
        .expect("token_embd");
    assert_eq!(
        embd.ty,
        GgmlType::Q6_K,
        "tied embeddings take the output type"
    );
    assert!(p.tensors.iter().all(|t| t.spec.name != "output.weight"));
}
