//! Dispatch: one table of k-input kernels per (weight format, ISA), chosen once per call
//! site, ggml `type_traits_cpu` style, so the row loops do no feature checks.
//!
//! Numerics shared by every format (the "canonical order"): each kernel computes, per
//! weight block, exact int32 lane sums in a fixed 8-lane layout, then combines blocks in f32
//! with the same operations in the same order on every ISA (see each format file). The
//! float work for a token never looks at the other tokens, so a token's bits do not depend
//! on k or on its slot in a group; in this crate they also do not depend on the ISA.

use std::ops::Range;

use crate::acts::{ActRow, QuantizedActs};
use crate::{GgmlType, Isa};

/// A k-input kernel: `out[t] = dot(row, x[t])` for `t < N`, the weight row read once.
///
/// # Safety
/// The kernel's ISA must be available (guaranteed by `KernelSet::new`); `row.len()` must be
/// a whole number of blocks and every `x[t]` must hold the matching number of activations.
pub(crate) type KernelFn<const N: usize> = unsafe fn(&[u8], &[ActRow<'_>; N], &mut [f32; N]);

/// The 1- to 8-input kernels of one (format, ISA). Every width is its own instance: at k
/// tokens the weights are read once and no padding token is computed (a group of 3 used to
/// run the 4-input kernel and 5-7 the 8-input one; where the integer work binds, as in a
/// verify step of the 16-core host, the padding cost its full share).
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub k1: KernelFn<1>,
    pub k2: KernelFn<2>,
    pub k3: KernelFn<3>,
    pub k4: KernelFn<4>,
    pub k5: KernelFn<5>,
    pub k6: KernelFn<6>,
    pub k7: KernelFn<7>,
    pub k8: KernelFn<8>,
}

/// Builds a `Kernels` from a function generic over the input count.
macro_rules! kernels_of {
    ($($f:ident)::+) => {
        $crate::kernels::Kernels {
            k1: $($f)::+::<1>,
            k2: $($f)::+::<2>,
            k3: $($f)::+::<3>,
            k4: $($f)::+::<4>,
            k5: $($f)::+::<5>,
            k6: $($f)::+::<6>,
            k7: $($f)::+::<7>,
            k8: $($f)::+::<8>,
        }
    };
}
pub(crate) use kernels_of;

/// The kernel table for `ty` on `isa`; holds only kernels whose ISA is present.
#[derive(Clone, Copy)]
pub struct KernelSet {
    ty: GgmlType,
    isa: Isa,
    k: Kernels,
    /// Q4_K and Q6_K on `Isa::Amx`: batches of `q4_k_amx::MIN_K`+ tokens whose activations
    /// carry the tile layout (`QuantizedActs::build_amx`) go through the tile unit.
    amx: bool,
}

impl KernelSet {
    /// Panics if `isa` is not available on this CPU or `ty` is not a weight type.
    pub fn new(ty: GgmlType, isa: Isa) -> KernelSet {
        assert!(isa.is_available(), "ISA {isa} is not available on this CPU");
        let k = match ty {
            GgmlType::Q4_K => crate::q4_k::kernels(isa),
            GgmlType::Q5_K => crate::q5_k::kernels(isa),
            GgmlType::Q6_K => crate::q6_k::kernels(isa),
            GgmlType::Q8_0 => crate::q8_0::kernels(isa),
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => crate::float::kernels(ty, isa),
            GgmlType::Q8_K => panic!("Q8_K is an activation type, not a weight type"),
        };
        let amx = isa == Isa::Amx && matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K);
        KernelSet { ty, isa, k, amx }
    }

    /// Whether a batch of `k` tokens takes the tile path (the caller then builds the
    /// activations' tile layout before computing).
    pub(crate) fn wants_amx(&self, k: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.amx && k >= crate::q4_k_amx::MIN_K
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = k;
            false
        }
    }

    /// Rows per work item for a pool over a `cols`-wide matrix and `k` tokens.
    pub(crate) fn chunk_rows(&self, cols: usize, k: usize) -> usize {
        #[cfg(target_arch = "x86_64")]
        if self.wants_amx(k) {
            return crate::q4_k_amx::chunk_rows(cols / 256);
        }
        let _ = (cols, k);
        ROW_CHUNK
    }

    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }
}

/// A weight matrix: `rows` rows of `cols` elements of `ty`, row-major,
/// `data.len() == rows * row_bytes`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub ty: GgmlType,
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

impl MatRef<'_> {
    /// Bytes per row. Panics if `cols` is not a whole number of blocks.
    pub fn row_bytes(&self) -> usize {
        let be = self.ty.block_elems();
        assert!(
            self.cols.is_multiple_of(be),
            "{} columns is not a multiple of the {} block ({be})",
            self.cols,
            self.ty
        );
        self.cols / be * self.ty.block_bytes()
    }

    fn check(&self) -> usize {
        let rb = self.row_bytes();
        assert_eq!(
            self.data.len(),
            self.rows * rb,
            "{} matrix {}x{} needs {} bytes",
            self.ty,
            self.rows,
            self.cols,
            self.rows * rb
        );
        rb
    }
}

/// Rows per work item: a chunk of rows is read once per group of 8 tokens while it is
/// still in L2, and it is the unit the pool hands out.
pub(crate) const ROW_CHUNK: usize = 16;

/// Where `compute_rows` hands its results: `put(row, token, value)` one at a time, or
/// `put_rows(r0, token, v)` for rows `r0 .. r0 + v.len()` of one token at once (the tile
/// path). Any `FnMut(row, token, value)` is a sink.
pub(crate) trait Sink {
    fn put(&mut self, r: usize, t: usize, v: f32);

