//! The official `openai` Python client against `hybrid-run serve` (tests/openai_client.py).
//! `scripts/test.sh` installs the client (scripts/setup-python-test-deps.sh); without it the
//! test says "skipped" and passes, unless HYBRID_REQUIRE_OPENAI=1.

mod serve_common;

use std::process::Command;

use serve_common::*;

fn have_openai() -> bool {
    Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn the_official_openai_python_client_works_against_the_server() {
    if !have_openai() {
        assert!(
            std::env::var("HYBRID_REQUIRE_OPENAI").as_deref() != Ok("1"),
            "the openai Python package is required (bash scripts/setup-python-test-deps.sh)"
        );
        eprintln!("skipped: the openai Python package is missing (bash scripts/setup-python-test-deps.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(
        &tiny_model(dir.path()),
        &["--api-key", "test-key", "-c", "256"],
    );
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/openai_client.py"
        ))
        .args(["--base-url", &format!("http://{}/v1", srv.addr)])
        .args(["--api-key", "test-key", "--n-ctx", "256"])
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai_client.py failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.log()
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
    eprintln!("{}", stdout.trim());
}
