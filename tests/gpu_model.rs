//! Runs the gpu-model-check program: the whole qwen35 forward on the GPU (and the hybrid
//! split) against the CPU forward on tiny synthetic models and the trained pystd model.
//! Without a CUDA device (CI) it reports "skipped: no CUDA device" and passes; on a GPU
//! machine any failed check fails this test.

use std::process::Command;

#[test]
fn the_gpu_forward_matches_the_cpu_forward_or_skips_without_a_device() {
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-model-check"))
        .output()
        .expect("gpu-model-check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "gpu-model-check failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("skipped: no CUDA device") || text.contains(" passed, 0 failed"),
        "unexpected gpu-model-check output:\n{text}"
    );
}
