//! Every kernel against its CPU reference on fresh random data, with poisoned outputs.

use hybrid_run::gpu::{GateRows, Gpu, GpuError, QuantActs, MAX_K, MMV_FORMATS};
use simd::GgmlType;

use crate::refs::{self, rel_l2, uniform, Rng8};

/// Tolerances (relative L2 error against the f64 reference).
/// Quantized mat-vec vs an f64 product with the same 8-bit activations: f32 rounding only.
const TOL_MMVQ_SAME_ACTS: f64 = 2e-5;
/// Quantized mat-vec vs the f64 product with unquantized activations: every output within
/// the activation rounding's bound sum_c |w| |x_q - x| (refs::act_rounding_bound) plus this
/// much of the outputs' RMS for the kernel's f32 rounding. (A relative-L2 constant, 1.5e-2,
/// was used before: its expected 3e-3 .. 6e-3 held on average but a 37-row Q5_K matrix reached
/// 1.67e-2 on one seed with a correct kernel.)
const TOL_MMVQ_EXACT_SLACK: f64 = 2e-5;
/// Float weights (f32 FMA accumulation over <= a few thousand terms).
const TOL_F32_DOT: f64 = 1e-5;
/// Elementwise ops, norms, rope: a few f32 ulps.
const TOL_POINTWISE: f64 = 2e-6;
/// Recurrences and attention (longer f32 chains).
pub const TOL_SEQ: f64 = 2e-5;

pub struct Report {
    pub passed: usize,
    pub failed: usize,
}

impl Report {
    pub fn check(&mut self, name: &str, err: f64, tol: f64) {
        let ok = err <= tol; // NaN fails
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        println!(
            "{:<58} err {:>10.3e}  tol {:>8.1e}  {}",
            name,
            err,
            tol,
            if ok { "ok" } else { "FAIL" }
        );
    }

    pub fn truth(&mut self, name: &str, ok: bool, detail: &str) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        println!(
            "{:<58} {:<32} {}",
            name,
            detail,
            if ok { "ok" } else { "FAIL" }
        );
    }
}

pub type R<T> = Result<T, GpuError>;

pub fn nan_buf(gpu: &Gpu, n: usize, what: &str) -> R<hybrid_run::gpu::GpuBuf<f32>> {
    gpu.upload(&vec![f32::NAN; n], what)
}

/// Independent spec dequantizer agrees bit-for-bit with simd::dequantize_row.
pub fn dequant_references(rep: &mut Report, rng: &mut Rng8) {
    for ty in MMV_FORMATS {
        let cols = 512;
        let bytes = refs::random_weights(rng, ty, 3, cols);
        let mut a = vec![0f32; 3 * cols];
        let mut b = vec![0f32; 3 * cols];
        let rb = ty.row_bytes(cols as u64).unwrap_or(0) as usize;
        for r in 0..3 {
            refs::dequant_spec(
                ty,
                &bytes[r * rb..(r + 1) * rb],
                &mut a[r * cols..(r + 1) * cols],
            );
            simd::dequantize_row(
                ty,
                &bytes[r * rb..(r + 1) * rb],
                &mut b[r * cols..(r + 1) * cols],
            );
        }
        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
        rep.truth(
            &format!("cpu dequant spec == simd::dequantize_row {ty}"),
            same,
            "bit-exact",
        );
    }
}

