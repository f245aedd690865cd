//! gpu-check: every CUDA kernel of hybrid-run against a CPU reference on fresh random data,
//! then (with --bench) mat-vec timings at the 27B FFN shapes.
//!
//! Usage: gpu-check [--quick] [--bench [--bench-only] [--bench-types Q4_K,Q6_K,...]] [--seed N]
//! (`--bench-only` skips the checks: for timing kernel variants given by HYBRID_CUDA_SRC_DIR.)
//! Without a CUDA device it prints "skipped: no CUDA device (...)" and exits 0, so CI (no
//! GPU) runs it as a passing test. Outputs are filled with NaN before every launch, so an
//! element a kernel failed to write shows up as an error. Exit status 1 if any check fails.

mod bench;
mod checks;
mod refs;
mod sequence;

use std::time::Instant;

use hybrid_run::gpu::{Gpu, GpuError};
use rand::SeedableRng;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let bench = args.iter().any(|a| a == "--bench");
    let bench_only = args.iter().any(|a| a == "--bench-only");
    let bench_types: Vec<simd::GgmlType> = match args.iter().position(|a| a == "--bench-types") {
        Some(i) => {
            let list = args.get(i + 1).map(String::as_str).unwrap_or("");
            let parsed: Result<Vec<_>, _> = list.split(',').map(str::parse).collect();
            match parsed {
                Ok(v) => v,
                Err(e) => {
                    println!("gpu-check: --bench-types {list:?}: {e}");
                    std::process::exit(2);
                }
            }
        }
        None => vec![
            simd::GgmlType::Q4_K,
            simd::GgmlType::Q6_K,
            simd::GgmlType::Q8_0,
        ],
    };
    let seed = args
        .iter()
        .position(|a| a == "--seed")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    hybrid_run::logging::init();
    if let Some(i) = args.iter().position(|a| a == "--compile-only") {
        // --compile-only 90,89,...: NVRTC-compile every module for these archs, no device.
        let archs = args
            .get(i + 1)
            .cloned()
            .unwrap_or_else(|| "75,80,86,89,90,120".into());
        let mut failed = 0;
        for a in archs.split(',') {
            let v: i32 = a.trim().parse().unwrap_or(0);
            for k in hybrid_run::gpu::Kernel::ALL {
                match hybrid_run::gpu::compile_only(k, (v / 10, v % 10)) {
                    Ok(n) => println!("compile sm_{v} {:<12} {n} bytes", k.name()),
                    Err(e) => {
                        println!("compile sm_{v} {:<12} FAILED: {e}", k.name());
                        failed += 1;
                    }
                }
            }
        }
        println!(
            "{} passed, {failed} failed",
            archs.split(',').count() * hybrid_run::gpu::Kernel::ALL.len() - failed
        );
        std::process::exit(if failed > 0 { 1 } else { 0 });
    }
    let t0 = Instant::now();
    let mut gpu = match Gpu::new(0) {
        Ok(g) => g,
        Err(GpuError::NoDevice(why)) => {
            println!("skipped: no CUDA device ({why})");
            println!("0 passed, 0 failed, 1 skipped");
            return;
        }
        Err(e) => {
            println!("gpu-check: could not start the GPU: {e}");
            println!("0 passed, 1 failed");
            std::process::exit(1);
        }
    };
    let info = gpu.info();
    let ls = gpu.load_stats();
    println!(
        "device: {} sm_{}{}, {} SMs, {:.1} GiB, driver {}, NVRTC {}.{}; start {:.0} ms (modules: {} compiled, {} from cache)",
        info.name,
        info.cc.0,
        info.cc.1,
        info.sm_count,
        info.total_mem as f64 / (1u64 << 30) as f64,
        info.driver_version,
        info.nvrtc_version.0,
        info.nvrtc_version.1,
        t0.elapsed().as_secs_f64() * 1e3,
        ls.compiled,
        ls.cached
    );
    println!("seed: {seed} (rerun with --seed {seed})");
    let mut rng = refs::Rng8::seed_from_u64(seed);
    let mut rep = checks::Report {
        passed: 0,
        failed: 0,
    };
    if !bench_only {
        checks::dequant_references(&mut rep, &mut rng);
    }
    let r = (|| -> Result<(), GpuError> {
        if bench_only {
            return Ok(());
        }
        checks::matvec(
            &gpu,
            &mut rep,
            &mut rng,
            quick,
            &hybrid_run::gpu::MMV_FORMATS,
        )?;
        // The Q4_K/Q5_K mat-vecs in the mode the run does not use by default (tensor cores on
        // sm_80+, or the dp4a kernels when HYBRID_MMV_MMA=1), then back.
        let default_mmvt = gpu.mmvt();
        gpu.set_mmvt(!default_mmvt);
        if gpu.mmvt() != default_mmvt {
            let types = [simd::GgmlType::Q4_K, simd::GgmlType::Q5_K];
            checks::matvec(&gpu, &mut rep, &mut rng, quick, &types)?;
        }
        gpu.set_mmvt(default_mmvt);
        checks::row_split_layouts(&gpu, &mut rep, &mut rng, quick)?;
        checks::exact_share(&gpu, &mut rep, &mut rng, quick)?;
        checks::norms_rope_elementwise(&gpu, &mut rep, &mut rng)?;
        checks::fused_norms(&gpu, &mut rep, &mut rng)?;
        checks::argmax(&gpu, &mut rep, &mut rng)?;
        sequence::gdn_conv(&gpu, &mut rep, &mut rng)?;
        sequence::gdn_recurrence(&gpu, &mut rep, &mut rng)?;
        sequence::attention(&gpu, &mut rep, &mut rng, quick)?;
        gpu.synchronize()
    })();
    if let Err(e) = r {
        println!("gpu-check: error: {e}");
        rep.failed += 1;
    }
    if bench && rep.failed == 0 {
        if let Err(e) = bench::run(&gpu, &mut rng, &bench_types) {
            println!("gpu-check: bench error: {e}");
            rep.failed += 1;
        }
    }
    println!("{} passed, {} failed", rep.passed, rep.failed);
    if rep.failed > 0 {
        std::process::exit(1);
    }
}
