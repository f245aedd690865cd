//! `hybrid-run bench`: the llama-bench-style timings run end to end on a tiny model, and
//! `--depth` (llama-bench's `-d`) decodes after that many context tokens: the JSON says so and
//! the table header names the depth.

mod common;

use std::path::Path;
use std::process::Command;

use hybrid_run::synth::{Preset, QuantMix};

/// Runs `hybrid-run bench -m model ARGS --json JSON`, asserts it succeeded, and returns its
/// stdout and the JSON it wrote.
fn bench(model: &Path, args: &[&str], json: &Path) -> (String, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_hybrid-run"))
        .args(["bench", "-m"])
        .arg(model)
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .expect("hybrid-run runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bench failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    (text, v)
}

#[test]
fn bench_reports_prefill_and_decode_at_a_context_depth() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::synth(dir.path(), Preset::Tiny, QuantMix::Q4KM, 3);
    let (text, v) = bench(
        &model,
        &[
            "-t", "2", "-p", "8", "-n", "4", "-d", "40", "-b", "16", "-r", "1",
        ],
        &dir.path().join("bench.json"),
    );
    assert!(
        text.contains("pp8 @ d40 t/s | tg4 @ d40 t/s"),
        "header:\n{text}"
    );
    assert_eq!(v["depth"], 40);
    assert_eq!(v["n_prompt"], 8);
    assert!(v["prefill_tps"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["decode_tps"].as_f64().unwrap() > 0.0, "{v}");
}

/// `--sim-accept`: speculation with the oracle drafter at set rates, each run checked against
/// plain greedy decoding inside the bench; rate 1 keeps every draft, rate 0 none, and the
/// adaptive row is added. A rate outside 0..1 is refused with a message.
#[test]
fn bench_simulated_acceptance_rows_follow_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::synth(dir.path(), Preset::Tiny, QuantMix::Q8_0, 5);
    let (text, v) = bench(
        &model,
        &[
            "-t",
            "1",
            "-p",
            "0",
            "-n",
            "40",
            "-r",
            "1",
            "--sim-accept",
            "0,1",
            "--draft-n",
            "2,3",
            "--draft-adaptive",
        ],
        &dir.path().join("sim.json"),
    );
    assert!(text.contains("| 1.00 | 3 adaptive |"), "table:\n{text}");
    let rows = v["sim"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{v}");
    for r in rows {
        let (rate, n) = (r["rate"].as_f64().unwrap(), r["draft_n"].as_u64().unwrap());
        let (acc, per_step) = (
            r["acceptance"].as_f64().unwrap(),
            r["tokens_per_step"].as_f64().unwrap(),
        );
        assert!(r["decode_tps"].as_f64().unwrap() > 0.0, "{r}");
        if rate == 0.0 {
            assert_eq!(acc, 0.0, "{r}");
            assert!((per_step - 1.0).abs() < 1e-9, "{r}");
        } else if r["adaptive"] == false {
            // Every draft kept: n + 1 tokens per step, except a shorter last step.
            assert_eq!(acc, 1.0, "{r}");
            assert!(per_step > n as f64 && per_step <= n as f64 + 1.0, "{r}");
        }
    }

    let bad = Command::new(env!("CARGO_BIN_EXE_hybrid-run"))
        .args(["bench", "-m"])
        .arg(&model)
        .args(["-p", "0", "-n", "4", "--sim-accept", "1.5"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--sim-accept 1.5"), "{err}");
}