pub fn matvec(
    gpu: &Gpu,
    rep: &mut Report,
    rng: &mut Rng8,
    quick: bool,
    types: &[GgmlType],
) -> R<()> {
    for &ty in types {
        let shapes: &[(usize, usize)] = match ty {
            // 515x1280 and 37x2560 are row-split on the device with HYBRID_GPU_ROW_SPLIT=1
            // (gpu::layout: 40 and 80 blocks per row), the others keep the file layout.
            GgmlType::Q8_0 => &[(37, 96), (515, 1312), (300, 96), (515, 1280), (37, 2560)],
            // 300x4096 and 2100x1024 row-split (16 and 4 blocks per row).
            GgmlType::Q6_K => &[
                (37, 512),
                (515, 1280),
                (2100, 512),
                (300, 2560),
                (300, 4096),
                (2100, 1024),
            ],
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => &[(37, 40), (515, 1000)],
            // 37x512 and 515x1280 take the split form (fewer rows than columns), 2100x512
            // the whole-row form. With the tensor cores on (sm_80+), Q4_K/Q5_K 515x1280 and
            // 300x2560 take the tensor-core kernel with 8 warps (idle warps; warps with two
            // blocks), 2100x512 with 4, 37x512 stays on the dp4a kernel (< 256 rows).
            _ => &[(37, 512), (515, 1280), (2100, 512), (300, 2560)],
        };
        let shapes = if quick { &shapes[1..] } else { shapes };
        for &(rows, cols) in shapes {
            let bytes = refs::random_weights(rng, ty, rows, cols);
            let w = gpu.upload_matrix(&format!("test.{ty}"), ty, rows, cols, &bytes)?;
            let rb = w.row_bytes;
            let mut wf = vec![0f32; rows * cols];
            for r in 0..rows {
                simd::dequantize_row(
                    ty,
                    &bytes[r * rb..(r + 1) * rb],
                    &mut wf[r * cols..(r + 1) * cols],
                );
            }
            let ks: Vec<usize> = if quick {
                vec![1, 3, 8]
            } else {
                (1..=MAX_K).collect()
            };
            let mut qa = QuantActs::new(gpu, MAX_K, cols)?;
            let mut qa1 = QuantActs::new(gpu, 1, cols)?;
            for k in ks {
                let x = uniform(rng, k * cols, -1.0, 1.0);
                let xd = gpu.upload(&x, "x")?;
                let mut out = nan_buf(gpu, k * rows, "out")?;
                if ty.is_quantized() {
                    gpu.quantize_acts(xd.view(), k, cols, &mut qa)?;
                }
                gpu.matvec(&w, xd.view(), &qa, k, out.view_mut())?;
                let got = gpu.download(out.view())?;
                let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let exact = refs::matvec_f64(&wf, rows, cols, &x64, k);
                let tc = gpu.mmvt() && matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K);
                let name = format!(
                    "matvec{} {ty} {rows}x{cols} k={k}",
                    if tc { " (tensor cores)" } else { "" }
                );
                if ty.is_quantized() {
                    let xq = refs::quantize_acts_like_gpu(&x);
                    let same = refs::matvec_f64(&wf, rows, cols, &xq, k);
                    rep.check(
                        &format!("{name} vs same 8-bit acts"),
                        rel_l2(&got, &same),
                        TOL_MMVQ_SAME_ACTS,
                    );
                    let bound = refs::act_rounding_bound(&wf, rows, cols, &x64, &xq, k);
                    rep.check(
                        &format!("{name} vs exact f32 acts (share of the rounding bound)"),
                        refs::worst_bound_ratio(&got, &exact, &bound, TOL_MMVQ_EXACT_SLACK),
                        1.0,
                    );
                } else {
                    rep.check(&name, rel_l2(&got, &exact), TOL_F32_DOT);
                }
                // Row t of the k-token call is bit-identical to a 1-token call on token t.
                if k > 1 {
                    let mut same_bits = true;
                    for t in 0..k {
                        let xt = xd.view().sub(t * cols, cols)?;
                        let mut o1 = nan_buf(gpu, rows, "out1")?;
                        if ty.is_quantized() {
                            gpu.quantize_acts(xt, 1, cols, &mut qa1)?;
                        }
                        gpu.matvec(&w, xt, &qa1, 1, o1.view_mut())?;
                        let g1 = gpu.download(o1.view())?;
                        same_bits &= g1
                            .iter()
                            .zip(&got[t * rows..(t + 1) * rows])
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                    }
                    rep.truth(
                        &format!("{name} rows == 1-token calls"),
                        same_bits,
                        "bit-identical",
                    );
                }
            }
        }
    }
    if types.len() < MMV_FORMATS.len() {
        return Ok(());
    }
    // Typed errors instead of launches on bad arguments.
    let bytes = refs::random_weights(rng, GgmlType::Q4_K, 4, 256);
    let w = gpu.upload_matrix("blk.0.ffn_up.weight", GgmlType::Q4_K, 4, 256, &bytes)?;
    let x = gpu.upload(&uniform(rng, 9 * 256, -1.0, 1.0), "x")?;
    let mut out = nan_buf(gpu, 9 * 4, "out")?;
    let qa = QuantActs::new(gpu, 9, 256)?;
    let e1 = gpu.matvec(&w, x.view(), &qa, 9, out.view_mut());
    rep.truth(
        "matvec rejects k = 9",
        matches!(e1, Err(GpuError::Shape { .. })),
        "Shape error",
    );
    let e2 = gpu.matvec(&w, x.view(), &qa, 2, out.view_mut());
    rep.truth(
        "matvec rejects unquantized activations",
        matches!(e2, Err(GpuError::Shape { .. })),
        "Shape error",
    );
    let e3 = gpu.upload_matrix("blk.7.attn_q.weight", GgmlType::Q6_K, 4, 256, &bytes);
    let named = matches!(&e3, Err(e) if e.to_string().contains("blk.7.attn_q.weight"));
    rep.truth(
        "upload_matrix with wrong size names the tensor",
        named,
        "Shape error",
    );
    Ok(())
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The fused kernels (residual add + RMSNorm + quantization, gated norm + quantization,
/// SwiGLU + quantization) against the separate kernels they replace, bit for bit: the
/// residual, the f32 output, and the quants with their scales.
pub fn fused_norms(gpu: &Gpu, rep: &mut Report, rng: &mut Rng8) -> R<()> {
    let eps = 1e-6f32;
    let quants_equal = |a: &QuantActs, b: &QuantActs| -> R<bool> {
        let (qa, da) = a.contents(gpu)?;
        let (qb, db) = b.contents(gpu)?;
        Ok(qa == qb && same_bits(&da, &db) && !qa.is_empty())
    };
    // add + rms_norm + quantize, k = 1..8 rows of 5120 and 3 rows of 96 (128 threads).
    for &(rows, n) in &[(1usize, 5120usize), (3, 5120), (MAX_K, 5120), (3, 96)] {
        let x = uniform(rng, rows * n, -2.0, 2.0);
        let mut o = uniform(rng, rows * n, -2.0, 2.0);
        o[0] = 0.0; // an exact zero and a row-long zero block stay exact
        let w = uniform(rng, n, 0.5, 1.5);
        let (od, wd) = (gpu.upload(&o, "o")?, gpu.upload(&w, "w")?);
        let (mut xa, mut xb) = (gpu.upload(&x, "x")?, gpu.upload(&x, "x")?);
        let (mut ya, mut yb) = (nan_buf(gpu, rows * n, "y")?, nan_buf(gpu, rows * n, "y")?);
        let mut qa = QuantActs::new(gpu, MAX_K, n)?;
        let mut qb = QuantActs::new(gpu, MAX_K, n)?;
        gpu.add_rms_norm(
            xa.view_mut(),
            Some(od.view()),
            wd.view(),
            ya.view_mut(),
            rows,
            n,
            eps,
            Some(&mut qa),
        )?;
        gpu.add_inplace(xb.view_mut(), od.view(), rows * n)?;
        gpu.rms_norm(xb.view(), n, wd.view(), yb.view_mut(), n, rows, n, eps)?;
        gpu.quantize_acts(yb.view(), rows, n, &mut qb)?;
        let ok = same_bits(&gpu.download(xa.view())?, &gpu.download(xb.view())?)
            && same_bits(&gpu.download(ya.view())?, &gpu.download(yb.view())?)
            && quants_equal(&qa, &qb)?;
        rep.truth(
            &format!("add_rms_norm+q8 == add, rms_norm, quantize {rows}x{n}"),
            ok,
            "bit-exact",
        );
        // Without the add (the first layer's norm) and without the quantization (the final norm).
        let mut ya2 = nan_buf(gpu, rows * n, "y")?;
        gpu.add_rms_norm(
            xb.view_mut(),
            None,
            wd.view(),
            ya2.view_mut(),
            rows,
            n,
            eps,
            None,
        )?;
        let ok = same_bits(&gpu.download(ya2.view())?, &gpu.download(yb.view())?);
        rep.truth(
            &format!("add_rms_norm (no add, no quant) == rms_norm {rows}x{n}"),
            ok,
            "bit-exact",
        );
    }
    // Gated norm + quantize: 3 tokens x 12 heads of 128, quantized as 3 rows of 1536.
    {
        let (t, heads, n) = (3usize, 12usize, 128usize);
        let rows = t * heads;
        let (x, z, w) = (
            uniform(rng, rows * n, -2.0, 2.0),
            uniform(rng, rows * n, -4.0, 4.0),
            uniform(rng, n, 0.5, 1.5),
        );
        let (xd, zd, wd) = (
            gpu.upload(&x, "x")?,
            gpu.upload(&z, "z")?,
            gpu.upload(&w, "w")?,
        );
        let (mut ya, mut yb) = (nan_buf(gpu, rows * n, "y")?, nan_buf(gpu, rows * n, "y")?);
        let mut qa = QuantActs::new(gpu, MAX_K, heads * n)?;
        let mut qb = QuantActs::new(gpu, MAX_K, heads * n)?;
        gpu.rms_norm_gated(
            xd.view(),
            wd.view(),
            GateRows::contiguous(zd.view(), n),
            ya.view_mut(),
            rows,
            n,
            eps,
            Some((&mut qa, t)),
        )?;
        gpu.rms_norm_gated(
            xd.view(),
            wd.view(),
            GateRows::contiguous(zd.view(), n),
            yb.view_mut(),
            rows,
            n,
            eps,
            None,
        )?;
        gpu.quantize_acts(yb.view(), t, heads * n, &mut qb)?;
        let ok = same_bits(&gpu.download(ya.view())?, &gpu.download(yb.view())?)
            && quants_equal(&qa, &qb)?;
        rep.truth(
            "rms_norm_gated+q8 == rms_norm_gated, quantize 3x12x128",
            ok,
            "bit-exact",
        );
    }
    // SwiGLU + quantize: 5 rows of 17408 (340 CTAs of 256 threads).
    {
        let (t, n) = (5usize, 17408usize);
        let (g, u) = (
            uniform(rng, t * n, -6.0, 6.0),
            uniform(rng, t * n, -3.0, 3.0),
        );
        let (gd, ud) = (gpu.upload(&g, "g")?, gpu.upload(&u, "u")?);
        let (mut ya, mut yb) = (nan_buf(gpu, t * n, "y")?, nan_buf(gpu, t * n, "y")?);
        let mut qa = QuantActs::new(gpu, MAX_K, n)?;
        let mut qb = QuantActs::new(gpu, MAX_K, n)?;
        gpu.swiglu_q8(
            gd.view(),
            ud.view(),
            ya.view_mut(),
            t * n,
            Some((&mut qa, t)),
        )?;
        gpu.swiglu(gd.view(), ud.view(), yb.view_mut(), t * n)?;
        gpu.quantize_acts(yb.view(), t, n, &mut qb)?;
        let ok = same_bits(&gpu.download(ya.view())?, &gpu.download(yb.view())?)
            && quants_equal(&qa, &qb)?;
        rep.truth("swiglu+q8 == swiglu, quantize 5x17408", ok, "bit-exact");
    }
    // Misuse is an error, not a wrong result: a width that is not whole 32-blocks.
    let mut qa = QuantActs::new(gpu, MAX_K, 128)?;
    let (gd, ud) = (
        gpu.upload(&[0.5f32; 100], "g")?,
        gpu.upload(&[0.5f32; 100], "u")?,
    );
    let mut yd = nan_buf(gpu, 100, "y")?;
    let e = gpu.swiglu_q8(gd.view(), ud.view(), yd.view_mut(), 100, Some((&mut qa, 1)));
    rep.truth(
        "swiglu+q8 with n % 32 != 0 is refused",
        e.is_err(),
        "Shape error",
    );
    Ok(())
}

pub fn norms_rope_elementwise(gpu: &Gpu, rep: &mut Report, rng: &mut Rng8) -> R<()> {
    let eps = 1e-6f32;
    // rms_norm, contiguous and strided (per-head q norm reading the q|gate projection).
    for &(rows, n, xs, ys) in &[
        (5usize, 5120usize, 5120usize, 5120usize),
        (7, 100, 100, 100),
        (12, 256, 512, 256),
    ] {
        let x = uniform(rng, rows * xs, -2.0, 2.0);
        let w = uniform(rng, n, 0.5, 1.5);
        let (xd, wd) = (gpu.upload(&x, "x")?, gpu.upload(&w, "w")?);
        let mut yd = nan_buf(gpu, rows * ys, "y")?;
        gpu.rms_norm(xd.view(), xs, wd.view(), yd.view_mut(), ys, rows, n, eps)?;
        let got = gpu.download(yd.view())?;
        let (mut g, mut want) = (Vec::new(), Vec::new());
        for r in 0..rows {
            want.extend(refs::rms_norm(&x[r * xs..r * xs + n], &w, eps));
            g.extend_from_slice(&got[r * ys..r * ys + n]);
        }
        rep.check(
            &format!("rms_norm rows={rows} n={n} stride={xs}"),
            rel_l2(&g, &want),
            TOL_POINTWISE,
        );
    }
    // rms_norm_gated (GDN output): 3 tokens x 12 heads of 128, the gates contiguous and as
    // columns of wider token rows (the stacked z|beta|alpha projection).
    for &(heads, stride) in &[(1usize, 128usize), (12, 12 * 128 + 96)] {
        let (rows, n) = (36, 128);
        let zr = |r: usize| (r / heads) * stride + (r % heads) * n;
        let (x, z, w) = (
            uniform(rng, rows * n, -2.0, 2.0),
            uniform(rng, rows / heads * stride, -4.0, 4.0),
            uniform(rng, n, 0.5, 1.5),
        );
        let (xd, zd, wd) = (
            gpu.upload(&x, "x")?,
            gpu.upload(&z, "z")?,
            gpu.upload(&w, "w")?,
        );
        let mut yd = nan_buf(gpu, rows * n, "y")?;
        let gates = GateRows {
            v: zd.view(),
            heads,
            stride,
        };
        gpu.rms_norm_gated(
            xd.view(),
            wd.view(),
            gates,
            yd.view_mut(),
            rows,
            n,
            eps,
            None,
        )?;
        let got = gpu.download(yd.view())?;
        let mut want = Vec::new();
        for r in 0..rows {
            let nr = refs::rms_norm(&x[r * n..(r + 1) * n], &w, eps);
            want.extend(
                nr.iter()
                    .zip(&z[zr(r)..zr(r) + n])
                    .map(|(v, &zz)| v * refs::silu(zz as f64)),
            );
        }
        rep.check(
            &format!("rms_norm_gated rows=36 n=128 gate stride {stride}"),
            rel_l2(&got, &want),
            TOL_POINTWISE,
        );
    }
    // RoPE: NeoX over the first 64 of 256 dims, theta stepped in f32 like the CPU.
    for &pos0 in &[0usize, 1000, 200_000] {
        let (nt, nh, hd, nr, base) = (3usize, 5usize, 256usize, 64usize, 1e7f32);
        let x = uniform(rng, nt * nh * hd, -1.0, 1.0);
        let mut xd = gpu.upload(&x, "x")?;
        // The position is read from device memory (as in a replayed CUDA graph); the kernel
        // adds the offset, so half of it goes through each.
        let slot = gpu.upload(&[(pos0 - pos0 / 2) as i32], "position")?;
        let pos = hybrid_run::gpu::DevPos::new(slot.view(), pos0 - pos0 / 2).offset(pos0 / 2);
        gpu.rope_neox(xd.view_mut(), nt, nh, hd, nr, pos, base)?;
        let got = gpu.download(xd.view())?;
        let ts = base.powf(-2.0 / nr as f32);
        let mut want: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for t in 0..nt {
            for hh in 0..nh {
                let o = (t * nh + hh) * hd;
                let mut theta = (pos0 + t) as f32;
                for i in 0..nr / 2 {
                    let (c, s) = ((theta as f64).cos(), (theta as f64).sin());
                    let (x0, x1) = (x[o + i] as f64, x[o + i + nr / 2] as f64);
                    want[o + i] = x0 * c - x1 * s;
                    want[o + i + nr / 2] = x0 * s + x1 * c;
                    theta *= ts;
                }
            }
        }
        rep.check(
            &format!("rope_neox pos0={pos0} n_rot=64 of 256"),
            rel_l2(&got, &want),
            TOL_POINTWISE,
        );
    }
    // add, add_inplace, swiglu on an odd length.
    let n = 100_003;
    let (a, b) = (uniform(rng, n, -3.0, 3.0), uniform(rng, n, -3.0, 3.0));
    let (ad, bd) = (gpu.upload(&a, "a")?, gpu.upload(&b, "b")?);
    let mut yd = nan_buf(gpu, n, "y")?;
    gpu.add(ad.view(), bd.view(), yd.view_mut(), n)?;
    let want: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| x as f64 + y as f64)
        .collect();
    rep.check(
        "add n=100003",
        rel_l2(&gpu.download(yd.view())?, &want),
        TOL_POINTWISE,
    );
    let mut acc = gpu.upload(&a, "acc")?;
    gpu.add_inplace(acc.view_mut(), bd.view(), n)?;
    rep.check(
        "add_inplace n=100003",
        rel_l2(&gpu.download(acc.view())?, &want),
        TOL_POINTWISE,
    );
    let mut yd = nan_buf(gpu, n, "y")?;
    gpu.swiglu(ad.view(), bd.view(), yd.view_mut(), n)?;
    let want: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(&g, &u)| refs::silu(g as f64) * u as f64)
        .collect();
    rep.check(
        "swiglu n=100003",
        rel_l2(&gpu.download(yd.view())?, &want),
        TOL_POINTWISE,
    );
    // sigmoid gate reading the gate half of an interleaved q|gate buffer.
    {
        let (rows, hd) = (7usize, 256usize);
        let (o, qg) = (
            uniform(rng, rows * hd, -2.0, 2.0),
            uniform(rng, rows * 2 * hd, -6.0, 6.0),
        );
        let (mut od, qgd) = (gpu.upload(&o, "o")?, gpu.upload(&qg, "qg")?);
        gpu.sigmoid_gate(
            od.view_mut(),
            qgd.view().sub(hd, rows * 2 * hd - hd)?,
            rows,
            hd,
            2 * hd,
        )?;
        let want: Vec<f64> = (0..rows * hd)
            .map(|i| o[i] as f64 * refs::sigmoid(qg[(i / hd) * 2 * hd + hd + i % hd] as f64))
            .collect();
        rep.check(
            "sigmoid_gate rows=7 n=256 stride=512",
            rel_l2(&gpu.download(od.view())?, &want),
            TOL_POINTWISE,
        );
    }
    Ok(())
}

