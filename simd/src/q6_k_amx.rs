//! AMX (Intel tile matrix unit) path for Q6_K × Q8_K mat-muls of many tokens (prefill).
//!
//! Bit-exact with every other Q6_K kernel (`q6_k.rs`): per (row, token, block) the canonical
//! int32 lane values `sumi[l] = Σ_{e in lane l} sc(e)·u(e)·q8(e) − 32·(bsums[2l]·sc[2l] +
//! bsums[2l+1]·sc[2l+1])` (u = q + 32 ∈ [0, 63], lane l = elements with (e/4) % 8 = l) are
//! formed exactly, then folded in the canonical float order.
//!
//! Integer part. Lane `l` holds the 32 elements `e = 32g + 4l + i` (`g < 8`, `i < 4`); call
//! `p = 4g + i` the element's place in its lane (its sub-block is `2g + [l ≥ 4]`). The
//! weight `v = sc·u ∈ [−8064, 8001]` does not fit a byte, so it is split as
//! `v = 128·h + lo` with `lo = v & 127 ∈ [0, 127]` and `h = v >> 7 ∈ [−63, 62]`, both
//! valid signed bytes. Per (row, lane, block) one 64-byte line holds `lo(p)` in bytes
//! 0..31 and `h(p)` in bytes 32..63. Two `tdpbssd` with K = 32 (A tiles of 16 rows × 32
//! bytes: the lo and the h halves of the lines; B tile of 8 rows × 64 bytes: rows 0..7 of
//! the activation layout `q4_k_amx::AmxActs` builds, row `g` = token `n`'s dword `8g + l`)
//! give `C_lo` and `C_hi` for 16 rows × 16 tokens, and `128·C_hi + C_lo` is the exact
//! lane sum (|·| < 2^25). The −32 correction is one `vpmaddwd` of the tokens'
//! `(bsums[2l], bsums[2l+1])` pairs with the row's `(sc[2l], sc[2l+1])`.
//!
//! Measured (kernel-bench, 1 thread, 17408×5120, k = 256, 16-core host): 266 ms vs 420–435
//! ms for the AVX-512 kernel (Q4_K tiles: 209–217 ms). Tried and slower: A tiles of full
//! 64-byte rows `[lo | 0]`, `[0 | hi]` against Q4_K's 16-row B tile (286–298 ms). The tile
//! work and the fold barely overlap (tiles alone 152 ms, fold alone 113 ms).
//!
//! Float part, per block in order and per (row, token), as the AVX-512 kernel:
//! `acc[l] = fma(dy·dx, f32(sumi[l]), acc[l])`, finally `hsum8(acc)`. The 16 tokens of a tile
//! are the 16 float lanes of one zmm.

#![cfg(target_arch = "x86_64")]

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

use crate::kernels::MatRef;
use crate::q4_k_amx::{b_line, tile_release, AmxActs, Line, PF_STEPS};
use crate::q6_k::BlockQ6K;

/// Tile palette 1 for this path: `C_lo`, `C_hi` (tiles 0, 1 and 4, 5: 16 rows × 64
/// bytes), B (tiles 2 and 6: 8 rows × 64 bytes), `A_lo`, `A_hi` (tiles 3, 7: 16 rows × 32
/// bytes).
#[repr(C, align(64))]
struct TileCfg([u8; 64]);

const fn tile_cfg() -> TileCfg {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        let (colsb, rows) = match t {
            0 | 1 | 4 | 5 => (64, 16),
            2 | 6 => (64, 8),
            _ => (32, 16),
        };
        c[16 + 2 * t] = colsb;
        c[48 + t] = rows;
        t += 1;
    }
    TileCfg(c)
}

static CFG: TileCfg = tile_cfg();

/// # Safety
/// AMX must be usable (`q4_k_amx::usable()`).
unsafe fn tile_config() {
    // SAFETY: CFG is a valid 64-byte palette-1 configuration (caller: AMX usable).
    unsafe { asm!("ldtilecfg [{}]", in(reg) CFG.0.as_ptr(), options(nostack, readonly)) };
}

/// First line of lane `l`, block `i` in a row tile's buffer of `nb · 128` lines.
fn a_line(l: usize, i: usize, nb: usize) -> usize {
    (l * nb + i) * 16
}

/// Per (row tile, block) parameters of the 16 rows.
#[derive(Clone, Copy, Default)]
struct RowPrm {
    dx: [f32; 16],
    /// `sc[2l] | sc[2l+1] << 16` (int16 each) for `vpmaddwd` with the bsums pairs.
    sp: [[i32; 8]; 16],
}

