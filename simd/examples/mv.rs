//! EXPERIMENT: `mv TYPE ROWS COLS THREADS TOTAL_MB REPS [HUGE]` — Pool::matmul k=1 over copies of
//! one matrix cycling through TOTAL_MB (small = cache-resident), median GB/s.
use std::time::Instant;
use simd::{GgmlType, MatRef, Pool};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let ty = match a[1].as_str() { "q4" => GgmlType::Q4_K, "q6" => GgmlType::Q6_K, _ => panic!() };
    let rows: usize = a[2].parse().unwrap();
    let cols: usize = a[3].parse().unwrap();
    let threads: usize = a[4].parse().unwrap();
    let total: usize = a[5].parse::<usize>().unwrap() << 20;
    let reps: usize = a[6].parse().unwrap();
    let huge = a.get(7).is_some();
    let bb = if ty == GgmlType::Q4_K { 144 } else { 210 };
    let mb = rows * cols / 256 * bb;
    let copies = total.div_ceil(mb).max(1);
    let mut all = vec![0u8; copies * mb + (4 << 20)];
    let off = (4096 - (all.as_ptr() as usize % 4096)) % 4096;
    if huge {
        #[cfg(target_os = "linux")]
        unsafe {
            extern "C" { fn madvise(p: *mut u8, l: usize, a: i32) -> i32; }
            let p = all.as_mut_ptr() as usize;
            let p2 = (p + (2 << 20) - 1) & !((2 << 20) - 1);
            let r = madvise(p2 as *mut u8, (all.len() - (p2 - p)) & !((2 << 20) - 1), 14);
            eprintln!("madvise -> {r}");
        }
    }
    let mut s = 0x12345u64;
    for (i, b) in all.iter_mut().enumerate() {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *b = (s >> 33) as u8;
        if ty == GgmlType::Q4_K && (i - 0) % bb < 4 && i % bb % 2 == 1 { *b = 0x1c; }
        if ty == GgmlType::Q6_K && i % bb == 209 { *b = 0x1c; }
    }
    let data = &all[off..off + copies * mb];
    let pool = Pool::new(threads);
    let x: Vec<f32> = (0..cols).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3).collect();
    let mut out = vec![0.0f32; rows];
    let mut times = Vec::new();
    for rep in 0..reps + copies {
        let c = rep % copies;
        let w = MatRef { ty, data: &data[c * mb..(c + 1) * mb], rows, cols };
        let t = Instant::now();
        pool.matmul(w, &x, 1, &mut out);
        if rep >= copies.min(3) { times.push(t.elapsed().as_secs_f64()); }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let m = times[times.len() / 2];
    println!("{} {}x{} t{} set {} MB: {:.1} us, {:.2} GB/s, {:.2} ns/block/thread", a[1], rows, cols, threads, total >> 20, m * 1e6, mb as f64 / m / 1e9, m * 1e9 * threads as f64 / (rows * cols / 256) as f64);
    std::hint::black_box(&out);
}
