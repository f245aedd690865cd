//! qwen35 hyperparameters from GGUF metadata: defaults, integer widths, per-layer arrays,
//! the layer schedule, and a typed error naming the key for every bad input.

use hybrid_run::gguf::{Array, GgmlType, GgufFile, GgufWriter, Value};
use hybrid_run::model::qwen35::{Config, LayerType, ModelError};
use hybrid_run::synth::presets::model_metadata;
use hybrid_run::synth::Preset;

type Md = Vec<(String, Value)>;

fn tiny_md() -> Md {
    model_metadata(&Preset::Tiny.spec(), "t", 0, false)
}

fn parse(md: &Md) -> Result<Config, ModelError> {
    Config::from_metadata(
        |k| md.iter().find(|(key, _)| key == k).map(|(_, v)| v),
        Some(1024),
    )
}

fn set(md: &mut Md, key: &str, v: Value) {
    md.retain(|(k, _)| k != key);
    md.push((key.to_string(), v));
}

fn remove(md: &mut Md, key: &str) {
    md.retain(|(k, _)| k != key);
}

#[test]
fn the_tiny_preset_metadata_parses_to_its_config() {
    let cfg = parse(&tiny_md()).expect("valid");
    assert_eq!(cfg, Preset::Tiny.spec().config);
    assert_eq!(cfg.n_layer(), 8);
    assert_eq!(cfg.layer_type(3), LayerType::Attention);
    assert_eq!(cfg.layer_type(4), LayerType::Gdn);
    assert_eq!(cfg.mtp_block(), Some(8));
}

#[test]
fn derived_quantities_match_the_27b_table() {
    let md = model_metadata(&Preset::Qwen27B.spec(), "t", 15, true);
    let cfg = Config::from_metadata(
        |k| md.iter().find(|(key, _)| key == k).map(|(_, v)| v),
        Some(248_320),
    )
    .expect("valid");
    // spec/qwen35-architecture.md §2.1
    assert_eq!(cfg.gdn_key_dim(), 2048);
    assert_eq!(cfg.gdn_value_dim(), 6144);
    assert_eq!(cfg.gdn_conv_dim(), 10240);
    assert_eq!(cfg.gdn_v_per_k(), 3);
    assert_eq!(cfg.attn_q_proj_dim(), 12288);
    assert_eq!(cfg.attn_kv_dim(), 1024);
    assert_eq!(cfg.attn_out_dim(), 6144);
    assert_eq!(cfg.gqa(), 6);
    assert_eq!(cfg.gdn_conv_state_len(), 30720);
    assert_eq!(cfg.gdn_ssm_state_len(), 786_432);
    assert_eq!((cfg.n_gdn_layers(), cfg.n_attention_layers()), (48, 16));
    let attn: Vec<usize> = (0..64)
        .filter(|&i| cfg.layer_type(i) == LayerType::Attention)
        .collect();
    assert_eq!(attn, (0..16).map(|k| 4 * k + 3).collect::<Vec<_>>());
}

#[test]
fn every_missing_required_key_is_named_in_the_error() {
    let required = [
        "general.architecture",
        "qwen35.context_length",
        "qwen35.embedding_length",
        "qwen35.block_count",
        "qwen35.feed_forward_length",
        "qwen35.attention.head_count",
        "qwen35.attention.layer_norm_rms_epsilon",
        "qwen35.rope.dimension_sections",
        "qwen35.ssm.conv_kernel",
        "qwen35.ssm.state_size",
        "qwen35.ssm.group_count",
        "qwen35.ssm.time_step_rank",
        "qwen35.ssm.inner_size",
    ];
    for key in required {
        let mut md = tiny_md();
        remove(&mut md, key);
        match parse(&md) {
            Err(ModelError::MissingKey { key: k }) => assert_eq!(k, key),
            other => panic!("{key}: expected MissingKey, got {other:?}"),
        }
    }
}

