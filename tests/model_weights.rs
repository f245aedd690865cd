//! Weight validation: every problem of a broken file in one error, and the tied-output and
//! MTP fallbacks.

use hybrid_run::gguf::{GgmlType, GgufFile, GgufWriter};
use hybrid_run::model::qwen35::{Config, ModelError, Qwen35Weights, TensorProblem};
use hybrid_run::synth::{Preset, QuantMix, SynthOptions, SynthPlan};

/// The tiny Q4_K_M plan, with its tensor list edited by `edit`, written with zero data.
fn tiny_with(edit: impl FnOnce(&mut Vec<(String, GgmlType, Vec<u64>)>)) -> GgufFile {
    let plan = SynthPlan::new(&SynthOptions {
        preset: Preset::Tiny,
        mix: QuantMix::Q4KM,
        seed: 0,
        vocab_from: None,
    })
    .expect("plan");
    let mut tensors: Vec<(String, GgmlType, Vec<u64>)> = plan
        .tensors
        .iter()
        .map(|t| (t.spec.name.clone(), t.ty, t.spec.dims.clone()))
        .collect();
    edit(&mut tensors);
    let mut w = GgufWriter::new(Vec::new());
    for (k, v) in &plan.metadata {
        w.add_kv(k, v.clone());
    }
    for (n, ty, dims) in &tensors {
        w.add_tensor(n, *ty, dims).expect("valid tensor info");
    }
    w.write_header().expect("header");
    for (n, ty, dims) in &tensors {
        let rows: u64 = dims[1..].iter().product();
        let len = ty.row_bytes(dims[0]).expect("whole blocks") * rows;
        w.write_tensor_data(n, &vec![0u8; len as usize])
            .expect("data");
    }
    GgufFile::from_bytes(w.finish().expect("finish")).expect("readable")
}

fn find<'a>(
    t: &'a mut [(String, GgmlType, Vec<u64>)],
    name: &str,
) -> &'a mut (String, GgmlType, Vec<u64>) {
    t.iter_mut().find(|x| x.0 == name).expect(name)
}

#[test]
fn a_missing_tensor_a_wrong_shape_and_a_wrong_type_are_reported_together() {
    let file = tiny_with(|t| {
        t.retain(|x| x.0 != "blk.0.ssm_a");
        find(t, "blk.1.attn_gate.weight").2 = vec![256, 128];
        find(t, "blk.2.attn_norm.weight").1 = GgmlType::F16;
        t.retain(|x| x.0 != "blk.8.nextn.eh_proj.weight");
    });
    let cfg = Config::from_gguf(&file).expect("metadata is fine");
    let err = match Qwen35Weights::load(&file, &cfg) {
        Err(e) => e,
        Ok(_) => panic!("broken file loaded"),
    };
    let ModelError::Tensors { problems } = &err else {
        panic!("expected a tensor error, got {err}");
    };
    assert_eq!(problems.len(), 4, "{err}");
    assert!(problems.contains(&TensorProblem::Missing {
        name: "blk.0.ssm_a".into(),
        expected_dims: vec![4],
    }));
    assert!(problems.contains(&TensorProblem::Shape {
        name: "blk.1.attn_gate.weight".into(),
        expected_dims: vec![256, 256],
        found_dims: vec![256, 128],
    }));
    assert!(problems.contains(&TensorProblem::Type {
        name: "blk.2.attn_norm.weight".into(),
        found: GgmlType::F16,
        allowed: "F32",
    }));
    assert!(problems
        .iter()
        .any(|p| p.tensor_name() == "blk.8.nextn.eh_proj.weight"));
    // the message names every tensor
    let msg = err.to_string();
    for name in [
        "blk.0.ssm_a",
        "blk.1.attn_gate.weight",
        "blk.2.attn_norm.weight",
        "eh_proj",
    ] {
        assert!(msg.contains(name), "{msg}");
    }
}

#[test]
fn a_vocabulary_that_disagrees_with_the_embedding_is_a_shape_problem() {
    let file = tiny_with(|t| {
        find(t, "token_embd.weight").2 = vec![256, 1000];
        find(t, "output.weight").2 = vec![256, 1000];
    });
    let cfg = Config::from_gguf(&file).expect("metadata is fine");
    match Qwen35Weights::load(&file, &cfg) {
        Err(ModelError::Tensors { problems }) => {
            assert_eq!(problems.len(), 2);
            assert!(problems
                .iter()
                .all(|p| matches!(p, TensorProblem::Shape { .. })));
        }
        other => panic!("expected shape problems, got {:?}", other.err()),
    }
}

#[test]
fn q8_k_is_not_a_weight_type() {
    let file = tiny_with(|t| find(t, "blk.0.ffn_up.weight").1 = GgmlType::Q8_K);
    let cfg = Config::from_gguf(&file).expect("metadata is fine");
    match Qwen35Weights::load(&file, &cfg) {
        Err(ModelError::Tensors { problems }) => {
            assert!(matches!(
                &problems[..],
                [TensorProblem::Type {
                    found: GgmlType::Q8_K,
                    ..
                }]
            ));
        }
        other => panic!("expected a type problem, got {:?}", other.err()),
    }
}

#[test]
fn without_output_weight_the_lm_head_is_the_token_embedding() {
    let file = tiny_with(|t| t.retain(|x| x.0 != "output.weight"));
    let cfg = Config::from_gguf(&file).expect("metadata is fine");
    let w = Qwen35Weights::load(&file, &cfg).expect("output is optional");
    assert!(w.output_tied);
    assert_eq!(w.output.info.name, "token_embd.weight");
    let mtp = w.mtp.expect("MTP block");
    assert_eq!(mtp.shared_head_head.info.name, "token_embd.weight");
}

#[test]
fn without_a_shared_head_norm_the_mtp_block_uses_output_norm() {
    let file = tiny_with(|t| t.retain(|x| x.0 != "blk.8.nextn.shared_head_norm.weight"));
    let cfg = Config::from_gguf(&file).expect("metadata is fine");
    let w = Qwen35Weights::load(&file, &cfg).expect("shared_head_norm is optional");
    assert_eq!(
        w.mtp.expect("MTP").shared_head_norm.info.name,
        "output_norm.weight"
    );
}