pub fn argmax(gpu: &Gpu, rep: &mut Report, rng: &mut Rng8) -> R<()> {
    let (nt, n) = (4usize, 248_327usize);
    let mut x = uniform(rng, nt * n, -10.0, 10.0);
    // token 1: two equal maxima, the lower index must win.
    x[n + 200_000] = 50.0;
    x[n + 77_777] = 50.0;
    // token 2: NaN first, then a maximum; NaN never wins.
    x[2 * n] = f32::NAN;
    x[2 * n + 5] = f32::NAN;
    x[2 * n + 123_456] = 40.0;
    // token 3: all equal: index 0.
    for v in &mut x[3 * n..] {
        *v = 0.5;
    }
    let xd = gpu.upload(&x, "logits")?;
    let mut idx = gpu.upload(&vec![-7i32; nt], "idx")?;
    let mut val = nan_buf(gpu, nt, "val")?;
    gpu.argmax(xd.view(), nt, n, idx.view_mut(), val.view_mut())?;
    let (gi, gv) = (gpu.download(idx.view())?, gpu.download(val.view())?);
    let mut ok = true;
    for t in 0..nt {
        let row = &x[t * n..(t + 1) * n];
        let (mut bi, mut bv) = (usize::MAX, f32::NEG_INFINITY);
        for (i, &v) in row.iter().enumerate() {
            if !v.is_nan() && (bi == usize::MAX || v > bv) {
                bi = i;
                bv = v;
            }
        }
        ok &= gi[t] as usize == bi && gv[t] == bv;
    }
    rep.truth(
        "argmax 4 x 248327 (ties -> lowest id, NaN skipped)",
        ok,
        &format!("{gi:?}"),
    );
    Ok(())
}

