//! Greedy decoding with speculation equals greedy decoding without it, token for token, over
//! long generations, for every drafter and draft length 1..=6 (synthetic tiny model).

mod common;
mod spec_common;

use common::prompt_ids;
use hybrid_run::gguf::GgufFile;
use hybrid_run::model::qwen35::{Config, CpuModel, Qwen35Weights};
use hybrid_run::spec::{Drafter, ErrorPlan, LookupDrafter, MtpDrafter, OracleDrafter, Target};
use hybrid_run::synth::QuantMix;
use spec_common::*;

const N_GEN: usize = 520;
const N_CTX: usize = 640;

#[derive(Clone, Copy, Debug)]
enum Which {
    Mtp,
    Lookup,
    Oracle,
}

fn check_all(mix: QuantMix, threads: usize, drafters: &[Which], lengths: &[usize]) {
    let path = tiny(mix);
    let file = GgufFile::open(&path).unwrap();
    let cfg = Config::from_gguf(&file).unwrap();
    let w = Qwen35Weights::load(&file, &cfg).unwrap();
    let mut model = CpuModel::new(cfg.clone(), w, threads);
    assert!(model.has_mtp(), "the tiny preset has an MTP block");
    let prompt = prompt_ids(17, 24, 4, cfg.n_vocab as u32);
    let want = plain(&mut model, N_CTX, &prompt, N_GEN);
    assert_eq!(want.len(), N_GEN);
    let mut truth = prompt.clone();
    truth.extend_from_slice(&want);

    for &which in drafters {
        for &n in lengths {
            let truth = truth.clone();
            let nv = cfg.n_vocab;
            let make = move |t: &dyn Target| -> Box<dyn Drafter> {
                match which {
                    Which::Mtp => Box::new(MtpDrafter::new(t).unwrap()),
                    Which::Lookup => Box::new(LookupDrafter::new(1, 3, N_CTX).unwrap()),
                    Which::Oracle => {
                        Box::new(OracleDrafter::new(truth.clone(), nv, ErrorPlan::Cycle))
                    }
                }
            };
            let (got, stats) = speculative(
                &mut model,
                N_CTX,
                &prompt,
                N_GEN,
                n,
                false,
                &mut greedy(),
                &make,
            );
            let s = stats.spec.as_ref().unwrap();
            assert_eq!(
                got,
                want,
                "{mix:?} {which:?} n={n}: first difference at token {:?}; {}",
                first_diff(&got, &want),
                s.summary()
            );
            assert_eq!(stats.n_decode, N_GEN);
            assert!(s.drafted > 0, "{which:?} n={n} never drafted");
            if let Which::Oracle = which {
                // The cycling plan rejects first at every depth and also keeps whole batches.
                for j in 0..n {
                    assert!(
                        s.rejected_at_depth[j] > 0,
                        "n={n}: no rollback at depth {}",
                        j + 1
                    );
                }
                assert!(
                    s.steps_per_k[n] > 0 && s.accepted_per_depth[n - 1] > 0,
                    "n={n}: no fully kept batch"
                );
                assert!(s.tokens_per_step > 1.0);
            }
        }
    }
}

#[test]
fn greedy_speculation_matches_plain_decoding_for_every_drafter_and_length_at_q8_0() {
    check_all(
        QuantMix::Q8_0,
        1,
        &[Which::Oracle, Which::Mtp, Which::Lookup],
        &[1, 2, 3, 4, 5, 6],
    );
}

#[test]
fn greedy_speculation_matches_plain_decoding_at_q4_k_m() {
    check_all(
        QuantMix::Q4KM,
        1,
        &[Which::Oracle, Which::Mtp, Which::Lookup],
        &[1, 4, 6],
    );
}
