//! Runs the gpu-check program (every CUDA kernel against its CPU reference, --quick set).
//! Without a CUDA device (CI) it reports "skipped: no CUDA device" and passes; on a GPU
//! machine any failed check fails this test.

use std::process::Command;

#[test]
fn gpu_kernels_match_their_cpu_references_or_skip_without_a_device() {
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-check"))
        .arg("--quick")
        .output()
        .expect("gpu-check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "gpu-check failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("skipped: no CUDA device") || text.contains(" passed, 0 failed"),
        "unexpected gpu-check output:\n{text}"
    );
}