#[test]
fn optional_keys_take_llama_cpp_defaults() {
    let mut md = tiny_md();
    for k in [
        "qwen35.nextn_predict_layers",
        "qwen35.attention.head_count_kv",
        "qwen35.rope.freq_base",
        "qwen35.full_attention_interval",
        "qwen35.rope.dimension_count",
    ] {
        remove(&mut md, k);
    }
    let cfg = parse(&md).expect("valid without optional keys");
    assert_eq!(cfg.n_nextn, 0);
    assert_eq!(cfg.n_layer(), 9);
    assert_eq!(cfg.n_head_kv, cfg.n_head);
    assert_eq!(cfg.rope_freq_base, 10_000.0);
    assert_eq!(cfg.n_rot, cfg.head_dim);
    // interval 4 over all 9 blocks: block 8 is now a trunk GDN layer
    assert_eq!(cfg.layer_type(8), LayerType::Gdn);
}

#[test]
fn wrong_value_types_are_errors_naming_the_key() {
    let cases = [
        (
            "qwen35.embedding_length",
            Value::String("256".into()),
            "unsigned integer",
        ),
        (
            "qwen35.attention.layer_norm_rms_epsilon",
            Value::U32(1),
            "f32",
        ),
        (
            "qwen35.rope.dimension_sections",
            Value::U32(4),
            "array of integers",
        ),
        ("general.architecture", Value::U32(1), "string"),
        (
            "qwen35.ssm.conv_kernel",
            Value::F32(4.0),
            "unsigned integer",
        ),
    ];
    for (key, v, want) in cases {
        let mut md = tiny_md();
        set(&mut md, key, v);
        match parse(&md) {
            Err(ModelError::KeyType {
                key: k, expected, ..
            }) => {
                assert_eq!(k, key);
                assert_eq!(expected, want, "{key}");
            }
            other => panic!("{key}: expected KeyType, got {other:?}"),
        }
    }
}

#[test]
fn any_integer_width_is_accepted_and_negative_values_are_not() {
    for v in [
        Value::U64(256),
        Value::I32(256),
        Value::U16(256),
        Value::I64(256),
    ] {
        let mut md = tiny_md();
        set(&mut md, "qwen35.embedding_length", v.clone());
        assert_eq!(parse(&md).expect("valid").n_embd, 256, "{v:?}");
    }
    let mut md = tiny_md();
    set(&mut md, "qwen35.embedding_length", Value::I32(-256));
    assert!(
        matches!(parse(&md), Err(ModelError::BadValue { key, .. }) if key == "qwen35.embedding_length")
    );
}

#[test]
fn per_layer_arrays_must_be_uniform_and_one_per_block() {
    let mut md = tiny_md();
    set(
        &mut md,
        "qwen35.feed_forward_length",
        Value::Array(Array::U32(vec![512; 9])),
    );
    set(
        &mut md,
        "qwen35.attention.head_count_kv",
        Value::Array(Array::I32(vec![2; 9])),
    );
    let cfg = parse(&md).expect("uniform arrays are fine");
    assert_eq!((cfg.n_ff, cfg.n_head_kv), (512, 2));

    let mut varying = vec![512u32; 9];
    varying[3] = 1024;
    set(
        &mut md,
        "qwen35.feed_forward_length",
        Value::Array(Array::U32(varying)),
    );
    assert!(
        matches!(parse(&md), Err(ModelError::BadValue { key, .. }) if key == "qwen35.feed_forward_length")
    );

    set(
        &mut md,
        "qwen35.feed_forward_length",
        Value::Array(Array::U32(vec![512; 8])),
    );
    assert!(
        matches!(parse(&md), Err(ModelError::BadValue { key, .. }) if key == "qwen35.feed_forward_length")
    );

    set(
        &mut md,
        "qwen35.feed_forward_length",
        Value::Array(Array::F32(vec![512.0; 9])),
    );
    assert!(
        matches!(parse(&md), Err(ModelError::KeyType { key, .. }) if key == "qwen35.feed_forward_length")
    );
}

