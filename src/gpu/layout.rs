//! Device layouts of the weight matrices that the GGUF stores with 2-byte-aligned fields.
//!
//! Q6_K blocks are 210 bytes and Q8_0 blocks 34, so in the file's layout their quants are
//! only 2-byte aligned and the mat-vec reads them in 16-bit pieces: on the H100 those
//! formats reached 72-77% of a device copy at k = 1 where Q4_K and Q5_K (4-byte aligned
//! blocks) reached 85-87% (docs/benchmarks/device-all-2026-12-06-s11.md). At upload each row
//! of `nb` blocks is rewritten as one array per block field ("row-split"):
//!
//! - Q8_0: `[qs: 32 × nb][d: 2 × nb]`
//! - Q6_K: `[ql: 128 × nb][qh: 64 × nb][scales: 16 × nb][d: 2 × nb]`
//!
//! Row bytes do not change, so row ranges, strides and sizes stay as in the file; with nb a
//! multiple of 4 every row starts 8-byte aligned and so does every quant field, which the
//! kernels (`FMT_Q6_K_R`, `FMT_Q8_0_R` in `cuda/quant.cuh`) then read in 8-byte loads. They
//! decode each unit to the same integers and scales as the file layout's kernels, so results
//! are bit-identical (`gpu-check` compares both layouts bit for bit, every k, and the f16
//! dequant).
//!
//! Measured on the H100 (2026-12-08, `gpu-check --bench`, two alternated rounds that agreed
//! within 1%; docs/benchmarks/gpu-row-split-2026-12-08.md), us per call, file layout ->
//! row-split, k = 1 / 2 / 4 / 8:
//! - Q6_K 5120 x 17408 (wide, the split form): 33.7 / 43.8 / 43.1 / 70.4 -> 28.1 / 33.8 / 36.1
//!   / 65.0 (k = 1: 72% -> 86% of a device copy): faster at every k;
//! - Q6_K 17408 x 5120 (tall): 32.9 / 41.7 / 41.9 / 99.8 -> 28.5 / 37.2 / 55.2 / 110.6:
//!   faster at k <= 2, 32% slower at k = 4;
//! - Q8_0 17408 x 5120: 41.5 / 39.6 / 51.7 / 93.6 -> 50.2 / 38.4 / 56.5 / 87.9 (slower at k = 1);
//! - Q8_0 5120 x 17408: 40.6 / 39.7 / 47.6 / 73.3 -> 37.2 / 37.0 / 49.8 / 51.0.
//!
//! So by default only wide Q6_K matrices (fewer rows than columns: the 27B's Q6_K FFN down)
//! are uploaded row-split; tall ones (the LM head, verified at k up to 7) and Q8_0 keep the
//! file layout. `HYBRID_GPU_ROW_SPLIT=1` splits every splittable matrix, `=0` none.

use simd::GgmlType;

/// Field sizes of one block, in file order (the file layout is these fields back to back).
fn fields(ty: GgmlType) -> Option<&'static [usize]> {
    match ty {
        // d (f16), then the 32 quants: the split layout puts the quants first.
        GgmlType::Q8_0 => Some(&[2, 32]),
        GgmlType::Q6_K => Some(&[128, 64, 16, 2]),
        _ => None,
    }
}

/// Order of the fields in the split layout (indices into `fields`).
fn split_order(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q8_0 => &[1, 0],
        _ => &[0, 1, 2, 3],
    }
}

/// Which matrices are uploaded row-split (`HYBRID_GPU_ROW_SPLIT`, read once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitPolicy {
    /// `0`: none.
    Off,
    /// Unset: the measured default, wide Q6_K matrices (see the module docs).
    WideQ6K,
    /// `1`: every splittable matrix.
    All,
}

