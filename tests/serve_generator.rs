//! The server's generation engine on the tiny synthetic model: prompt-prefix reuse must not
//! change any token, and cancellation stops within one step.

mod common;

use hybrid_run::gguf::GgufFile;
use hybrid_run::sample::{Sampler, SamplerConfig};
use hybrid_run::serve::{CpuGenerator, Generator, SpecConfig};
use hybrid_run::spec::DraftKind;
use hybrid_run::synth::{Preset, QuantMix};

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig {
        temperature: 0.0,
        ..Default::default()
    })
}

fn run(g: &mut dyn Generator, prompt: &[u32], n: usize) -> (Vec<u32>, usize) {
    let mut out = Vec::new();
    let stats = g
        .generate(prompt, n, &mut greedy(), &|_| false, &mut |t| {
            out.push(t);
            true
        })
        .unwrap();
    (out, stats.n_prompt)
}

#[test]
fn a_follow_up_prompt_skips_the_cached_prefix_and_gives_the_same_tokens_as_a_fresh_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::synth(dir.path(), Preset::Tiny, QuantMix::Q8_0, 11);
    let file = GgufFile::open(&path).unwrap();
    let mut cached = CpuGenerator::new(&file, 1, 512, 7).unwrap();
    let mut fresh = CpuGenerator::new(&file, 1, 512, 7).unwrap();
    fresh.set_reuse_prefix(false);

    let turn1: Vec<u32> = (0..23).map(|i| (i * 37 + 5) % 1000).collect();
    let (ans1, fed1) = run(&mut cached, &turn1, 20);
    assert_eq!(fed1, turn1.len());
    assert_eq!(ans1.len(), 20);
    // Turn 2 extends everything turn 1 left in the state (its last token was never run).
    let mut turn2 = turn1.clone();
    turn2.extend_from_slice(&ans1);
    turn2.extend([3, 99, 512, 7, 8]);
    let (ans2, fed2) = run(&mut cached, &turn2, 24);
    assert_eq!(
        fed2,
        turn2.len() - (turn1.len() + ans1.len() - 1),
        "prefix not reused"
    );
    let (want, fed_fresh) = run(&mut fresh, &turn2, 24);
    assert_eq!(fed_fresh, turn2.len());
    assert_eq!(ans2, want);

    // A prompt that does not extend the state starts over and matches a fresh run too.
    let other: Vec<u32> = (0..9).map(|i| (i * 11 + 1) % 1000).collect();
    let (a, fed) = run(&mut cached, &other, 10);
    assert_eq!(fed, other.len());
    assert_eq!(a, run(&mut fresh, &other, 10).0);
    // Repeating the same prompt (not a strict extension) starts over as well.
    let (b, fed) = run(&mut cached, &other, 10);
    assert_eq!(fed, other.len());
    assert_eq!(a, b);
}

#[test]
fn a_callback_that_returns_false_stops_at_that_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::synth(dir.path(), Preset::Tiny, QuantMix::Q8_0, 12);
    let file = GgufFile::open(&path).unwrap();
    let mut g = CpuGenerator::new(&file, 1, 256, 64).unwrap();
    let mut seen = 0;
    let stats = g
        .generate(&[1, 2, 3], 200, &mut greedy(), &|_| false, &mut |_| {
            seen += 1;
            seen < 5
        })
        .unwrap();
    assert_eq!(seen, 5);
    assert_eq!(stats.n_decode, 5);
    assert_eq!(stats.stop, "callback");
}

#[test]
fn a_context_of_zero_tokens_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::synth(dir.path(), Preset::Tiny, QuantMix::Q8_0, 13);
    let file = GgufFile::open(&path).unwrap();
    assert!(CpuGenerator::new(&file, 1, 0, 8).is_err());
}

#[test]
fn speculative_generation_with_prefix_reuse_gives_the_tokens_of_plain_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::synth(dir.path(), Preset::Tiny, QuantMix::Q8_0, 14);
    let file = GgufFile::open(&path).unwrap();
    for kind in [DraftKind::Mtp, DraftKind::Lookup] {
        let mut spec = CpuGenerator::new(&file, 1, 512, 16).unwrap();
        spec.set_speculation(Some(SpecConfig {
            draft_n: 3,
            kind,
            adaptive: false,
            with_temperature: false,
        }))
        .unwrap();
        let mut plain = CpuGenerator::new(&file, 1, 512, 16).unwrap();
        plain.set_reuse_prefix(false);
        let turn1: Vec<u32> = (0..30).map(|i| (i * 29 + 3) % 1000).collect();
        let (a1, _) = run(&mut spec, &turn1, 40);
        assert_eq!(a1, run(&mut plain, &turn1, 40).0, "{kind:?} turn 1");
        let mut turn2 = turn1.clone();
        turn2.extend_from_slice(&a1);
        turn2.extend([10, 20, 30]);
        let (a2, fed) = run(&mut spec, &turn2, 40);
        assert!(fed < turn2.len(), "{kind:?}: prefix not reused");
        assert_eq!(a2, run(&mut plain, &turn2, 40).0, "{kind:?} turn 2");
        // A plain turn in between leaves no MTP cache entries behind; the next speculative
        // continuation must still give the plain tokens.
        let cfg = SpecConfig {
            draft_n: 3,
            kind,
            adaptive: false,
            with_temperature: false,
        };
        spec.set_speculation(None).unwrap();
        let mut turn3 = turn2.clone();
        turn3.extend_from_slice(&a2);
        turn3.push(77);
        let (a3, _) = run(&mut spec, &turn3, 30);
        spec.set_speculation(Some(cfg)).unwrap();
        let mut turn4 = turn3.clone();
        turn4.extend_from_slice(&a3);
        turn4.push(88);
        let (a4, fed) = run(&mut spec, &turn4, 30);
        assert!(fed < turn4.len(), "{kind:?}: prefix not reused");
        assert_eq!(a4, run(&mut plain, &turn4, 30).0, "{kind:?} turn 4");
    }
}

#[test]
fn asking_for_mtp_drafts_on_a_model_without_mtp_or_zero_drafts_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::synth(dir.path(), Preset::Tiny, QuantMix::Q8_0, 15);
    let file = GgufFile::open(&path).unwrap();
    let mut g = CpuGenerator::new(&file, 1, 64, 16).unwrap();
    let bad = SpecConfig {
        draft_n: 0,
        kind: DraftKind::Lookup,
        adaptive: false,
        with_temperature: false,
    };
    assert!(g.set_speculation(Some(bad)).is_err());
}