    fn put_rows(&mut self, r0: usize, t: usize, v: &[f32]) {
        for (i, &x) in v.iter().enumerate() {
            self.put(r0 + i, t, x);
        }
    }
}

impl<F: FnMut(usize, usize, f32)> Sink for F {
    fn put(&mut self, r: usize, t: usize, v: f32) {
        self(r, t, v)
    }
}

/// Runs the kernels over `rows` of `w` for every token of `acts`, in groups of 8 tokens (the
/// last group, of m < 8, through the m-input kernel), and hands each result to
/// `sink(row, token, value)`.
pub(crate) fn compute_rows(
    ks: &KernelSet,
    w: &MatRef<'_>,
    acts: &QuantizedActs,
    rows: Range<usize>,
    mut sink: impl Sink,
) {
    let rb = w.check();
    assert_eq!(
        ks.ty, w.ty,
        "kernel table for {} used with a {} matrix",
        ks.ty, w.ty
    );
    assert!(
        acts.weight_type()
            .is_some_and(|t| crate::acts::same_acts(t, w.ty)),
        "activations were quantized for {:?}, matrix is {}",
        acts.weight_type(),
        w.ty
    );
    assert_eq!(
        acts.n(),
        w.cols,
        "activations have {} columns, matrix has {}",
        acts.n(),
        w.cols
    );
    assert!(rows.end <= w.rows, "rows {rows:?} out of {}", w.rows);
    let k = acts.k();
    #[cfg(target_arch = "x86_64")]
    if ks.wants_amx(k) {
        if let Some(amx) = acts.amx(w.cols / 256) {
            if w.ty == GgmlType::Q6_K {
                crate::q6_k_amx::compute_rows(w, amx, rows, sink);
            } else {
                crate::q4_k_amx::compute_rows(w, amx, rows, sink);
            }
            return;
        }
    }
    let mut r0 = rows.start;
    while r0 < rows.end {
        let r1 = (r0 + ROW_CHUNK).min(rows.end);
        let mut t0 = 0;
        while t0 < k {
            let m = (k - t0).min(8);
            let mut x = [ActRow::default(); 8];
            for (s, xs) in x.iter_mut().enumerate() {
                *xs = acts.row(t0 + s.min(m - 1));
            }
            for r in r0..r1 {
                let row = &w.data[r * rb..(r + 1) * rb];
                let mut o = [0.0f32; 8];
                // SAFETY: `ks` was built by `KernelSet::new`, which checked the ISA; `row`
                // is one whole row of `w` (checked above) and every `x[s]` is a token row of
                // `acts`, whose column count equals `w.cols` (checked above).
                unsafe {
                    match m {
                        1 => (ks.k.k1)(row, first(&x), first_mut(&mut o)),
                        2 => (ks.k.k2)(row, first(&x), first_mut(&mut o)),
                        3 => (ks.k.k3)(row, first(&x), first_mut(&mut o)),
                        4 => (ks.k.k4)(row, first(&x), first_mut(&mut o)),
                        5 => (ks.k.k5)(row, first(&x), first_mut(&mut o)),
                        6 => (ks.k.k6)(row, first(&x), first_mut(&mut o)),
                        7 => (ks.k.k7)(row, first(&x), first_mut(&mut o)),
                        _ => (ks.k.k8)(row, first(&x), first_mut(&mut o)),
                    }
                }
                for (s, &v) in o[..m].iter().enumerate() {
                    sink.put(r, t0 + s, v);
                }
            }
            t0 += m;
        }
        r0 = r1;
    }
}

fn first<T, const N: usize>(a: &[T; 8]) -> &[T; N] {
    a[..N].try_into().expect("N <= 8")
}

fn first_mut<T, const N: usize>(a: &mut [T; 8]) -> &mut [T; N] {
    (&mut a[..N]).try_into().expect("N <= 8")
}

/// Single thread: `out[t * out_stride + r] = W[r] · x_t` for `r` in `rows`, every token
/// of `acts`. Each weight block is read once per group of up to 8 tokens.
pub fn matvec_rows(
    isa: Isa,
    w: MatRef<'_>,
    acts: &QuantizedActs,
    rows: Range<usize>,
    out: &mut [f32],
    out_stride: usize,
) {
    let k = acts.k();
    assert!(
        out_stride >= rows.end,
        "out_stride {out_stride} < rows.end {}",
        rows.end
    );
    assert!(
        k == 0 || out.len() >= (k - 1) * out_stride + rows.end,
        "out has {} values, needs {}",
        out.len(),
        (k.max(1) - 1) * out_stride + rows.end
    );
    let ks = KernelSet::new(w.ty, isa);
    compute_rows(&ks, &w, acts, rows, |r, t, v| out[t * out_stride + r] = v);
}

/// Dequantizes `out.len()` elements (a whole number of blocks) from `data`, exactly like
/// ggml's `dequantize_row_*`.
pub fn dequantize_row(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    let be = ty.block_elems();
    assert!(
        out.len().is_multiple_of(be),
        "{} values is not a whole number of {ty} blocks",
        out.len()
    );
    let need = out.len() / be * ty.block_bytes();
    assert!(
        data.len() >= need,
        "{ty}: {} values need {need} bytes, got {}",
        out.len(),
        data.len()
    );
    let data = &data[..need];
    match ty {
        GgmlType::Q4_K => crate::q4_k::dequantize(data, out),
        GgmlType::Q5_K => crate::q5_k::dequantize(data, out),
        GgmlType::Q6_K => crate::q6_k::dequantize(data, out),
        GgmlType::Q8_0 => crate::q8_0::dequantize(data, out),
        GgmlType::Q8_K => crate::q8_0::dequantize_q8_k(data, out),
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => crate::float::dequantize(ty, data, out),
    }
}
