//! RMSNorm and L2 norm as llama.cpp's CPU computes them (`ops.cpp` `rms_norm_f32`,
//! `l2_norm_f32`): squares in f32, summed in f64, the scale in f32.

/// `out = x / sqrt(mean(x²) + eps) * w`. The weight already holds the "+1" (spec §4.5).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    assert_eq!(x.len(), w.len(), "rms_norm: weight length");
    assert_eq!(x.len(), out.len(), "rms_norm: output length");
    let scale = rms_scale(x, eps);
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = (xi * scale) * wi;
    }
}

/// In-place RMSNorm of each `w.len()`-sized chunk of `x` (per-head q/k norms, gated norm).
pub fn rms_norm_chunks_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    assert_eq!(x.len() % w.len(), 0, "rms_norm_chunks: length");
    for chunk in x.chunks_exact_mut(w.len()) {
        let scale = rms_scale(chunk, eps);
        for (xi, &wi) in chunk.iter_mut().zip(w) {
            *xi = (*xi * scale) * wi;
        }
    }
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// `x ← x / ‖x‖` as llama.cpp's qwen35 graph builds it (`build_gdn_l2_norm`):
/// `ggml_scale(ggml_rms_norm(x, eps/n), 1/sqrt(n))`, i.e. `x · 1/sqrt(mean(x²) + eps/n)`
/// rounded, then times `1/sqrt(n)` rounded. (Mathematically `x / sqrt(‖x‖² + eps)`; the
/// two-step rounding is what makes it bit-identical to llama.cpp.)
pub fn l2_norm_inplace(x: &mut [f32], eps: f32) {
    let n = x.len() as f32;
    let scale = rms_scale(x, eps / n);
    let post = 1.0 / n.sqrt();
    for v in x.iter_mut() {
        *v = (*v * scale) * post;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_gives_unit_rms_times_weight() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let w: Vec<f32> = (0..64).map(|i| 1.0 + i as f32 / 64.0).collect();
        let mut y = vec![0.0; 64];
        rms_norm(&x, &w, 1e-6, &mut y);
        let ms: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / 64.0;
        for i in 0..64 {
            let want = x[i] as f64 / (ms + 1e-6).sqrt() * w[i] as f64;
            assert!((y[i] as f64 - want).abs() < 1e-5 * want.abs().max(1.0));
        }
    }

    #[test]
    fn rms_norm_of_zero_is_zero() {
        let mut x = vec![0.0f32; 32];
        rms_norm_chunks_inplace(&mut x, &[1.0; 16], 1e-6);
        assert!(x.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn l2_norm_gives_unit_length_and_adds_eps_to_the_squared_norm() {
        let mut x = vec![3.0f32, 4.0];
        l2_norm_inplace(&mut x, 1e-6);
        assert!((x[0] - 0.6).abs() < 1e-7 && (x[1] - 0.8).abs() < 1e-7);
        let mut tiny = vec![1e-9f32, 0.0];
        l2_norm_inplace(&mut tiny, 1e-6);
        let want = 1e-9 / (1e-18f64 + 1e-6).sqrt();
        assert!(
            (tiny[0] as f64 - want).abs() < 1e-6 * want,
            "x / sqrt(|x|^2 + eps): {} vs {want}",
            tiny[0]
        );
    }
}
