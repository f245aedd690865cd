//! Every weight matrix of a model, one mat-vec each (3 tokens of fresh values), four ways:
//! the exact f64 product, the CPU `simd` kernel, an f64 emulation of the GPU's activation
//! quantization (8 bits per 32 values, f32 `d = amax/127`, round half away from zero), and
//! the GPU kernel. Separates "the GPU kernel is wrong" (GPU vs its emulation) from "the two
//! backends quantize activations differently" (CPU vs GPU).

use hybrid_run::gguf::{GgmlType, GgufFile};
use hybrid_run::gpu::{Gpu, QuantActs};
use hybrid_run::simd::{MatRef, Pool};

use crate::{model_name, tokens, Report, R};

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        num += (x - y) * (x - y);
        den += y * y;
    }
    (num / den.max(1e-300)).sqrt()
}

/// GPU-style 8-bit quantization of one row (`quantize_q8_1` in cuda/mmvq.cu), dequantized.
fn gpu_quant(x: &[f32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for b in x.chunks(32) {
        let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        for &v in b {
            let q = if amax == 0.0 { 0.0 } else { (v / d).round() };
            out.push(q as f64 * d as f64);
        }
    }
    out
}

/// Largest relative L2 error of the GPU mat-vec against the CPU `simd` mat-vec, by format.
/// Q8_0: the same 8-bit quants on both sides; only the CPU's f16 rounding of each block
/// scale differs (<= 2^-12 relative per block). K-quants: the CPU quantizes per 256 values
/// (Q8_K), the GPU per 32, two independent ~0.4% roundings. Float weights: f32 sums.
fn tol(ty: GgmlType) -> f64 {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1e-5,
        GgmlType::Q8_0 => 1e-3,
        _ => 1.5e-2,
    }
}

pub fn check(path: &std::path::Path, gpu: Option<&Gpu>, threads: usize, rep: &mut Report) -> R<()> {
    let file = GgufFile::open(path)?;
    let pool = Pool::new(threads);
    let name = model_name(path);
    let k = 3;
    for (i, info) in file.tensors().iter().enumerate() {
        if info.dims.len() != 2 || info.ty == GgmlType::F32 && info.dims[1] < 2 {
            continue;
        }
        let Some(v) = file.view(info) else { continue };
        let (rows, cols) = (info.rows() as usize, info.row_len() as usize);
        // The token embedding is never multiplied; big tables are sampled by 64 rows.
        if info.name.starts_with("token_embd") {
            continue;
        }
        let rows_used = rows.min(64);
        let rb = info.ty.row_bytes(cols as u64).unwrap_or(0) as usize;
        let data = &v.data[..rows_used * rb];
        let mut wf = vec![0f32; rows_used * cols];
        for r in 0..rows_used {
            hybrid_run::simd::dequantize_row(
                info.ty,
                &data[r * rb..(r + 1) * rb],
                &mut wf[r * cols..(r + 1) * cols],
            );
        }
        let x: Vec<f32> = tokens(k * cols, 1 << 16, 100 + i as u64)
            .iter()
            .map(|&t| (t as f32 / 32768.0 - 1.0) * 2.0)
            .collect();
        let m = MatRef {
            ty: info.ty,
            data,
            rows: rows_used,
            cols,
        };
        let mut cpu = vec![0f32; k * rows_used];
        pool.matmul(m, &x, k, &mut cpu);
        let mut exact = vec![0f64; k * rows_used];
        let mut emu = vec![0f64; k * rows_used];
        for t in 0..k {
            let xt = &x[t * cols..(t + 1) * cols];
            let xq = gpu_quant(xt);
            for r in 0..rows_used {
                let w = &wf[r * cols..(r + 1) * cols];
                exact[t * rows_used + r] =
                    w.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum();
                emu[t * rows_used + r] = if info.ty.is_quantized() {
                    w.iter().zip(&xq).map(|(&a, &b)| a as f64 * b).sum()
                } else {
                    exact[t * rows_used + r]
                };
            }
        }
        let cpu64: Vec<f64> = cpu.iter().map(|&v| v as f64).collect();
        let (e_cpu, e_emu, e_cpu_emu) = (rel(&cpu64, &exact), rel(&emu, &exact), rel(&cpu64, &emu));
        let e_gpu = match gpu {
            Some(g) => {
                let wm = g.upload_matrix(&info.name, info.ty, rows_used, cols, data)?;
                let xd = g.upload(&x, "x")?;
                let mut qa = QuantActs::new(g, k, cols)?;
                if info.ty.is_quantized() {
                    g.quantize_acts(xd.view(), k, cols, &mut qa)?;
                }
                let mut od = g.alloc_zeros::<f32>(k * rows_used, "out")?;
                g.matvec(&wm, xd.view(), &qa, k, od.view_mut())?;
                let got: Vec<f64> = g.download(od.view())?.iter().map(|&v| v as f64).collect();
                let (a, b) = (rel(&got, &emu), rel(&got, &cpu64));
                rep.check(
                    &format!("{name}: {} GPU vs its f64 emulation", info.name),
                    a,
                    2e-5,
                );
                rep.check(
                    &format!("{name}: {} GPU vs CPU simd", info.name),
                    b,
                    tol(info.ty),
                );
                b
            }
            None => f64::NAN,
        };
        println!(
            "matvec {:<28} {:>5} {:>6}x{:<6} cpu-exact {:.2e} gpuemu-exact {:.2e} cpu-gpuemu {:.2e} gpu-cpu {:.2e}",
            info.name, info.ty.to_string(), rows_used, cols, e_cpu, e_emu, e_cpu_emu, e_gpu
        );
    }
    Ok(())
}