/// Per-thread repacked weights and the lane-sum buffer.
#[derive(Default)]
struct WBuf {
    a: Vec<Line>,
    prm: Vec<RowPrm>,
    c: Vec<Line>,
}

thread_local! {
    static WBUF: RefCell<WBuf> = RefCell::new(WBuf::default());
}

fn set_prm(b: &BlockQ6K, r: usize, prm: &mut RowPrm) {
    prm.dx[r] = crate::floats::f16_le(b.d);
    for l in 0..8 {
        let (s0, s1) = (
            b.scales[2 * l] as i16 as u16,
            b.scales[2 * l + 1] as i16 as u16,
        );
        prm.sp[r][l] = (s0 as u32 | (s1 as u32) << 16) as i32;
    }
}

/// Repacks row `r` (< 16) of block `i` of a tile into its `nb · 128` `lines` (scalar
/// reference of `repack_row_avx512`).
#[cfg(test)]
fn repack_row(b: &BlockQ6K, r: usize, i: usize, nb: usize, lines: &mut [Line], prm: &mut RowPrm) {
    for l in 0..8 {
        for p in 0..32 {
            let e = 32 * (p / 4) + 4 * l + p % 4;
            let v = b.scales[e / 16] as i32 * crate::q6_k::u_of(b, e) as i32;
            let line = &mut lines[a_line(l, i, nb) + r].0;
            line[p] = (v & 127) as u8;
            line[32 + p] = (v >> 7) as i8 as u8;
        }
    }
    set_prm(b, r, prm);
}

/// `repack_row` with AVX-512: the unsigned quants in element order as in the AVX-512
/// kernel (four zmm, 64 elements each), then per lane pair `(l, l + 4)` two `vpermt2d` and
/// a blend gather the lanes' dwords, `v = sc·u` in 16-bit lanes, and the byte split.
///
/// # Safety
/// AVX-512 F/BW must be available; `lines` must hold `nb · 128` lines.
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn repack_row_avx512(
    b: &BlockQ6K,
    r: usize,
    i: usize,
    nb: usize,
    lines: &mut [Line],
    prm: &mut RowPrm,
) {
    let m4 = _mm512_set1_epi8(0x0F);
    let m30 = _mm512_set1_epi8(0x30);
    let shl = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4);
    let shr = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    let mut w = [_mm512_setzero_si512(); 4];
    for n in 0..2 {
        let lq = _mm512_loadu_si512(b.ql.as_ptr().add(64 * n) as *const __m512i);
        let h = _mm512_broadcast_i64x4(_mm256_loadu_si256(
            b.qh.as_ptr().add(32 * n) as *const __m256i
        ));
        w[2 * n] = _mm512_or_si512(
            _mm512_and_si512(lq, m4),
            _mm512_and_si512(_mm512_sllv_epi64(h, shl), m30),
        );
        w[2 * n + 1] = _mm512_or_si512(
            _mm512_and_si512(_mm512_srli_epi16(lq, 4), m4),
            _mm512_and_si512(_mm512_srlv_epi64(h, shr), m30),
        );
    }
    // Word p of `scw[0]` = sc[2(p/4)] (lanes 0..3), of `scw[1]` = sc[2(p/4) + 1] (4..7).
    let sc512 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(
        b.scales.as_ptr() as *const __m128i
    )));
    let scw = [0i16, 1].map(|odd| {
        let idx: [i16; 32] = std::array::from_fn(|p| 2 * (p as i16 / 4) + odd);
        _mm512_permutexvar_epi16(_mm512_loadu_si512(idx.as_ptr() as *const __m512i), sc512)
    });
    let m127 = _mm512_set1_epi16(127);
    let dst = lines.as_mut_ptr();
    for la in 0..4i32 {
        // Dword 4·k + g (k = 0, 1: g < 4; k = 2, 3: the same four again) of each result is
        // dword 8g + lane of the table; lane = la for dwords 0..7, la + 4 for 8..15.
        let lb = la + 4;
        let idx = _mm512_setr_epi32(
            la,
            8 + la,
            16 + la,
            24 + la,
            la,
            8 + la,
            16 + la,
            24 + la,
            lb,
            8 + lb,
            16 + lb,
            24 + lb,
            lb,
            8 + lb,
            16 + lb,
            24 + lb,
        );
        let g03 = _mm512_permutex2var_epi32(w[0], idx, w[1]);
        let g47 = _mm512_permutex2var_epi32(w[2], idx, w[3]);
        let u = _mm512_mask_blend_epi32(0xF0F0, g03, g47);
        for (half, l) in [(0usize, la as usize), (1, lb as usize)] {
            let u8s = if half == 0 {
                _mm512_castsi512_si256(u)
            } else {
                _mm512_extracti64x4_epi64(u, 1)
            };
            let v = _mm512_mullo_epi16(_mm512_cvtepu8_epi16(u8s), scw[half]);
            let lo = _mm512_cvtepi16_epi8(_mm512_and_si512(v, m127));
            let hi = _mm512_cvtepi16_epi8(_mm512_srai_epi16(v, 7));
            let line = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            _mm512_store_si512(dst.add(a_line(l, i, nb) + r) as *mut __m512i, line);
        }
    }
    set_prm(b, r, prm);
}