/// The PCIe share's exact mat-vecs (`cuda/exact.cu`) give the CPU kernels' bits: from device
/// memory (every row, NaN-poisoned output) and through `PcieShare` from registered host
/// memory (the first rows), Q4_K and Q6_K, k = 1..=8, with an all-ones block (every nibble
/// 15, every scale at its maximum) in row 0.
pub fn exact_share(gpu: &Gpu, rep: &mut Report, rng: &mut Rng8, quick: bool) -> R<()> {
    use hybrid_run::gpu::share::{self, PcieShare, ShareKind, SharedMat};
    if !gpu.has_exact() {
        rep.truth("exact mat-vec kernels loaded", false, "module missing");
        return Ok(());
    }
    let pool = simd::Pool::new(2);
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
        let shapes: &[(usize, usize)] = if quick {
            &[(200, 1280)]
        } else {
            &[(37, 256), (200, 1280), (131, 5120)]
        };
        for &(rows, cols) in shapes {
            let mut bytes = refs::random_weights(rng, ty, rows, cols);
            let bb = ty.block_bytes();
            bytes[..bb].fill(0xFF);
            let d = half::f16::from_f32(0.004).to_bits().to_le_bytes();
            // Finite super-scales (0xFFFF is an f16 NaN, whose payload x86 and CUDA
            // propagate differently).
            match ty {
                GgmlType::Q4_K => {
                    bytes[0..2].copy_from_slice(&d);
                    bytes[2..4]
                        .copy_from_slice(&half::f16::from_f32(0.002).to_bits().to_le_bytes());
                }
                _ => bytes[208..210].copy_from_slice(&d),
            }
            // The kernels stage blocks in whole 4-byte words and may read up to 3 bytes past
            // a block (cuda/exact.cu): the device copy gets that tail, as registered host
            // ranges (whole pages) have it.
            let row_bytes = ty.row_bytes(cols as u64).unwrap_or(0) as usize;
            let mut padded = bytes.clone();
            padded.extend_from_slice(&[0; 4]);
            let w = gpu.upload(&padded, "exact weights")?;
            let ks: Vec<usize> = if quick {
                vec![1, 4, 8]
            } else {
                (1..=MAX_K).collect()
            };
            let m = simd::MatRef {
                ty,
                data: &bytes,
                rows,
                cols,
            };
            for &k in &ks {
                let x = uniform(rng, k * cols, -2.0, 2.0);
                let mut want = vec![0f32; k * rows];
                pool.matmul(m, &x, k, &mut want);
                let mut acts = simd::QuantizedActs::new();
                acts.quantize(ty, &x, k, cols);
                // Device-resident weights, every row.
                let (q8, d8, bs) = acts.q8_k_all().unwrap_or((&[], &[], &[]));
                let (q8, d8, bs) = (
                    gpu.upload(q8, "q8")?,
                    gpu.upload(d8, "d")?,
                    gpu.upload(bs, "bsums")?,
                );
                let ex = share::ExactActs::new(q8.view(), d8.view(), bs.view());
                let mut out = nan_buf(gpu, k * rows, "exact out")?;
                gpu.mmv_exact(
                    ty,
                    w.view().device_ptr(),
                    row_bytes,
                    rows,
                    cols / 256,
                    &ex,
                    k,
                    &mut out.view_mut(),
                    rows,
                )?;
                let got = gpu.download(out.view())?;
                let bad = got
                    .iter()
                    .zip(&want)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                rep.truth(
                    &format!("exact mmv {ty} {rows}x{cols} k={k} (device) == CPU"),
                    bad == 0,
                    &format!("{bad} of {} differ", k * rows),
                );
            }
            // Through the share: weights in registered host memory, the first rows.
            let share_rows = rows.min(128);
            let region = share::register_all(gpu, &[&bytes])?;
            let mut sh = PcieShare::new(gpu, region, 1, cols, rows)?;
            let mat = SharedMat {
                ty,
                rows,
                cols,
                w: sh.device_ptr(&bytes).ok_or_else(|| GpuError::Shape {
                    op: "exact_share",
                    msg: "registered range does not hold the matrix".into(),
                })?,
            };
            for &k in &ks {
                let x = uniform(rng, k * cols, -2.0, 2.0);
                let mut want = vec![0f32; k * rows];
                // The CPU computes rows share_rows.. while the GPU does the rest.
                let mut launched = Ok(());
                pool.matmul_from(m, &x, k, &mut want, share_rows, &mut |acts| {
                    launched = sh.launch(gpu, acts, &[mat, mat], share_rows, k);
                });
                launched?;
                let got = sh
                    .finish(ShareKind::Down, rows - share_rows, 1e-3)?
                    .to_vec();
                let mut full = vec![0f32; k * rows];
                pool.matmul(m, &x, k, &mut full);
                let mut bad = 0;
                for t in 0..k {
                    for r in 0..share_rows {
                        let f = full[t * rows + r].to_bits();
                        // Both copies of the matrix (j = 0, 1) and the CPU's own rows.
                        bad += (got[t * share_rows + r].to_bits() != f) as usize;
                        bad += (got[(k + t) * share_rows + r].to_bits() != f) as usize;
                    }
                    for r in share_rows..rows {
                        bad +=
                            (want[t * rows + r].to_bits() != full[t * rows + r].to_bits()) as usize;
                    }
                }
                rep.truth(
                    &format!("PCIe share {ty} {share_rows}/{rows}x{cols} k={k} == CPU"),
                    bad == 0,
                    &format!("{bad} differ"),
                );
            }
            drop(sh);
        }
    }
    Ok(())
}

