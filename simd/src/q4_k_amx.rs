//! AMX (Intel tile matrix unit) path for Q4_K × Q8_K mat-muls of many tokens (prefill).
//!
//! Bit-exact with every other Q4_K kernel: the float work per (row, token) is the canonical
//! order of `kq.rs`, only the exact int32 lane sums come from the tile unit.
//!
//! Integer part. Canonical lane `l` of a block holds the 32 elements `e = 32j + 4l + i`
//! (`j` sub-block, `i < 4`); call `p = 4j + i` the element's place in its lane. Its weight
//! `v = sc[j]·q ≤ 63·15 = 945` is split into four unsigned bytes `v = s0 + s1 + s2 + s3` with
//! `a = v >> 2`, `s0 = a + (v & 3)`, `s1 = s2 = s3 = a` (all ≤ 239). For each lane two
//! `tdpbusd` (K = 64 bytes each) accumulate into one 16 × 16 int32 tile (16 weight rows ×
//! 16 tokens): the A tile of half `h` holds, in row `r`, bytes `κ < 32` = split `2h` of
//! `p = κ` and bytes `κ ≥ 32` = split `2h + 1` of `p = κ − 32`; the B tile (the same for both
//! halves) holds in row `g` (and again in row `g + 8`) token `n`'s dword `8g + l` of the
//! block's quants, which are exactly the activations of `p = 4g .. 4g + 3`. So
//! `C[r][n] = Σ_p v(p)·q8(p) = sumi[l]` exactly (|sumi| < 2^22, no overflow).
//!
//! Float part, per block in order and per (row, token), exactly as the AVX-512 kernel:
//! `acc[l] = fma(dy·dx, f32(sumi[l]), acc[l])` for the 8 lanes and
//! `acc_m[l] = fma(dy·(−dmin), f32(m[2l]·S(2l) + m[2l+1]·S(2l+1)), acc_m[l])` with
//! `S(j) = bsums[2j] + bsums[2j+1]` (one `vpmaddwd`); finally
//! `hsum8(acc) + ((m0 + m2) + (m1 + m3))`. The 16 tokens of a tile are the 16 float lanes of
//! one zmm, so every float operation is the same per-element IEEE operation as before.
//!
//! Availability: CPUID AMX-TILE + AMX-INT8, XCR0 tile state enabled by the OS, Linux's
//! `arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)` granted, and a one-tile self-check; any
//! failure leaves AMX unused (`Isa::Amx` unavailable). The tile instructions are written
//! with `asm!` (the AMX target features and intrinsics are not stable Rust).

#![cfg(target_arch = "x86_64")]

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;
use std::sync::OnceLock;

use crate::kernels::MatRef;
use crate::kq::scale_min_k4;
use crate::q4_k::BlockQ4K;

/// Fewest tokens for which `Isa::Amx` uses the tile path (below: the AVX-512 kernels).
pub(crate) const MIN_K: usize = 16;

/// One 64-byte, 64-byte aligned line: one tile row.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line([u8; 64]);

impl Default for Line {
    fn default() -> Self {
        Line([0; 64])
    }
}

/// Whether the AMX path can run here (decided once; see the module docs).
pub(crate) fn usable() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let ok = detect();
        tracing::debug!(amx = ok, "AMX tile unit");
        ok
    })
}

fn detect() -> bool {
    if !crate::Isa::Avx512.is_available() {
        return false;
    }
    let max = __cpuid(0).eax;
    let l1 = __cpuid(1);
    let l7 = if max >= 7 {
        __cpuid_count(7, 0)
    } else {
        __cpuid(0)
    };
    let tile = max >= 7 && (l7.edx >> 24) & 1 == 1;
    let int8 = max >= 7 && (l7.edx >> 25) & 1 == 1;
    let osxsave = (l1.ecx >> 27) & 1 == 1;
    if !(tile && int8 && osxsave) {
        return false;
    }
    let (lo, _hi): (u32, u32);
    // SAFETY: OSXSAVE is set (checked above), so XGETBV with ECX = 0 is allowed.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _hi, options(nomem, nostack));
    }
    // XCR0 bit 17 = XTILECFG, bit 18 = XTILEDATA.
    if (lo >> 17) & 3 != 3 {
        return false;
    }
    request_permission() && self_check()
}

