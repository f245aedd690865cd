//! Adaptive draft length: output unchanged, and the length follows the acceptance rate.

mod common;
mod spec_common;

use common::prompt_ids;
use hybrid_run::gguf::GgufFile;
use hybrid_run::model::qwen35::{Config, CpuModel, Qwen35Weights};
use hybrid_run::spec::{Drafter, ErrorPlan, MtpDrafter, OracleDrafter, Target};
use hybrid_run::synth::QuantMix;
use spec_common::*;

#[test]
fn adaptive_length_keeps_greedy_output_and_drafts_long_only_when_drafts_are_kept() {
    let path = tiny(QuantMix::Q8_0);
    let file = GgufFile::open(&path).unwrap();
    let cfg = Config::from_gguf(&file).unwrap();
    let w = Qwen35Weights::load(&file, &cfg).unwrap();
    let mut model = CpuModel::new(cfg.clone(), w, 1);
    let nv = cfg.n_vocab;
    let (n_ctx, n_gen, max_n) = (800, 600, 6);
    let prompt = prompt_ids(41, 20, 4, nv as u32);
    let want = plain(&mut model, n_ctx, &prompt, n_gen);
    let mut truth = prompt.clone();
    truth.extend_from_slice(&want);

    let mut per_step = Vec::new();
    for plan in [
        Some(ErrorPlan::None),
        Some(ErrorPlan::Rate { rate: 0.8, seed: 2 }),
        Some(ErrorPlan::Junk { seed: 3 }),
        None,
    ] {
        let truth = truth.clone();
        let p = plan.clone();
        let make = move |t: &dyn Target| -> Box<dyn Drafter> {
            match &p {
                Some(p) => Box::new(OracleDrafter::new(truth.clone(), nv, p.clone())),
                None => Box::new(MtpDrafter::new(t).unwrap()),
            }
        };
        let (got, stats) = speculative(
            &mut model,
            n_ctx,
            &prompt,
            n_gen,
            max_n,
            true,
            &mut greedy(),
            &make,
        );
        let s = stats.spec.unwrap();
        assert_eq!(
            got,
            want,
            "{plan:?}: first diff {:?}; {}",
            first_diff(&got, &want),
            s.summary()
        );
        per_step.push(s.drafted as f64 / s.steps as f64);
    }
    // Junk drafts (and the random-weight MTP head) are switched almost off; good drafts are
    // kept long. How long exactly depends on the measured step costs of this machine (on the
    // tiny model a wider batch costs nearly proportionally more), so only the ordering and
    // wide margins are checked here; the policy itself is unit-tested in `spec::adaptive`.
    assert!(per_step[2] < 1.0, "junk drafts: {per_step:?}");
    assert!(per_step[3] < 1.0, "random-weight MTP drafts: {per_step:?}");
    assert!(
        per_step[0] > 1.5 && per_step[1] > 1.5,
        "good drafts: {per_step:?}"
    );
}