/// `sink(row, token, value)` for every row of `rows` and every token of `amx`, computed
/// with the tile unit. `w` is a Q6_K matrix whose rows match `amx`'s blocks.
pub(crate) fn compute_rows(
    w: &MatRef<'_>,
    amx: &AmxActs,
    rows: Range<usize>,
    mut sink: impl crate::kernels::Sink,
) {
    let nb = amx.nb;
    let rb = nb * 210;
    assert_eq!(w.cols, nb * 256, "AMX activations do not match the matrix");
    let group = crate::q4_k_amx::chunk_rows(nb);
    let zero: BlockQ6K = bytemuck::Zeroable::zeroed();
    WBUF.with_borrow_mut(|wb| {
        let WBuf { a, prm, c } = wb;
        if c.len() < 64 {
            c.resize(64, Line::default());
        }
        let mut r0 = rows.start;
        while r0 < rows.end {
            let r1 = (r0 + group).min(rows.end);
            let n_tiles = (r1 - r0).div_ceil(16);
            if a.len() < n_tiles * nb * 128 {
                a.resize(n_tiles * nb * 128, Line::default());
            }
            if prm.len() < n_tiles * nb {
                prm.resize(n_tiles * nb, RowPrm::default());
            }
            for tile in 0..n_tiles {
                for r in 0..16 {
                    let row = r0 + 16 * tile + r;
                    for i in 0..nb {
                        let lines = &mut a[tile * nb * 128..(tile + 1) * nb * 128];
                        let p = &mut prm[tile * nb + i];
                        let blk: &BlockQ6K = if row < r1 {
                            let off = row * rb + i * 210;
                            bytemuck::from_bytes(&w.data[off..off + 210])
                        } else {
                            &zero
                        };
                        // SAFETY: AVX-512 F/BW are part of `Isa::Amx`; `lines` is the
                        // tile's `nb · 128` lines.
                        unsafe { repack_row_avx512(blk, r, i, nb, lines, p) };
                    }
                }
            }
            // SAFETY: `Isa::Amx` (the only caller's tier) implies `usable()`.
            unsafe { tile_config() };
            // Tile results, [row][token], then [token][row] for the sink.
            let (mut out, mut by_token) = ([[0.0f32; 16]; 16], [[0.0f32; 16]; 16]);
            for tt in 0..amx.k.div_ceil(16) {
                for tile in 0..n_tiles {
                    let nr = (r1 - r0 - 16 * tile).min(16);
                    // SAFETY: tile config loaded, buffers sized above; AVX-512 is part of
                    // `Isa::Amx`; token tile tt exists.
                    unsafe {
                        tile_pass(
                            &a[tile * nb * 128..(tile + 1) * nb * 128],
                            &prm[tile * nb..(tile + 1) * nb],
                            amx,
                            tt,
                            c,
                            &mut out,
                        )
                    };
                    // SAFETY: AVX-512F is part of `Isa::Amx`.
                    unsafe { crate::x86::transpose16(&out, &mut by_token) };
                    let base = r0 + 16 * tile;
                    for (n, v) in by_token.iter().enumerate().take(amx.k - 16 * tt) {
                        sink.put_rows(base, 16 * tt + n, &v[..nr]);
                    }
                }
            }
            // SAFETY: AMX usable (above).
            unsafe { tile_release() };
            r0 = r1;
        }
    });
}