/// Linux: `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, process-wide.
#[cfg(target_os = "linux")]
fn request_permission() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain syscall with integer arguments; it reads and writes no user memory.
    // The kernel clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_permission() -> bool {
    false
}

/// Tile palette 1: tiles 0..7 all 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileCfg([u8; 64]);

const fn tile_cfg() -> TileCfg {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
        t += 1;
    }
    TileCfg(c)
}

static CFG: TileCfg = tile_cfg();

/// # Safety
/// AMX must be usable (`detect` got this far: CPUID, XCR0 and the permission).
unsafe fn tile_config() {
    // SAFETY: CFG is a valid 64-byte palette-1 configuration (caller: AMX usable).
    unsafe { asm!("ldtilecfg [{}]", in(reg) CFG.0.as_ptr(), options(nostack, readonly)) };
}

/// # Safety
/// AMX must be usable.
unsafe fn tile_release() {
    // SAFETY: caller: AMX usable; releasing the tile state has no memory effects.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// One `tdpbusd` on known operands, compared with the integer formula.
fn self_check() -> bool {
    let mut a = [Line::default(); 16];
    let mut b = [Line::default(); 16];
    let mut c = [Line::default(); 16];
    for r in 0..16 {
        for k in 0..64 {
            a[r].0[k] = (r * 7 + k * 13) as u8;
            b[r].0[k] = (r * 5 + k * 11) as u8;
        }
    }
    // SAFETY: CPUID, XCR0 and the permission were checked by `detect`; every tile access
    // covers 16 lines of 64 bytes inside the arrays above.
    unsafe {
        tile_config();
        asm!(
            "tilezero tmm0",
            "tileloadd tmm4, [{a} + {s}*1]",
            "tileloadd tmm2, [{b} + {s}*1]",
            "tdpbusd tmm0, tmm4, tmm2",
            "tilestored [{c} + {s}*1], tmm0",
            a = in(reg) a.as_ptr(),
            b = in(reg) b.as_ptr(),
            c = in(reg) c.as_mut_ptr(),
            s = in(reg) 64usize,
            options(nostack),
        );
        tile_release();
    }
    (0..16).all(|m| {
        (0..16).all(|n| {
            let want: i32 = (0..64)
                .map(|k| a[m].0[k] as i32 * b[k / 4].0[4 * n + k % 4] as i8 as i32)
                .sum();
            i32::from_le_bytes(c[m].0[4 * n..4 * n + 4].try_into().expect("4 bytes")) == want
        })
    })
}

/// Activations of one matmul in the B-tile layout, built once per call (see module docs):
/// per (token tile `T`, block `i`): 8 lanes × 16 lines of quants, 4 lines of the min-term
/// pairs `(S(2l), S(2l+1))` as int16 per token, one line of the 16 tokens' `dy`.
/// Tokens past `k` in the last tile are zero.
#[derive(Clone, Default)]
pub(crate) struct AmxActs {
    ready: bool,
    k: usize,
    nb: usize,
    b: Vec<Line>,
    mins: Vec<Line>,
    dy: Vec<Line>,
}

impl std::fmt::Debug for AmxActs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmxActs")
            .field("ready", &self.ready)
            .field("k", &self.k)
            .field("nb", &self.nb)
            .finish()
    }
}

/// Raw views of the `AmxActs` buffers so several threads can fill disjoint units.
struct RawAmx {
    b: *mut Line,
    mins: *mut Line,
    dy: *mut Line,
}
// SAFETY: each thread writes only the units of its own range (disjoint), while `build`
// holds `&mut AmxActs`.
unsafe impl Sync for RawAmx {}

impl RawAmx {
    /// The lines of unit `u`: 128 B lines, 4 min lines, the `dy` line.
    ///
    /// # Safety
    /// `u` must be inside the buffers, and no other reference to unit `u` may be live.
    #[allow(clippy::mut_from_ref)]
    unsafe fn unit(&self, u: usize) -> (&mut [Line], &mut [Line], &mut Line) {
        // SAFETY: see the function's contract.
        unsafe {
            (
                std::slice::from_raw_parts_mut(self.b.add(u * 128), 128),
                std::slice::from_raw_parts_mut(self.mins.add(u * 4), 4),
                &mut *self.dy.add(u),
            )
        }
    }
}

