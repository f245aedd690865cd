//! --bench: mat-vec at 27B FFN shapes against a device-to-device copy measured in the same run.

use hybrid_run::gpu::{Gpu, GpuMatrix, QuantActs};
use simd::GgmlType;

use crate::checks::R;
use crate::refs::{self, uniform, Rng8};
use simd::prof::median;

/// Median seconds per call of `f` (called `per` times between two events), over `reps`.
fn time(gpu: &Gpu, reps: usize, per: usize, mut f: impl FnMut(usize) -> R<()>) -> R<f64> {
    for i in 0..per {
        f(i)?; // warm-up
    }
    gpu.synchronize()?;
    let mut ts = Vec::new();
    for _ in 0..reps {
        let a = gpu.record_event()?;
        for i in 0..per {
            f(i)?;
        }
        let b = gpu.record_event()?;
        b.synchronize()
            .map_err(|e| hybrid_run::gpu::GpuError::Driver {
                what: "timing".into(),
                source: e,
            })?;
        let ms = a
            .elapsed_ms(&b)
            .map_err(|e| hybrid_run::gpu::GpuError::Driver {
                what: "timing".into(),
                source: e,
            })?;
        ts.push(ms as f64 / 1e3 / per as f64);
    }
    Ok(median(ts))
}

pub fn run(gpu: &Gpu, rng: &mut Rng8, types: &[GgmlType]) -> R<()> {
    // Copy bandwidth: 1 GiB device-to-device, counting bytes read + written.
    let n = 1usize << 30;
    let src = gpu.upload(&vec![0x5au8; n], "copy source")?;
    let mut dst = gpu.alloc_zeros::<u8>(n, "copy destination")?;
    let t_copy = time(gpu, 7, 5, |_| {
        gpu.copy_bytes(src.view(), &mut dst.view_mut())
    })?;
    let copy_bw = 2.0 * n as f64 / t_copy;
    drop((src, dst));
    println!(
        "\nbench: device-to-device copy of 1 GiB: {:.3} ms, {:.0} GB/s (read + write)",
        t_copy * 1e3,
        copy_bw / 1e9
    );
    println!(
        "bench: {:<6} {:>12} {:>3} {:>10} {:>9} {:>8} {:>8}",
        "type", "rows x cols", "k", "us/call", "GB/s", "of copy", "T(k)/T1"
    );
    let mut rows_out = Vec::new();
    for &ty in types {
        for (rows, cols) in [(17408usize, 5120usize), (5120, 17408)] {
            let bytes = refs::random_weights(rng, ty, rows, cols);
            // Enough copies of the matrix that one pass over them overflows L2 several times.
            let copies = (400usize << 20).div_ceil(bytes.len()).max(2);
            let ws: Vec<GpuMatrix> = (0..copies)
                .map(|i| gpu.upload_matrix(&format!("bench.{ty}.{i}"), ty, rows, cols, &bytes))
                .collect::<R<_>>()?;
            let mut t1 = 0.0;
            for k in [1usize, 2, 4, 8] {
                let x = gpu.upload(&uniform(rng, k * cols, -1.0, 1.0), "x")?;
                let mut qa = QuantActs::new(gpu, k, cols)?;
                gpu.quantize_acts(x.view(), k, cols, &mut qa)?;
                let mut out = gpu.alloc_zeros::<f32>(k * rows, "out")?;
                let t = time(gpu, 9, 2 * copies, |i| {
                    gpu.matvec(&ws[i % copies], x.view(), &qa, k, out.view_mut())
                })?;
                if k == 1 {
                    t1 = t;
                }
                let bw = bytes.len() as f64 / t;
                println!(
                    "bench: {:<6} {:>12} {:>3} {:>10.1} {:>9.0} {:>7.1}% {:>8.2}",
                    ty.to_string(),
                    format!("{rows}x{cols}"),
                    k,
                    t * 1e6,
                    bw / 1e9,
                    100.0 * bw / copy_bw,
                    t / t1
                );
                rows_out.push((ty, rows, cols, k, t, bw));
            }
        }
    }
    // Activation quantization, the one extra launch per input vector.
    let x = gpu.upload(&uniform(rng, 8 * 17408, -1.0, 1.0), "x")?;
    let mut qa = QuantActs::new(gpu, 8, 17408)?;
    let tq = time(gpu, 9, 20, |_| {
        gpu.quantize_acts(x.view(), 8, 17408, &mut qa)
    })?;
    println!("bench: quantize_acts 8 x 17408: {:.1} us", tq * 1e6);
    Ok(())
}
