//! The pieces under speculation, checked against plain sequential decoding on the tiny
//! synthetic model: batched verify logits and hidden rows (bit-identical), snapshot-ring
//! rollback (state and later logits bit-identical), and junk drafts.

mod common;
mod spec_common;

use common::prompt_ids;
use hybrid_run::gguf::GgufFile;
use hybrid_run::model::qwen35::state::LayerState;
use hybrid_run::model::qwen35::{Config, CpuModel, ForwardOutput, Logits, Qwen35Weights, SeqState};
use hybrid_run::spec::{CpuTarget, Drafter, ErrorPlan, OracleDrafter, SpecError, Target};
use hybrid_run::synth::QuantMix;
use spec_common::*;

const N_CTX: usize = 256;

fn gdn_state(st: &SeqState) -> Vec<f32> {
    let mut v = Vec::new();
    for l in &st.layers {
        if let LayerState::Gdn { conv, ssm } = l {
            v.extend_from_slice(conv);
            v.extend_from_slice(ssm);
        }
    }
    v
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn with_model(mix: QuantMix, f: impl FnOnce(&mut CpuModel<'_>, &Config)) {
    let path = tiny(mix);
    let file = GgufFile::open(&path).unwrap();
    let cfg = Config::from_gguf(&file).unwrap();
    let w = Qwen35Weights::load(&file, &cfg).unwrap();
    let mut model = CpuModel::new(cfg.clone(), w, 2);
    f(&mut model, &cfg);
}

#[test]
fn batched_verify_logits_and_hidden_rows_equal_the_sequential_forward_bit_for_bit() {
    for mix in [QuantMix::Q8_0, QuantMix::Q4KM] {
        with_model(mix, |model, cfg| {
            let (nv, d) = (cfg.n_vocab, cfg.n_embd);
            let prompt = prompt_ids(5, 19, 4, nv as u32);
            let extra = prompt_ids(6, 7, 4, nv as u32);
            // Sequential: one token per forward.
            let mut st = SeqState::new(cfg, N_CTX);
            let mut out = ForwardOutput::default();
            model
                .forward(&mut st, &prompt, Logits::None, &mut out)
                .unwrap();
            let mut seq_logits = Vec::new();
            let mut seq_hidden = Vec::new();
            for &t in &extra {
                model
                    .forward(&mut st, &[t], Logits::Last, &mut out)
                    .unwrap();
                seq_logits.extend_from_slice(&out.logits);
                seq_hidden.extend_from_slice(&out.hidden);
            }
            // Batched, every width 1..=7, through the verify path (snapshots on).
            for k in 1..=extra.len() {
                let mut st = SeqState::new(cfg, N_CTX);
                model
                    .forward(&mut st, &prompt, Logits::None, &mut out)
                    .unwrap();
                let mut target = CpuTarget::new(model, &mut st, 6);
                target.verify(&extra[..k], &mut out).unwrap();
                assert_eq!(
                    bits(&out.logits),
                    bits(&seq_logits[..k * nv]),
                    "{mix:?} k={k}: logits"
                );
                assert_eq!(
                    bits(&out.hidden),
                    bits(&seq_hidden[..k * d]),
                    "{mix:?} k={k}: hidden"
                );
            }
        });
    }
}

#[test]
fn rolling_back_to_any_kept_length_restores_the_sequential_state_exactly() {
    with_model(QuantMix::Q8_0, |model, cfg| {
        let nv = cfg.n_vocab;
        let prompt = prompt_ids(8, 13, 4, nv as u32);
        let batch = prompt_ids(9, 6, 4, nv as u32);
        let next = prompt_ids(10, 3, 4, nv as u32);
        let mut out = ForwardOutput::default();
        for keep in 1..=batch.len() {
            // Reference: only the kept tokens, one at a time, then `next`.
            let mut st_ref = SeqState::new(cfg, N_CTX);
            model
                .forward(&mut st_ref, &prompt, Logits::None, &mut out)
                .unwrap();
            for &t in &batch[..keep] {
                model
                    .forward(&mut st_ref, &[t], Logits::None, &mut out)
                    .unwrap();
            }
            let state_ref = gdn_state(&st_ref);
            model
                .forward(&mut st_ref, &next, Logits::All, &mut out)
                .unwrap();
            let logits_ref = out.logits.clone();

            let mut st = SeqState::new(cfg, N_CTX);
            model
                .forward(&mut st, &prompt, Logits::None, &mut out)
                .unwrap();
            {
                let mut target = CpuTarget::new(model, &mut st, batch.len() - 1);
                target.verify(&batch, &mut out).unwrap();
                target.keep(keep).unwrap();
                assert_eq!(target.n_past(), prompt.len() + keep);
                assert!(matches!(target.keep(keep), Err(SpecError::NoBatch)));
            }
            assert_eq!(
                bits(&gdn_state(&st)),
                bits(&state_ref),
                "keep {keep}: GDN state"
            );
            // Attention KV rows past the kept position are stale; the next batch overwrites
            // them, so later logits must match too.
            model
                .forward(&mut st, &next, Logits::All, &mut out)
                .unwrap();
            assert_eq!(
                bits(&out.logits),
                bits(&logits_ref),
                "keep {keep}: later logits"
            );
        }
    });
}

#[test]
fn a_batch_wider_than_the_ring_and_bad_keeps_are_refused() {
    with_model(QuantMix::Q8_0, |model, cfg| {
        let mut st = SeqState::new(cfg, N_CTX);
        let mut out = ForwardOutput::default();
        let mut target = CpuTarget::new(model, &mut st, 2);
        assert!(matches!(
            target.verify(&[1, 2, 3, 4], &mut out),
            Err(SpecError::BatchTooWide { k: 4, slots: 2 })
        ));
        assert!(matches!(target.keep(1), Err(SpecError::NoBatch)));
        target.verify(&[1, 2, 3], &mut out).unwrap();
        assert!(matches!(target.keep(0), Err(SpecError::BadKeep { .. })));
        target.verify(&[1, 2, 3], &mut out).unwrap();
        assert!(matches!(target.keep(4), Err(SpecError::BadKeep { .. })));
    });
}

#[test]
fn junk_drafts_are_all_verified_rolled_back_and_decoding_continues_exactly() {
    with_model(QuantMix::Q8_0, |model, cfg| {
        let nv = cfg.n_vocab;
        let prompt = prompt_ids(11, 16, 4, nv as u32);
        let n_gen = 300;
        let want = plain(model, N_CTX + 128, &prompt, n_gen);
        for n in [1, 3, 6] {
            let make = |_: &dyn Target| -> Box<dyn Drafter> {
                Box::new(OracleDrafter::new(
                    Vec::new(),
                    nv,
                    ErrorPlan::Junk { seed: n as u64 },
                ))
            };
            let (got, stats) = speculative(
                model,
                N_CTX + 128,
                &prompt,
                n_gen,
                n,
                false,
                &mut greedy(),
                &make,
            );
            assert_eq!(got, want, "n={n}: first diff {:?}", first_diff(&got, &want));
            let s = stats.spec.unwrap();
            assert!(s.drafted + n * n >= n * s.steps, "n={n}: {}", s.summary());
            assert!(
                s.accepted * 20 < s.drafted,
                "junk was kept: {}",
                s.summary()
            );
            assert!(s.rejected_at_depth[0] * 10 > s.steps * 9, "{}", s.summary());
        }
    });
}
