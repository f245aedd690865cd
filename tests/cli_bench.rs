//! `hybrid-run bench`: the llama-bench-style timings run end to end on a tiny model, and
//! `--depth` (llama-bench's `-d`) decodes after that many context tokens: the JSON says so and
//! the table header names the depth.

mod common;

use std::process::Command;

use hybrid_run::synth::{Preset, QuantMix};

#[test]
fn bench_reports_prefill_and_decode_at_a_context_depth() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::synth(dir.path(), Preset::Tiny, QuantMix::Q4KM, 3);
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_hybrid-run"))
        .args(["bench", "-m"])
        .arg(&model)
        .args([
            "-t", "2", "-p", "8", "-n", "4", "-d", "40", "-b", "16", "-r", "1", "--json",
        ])
        .arg(&json)
        .output()
        .expect("hybrid-run runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("pp8 @ d40 t/s | tg4 @ d40 t/s"),
        "header:\n{text}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["depth"], 40);
    assert_eq!(v["n_prompt"], 8);
    assert!(v["prefill_tps"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["decode_tps"].as_f64().unwrap() > 0.0, "{v}");
}
