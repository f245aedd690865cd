//! The MTP drafter's bookkeeping (spec §7.2): after speculative decoding, every MTP KV entry
//! must be the one computed from scratch from the pair (x_t, H_{t−1}), H_{−1} = 0.

mod common;
mod spec_common;

use common::prompt_ids;
use hybrid_run::gguf::GgufFile;
use hybrid_run::model::qwen35::{Config, CpuModel, ForwardOutput, Logits, Qwen35Weights, SeqState};
use hybrid_run::spec::{generate_speculative, CpuTarget, MtpDrafter, SpecParams};
use hybrid_run::synth::QuantMix;
use spec_common::*;

#[test]
fn the_mtp_kv_cache_after_speculative_decoding_equals_the_from_scratch_pairing() {
    let path = tiny(QuantMix::Q8_0);
    let file = GgufFile::open(&path).unwrap();
    let cfg = Config::from_gguf(&file).unwrap();
    let w = Qwen35Weights::load(&file, &cfg).unwrap();
    let mut model = CpuModel::new(cfg.clone(), w, 1);
    let (d, kv) = (cfg.n_embd, cfg.attn_kv_dim());
    let prompt = prompt_ids(31, 37, 4, cfg.n_vocab as u32);
    let n_ctx = 256;
    // Adaptive: the random-weight MTP head is soon given up, so most steps draft nothing and
    // the catch-up waits in the drafter's backlog (run at 64 rows, before a probe's draft and
    // at the end of the run).
    for (draft_n, adaptive) in [(1, false), (3, false), (5, false), (3, true)] {
        let mut st = SeqState::new(&cfg, n_ctx);
        let mut seq = prompt.clone();
        let stats = {
            let mut target = CpuTarget::new(&mut model, &mut st, draft_n);
            let mut drafter = MtpDrafter::new(&target).unwrap();
            generate_speculative(
                &mut target,
                &mut drafter,
                &prompt,
                &params(200),
                &SpecParams::new(draft_n, adaptive),
                &mut greedy(),
                &|_| false,
                &mut |t| {
                    seq.push(t);
                    true
                },
            )
            .unwrap()
        };
        // Positions settled before the last step: the last batch (at most draft_n + 1 tokens,
        // led by a certain token) is left unsettled when generation stops.
        let settled = seq.len() - draft_n - 2;
        assert!(st.mtp_n_past >= settled);
        let spec = stats.spec.as_ref().unwrap();
        if adaptive {
            assert!(
                spec.steps_per_k[0] > 64,
                "the deferred catch-up was not exercised: {}",
                spec.summary()
            );
        }

        let mut st_ref = SeqState::new(&cfg, n_ctx);
        let mut out = ForwardOutput::default();
        model
            .forward(&mut st_ref, &seq[..settled], Logits::None, &mut out)
            .unwrap();
        let mut h_in = vec![0.0f32; settled * d];
        h_in[d..].copy_from_slice(&out.hidden[..(settled - 1) * d]);
        model
            .mtp_forward(&mut st_ref, &seq[..settled], &h_in, &mut out)
            .unwrap();
        let rows = settled * kv;
        let bits = |v: &[half::f16]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (name, got, want) in [
            ("k", &st.mtp_k, &st_ref.mtp_k),
            ("v", &st.mtp_v, &st_ref.mtp_v),
        ] {
            let (g, w) = (bits(&got[..rows]), bits(&want[..rows]));
            let bad = g.iter().zip(&w).position(|(a, b)| a != b);
            assert!(
                bad.is_none(),
                "draft_n {draft_n} adaptive {adaptive}: MTP {name} differs at position {} ({})",
                bad.unwrap_or(0) / kv,
                stats.spec.as_ref().unwrap().summary()
            );
        }
    }
}
