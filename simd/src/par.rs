//! Safe data-parallel loops over disjoint chunks on the persistent [`Pool`]: the per-head
//! loops of the GDN recurrence and attention use these.

use crate::pool::Pool;

/// A raw pointer that may cross to the pool's threads; every use below hands each thread
/// chunks no other thread touches.
struct SharedMut<T>(*mut T);
// SAFETY: only used to rebuild disjoint sub-slices of a `&mut [T]` with `T: Send`, one chunk
// per thread, while the caller's exclusive borrow is held for the whole `Pool::run`.
unsafe impl<T: Send> Sync for SharedMut<T> {}

/// Calls `f(i, chunk_i)` for every `chunk`-sized piece of `data`, spread over the pool's
/// threads (chunk i on thread i mod n). Each chunk is visited exactly once.
pub fn for_each_chunk_mut<T: Send>(
    pool: &Pool,
    data: &mut [T],
    chunk: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    assert!(
        chunk > 0 && data.len() % chunk == 0,
        "for_each_chunk_mut: {} is not a multiple of {chunk}",
        data.len()
    );
    let n = data.len() / chunk;
    if n <= 1 || pool.n_threads() == 1 {
        for (i, c) in data.chunks_exact_mut(chunk).enumerate() {
            f(i, c);
        }
        return;
    }
    let p = SharedMut(data.as_mut_ptr());
    pool.run(&|ti, nt| {
        let p = &p;
        for i in (ti..n).step_by(nt) {
            // SAFETY: chunk i lies inside `data` (i < n = len / chunk) and is visited by
            // exactly one thread (i ≡ ti mod nt), so the slices never overlap.
            let c = unsafe { std::slice::from_raw_parts_mut(p.0.add(i * chunk), chunk) };
            f(i, c);
        }
    });
}

/// Like [`for_each_chunk_mut`] over two slices chunked in step: `f(i, a_i, b_i)`.
pub fn for_each_chunk_mut2<A: Send, B: Send>(
    pool: &Pool,
    a: &mut [A],
    ca: usize,
    b: &mut [B],
    cb: usize,
    f: &(dyn Fn(usize, &mut [A], &mut [B]) + Sync),
) {
    assert!(
        ca > 0 && cb > 0 && a.len() % ca == 0 && b.len() % cb == 0,
        "for_each_chunk_mut2: lengths"
    );
    let n = a.len() / ca;
    assert_eq!(n, b.len() / cb, "for_each_chunk_mut2: chunk counts differ");
    if n <= 1 || pool.n_threads() == 1 {
        for (i, (x, y)) in a
            .chunks_exact_mut(ca)
            .zip(b.chunks_exact_mut(cb))
            .enumerate()
        {
            f(i, x, y);
        }
        return;
    }
    let pa = SharedMut(a.as_mut_ptr());
    let pb = SharedMut(b.as_mut_ptr());
    pool.run(&|ti, nt| {
        let (pa, pb) = (&pa, &pb);
        for i in (ti..n).step_by(nt) {
            // SAFETY: as in `for_each_chunk_mut`: chunk i of each slice is in bounds and owned
            // by this thread alone.
            let x = unsafe { std::slice::from_raw_parts_mut(pa.0.add(i * ca), ca) };
            // SAFETY: same argument for `b`.
            let y = unsafe { std::slice::from_raw_parts_mut(pb.0.add(i * cb), cb) };
            f(i, x, y);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_is_visited_once_for_any_thread_count() {
        for threads in 1..=3 {
            let pool = Pool::new(threads);
            let mut a = vec![0u32; 7 * 5];
            let mut b = vec![0u32; 7];
            for_each_chunk_mut2(&pool, &mut a, 5, &mut b, 1, &|i, x, y| {
                for v in x.iter_mut() {
                    *v += i as u32 + 1;
                }
                y[0] += 1;
            });
            for (i, c) in a.chunks(5).enumerate() {
                assert!(c.iter().all(|&v| v == i as u32 + 1));
            }
            assert!(b.iter().all(|&v| v == 1));
            let mut c = vec![1u8; 10];
            for_each_chunk_mut(&pool, &mut c, 2, &|i, s| s[0] = i as u8);
            assert_eq!(c, [0, 1, 1, 1, 2, 1, 3, 1, 4, 1]);
        }
    }
}
