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
        chunk > 0 && data.len().is_multiple_of(chunk),
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

/// The job of [`for_each_chunk_mut2`]: chunk index and the two chunks.
pub type ChunkFn2<'f, A, B> = dyn Fn(usize, &mut [A], &mut [B]) + Sync + 'f;
/// The job of [`for_each_chunk_mut_cols`]: chunk index, chunk of `a`, columns of `b`.
pub type ChunkColsFn<'f, A, B> = dyn for<'b> Fn(usize, &mut [A], ColsMut<'b, B>) + Sync + 'f;

/// Like [`for_each_chunk_mut`] over two slices chunked in step: `f(i, a_i, b_i)`.
pub fn for_each_chunk_mut2<A: Send, B: Send>(
    pool: &Pool,
    a: &mut [A],
    ca: usize,
    b: &mut [B],
    cb: usize,
    f: &ChunkFn2<'_, A, B>,
) {
    assert!(
        ca > 0 && cb > 0 && a.len().is_multiple_of(ca) && b.len().is_multiple_of(cb),
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

/// Column block `i` of a row-major matrix (`cols` elements of every row, starting at
/// column `i·cols`), handed to one thread by [`for_each_chunk_mut_cols`].
pub struct ColsMut<'a, T> {
    ptr: *mut T,
    rows: usize,
    stride: usize,
    cols: usize,
    _borrow: std::marker::PhantomData<&'a mut [T]>,
}

impl<T> ColsMut<'_, T> {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row `t`'s part of the block. Panics if `t >= rows()`.
    pub fn row(&mut self, t: usize) -> &mut [T] {
        assert!(t < self.rows, "ColsMut::row: {t} out of {} rows", self.rows);
        // SAFETY: the block's part of row t lies inside the matrix (checked when the view
        // was made) and no other view covers these columns; `&mut self` keeps the returned
        // slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(t * self.stride), self.cols) }
    }
}

/// Calls `f(i, a_i, b_i)` for every `ca`-sized chunk `a_i` of `a`, with `b_i` column block
/// `i` (`cb` columns) of `b`, a row-major matrix of `row`-element rows, spread over the
/// pool's threads like [`for_each_chunk_mut`] (e.g. per head: the head's state and the
/// head's slice of every token's output).
pub fn for_each_chunk_mut_cols<A: Send, B: Send>(
    pool: &Pool,
    a: &mut [A],
    ca: usize,
    b: &mut [B],
    row: usize,
    cb: usize,
    f: &ChunkColsFn<'_, A, B>,
) {
    assert!(
        ca > 0 && a.len().is_multiple_of(ca) && row > 0 && b.len().is_multiple_of(row),
        "for_each_chunk_mut_cols: lengths"
    );
    let n = a.len() / ca;
    assert!(
        n * cb <= row,
        "for_each_chunk_mut_cols: {n} blocks of {cb} columns exceed rows of {row}"
    );
    let rows = b.len() / row;
    let pa = SharedMut(a.as_mut_ptr());
    let pb = SharedMut(b.as_mut_ptr());
    let visit = |i: usize| {
        let (pa, pb) = (&pa, &pb);
        // SAFETY: chunk i of `a` is in bounds (i < n) and visited by one thread only.
        let x = unsafe { std::slice::from_raw_parts_mut(pa.0.add(i * ca), ca) };
        let y = ColsMut {
            // SAFETY: column i·cb < row, inside the first row of `b` (checked above).
            ptr: unsafe { pb.0.add(i * cb) },
            rows,
            stride: row,
            cols: cb,
            _borrow: std::marker::PhantomData,
        };
        f(i, x, y);
    };
    if n <= 1 || pool.n_threads() == 1 {
        (0..n).for_each(visit);
        return;
    }
    pool.run(&|ti, nt| (ti..n).step_by(nt).for_each(visit));
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
            // Column blocks of 3 in rows of 8 (the last 2 columns untouched).
            let mut m = vec![0u32; 4 * 8];
            let mut st = vec![0u32; 2];
            for_each_chunk_mut_cols(&pool, &mut st, 1, &mut m, 8, 3, &|i, s, mut c| {
                s[0] += 1;
                for t in 0..c.rows() {
                    for (j, v) in c.row(t).iter_mut().enumerate() {
                        *v += (100 * t + 10 * i + j) as u32 + 1;
                    }
                }
            });
            assert_eq!(st, [1, 1]);
            for t in 0..4 {
                for col in 0..8 {
                    let want = if col < 6 {
                        (100 * t + 10 * (col / 3) + col % 3) as u32 + 1
                    } else {
                        0
                    };
                    assert_eq!(m[t * 8 + col], want, "row {t} col {col}");
                }
            }
            let mut c = vec![1u8; 10];
            for_each_chunk_mut(&pool, &mut c, 2, &|i, s| s[0] = i as u8);
            assert_eq!(c, [0, 1, 1, 1, 2, 1, 3, 1, 4, 1]);
        }
    }
}