/// `C_lo = A_lo·B`, `C_hi = A_hi·B` for one lane of one block, stored to `c` (lines 0..15)
/// and `c + 16` (lines 16..31). Even steps use C tiles 0, 1 and B tile 2, odd steps 4, 5
/// and 6; the A tiles 3 (lo) and 7 (hi) are shared.
///
/// # Safety
/// AMX usable, this module's tile configuration loaded; `a` points at 16 readable lines,
/// `b` at 8 readable lines, `c` at 32 writable lines.
#[inline(always)]
unsafe fn lane_tiles(odd: bool, a: *const Line, b: *const Line, c: *mut Line) {
    let s = 64usize;
    let ah = (a as *const u8).wrapping_add(32);
    if odd {
        // SAFETY: see the function's contract; A tiles read 32 bytes of each of 16 lines.
        unsafe {
            asm!(
                "tileloadd tmm6, [{b} + {s}*1]",
                "tileloadd tmm3, [{a0} + {s}*1]",
                "tileloadd tmm7, [{a1} + {s}*1]",
                "tilezero tmm4",
                "tilezero tmm5",
                "tdpbssd tmm4, tmm3, tmm6",
                "tdpbssd tmm5, tmm7, tmm6",
                "tilestored [{c0} + {s}*1], tmm4",
                "tilestored [{c1} + {s}*1], tmm5",
                b = in(reg) b, a0 = in(reg) a, a1 = in(reg) ah,
                c0 = in(reg) c, c1 = in(reg) c.add(16), s = in(reg) s, options(nostack),
            )
        }
    } else {
        // SAFETY: as above.
        unsafe {
            asm!(
                "tileloadd tmm2, [{b} + {s}*1]",
                "tileloadd tmm3, [{a0} + {s}*1]",
                "tileloadd tmm7, [{a1} + {s}*1]",
                "tilezero tmm0",
                "tilezero tmm1",
                "tdpbssd tmm0, tmm3, tmm2",
                "tdpbssd tmm1, tmm7, tmm2",
                "tilestored [{c0} + {s}*1], tmm0",
                "tilestored [{c1} + {s}*1], tmm1",
                b = in(reg) b, a0 = in(reg) a, a1 = in(reg) ah,
                c0 = in(reg) c, c1 = in(reg) c.add(16), s = in(reg) s, options(nostack),
            )
        }
    }
}

