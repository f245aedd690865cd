//! llama.cpp (llama-cpp-python 0.3.36, the reference) loads every synthetic tiny model and
//! produces finite, non-flat logits for every position. Skipped when the Python package is
//! not installed (`bash scripts/setup-llamacpp.sh` installs it).

use std::path::Path;
use std::process::Command;

use hybrid_run::synth::{Preset, QuantMix, SynthOptions, SynthPlan};

fn llama_cpp_available() -> bool {
    Command::new("python3")
        .args(["-c", "import llama_cpp"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn check(model: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/llamacpp-check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(model)
        .args(["--threads", "2"])
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn llama_cpp_runs_the_tiny_model_at_every_quant() {
    if !llama_cpp_available() {
        eprintln!("skipped: llama-cpp-python not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for mix in QuantMix::ALL {
        let plan = SynthPlan::new(&SynthOptions {
            preset: Preset::Tiny,
            mix,
            seed: 1,
            vocab_from: None,
        })
        .expect("plan");
        let path = dir.path().join(format!("tiny-{mix}.gguf"));
        plan.write(&path, &|_| {}).expect("write");
        let (ok, text) = check(&path);
        assert!(ok, "{mix}: {text}");
        assert!(text.contains("\"ok\": true"), "{mix}: {text}");
    }
}