fn grow(v: &mut Vec<Line>, n: usize) -> *mut Line {
    if v.len() < n {
        v.resize(n, Line::default());
    }
    v.as_mut_ptr()
}

impl AmxActs {
    pub(crate) fn invalidate(&mut self) {
        self.ready = false;
    }

    /// The layout, if built for these `k` tokens × `nb` blocks.
    pub(crate) fn get(&self, k: usize, nb: usize) -> Option<&AmxActs> {
        (self.ready && self.k == k && self.nb == nb).then_some(self)
    }

    /// Builds the layout from Q8_K activations (`qs`: k × 256·nb, `d`: k × nb, `bsums`:
    /// k × 16·nb, token-major), split over `pool`'s threads when given.
    pub(crate) fn build(
        &mut self,
        qs: &[i8],
        d: &[f32],
        bsums: &[i16],
        k: usize,
        nb: usize,
        pool: Option<&crate::Pool>,
    ) {
        assert!(qs.len() >= k * nb * 256 && d.len() >= k * nb && bsums.len() >= k * nb * 16);
        let units = k.div_ceil(16) * nb;
        let raw = RawAmx {
            b: grow(&mut self.b, units * 128),
            mins: grow(&mut self.mins, units * 4),
            dy: grow(&mut self.dy, units),
        };
        let fill = |r: Range<usize>| {
            for u in r {
                let (tt, i) = (u / nb, u % nb);
                // SAFETY: the buffers were sized for `units` above; ranges of different
                // threads are disjoint, so no unit is borrowed twice.
                let (bl, ml, dl) = unsafe { raw.unit(u) };
                for n in 0..16 {
                    let t = 16 * tt + n;
                    let (dw, pairs, dy) = if t < k {
                        let q = &qs[(t * nb + i) * 256..(t * nb + i + 1) * 256];
                        let bs = &bsums[(t * nb + i) * 16..(t * nb + i + 1) * 16];
                        let s = |j: usize| (bs[2 * j] as i32 + bs[2 * j + 1] as i32) as u16;
                        let pairs: [u32; 4] =
                            std::array::from_fn(|l| s(2 * l) as u32 | (s(2 * l + 1) as u32) << 16);
                        (Some(q), pairs, d[t * nb + i])
                    } else {
                        (None, [0; 4], 0.0)
                    };
                    for g in 0..8 {
                        for l in 0..8 {
                            let v: [u8; 4] = match dw {
                                Some(q) => std::array::from_fn(|s| q[32 * g + 4 * l + s] as u8),
                                None => [0; 4],
                            };
                            bl[16 * l + g].0[4 * n..4 * n + 4].copy_from_slice(&v);
                            bl[16 * l + g + 8].0[4 * n..4 * n + 4].copy_from_slice(&v);
                        }
                    }
                    for l in 0..4 {
                        ml[l].0[4 * n..4 * n + 4].copy_from_slice(&pairs[l].to_le_bytes());
                    }
                    dl.0[4 * n..4 * n + 4].copy_from_slice(&dy.to_le_bytes());
                }
            }
        };
        match pool {
            Some(p) if p.n_threads() > 1 && units >= 16 => {
                p.run(&|t, n| fill(units * t / n..units * (t + 1) / n))
            }
            _ => fill(0..units),
        }
        self.ready = true;
        self.k = k;
        self.nb = nb;
    }
}

/// Per (row tile, block) float parameters of the 16 rows.
#[derive(Clone, Copy, Default)]
struct RowPrm {
    dx: [f32; 16],
    ndmin: [f32; 16],
    /// `m[2l] | m[2l+1] << 16` for `vpmaddwd` with the `(S(2l), S(2l+1))` pairs.
    mp: [[i32; 4]; 16],
}

/// Per-thread repacked weights: [row tile][block][lane][half][16 rows] lines and params.
#[derive(Default)]
struct WBuf {
    a: Vec<Line>,
    prm: Vec<RowPrm>,
    c: Vec<Line>,
}

thread_local! {
    static WBUF: RefCell<WBuf> = RefCell::new(WBuf::default());
}