impl SplitPolicy {
    fn from_env() -> SplitPolicy {
        match std::env::var("HYBRID_GPU_ROW_SPLIT").as_deref() {
            Ok("0") | Ok("off") | Ok("false") => SplitPolicy::Off,
            Ok("1") | Ok("on") | Ok("true") => SplitPolicy::All,
            _ => SplitPolicy::WideQ6K,
        }
    }

    /// Whether a `rows` x `cols` matrix of `ty` is uploaded row-split under this policy.
    pub fn wants(self, ty: GgmlType, rows: usize, cols: usize) -> bool {
        splittable(ty, cols)
            && match self {
                SplitPolicy::Off => false,
                SplitPolicy::WideQ6K => ty == GgmlType::Q6_K && rows < cols,
                SplitPolicy::All => true,
            }
    }
}

/// Whether a `rows` x `cols` matrix of `ty` is uploaded row-split: Q6_K and Q8_0 whose rows
/// hold a multiple of 4 blocks (so rows start 8-byte aligned), as [`SplitPolicy`] says.
pub fn row_split(ty: GgmlType, rows: usize, cols: usize) -> bool {
    static POLICY: std::sync::OnceLock<SplitPolicy> = std::sync::OnceLock::new();
    POLICY
        .get_or_init(SplitPolicy::from_env)
        .wants(ty, rows, cols)
}

/// `row_split` without the environment switch.
pub fn splittable(ty: GgmlType, cols: usize) -> bool {
    fields(ty).is_some() && cols % ty.block_elems() == 0 && (cols / ty.block_elems()) % 4 == 0
}

/// Rewrites whole rows of `ty` (`src` in the file layout, `dst` the same length) into the
/// row-split layout. Panics if `ty` has no split layout or the lengths are not whole rows
/// (callers check `splittable` first).
pub fn split_rows(ty: GgmlType, cols: usize, src: &[u8], dst: &mut [u8]) {
    permute(ty, cols, src, dst, true)
}

/// The inverse of [`split_rows`].
pub fn unsplit_rows(ty: GgmlType, cols: usize, src: &[u8], dst: &mut [u8]) {
    permute(ty, cols, src, dst, false)
}