#[test]
fn recurrent_layers_override_the_interval_and_mtp_blocks_cannot_be_recurrent() {
    let mut md = tiny_md();
    let mut flags = vec![true; 9];
    flags[0] = false;
    flags[8] = false;
    set(
        &mut md,
        "qwen35.attention.recurrent_layers",
        Value::Array(Array::Bool(flags.clone())),
    );
    let cfg = parse(&md).expect("valid override");
    assert_eq!(cfg.layer_type(0), LayerType::Attention);
    assert_eq!(cfg.layer_type(3), LayerType::Gdn);
    assert_eq!(cfg.n_attention_layers(), 1);

    flags[8] = true;
    set(
        &mut md,
        "qwen35.attention.recurrent_layers",
        Value::Array(Array::Bool(flags)),
    );
    assert!(matches!(parse(&md), Err(ModelError::Inconsistent(_))));
}

#[test]
fn inconsistent_or_unsupported_models_are_rejected() {
    let mut md = tiny_md();
    set(
        &mut md,
        "general.architecture",
        Value::String("qwen35moe".into()),
    );
    assert!(matches!(parse(&md), Err(ModelError::Architecture { found }) if found == "qwen35moe"));

    let mut md = tiny_md();
    set(&mut md, "qwen35.expert_count", Value::U32(64));
    assert!(
        matches!(parse(&md), Err(ModelError::BadValue { key, .. }) if key == "qwen35.expert_count")
    );

    let mut md = tiny_md();
    set(&mut md, "qwen35.ssm.inner_size", Value::U32(200));
    assert!(matches!(parse(&md), Err(ModelError::Inconsistent(m)) if m.contains("inner_size")));

    let mut md = tiny_md();
    set(&mut md, "qwen35.ssm.time_step_rank", Value::U32(3));
    set(&mut md, "qwen35.ssm.inner_size", Value::U32(192));
    assert!(matches!(parse(&md), Err(ModelError::Inconsistent(m)) if m.contains("time_step_rank")));

    let mut md = tiny_md();
    set(&mut md, "qwen35.nextn_predict_layers", Value::U32(9));
    assert!(matches!(parse(&md), Err(ModelError::BadValue { .. })));

    let mut md = tiny_md();
    set(&mut md, "qwen35.attention.key_length", Value::U32(32));
    assert!(matches!(parse(&md), Err(ModelError::Inconsistent(m)) if m.contains("value_length")));
}

fn gguf(md: &Md, tensors: &[(&str, GgmlType, Vec<u64>)]) -> GgufFile {
    let mut w = GgufWriter::new(Vec::new());
    for (k, v) in md {
        w.add_kv(k, v.clone());
    }
    for (n, ty, dims) in tensors {
        w.add_tensor(n, *ty, dims).expect("valid tensor");
    }
    w.write_header().expect("header");
    for (n, ty, dims) in tensors {
        let rows: u64 = dims[1..].iter().product();
        let len = ty.row_bytes(dims[0]).expect("whole blocks") * rows;
        w.write_tensor_data(n, &vec![0u8; len as usize])
            .expect("data");
    }
    GgufFile::from_bytes(w.finish().expect("finish")).expect("readable")
}

#[test]
fn the_vocabulary_size_comes_from_the_tokens_or_else_the_embedding() {
    let mut md = tiny_md();
    let file = gguf(&md, &[("token_embd.weight", GgmlType::F32, vec![256, 777])]);
    assert_eq!(Config::from_gguf(&file).expect("valid").n_vocab, 777);

    md.push((
        "tokenizer.ggml.tokens".into(),
        Value::Array(Array::String((0..300).map(|i| format!("t{i}")).collect())),
    ));
    let file = gguf(&md, &[("token_embd.weight", GgmlType::F32, vec![256, 777])]);
    assert_eq!(Config::from_gguf(&file).expect("valid").n_vocab, 300);

    let file = gguf(&tiny_md(), &[]);
    assert!(
        matches!(Config::from_gguf(&file), Err(ModelError::MissingKey { key }) if key == "tokenizer.ggml.tokens")
    );
}