/// Rows per work item the pool should hand out for a matrix of `nb` blocks per row: as
/// many 16-row tiles (≤ 4) as keep the repacked weights (16 KiB per tile and block) near
/// 1 MiB, so they stay in L2 while every token tile streams past them.
pub(crate) fn chunk_rows(nb: usize) -> usize {
    16 * (64 / nb.max(1)).clamp(1, 4)
}

/// Repacks row `r` (< 16) of a tile: `lines` are the tile's 256 lines of one block.
fn repack_row(b: &BlockQ4K, r: usize, lines: &mut [Line], prm: &mut RowPrm) {
    let (sc, m) = scale_min_k4(&b.scales);
    for l in 0..8 {
        for p in 0..32 {
            let j = p / 4;
            let byte = b.qs[32 * (j / 2) + 4 * l + p % 4];
            let q = if j % 2 == 0 { byte & 0xF } else { byte >> 4 };
            let v = sc[j] as u16 * q as u16;
            let a = (v >> 2) as u8;
            let ab = a + (v & 3) as u8;
            lines[32 * l + r].0[p] = ab;
            lines[32 * l + r].0[32 + p] = a;
            lines[32 * l + 16 + r].0[p] = a;
            lines[32 * l + 16 + r].0[32 + p] = a;
        }
    }
    prm.dx[r] = crate::floats::f16_le(b.d);
    prm.ndmin[r] = -crate::floats::f16_le(b.dmin);
    for l in 0..4 {
        prm.mp[r][l] = m[2 * l] as i32 | (m[2 * l + 1] as i32) << 16;
    }
}

/// `sink(row, token, value)` for every row of `rows` and every token of `amx`, computed
/// with the tile unit. `w` is a Q4_K matrix whose rows match `amx`'s blocks.
pub(crate) fn compute_rows(
    w: &MatRef<'_>,
    amx: &AmxActs,
    rows: Range<usize>,
    mut sink: impl FnMut(usize, usize, f32),
) {
    let nb = amx.nb;
    let rb = nb * 144;
    assert_eq!(w.cols, nb * 256, "AMX activations do not match the matrix");
    let group = chunk_rows(nb);
    WBUF.with_borrow_mut(|wb| {
        let WBuf { a, prm, c } = wb;
        if c.len() < 128 {
            c.resize(128, Line::default());
        }
        let mut r0 = rows.start;
        while r0 < rows.end {
            let r1 = (r0 + group).min(rows.end);
            let n_tiles = (r1 - r0).div_ceil(16);
            if a.len() < n_tiles * nb * 256 {
                a.resize(n_tiles * nb * 256, Line::default());
            }
            if prm.len() < n_tiles * nb {
                prm.resize(n_tiles * nb, RowPrm::default());
            }
            for tile in 0..n_tiles {
                for r in 0..16 {
                    let row = r0 + 16 * tile + r;
                    for i in 0..nb {
                        let lines = &mut a[(tile * nb + i) * 256..(tile * nb + i + 1) * 256];
                        let p = &mut prm[tile * nb + i];
                        if row < r1 {
                            let off = row * rb + i * 144;
                            let blk: &BlockQ4K = bytemuck::from_bytes(&w.data[off..off + 144]);
                            repack_row(blk, r, lines, p);
                        } else {
                            repack_row(&BlockQ4K::zeroed_block(), r, lines, p);
                        }
                    }
                }
            }
            // SAFETY: `Isa::Amx` (the only caller's tier) implies `usable()`; every buffer
            // below has the sizes `tile_pass` reads (checked or resized above).
            unsafe { tile_config() };
            for tt in 0..amx.k.div_ceil(16) {
                for tile in 0..n_tiles {
                    let mut out = [[0.0f32; 16]; 16];
                    let nr = (r1 - r0 - 16 * tile).min(16);
                    // SAFETY: as above; AVX-512 is part of `Isa::Amx`.
                    unsafe {
                        tile_pass(
                            &a[tile * nb * 256..(tile + 1) * nb * 256],
                            &prm[tile * nb..(tile + 1) * nb],
                            amx,
                            tt,
                            nr,
                            c,
                            &mut out,
                        )
                    };
                    let base = r0 + 16 * tile;
                    for (r, o) in out[..nr].iter().enumerate() {
                        for (n, &v) in o.iter().enumerate().take(amx.k - 16 * tt) {
                            sink(base + r, 16 * tt + n, v);
                        }
                    }
                }
            }
            // SAFETY: AMX usable (above).
            unsafe { tile_release() };
            r0 = r1;
        }
    });
}

