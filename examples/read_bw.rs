//! The pool's sequential read bandwidth over 4 KiB pages (a Vec) and over transparent huge
//! pages (an anonymous map advised MADV_HUGEPAGE): `read_bw [THREADS] [MiB] [REPS]`.
fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let threads: usize = a.get(1).map_or(Ok(2), |s| s.parse())?;
    let mib: usize = a.get(2).map_or(Ok(1024), |s| s.parse())?;
    let reps: usize = a.get(3).map_or(Ok(7), |s| s.parse())?;
    let pool = simd::Pool::new(threads);
    let words = (mib << 20) / 8;
    let v: Vec<u64> = (0..words as u64).collect();
    let small = pool.read_bandwidth(&v, reps) / 1e9;
    drop(v);
    let mut m = memmap2::MmapMut::map_anon(words * 8)?;
    #[cfg(target_os = "linux")]
    m.advise(memmap2::Advice::HugePage)?;
    let w: &mut [u64] = bytemuck::cast_slice_mut(&mut m[..]);
    for (i, x) in w.iter_mut().enumerate() {
        *x = i as u64;
    }
    let huge = pool.read_bandwidth(w, reps) / 1e9;
    println!(
        "{threads} threads, {mib} MiB: 4 KiB pages {small:.1} GB/s, huge pages {huge:.1} GB/s"
    );
    Ok(())
}