/// The row-split device layouts (`gpu::layout`, Q6_K and Q8_0): mat-vec outputs for every k
/// and the f16 dequantization bit-identical to the same matrix uploaded in the file layout,
/// in the whole-row and the split (wide) kernel forms.
pub fn row_split_layouts(gpu: &Gpu, rep: &mut Report, rng: &mut Rng8, quick: bool) -> R<()> {
    for (ty, rows, cols) in [
        (GgmlType::Q6_K, 515, 1024),
        (GgmlType::Q6_K, 37, 4096),
        (GgmlType::Q8_0, 515, 1280),
        (GgmlType::Q8_0, 37, 2560),
    ] {
        let bytes = refs::random_weights(rng, ty, rows, cols);
        let file = gpu.upload_matrix_as("test.file", ty, rows, cols, &bytes, false)?;
        let split = gpu.upload_matrix_as("test.split", ty, rows, cols, &bytes, true)?;
        let ks: Vec<usize> = if quick {
            vec![1, 4, 8]
        } else {
            (1..=MAX_K).collect()
        };
        let mut qa = QuantActs::new(gpu, MAX_K, cols)?;
        let mut same = true;
        for &k in &ks {
            let x = uniform(rng, k * cols, -1.0, 1.0);
            let xd = gpu.upload(&x, "x")?;
            gpu.quantize_acts(xd.view(), k, cols, &mut qa)?;
            let mut a = nan_buf(gpu, k * rows, "out file")?;
            let mut b = nan_buf(gpu, k * rows, "out split")?;
            gpu.matvec(&file, xd.view(), &qa, k, a.view_mut())?;
            gpu.matvec(&split, xd.view(), &qa, k, b.view_mut())?;
            let (a, b) = (gpu.download(a.view())?, gpu.download(b.view())?);
            same &= a.iter().all(|v| v.is_finite())
                && a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
        }
        rep.truth(
            &format!("matvec {ty} {rows}x{cols} row-split == file layout, k in {ks:?}"),
            same,
            "bit-identical",
        );
        if gpu.has_dequant() {
            let mut a = gpu.alloc_zeros::<u16>(rows * cols, "f16 file")?;
            let mut b = gpu.alloc_zeros::<u16>(rows * cols, "f16 split")?;
            gpu.dequant_f16(&file, a.view_mut())?;
            gpu.dequant_f16(&split, b.view_mut())?;
            let (a, b) = (gpu.download(a.view())?, gpu.download(b.view())?);
            rep.truth(
                &format!("dequant_f16 {ty} {rows}x{cols} row-split == file layout"),
                a == b && a.iter().any(|&v| v != 0),
                "bit-identical",
            );
        }
    }
    // A matrix the layout does not fit is refused with its name.
    let bytes = refs::random_weights(rng, GgmlType::Q6_K, 4, 512);
    let e = gpu.upload_matrix_as(
        "blk.3.ffn_down.weight",
        GgmlType::Q6_K,
        4,
        512,
        &bytes,
        true,
    );
    rep.truth(
        "row-split upload of a 2-block Q6_K row is refused, naming the tensor",
        matches!(&e, Err(err) if err.to_string().contains("blk.3.ffn_down.weight")),
        "error",
    );
    Ok(())
}
