use super::*;
use crate::synth::{Preset, QuantMix, SynthOptions, SynthPlan};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A small hand-made model: trunk 1000 MiB (50 of it embedding, 100 MTP), 4 FFN layers of
/// 100 MiB, KV 1 MiB/token, recurrent state 10 MiB.
fn toy() -> SizeBreakdown {
    SizeBreakdown {
        total_bytes: 1400 * MIB,
        embedding_bytes: 50 * MIB,
        lm_head_bytes: 60 * MIB,
        norm_bytes: MIB,
        attention_bytes: 400 * MIB,
        gdn_bytes: 389 * MIB,
        mtp_bytes: 100 * MIB,
        ffn_bytes_per_layer: vec![100 * MIB; 4],
        ffn_bytes: 400 * MIB,
        kv_bytes_per_token: MIB,
        mtp_kv_bytes_per_token: 0,
        conv_state_bytes: 2 * MIB,
        ssm_state_bytes: 8 * MIB,
        ..Default::default()
    }
}

fn req(budget: u64, n_ctx: u64, slots: u64) -> PlanRequest {
    PlanRequest {
        n_ctx,
        draft_slots: slots,
        budget_bytes: budget,
        runtime_reserve_bytes: 0,
        forced_gpu_layers: None,
        scratch: ScratchModel::NONE,
        bandwidths: Bandwidths::default(),
    }
}

/// Trunk of `toy()` on the GPU: weights without the embedding (950) + KV + state + ring.
fn toy_trunk(n_ctx: u64, slots: u64) -> u64 {
    950 * MIB + n_ctx * MIB + 10 * MIB + slots * 10 * MIB
}

#[test]
fn a_budget_just_above_the_trunk_fits_the_trunk_and_no_ffn_layer() {
    let t = toy_trunk(100, 2);
    let p = Plan::compute(&toy(), &req(t + 100 * MIB - 1, 100, 2)).expect("trunk fits");
    assert_eq!(p.n_gpu_ffn, 0);
    assert_eq!(p.trunk_reserved_bytes, t);
    assert_eq!(p.total_bytes(), t);
    let p = Plan::compute(&toy(), &req(t, 100, 2)).expect("exactly the trunk fits");
    assert_eq!(p.n_gpu_ffn, 0);
    let p = Plan::compute(&toy(), &req(t + 100 * MIB, 100, 2)).expect("one layer fits");
    assert_eq!(p.n_gpu_ffn, 1);
    assert_eq!(p.cpu_ffn_bytes, 300 * MIB);
}

