//! Temperature sampling under speculation: rejection sampling must leave the output
//! distribution exactly as without speculation.

mod common;
mod spec_common;

use std::collections::HashMap;

use common::prompt_ids;
use hybrid_run::gguf::GgufFile;
use hybrid_run::model::qwen35::{Config, CpuModel, ForwardOutput, Logits, Qwen35Weights, SeqState};
use hybrid_run::sample::{Sampler, SamplerConfig};
use hybrid_run::spec::{Drafter, ErrorPlan, OracleDrafter, Target};
use hybrid_run::synth::QuantMix;
use spec_common::*;

fn load(f: impl FnOnce(&mut CpuModel<'_>, &Config)) {
    let path = tiny(QuantMix::Q8_0);
    let file = GgufFile::open(&path).unwrap();
    let cfg = Config::from_gguf(&file).unwrap();
    let w = Qwen35Weights::load(&file, &cfg).unwrap();
    let mut model = CpuModel::new(cfg.clone(), w, 1);
    f(&mut model, &cfg);
}

#[test]
fn temperature_with_top_k_1_under_speculation_reproduces_greedy_output() {
    load(|model, cfg| {
        let nv = cfg.n_vocab;
        let prompt = prompt_ids(21, 12, 4, nv as u32);
        let want = plain(model, 512, &prompt, 200);
        let mut truth = prompt.clone();
        truth.extend_from_slice(&want);
        for n in [1, 4] {
            let truth = truth.clone();
            let make = move |_: &dyn Target| -> Box<dyn Drafter> {
                Box::new(OracleDrafter::new(truth.clone(), nv, ErrorPlan::Cycle))
            };
            let mut sampler = Sampler::new(SamplerConfig {
                temperature: 0.8,
                top_k: 1,
                seed: 5,
                ..Default::default()
            });
            let (got, stats) = speculative(model, 512, &prompt, 200, n, false, &mut sampler, &make);
            assert_eq!(got, want, "n={n}: first diff {:?}", first_diff(&got, &want));
            let s = stats.spec.unwrap();
            assert!(
                s.accepted > 0 && s.rejected_at_depth[0] > 0,
                "{}",
                s.summary()
            );
        }
    });
}

#[test]
fn rejection_sampling_under_speculation_keeps_the_joint_distribution_of_sampled_tokens() {
    load(|model, cfg| {
        let nv = cfg.n_vocab;
        let prompt = prompt_ids(23, 8, 4, nv as u32);
        let scfg = SamplerConfig {
            temperature: 1.3,
            top_k: 3,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        };
        // Exact joint probabilities of the first three tokens from the sampler's own
        // distribution at each prefix.
        let mut out = ForwardOutput::default();
        let mut dist_after = |seq: &[u32]| -> Vec<(u32, f32)> {
            let mut st = SeqState::new(cfg, 32);
            model.forward(&mut st, seq, Logits::Last, &mut out).unwrap();
            Sampler::new(scfg.clone())
                .distribution(&out.logits, seq)
                .to_vec()
        };
        let mut exact: HashMap<[u32; 3], f64> = HashMap::new();
        let mut seq = prompt.clone();
        for (a, pa) in dist_after(&seq) {
            seq.push(a);
            for (b, pb) in dist_after(&seq) {
                seq.push(b);
                for (c, pc) in dist_after(&seq) {
                    *exact.entry([a, b, c]).or_default() += pa as f64 * pb as f64 * pc as f64;
                }
                seq.pop();
            }
            seq.pop();
        }
        // Drafts: the greedy continuation, so the draft is sometimes likely, sometimes not.
        let greedy_cont = plain(model, 32, &prompt, 3);
        let mut truth = prompt.clone();
        truth.extend_from_slice(&greedy_cont);

        let runs = 2000;
        let mut counts: HashMap<[u32; 3], usize> = HashMap::new();
        let (mut accepted, mut drafted) = (0, 0);
        for seed in 0..runs {
            let truth = truth.clone();
            let make = move |_: &dyn Target| -> Box<dyn Drafter> {
                Box::new(OracleDrafter::new(truth.clone(), nv, ErrorPlan::None))
            };
            let mut sampler = Sampler::new(SamplerConfig {
                seed,
                ..scfg.clone()
            });
            let (got, stats) = speculative(model, 32, &prompt, 3, 2, false, &mut sampler, &make);
            let s = stats.spec.unwrap();
            accepted += s.accepted;
            drafted += s.drafted;
            *counts.entry([got[0], got[1], got[2]]).or_default() += 1;
        }
        assert!(
            drafted > 0 && accepted > 0 && accepted < drafted,
            "{accepted}/{drafted}"
        );
        for (key, &n) in &counts {
            assert!(
                exact.contains_key(key),
                "{key:?} is outside the sampler's support"
            );
            let _ = n;
        }
        for (key, &p) in &exact {
            let f = *counts.get(key).unwrap_or(&0) as f64 / runs as f64;
            let tol = 5.0 * (p * (1.0 - p) / runs as f64).sqrt() + 2e-3;
            assert!(
                (f - p).abs() <= tol,
                "{key:?}: frequency {f:.4} vs p {p:.4}"
            );
        }
    });
}
