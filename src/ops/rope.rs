//! Partial NeoX rotary embedding. qwen35 declares IMROPE, which for text (all four position
//! components equal) reduces exactly to NeoX over the first `n_rot` dims (spec §3.1).
//! θ_i is computed as llama.cpp's CPU does: iteratively in f32, θ_0 = p, θ_{i+1} = θ_i·s
//! with s = base^(−2/n_rot), then `cosf`/`sinf`.

/// cos/sin of every rotated pair at one position: `cs[i] = (cos θ_i, sin θ_i)`, i < n_rot/2.
pub fn rope_table(pos: usize, n_rot: usize, freq_base: f32, cs: &mut [(f32, f32)]) {
    assert_eq!(cs.len(), n_rot / 2, "rope_table: table length");
    let theta_scale = freq_base.powf(-2.0 / n_rot as f32);
    let mut theta = pos as f32;
    for c in cs.iter_mut() {
        *c = (theta.cos(), theta.sin());
        theta *= theta_scale;
    }
}

/// Rotates the first `2·cs.len()` dims of each `head_dim` chunk of `x` in NeoX order:
/// pairs (i, i + n_rot/2), `x0' = fma(x0, cos, −x1·sin)`, `x1' = fma(x0, sin, x1·cos)`.
/// The remaining dims pass through.
pub fn rope_neox_inplace(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    let half = cs.len();
    assert!(
        2 * half <= head_dim && x.len() % head_dim == 0,
        "rope: shape"
    );
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &(c, s)) in cs.iter().enumerate() {
            let x0 = head[i];
            let x1 = head[i + half];
            // GCC contracts ggml's `x0*cos - x1*sin` / `x0*sin + x1*cos` (rotate_pairs) into
            // vfmsub/vfmadd with the x1 product rounded first (wheel disassembly).
            head[i] = x0.mul_add(c, -(x1 * s));
            head[i + half] = x0.mul_add(s, x1 * c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_matches_the_closed_form_and_keeps_the_tail() {
        let (n_rot, head_dim, pos, base) = (16usize, 24usize, 37usize, 1e4f32);
        let mut cs = vec![(0.0, 0.0); n_rot / 2];
        rope_table(pos, n_rot, base, &mut cs);
        let x: Vec<f32> = (0..2 * head_dim).map(|i| (i as f32 * 0.91).cos()).collect();
        let mut y = x.clone();
        rope_neox_inplace(&mut y, head_dim, &cs);
        for h in 0..2 {
            let o = h * head_dim;
            for i in 0..n_rot / 2 {
                let th = pos as f64 * (base as f64).powf(-2.0 * i as f64 / n_rot as f64);
                let (x0, x1) = (x[o + i] as f64, x[o + i + n_rot / 2] as f64);
                let want0 = x0 * th.cos() - x1 * th.sin();
                let want1 = x0 * th.sin() + x1 * th.cos();
                assert!((y[o + i] as f64 - want0).abs() < 2e-4, "pair {i}");
                assert!((y[o + i + n_rot / 2] as f64 - want1).abs() < 2e-4);
            }
            assert_eq!(&y[o + n_rot..o + head_dim], &x[o + n_rot..o + head_dim]);
        }
    }

    #[test]
    fn rope_at_position_zero_is_identity() {
        let mut cs = vec![(0.0, 0.0); 4];
        rope_table(0, 8, 1e7, &mut cs);
        let x: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let mut y = x.clone();
        rope_neox_inplace(&mut y, 8, &cs);
        assert_eq!(x, y);
    }
}