/// One 16-row tile × one 16-token tile `tt` over all blocks; `out[r][n]`.
///
/// Lane by lane, the 16 rows' accumulators stay in registers over all blocks while the
/// tile unit computes the next step into the other half of `c` (lines 0..31 / 32..63).
/// Rows past the matrix are zero blocks (`dx = 0`), not read by the caller.
///
/// # Safety
/// AMX usable and this module's tile configuration loaded; AVX-512 F/BW, FMA available;
/// `a` holds `nb · 128` lines, `prm` `nb` entries, `c` ≥ 64 lines, `amx` has token tile `tt`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn tile_pass(
    a: &[Line],
    prm: &[RowPrm],
    amx: &AmxActs,
    tt: usize,
    c: &mut [Line],
    out: &mut [[f32; 16]; 16],
) {
    let nb = amx.nb;
    let cp = c.as_mut_ptr();
    // Every lane's accumulators are written before the final reduction reads them (all
    // steps run); left uninitialised to save a 8 KiB memset per call.
    let mut lanes = [std::mem::MaybeUninit::<[__m512; 16]>::uninit(); 8];
    let issue = |s: usize| {
        let (l, i) = (s / nb, s % nb);
        // SAFETY (caller): lane l's A lines of block i exist, B tile rows 0..7 of (tt, l,
        // i) exist; `c` has 64 lines.
        lane_tiles(
            s % 2 == 1,
            a.as_ptr().add(a_line(l, i, nb)),
            amx.b.as_ptr().add(b_line(tt, l, i, nb)),
            cp.add(32 * (s % 2)),
        )
    };
    let steps = 8 * nb;
    issue(0);
    let mut acc = [_mm512_setzero_ps(); 16];
    for s in 0..steps {
        let (l, i) = (s / nb, s % nb);
        if s + 1 < steps {
            issue(s + 1);
        }
        if s + PF_STEPS < steps {
            // Bring step s + 2's A lines and B rows (1.5 KiB) from L2 into L1 while the tile
            // unit and the fold work on steps s + 1 and s.
            let (l2, i2) = ((s + PF_STEPS) / nb, (s + PF_STEPS) % nb);
            let pa = a.as_ptr().add(a_line(l2, i2, nb)) as *const i8;
            let pb = amx.b.as_ptr().add(b_line(tt, l2, i2, nb)) as *const i8;
            for j in 0..16 {
                _mm_prefetch(pa.add(64 * j), _MM_HINT_T0);
            }
            for j in 0..8 {
                _mm_prefetch(pb.add(64 * j), _MM_HINT_T0);
            }
        }
        let u = tt * nb + i;
        let cb = cp.add(32 * (s % 2));
        let dyv = _mm512_load_ps(amx.dy.as_ptr().add(u) as *const f32);
        let bsv = _mm512_load_si512(amx.bs6.as_ptr().add(8 * u + l) as *const __m512i);
        let p = &prm[i];
        let fold_row = |r: usize, acc: __m512| {
            let d = _mm512_mul_ps(dyv, _mm512_set1_ps(p.dx[r]));
            let lo = _mm512_load_si512(cb.add(r) as *const __m512i);
            let hi = _mm512_load_si512(cb.add(16 + r) as *const __m512i);
            let corr = _mm512_madd_epi16(bsv, _mm512_set1_epi32(p.sp[r][l]));
            let v = _mm512_sub_epi32(
                _mm512_add_epi32(_mm512_slli_epi32(hi, 7), lo),
                _mm512_slli_epi32(corr, 5),
            );
            _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(v), acc)
        };
        // Written out so the 16 accumulators stay in registers (a loop spilled them).
        acc = [
            fold_row(0, acc[0]),
            fold_row(1, acc[1]),
            fold_row(2, acc[2]),
            fold_row(3, acc[3]),
            fold_row(4, acc[4]),
            fold_row(5, acc[5]),
            fold_row(6, acc[6]),
            fold_row(7, acc[7]),
            fold_row(8, acc[8]),
            fold_row(9, acc[9]),
            fold_row(10, acc[10]),
            fold_row(11, acc[11]),
            fold_row(12, acc[12]),
            fold_row(13, acc[13]),
            fold_row(14, acc[14]),
            fold_row(15, acc[15]),
        ];
        if i + 1 == nb {
            lanes[l].write(acc);
            acc = [_mm512_setzero_ps(); 16];
        }
    }
    for r in 0..16 {
        // SAFETY: every lane was written above (the step loop visits each lane's last
        // block).
        let a = |l: usize| unsafe { lanes[l].assume_init_ref()[r] };
        let t4 = [0, 1, 2, 3].map(|l| _mm512_add_ps(a(l), a(l + 4)));
        let s = _mm512_add_ps(_mm512_add_ps(t4[0], t4[2]), _mm512_add_ps(t4[1], t4[3]));
        _mm512_storeu_ps(out[r].as_mut_ptr(), s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{rand_acts, rand_scale, BlockKind, Rng, KINDS};
    use crate::{matvec_rows, GgmlType, Isa, KernelSet, Pool, QuantizedActs};

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Rows of Q6_K blocks of every kind; `AllMax` also sets every scale to −128 and
    /// every quant to 63 (the most negative `sc·u`, −8064); `HugeScale` blocks get scales
    /// +127 (the largest positive, 8001).
    fn rand_rows(rng: &mut Rng, rows: usize, nb: usize) -> Vec<u8> {
        let mut data = Vec::new();
        for blk in 0..rows * nb {
            let kind = KINDS[(blk + rows) % KINDS.len()];
            let mut b: BlockQ6K = bytemuck::Zeroable::zeroed();
            b.d = rand_scale(rng, kind);
            let mut sc = [0u8; 16];
            rng.fill(&mut sc);
            b.scales = sc.map(|v| v as i8);
            match kind {
                BlockKind::AllMax => {
                    b.ql.fill(0xFF);
                    b.qh.fill(0xFF);
                    b.scales = [-128; 16];
                }
                BlockKind::HugeScale => {
                    b.ql.fill(0xFF);
                    b.qh.fill(0xFF);
                    b.scales = [127; 16];
                }
                BlockKind::AllZero => {}
                _ => {
                    rng.fill(&mut b.ql);
                    rng.fill(&mut b.qh);
                }
            }
            data.extend_from_slice(bytemuck::bytes_of(&b));
        }
        data
    }

    #[test]
    fn the_q6_k_tile_path_matches_the_avx512_and_scalar_kernels_bit_for_bit() {
        if !Isa::Amx.is_available() {
            eprintln!("skipped: no AMX");
            return;
        }
        let mut rng = Rng::new(61);
        for (rows, nb) in [(1usize, 1usize), (17, 2), (37, 5), (150, 1), (70, 3)] {
            let cols = 256 * nb;
            let data = rand_rows(&mut rng, rows, nb);
            let w = MatRef {
                ty: GgmlType::Q6_K,
                data: &data,
                rows,
                cols,
            };
            let min_k = crate::q4_k_amx::MIN_K;
            for k in [min_k, min_k + 1, 47, 48, 63] {
                let mut x = rand_acts(&mut rng, k, cols);
                // Token 3: every activation quantized to −128; token 5 to +127.
                x[3 * cols..4 * cols].fill(5.0);
                x[5 * cols..6 * cols].fill(-5.0);
                let mut acts = QuantizedActs::new();
                acts.quantize(GgmlType::Q6_K, &x, k, cols);
                let mut want = vec![f32::NAN; k * rows];
                matvec_rows(Isa::Avx512, w, &acts, 0..rows, &mut want, rows);
                let mut scalar = vec![f32::NAN; k * rows];
                matvec_rows(Isa::Scalar, w, &acts, 0..rows, &mut scalar, rows);
                assert_eq!(
                    bits(&scalar),
                    bits(&want),
                    "avx512 vs scalar {rows}x{cols} k={k}"
                );
                acts.build_amx(None);
                assert!(acts.amx(nb).is_some());
                assert!(KernelSet::new(GgmlType::Q6_K, Isa::Amx).wants_amx(k));
                let mut got = vec![f32::NAN; k * rows];
                matvec_rows(Isa::Amx, w, &acts, 0..rows, &mut got, rows);
                for t in 0..k {
                    for r in 0..rows {
                        let (g, e) = (got[t * rows + r], want[t * rows + r]);
                        assert_eq!(
                            g.to_bits(),
                            e.to_bits(),
                            "{rows}x{cols} k={k} token {t} row {r}: amx {g} != avx512 {e}"
                        );
                    }
                }
                let mut part = vec![f32::NAN; k * rows];
                matvec_rows(Isa::Amx, w, &acts, rows / 3..rows, &mut part, rows);
                for t in 0..k {
                    assert!(part[t * rows..t * rows + rows / 3]
                        .iter()
                        .all(|v| v.is_nan()));
                    assert_eq!(
                        bits(&part[t * rows + rows / 3..(t + 1) * rows]),
                        bits(&want[t * rows + rows / 3..(t + 1) * rows])
                    );
                }
                for n in [1usize, 2] {
                    let pool = Pool::with_isa(n, Isa::Amx);
                    let mut p = vec![f32::NAN; k * rows];
                    pool.matmul(w, &x, k, &mut p);
                    assert_eq!(
                        bits(&p),
                        bits(&want),
                        "pool {n} threads {rows}x{cols} k={k}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_q6_k_vector_repack_equals_the_scalar_repack() {
        if !Isa::Amx.is_available() {
            eprintln!("skipped: no AMX");
            return;
        }
        let mut rng = Rng::new(67);
        let nb = 3;
        let data = rand_rows(&mut rng, 12, nb);
        let blocks: &[BlockQ6K] = bytemuck::cast_slice(&data);
        let (mut want, mut got) = (
            vec![Line::default(); nb * 128],
            vec![Line::default(); nb * 128],
        );
        let (mut pw, mut pg) = (RowPrm::default(), RowPrm::default());
        for (n, b) in blocks.iter().enumerate() {
            let (r, i) = (n % 16, n % nb);
            repack_row(b, r, i, nb, &mut want, &mut pw);
            // SAFETY: AVX-512 is part of `Isa::Amx` (checked); `got` has nb · 128 lines.
            unsafe { repack_row_avx512(b, r, i, nb, &mut got, &mut pg) };
        }
        assert!(want.iter().zip(&got).all(|(x, y)| x.0 == y.0));
        assert_eq!(bits(&pw.dx), bits(&pg.dx));
        assert_eq!(pw.sp, pg.sp);
    }

    #[test]
    fn the_split_weights_reassemble_to_sc_times_u_at_the_extremes() {
        for sc in [-128i32, -1, 0, 1, 127] {
            for u in [0i32, 1, 31, 32, 63] {
                let v = sc * u;
                let (lo, h) = ((v & 127) as u8 as i8, (v >> 7) as i8);
                assert!(lo >= 0);
                assert_eq!(128 * h as i32 + lo as i32, v, "sc {sc} u {u}");
            }
        }
    }
}