#[test]
fn a_budget_just_below_the_trunk_is_refused_with_what_would_fit() {
    let t = toy_trunk(100, 2);
    let e = Plan::compute(&toy(), &req(t - 1, 100, 2)).expect_err("one byte short");
    match &e {
        PlanError::TrunkDoesNotFit {
            need,
            max_ctx,
            max_slots,
            ..
        } => {
            assert_eq!(*need, t);
            // One token less of KV (1 MiB) fits; one slot fewer (10 MiB) fits too.
            assert_eq!(*max_ctx, Some(99));
            assert_eq!(*max_slots, Some(1));
        }
        other => panic!("wrong error {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("-c 99"), "{msg}");
    assert!(msg.contains("--draft-n 1"), "{msg}");
}

#[test]
fn the_largest_context_that_fits_is_rounded_to_256_tokens() {
    // 2000 tokens of KV do not fit; 1000 + something do.
    let budget = toy_trunk(1100, 0);
    let e = Plan::compute(&toy(), &req(budget, 2000, 0)).expect_err("too long a context");
    let PlanError::TrunkDoesNotFit { max_ctx, .. } = e else {
        panic!("wrong error {e:?}")
    };
    assert_eq!(max_ctx, Some(1024));
    assert!(toy_trunk(1024, 0) <= budget && toy_trunk(1280, 0) > budget);
}

#[test]
fn a_budget_below_the_bare_weights_says_nothing_fits() {
    let e = Plan::compute(&toy(), &req(900 * MIB, 100, 2)).expect_err("weights alone too big");
    let PlanError::TrunkDoesNotFit {
        max_ctx, max_slots, ..
    } = &e
    else {
        panic!("wrong error {e:?}")
    };
    assert_eq!((*max_ctx, *max_slots), (None, None));
    assert!(e.to_string().contains("--gpu-layers 0"), "{e}");
}

#[test]
fn the_snapshot_ring_is_reserved_before_any_ffn_layer() {
    // Room for trunk + 2 FFN layers without a ring; 10 slots (100 MiB) take one layer's room.
    let budget = toy_trunk(100, 0) + 200 * MIB;
    let without = Plan::compute(&toy(), &req(budget, 100, 0)).expect("fits");
    assert_eq!(without.n_gpu_ffn, 2);
    let with = Plan::compute(&toy(), &req(budget, 100, 10)).expect("fits");
    assert_eq!(with.n_gpu_ffn, 1);
    let ring = with
        .items
        .iter()
        .position(|r| r.what.contains("snapshot ring"))
        .expect("ring itemized");
    let first_ffn = with
        .items
        .iter()
        .position(|r| r.what.contains("FFN"))
        .expect("an FFN layer");
    assert!(ring < first_ffn);
    assert_eq!(with.items[ring].bytes, 100 * MIB);
    // A ring as large as all the FFN room leaves no FFN layer, but the plan still fits.
    let full = Plan::compute(&toy(), &req(budget, 100, 20)).expect("ring fits");
    assert_eq!(full.n_gpu_ffn, 0);
}

#[test]
fn forced_gpu_layers_that_do_not_fit_are_an_error_and_fitting_ones_are_kept() {
    let budget = toy_trunk(100, 0) + 250 * MIB;
    let mut r = req(budget, 100, 0);
    r.forced_gpu_layers = Some(3);
    let e = Plan::compute(&toy(), &r).expect_err("3 layers need 300 MiB");
    assert_eq!(
        e,
        PlanError::ForcedLayersDoNotFit {
            forced: 3,
            fit: 2,
            budget,
            left: 250 * MIB
        }
    );
    assert!(e.to_string().contains("at most 2 fit"), "{e}");
    r.forced_gpu_layers = Some(1);
    assert_eq!(Plan::compute(&toy(), &r).expect("fits").n_gpu_ffn, 1);
    r.forced_gpu_layers = Some(5);
    assert!(matches!(
        Plan::compute(&toy(), &r),
        Err(PlanError::TooManyLayers {
            forced: 5,
            n_layer: 4
        })
    ));
}

#[test]
fn a_tied_lm_head_puts_the_embedding_on_the_gpu() {
    let mut s = toy();
    s.lm_head_bytes = 0;
    s.total_bytes -= 60 * MIB;
    let p = Plan::compute(&s, &req(10 * GIB, 100, 0)).expect("fits");
    // 940 MiB trunk without the LM head, plus the 50 MiB embedding uploaded as the head.
    assert_eq!(p.items[0].bytes, (1340 - 400 - 100) * MIB);
}

#[test]
fn the_27b_q4_k_m_plan_on_a_16_gib_card_with_a_32k_context() {
    let plan = SynthPlan::new(&SynthOptions {
        preset: Preset::Qwen27B,
        mix: QuantMix::Q4KM,
        seed: 1,
        vocab_from: None,
    })
    .expect("27B plan");
    let sizes = plan.size_breakdown();
    let r = PlanRequest {
        n_ctx: 32768,
        draft_slots: 3,
        budget_bytes: 16 * GIB,
        runtime_reserve_bytes: PlanRequest::CARD_RUNTIME_RESERVE,
        forced_gpu_layers: None,
        scratch: ScratchModel::from_config(plan.config()),
        bandwidths: Bandwidths::default(),
    };
    let p = Plan::compute(&sizes, &r).expect("the trunk fits on 16 GiB");
    let text = p.to_string();
    eprintln!("{text}");
    assert!(p.total_bytes() <= 16 * GIB);
    // No further layer would have fit.
    assert!(16 * GIB - p.total_bytes() < sizes.ffn_bytes_per_layer[p.n_gpu_ffn]);
    // KV for 32k tokens is 2 GiB (64 KiB per token, ANCHORS).
    assert_eq!(sizes.kv_bytes_per_token, 64 << 10);
    // About 0.15 GiB per FFN layer and ~9 GiB of trunk, state and reserves leave room for
    // most but not all layers (llama.cpp's 18-layer split in ANCHORS was a hand-picked -ot,
    // with its larger compute buffers; this plan counts our own buffers).
    assert!((30..60).contains(&p.n_gpu_ffn), "{}", p.n_gpu_ffn);
    // Trunk + state + ring + scratch (with the prefill GEMM path's ~0.4 GiB) + the two
    // streaming slots: between 8.5 and 9.5 GiB.
    assert!(
        p.trunk_reserved_bytes > 8 * GIB + GIB / 2 && p.trunk_reserved_bytes < 9 * GIB + GIB / 2,
        "{}",
        p.trunk_reserved_bytes
    );
    assert!(text.contains("prefill weight-streaming slots"));
    assert!(text.contains(&format!("{} of 64 layers on the GPU", p.n_gpu_ffn)));
    assert!(text.contains("speculative snapshot ring"));
    // At 8 GiB the trunk with a 32k context does not fit; a smaller -c is suggested.
    let e = Plan::compute(
        &sizes,
        &PlanRequest {
            budget_bytes: 8 * GIB,
            ..r.clone()
        },
    )
    .expect_err("8 GiB is too small for 32k");
    let PlanError::TrunkDoesNotFit { max_ctx, .. } = &e else {
        panic!("wrong error {e:?}")
    };
    let c = max_ctx.expect("some context fits");
    assert!(c > 0 && c < 32768 && c % 256 == 0, "{c}");
    let fitted = Plan::compute(
        &sizes,
        &PlanRequest {
            budget_bytes: 8 * GIB,
            n_ctx: c,
            ..r
        },
    )
    .expect("the suggested context fits");
    assert!(fitted.total_bytes() <= 8 * GIB);
}

#[test]
fn a_split_reserves_two_streaming_slots_and_a_full_fit_does_not() {
    let mut s = toy();
    s.ffn_max_matrix_bytes = 40 * MIB;
    // Everything fits: trunk 950 + KV 16 + state 10 = 976, FFN 400: no slots.
    let p = Plan::compute(&s, &req(1400 * MIB, 16, 0)).expect("fits");
    assert_eq!(p.n_gpu_ffn, 4);
    assert!(p.items.iter().all(|r| !r.what.contains("streaming")));
    // One layer short: the 80 MiB of slots come first, then the layers that still fit.
    let p = Plan::compute(&s, &req(1300 * MIB, 16, 0)).expect("fits");
    let slots = p.items.iter().find(|r| r.what.contains("streaming"));
    assert_eq!(slots.map(|r| r.bytes), Some(80 * MIB));
    assert_eq!(
        p.n_gpu_ffn, 2,
        "1300 - 976 - 80 = 244 MiB holds two 100 MiB layers"
    );
    assert!(p.total_bytes() <= 1300 * MIB);
    // Forcing all layers needs no slots.
    let mut r = req(1400 * MIB, 16, 0);
    r.forced_gpu_layers = Some(4);
    let p = Plan::compute(&s, &r).expect("fits");
    assert!(p.items.iter().all(|r| !r.what.contains("streaming")));
}