fn permute(ty: GgmlType, cols: usize, src: &[u8], dst: &mut [u8], to_split: bool) {
    let f = fields(ty).expect("no row-split layout for this type");
    let nb = cols / ty.block_elems();
    let bb = ty.block_bytes();
    let row = nb * bb;
    assert_eq!(f.iter().sum::<usize>(), bb);
    assert!(
        src.len() == dst.len() && row > 0 && src.len() % row == 0,
        "row-split: {} bytes into {}, rows of {row}",
        src.len(),
        dst.len()
    );
    // Offset of field i inside a file block, and of field i's array inside a split row.
    let mut in_block = vec![0; f.len()];
    for i in 1..f.len() {
        in_block[i] = in_block[i - 1] + f[i - 1];
    }
    let mut in_row = vec![0; f.len()];
    let mut at = 0;
    for &i in split_order(ty) {
        in_row[i] = at;
        at += f[i] * nb;
    }
    for (s, d) in src.chunks_exact(row).zip(dst.chunks_exact_mut(row)) {
        for b in 0..nb {
            for (i, &len) in f.iter().enumerate() {
                let file = b * bb + in_block[i];
                let split = in_row[i] + b * len;
                if to_split {
                    d[split..split + len].copy_from_slice(&s[file..file + len]);
                } else {
                    d[file..file + len].copy_from_slice(&s[split..split + len]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default splits the wide Q6_K matrices only (27B: FFN down 5120 x 17408 yes, the
    /// LM head 248320 x 5120 and FFN gate 17408 x 5120 no, Q8_0 no); `1` splits every
    /// splittable one, `0` none; a row of blocks not a multiple of 4 never.
    #[test]
    fn the_policies_pick_the_measured_shapes() {
        use GgmlType::{Q4_K, Q6_K, Q8_0};
        let d = SplitPolicy::WideQ6K;
        assert!(d.wants(Q6_K, 5120, 17408));
        assert!(!d.wants(Q6_K, 248_320, 5120));
        assert!(!d.wants(Q6_K, 17408, 5120));
        assert!(!d.wants(Q8_0, 5120, 17408));
        assert!(!d.wants(Q4_K, 5120, 17408));
        assert!(!d.wants(Q6_K, 4, 512), "2 blocks per row");
        assert!(SplitPolicy::All.wants(Q6_K, 17408, 5120));
        assert!(SplitPolicy::All.wants(Q8_0, 17408, 5120));
        assert!(!SplitPolicy::All.wants(Q4_K, 17408, 5120));
        assert!(!SplitPolicy::Off.wants(Q6_K, 5120, 17408));
    }

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn only_q6_k_and_q8_0_with_rows_of_four_blocks_split() {
        assert!(splittable(GgmlType::Q8_0, 128));
        assert!(!splittable(GgmlType::Q8_0, 96));
        assert!(splittable(GgmlType::Q6_K, 5120));
        assert!(splittable(GgmlType::Q6_K, 17408));
        assert!(!splittable(GgmlType::Q6_K, 512));
        assert!(!splittable(GgmlType::Q4_K, 5120));
        assert!(!splittable(GgmlType::F16, 5120));
    }

    #[test]
    fn q8_0_fields_land_where_the_kernel_reads_them() {
        let (cols, rows) = (256usize, 3usize);
        let nb = cols / 32;
        let src = bytes(rows * nb * 34, 1);
        let mut dst = vec![0u8; src.len()];
        split_rows(GgmlType::Q8_0, cols, &src, &mut dst);
        for r in 0..rows {
            let (s, d) = (&src[r * nb * 34..], &dst[r * nb * 34..]);
            for b in 0..nb {
                assert_eq!(
                    &d[32 * b..32 * b + 32],
                    &s[34 * b + 2..34 * b + 34],
                    "qs r{r} b{b}"
                );
                assert_eq!(
                    &d[32 * nb + 2 * b..32 * nb + 2 * b + 2],
                    &s[34 * b..34 * b + 2]
                );
            }
        }
    }

    #[test]
    fn q6_k_fields_land_where_the_kernel_reads_them() {
        let (cols, rows) = (1024usize, 2usize);
        let nb = cols / 256;
        let src = bytes(rows * nb * 210, 2);
        let mut dst = vec![0u8; src.len()];
        split_rows(GgmlType::Q6_K, cols, &src, &mut dst);
        for r in 0..rows {
            let (s, d) = (&src[r * nb * 210..], &dst[r * nb * 210..]);
            for b in 0..nb {
                let blk = &s[210 * b..210 * (b + 1)];
                assert_eq!(&d[128 * b..128 * b + 128], &blk[..128], "ql");
                let qh = 128 * nb + 64 * b;
                assert_eq!(&d[qh..qh + 64], &blk[128..192], "qh");
                let sc = 192 * nb + 16 * b;
                assert_eq!(&d[sc..sc + 16], &blk[192..208], "scales");
                let dd = 208 * nb + 2 * b;
                assert_eq!(&d[dd..dd + 2], &blk[208..210], "d");
            }
        }
    }

    #[test]
    fn unsplit_inverts_split() {
        for (ty, cols) in [(GgmlType::Q8_0, 640usize), (GgmlType::Q6_K, 5120)] {
            let row = ty.row_bytes(cols as u64).unwrap() as usize;
            let src = bytes(5 * row, 3);
            let mut mid = vec![0u8; src.len()];
            let mut back = vec![0u8; src.len()];
            split_rows(ty, cols, &src, &mut mid);
            assert_ne!(mid, src, "{ty}: the split layout differs from the file's");
            unsplit_rows(ty, cols, &mid, &mut back);
            assert_eq!(back, src, "{ty}");
        }
    }
}
