//! The server's generation engine on the tiny synthetic model: prompt-prefix reuse must not
//! change any token, and cancellation stops within one step.

mod common;

use hybrid_run::gguf::GgufFile;
use hybrid_run::sample::{Sampler, SamplerConfig};
use hybrid_run::serve::{CpuGenerator, Generator};
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