impl BlockQ4K {
    fn zeroed_block() -> BlockQ4K {
        bytemuck::Zeroable::zeroed()
    }
}

/// One 16-row × 16-token tile over all blocks; `out[r][n]` for rows `r < nr`.
///
/// # Safety
/// AMX usable and the tile configuration loaded; AVX-512 F/BW, FMA available; `a` holds
/// `nb · 256` lines, `prm` `nb` entries, `c` ≥ 128 lines, `amx` has token tile `tt`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn tile_pass(
    a: &[Line],
    prm: &[RowPrm],
    amx: &AmxActs,
    tt: usize,
    nr: usize,
    c: &mut [Line],
    out: &mut [[f32; 16]; 16],
) {
    let nb = amx.nb;
    let mut acc = [[_mm512_setzero_ps(); 16]; 12];
    let cp = c.as_mut_ptr();
    for i in 0..nb {
        let u = tt * nb + i;
        let bp = amx.b.as_ptr().add(u * 128);
        let ap = a.as_ptr().add(i * 256);
        for lp in 0..4 {
            let (l0, l1) = (2 * lp, 2 * lp + 1);
            // SAFETY (caller): the pointers cover 16 lines each: B lane l at bp + 16l,
            // A lane l half h at ap + 32l + 16h, C lane l at cp + 16l.
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tileloadd tmm2, [{b0} + {s}*1]",
                "tileloadd tmm4, [{a00} + {s}*1]",
                "tileloadd tmm5, [{a01} + {s}*1]",
                "tdpbusd tmm0, tmm4, tmm2",
                "tdpbusd tmm0, tmm5, tmm2",
                "tileloadd tmm3, [{b1} + {s}*1]",
                "tileloadd tmm6, [{a10} + {s}*1]",
                "tileloadd tmm7, [{a11} + {s}*1]",
                "tdpbusd tmm1, tmm6, tmm3",
                "tdpbusd tmm1, tmm7, tmm3",
                "tilestored [{c0} + {s}*1], tmm0",
                "tilestored [{c1} + {s}*1], tmm1",
                b0 = in(reg) bp.add(16 * l0),
                b1 = in(reg) bp.add(16 * l1),
                a00 = in(reg) ap.add(32 * l0),
                a01 = in(reg) ap.add(32 * l0 + 16),
                a10 = in(reg) ap.add(32 * l1),
                a11 = in(reg) ap.add(32 * l1 + 16),
                c0 = in(reg) cp.add(16 * l0),
                c1 = in(reg) cp.add(16 * l1),
                s = in(reg) 64usize,
                options(nostack),
            );
        }
        let dyv = _mm512_load_ps(amx.dy.as_ptr().add(u) as *const f32);
        let mp = amx.mins.as_ptr().add(u * 4) as *const __m512i;
        let mv = [0, 1, 2, 3].map(|l| _mm512_load_si512(mp.add(l)));
        let p = &prm[i];
        for r in 0..nr {
            let d = _mm512_mul_ps(dyv, _mm512_set1_ps(p.dx[r]));
            let dm = _mm512_mul_ps(dyv, _mm512_set1_ps(p.ndmin[r]));
            for l in 0..8 {
                let s = _mm512_load_si512(cp.add(16 * l + r) as *const __m512i);
                acc[l][r] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[l][r]);
            }
            for l in 0..4 {
                let s = _mm512_madd_epi16(mv[l], _mm512_set1_epi32(p.mp[r][l]));
                acc[8 + l][r] = _mm512_fmadd_ps(dm, _mm512_cvtepi32_ps(s), acc[8 + l][r]);
            }
        }
    }
    for r in 0..nr {
        let a = |l: usize| acc[l][r];
        let t4 = [0, 1, 2, 3].map(|l| _mm512_add_ps(a(l), a(l + 4)));
        let s = _mm512_add_ps(_mm512_add_ps(t4[0], t4[2]), _mm512_add_ps(t4[1], t4[3]));
        let m = _mm512_add_ps(_mm512_add_ps(a(8), a(10)), _mm512_add_ps(a(9), a(11)));
        _mm512_storeu_ps(out[r].as_mut_ptr(), _mm512_add_ps(s, m));
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

    /// Rows of Q4_K blocks of every kind; `BlockKind::AllMax` also sets every scale and
    /// min to 63 (the largest `sc·q`, 945, and the largest min term).
    fn rand_rows(rng: &mut Rng, rows: usize, nb: usize) -> Vec<u8> {
        let mut data = Vec::new();
        for blk in 0..rows * nb {
            let kind = KINDS[(blk + rows) % KINDS.len()];
            let mut b: BlockQ4K = bytemuck::Zeroable::zeroed();
            b.d = rand_scale(rng, kind);
            b.dmin = rand_scale(rng, kind);
            rng.fill(&mut b.scales);
            match kind {
                BlockKind::AllMax => {
                    b.qs.fill(0xFF);
                    b.scales.fill(0xFF);
                }
                BlockKind::AllZero => b.qs.fill(0),
                _ => rng.fill(&mut b.qs),
            }
            data.extend_from_slice(bytemuck::bytes_of(&b));
        }
        data
    }

    #[test]
    fn the_tile_path_matches_the_avx512_and_scalar_kernels_bit_for_bit() {
        if !Isa::Amx.is_available() {
            eprintln!("skipped: no AMX");
            return;
        }
        let mut rng = Rng::new(41);
        // Row counts: odd, one tile, several groups of tiles; token counts around the tile.
        for (rows, nb) in [(1usize, 1usize), (17, 2), (37, 5), (150, 1), (70, 3)] {
            let cols = 256 * nb;
            let data = rand_rows(&mut rng, rows, nb);
            let w = MatRef {
                ty: GgmlType::Q4_K,
                data: &data,
                rows,
                cols,
            };
            for k in [16usize, 17, 31, 32, 45] {
                let mut x = rand_acts(&mut rng, k, cols);
                // Token 3: every activation at the Q8_K extreme −128 (x = +max flips sign).
                x[3 * cols..4 * cols].fill(5.0);
                let mut acts = QuantizedActs::new();
                acts.quantize(GgmlType::Q4_K, &x, k, cols);
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
                assert!(KernelSet::new(GgmlType::Q4_K, Isa::Amx).wants_amx(k));
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
                // A row range that starts mid-tile writes exactly its rows.
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
                // The pool builds the layout itself, on 1 and 2 threads.
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
    fn the_fused_ffn_on_the_tile_path_matches_avx512_bit_for_bit() {
        if !Isa::Amx.is_available() {
            eprintln!("skipped: no AMX");
            return;
        }
        let mut rng = Rng::new(43);
        let (rows, nb, k) = (45, 2, 24);
        let cols = 256 * nb;
        let (g, u) = (rand_rows(&mut rng, rows, nb), rand_rows(&mut rng, rows, nb));
        let mat = |d| MatRef {
            ty: GgmlType::Q4_K,
            data: d,
            rows,
            cols,
        };
        let x = rand_acts(&mut rng, k, cols);
        let (a, b) = (Pool::with_isa(2, Isa::Avx512), Pool::with_isa(2, Isa::Amx));
        let mut want = vec![f32::NAN; k * rows];
        let mut got = vec![f32::NAN; k * rows];
        a.ffn_gate_up_swiglu(mat(&g), mat(&u), &x, k, &mut want);
        b.ffn_gate_up_swiglu(mat(&g), mat(&u), &x, k, &mut got);
        assert_eq!(bits(&got), bits(&want));
    }

    #[test]
    fn hybrid_isa_avx512_names_a_tier_without_the_tile_unit() {
        assert_eq!(Isa::from_name("avx512"), Some(Isa::Avx512));
        assert_eq!(Isa::from_name("AMX"), Some(Isa::Amx));
        if !Isa::Avx512.is_available() {
            eprintln!("skipped: no AVX-512");
            return;
        }
        assert!(!KernelSet::new(GgmlType::Q4_K, Isa::Avx512).wants_amx(256));
        if Isa::Amx.is_available() {
            assert!(KernelSet::new(GgmlType::Q4_K, Isa::Amx).wants_amx(MIN_K));
            assert!(!KernelSet::new(GgmlType::Q4_K, Isa::Amx).wants_amx(MIN_K - 1));
            assert!(!KernelSet::new(GgmlType::Q6_K, Isa::Amx).wants_amx(256));
        }
    }
}
