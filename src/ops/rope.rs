//! Partial NeoX-ordered rotary embedding with qwen35's IMROPE position sections.
//! For text llama.cpp expands each position p into four components (t, h, w, e) = (p, p, p, 0)
//! (`llm_graph_input_pos::set_input`); `ggml_mrope_cache_init` gives rotation pair i the
//! component picked by its sector `s = i mod Σsections`: t, h, w for `s mod 3` = 0, 1, 2 while
//! `s < 3·sections[s mod 3]`, else e. So a pair rotates by θ_i = p·s^i when its sector is
//! covered and not at all (θ = 0, the e component) otherwise. The 27B's sections [11, 11, 10]
//! cover all 32 pairs (plain NeoX); smaller shapes may leave pairs unrotated.
//! θ_i is computed as llama.cpp's CPU does: iteratively in f32, θ_0 = p, θ_{i+1} = θ_i·s
//! with s = base^(−2/n_rot), then `cosf`/`sinf`.

/// cos/sin of every rotated pair at one position, NeoX (every pair uses p):
/// `cs[i] = (cos θ_i, sin θ_i)`, i < n_rot/2.
pub fn rope_table(pos: usize, n_rot: usize, freq_base: f32, cs: &mut [(f32, f32)]) {
    rope_table_sections(pos, n_rot, freq_base, [0; 4], cs);
}

/// cos/sin of every rotated pair at one position with IMROPE `sections` (see the module
/// doc); all-zero sections mean plain NeoX.
pub fn rope_table_sections(
    pos: usize,
    n_rot: usize,
    freq_base: f32,
    sections: [u32; 4],
    cs: &mut [(f32, f32)],
) {
    assert_eq!(cs.len(), n_rot / 2, "rope_table: table length");
    let theta_scale = freq_base.powf(-2.0 / n_rot as f32);
    let sect_dims: u32 = sections.iter().sum();
    let mut theta = pos as f32;
    for (i, c) in cs.iter_mut().enumerate() {
        let uses_pos = sect_dims == 0 || {
            let sector = i as u32 % sect_dims;
            let k = (sector % 3) as usize;
            sector < 3 * sections[k]
        };
        // The e component is 0 for text: cosf(0) = 1, sinf(0) = 0.
        *c = if uses_pos {
            (theta.cos(), theta.sin())
        } else {
            (1.0, 0.0)
        };
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
    fn imrope_sections_leave_uncovered_pairs_unrotated() {
        // sections [2, 2, 4]: sectors 0, 3 take t, 1, 4 take h, 2, 5 take w; 6, 7 fall to e.
        let mut cs = vec![(0.0, 0.0); 8];
        rope_table_sections(5, 16, 1e4, [2, 2, 4, 0], &mut cs);
        let mut plain = vec![(0.0, 0.0); 8];
        rope_table(5, 16, 1e4, &mut plain);
        assert_eq!(&cs[..6], &plain[..6]);
        assert_eq!(&cs[6..], &[(1.0, 0.0), (1.0, 0.0)]);
        // The 27B's [11, 11, 10] covers all 32 pairs.
        let mut big = vec![(0.0, 0.0); 32];
        rope_table_sections(7, 64, 1e7, [11, 11, 10, 0], &mut big);
        let mut big_plain = vec![(0.0, 0.0); 32];
        rope_table(7, 64, 1e7, &mut big_plain);
        assert_eq!(big, big_plain);
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
