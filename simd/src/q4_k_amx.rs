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
/// Measured crossover on the 2-core dev VM (Q4_K 17408×5120, one thread): k = 24 AVX-512
/// 34–35 ms vs tiles 36–45 ms; k = 32 41.5 vs 37.6 ms; k = 64 82 vs 53–61 ms.
pub(crate) const MIN_K: usize = 32;

/// How many lane steps ahead `tile_pass` (and `q6_k_amx`'s) prefetch the A and B tiles
/// from L2 into L1. Measured on the dev VM (kernel-bench, 1 thread, k = 256): no prefetch
/// → 2 steps ahead: Q4_K gate 168 → 156 ms, down 214 → 182 ms; Q6_K gate 212 → 164 ms,
/// down 276 → 192 ms.
pub(crate) const PF_STEPS: usize = 2;

/// One 64-byte, 64-byte aligned line: one tile row.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [u8; 64]);

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
pub(crate) unsafe fn tile_release() {
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
/// pairs `(S(2l), S(2l+1))` as int16 per token, one line of the 16 tokens' `dy`, and for
/// Q6_K (`q6_k_amx`) 8 lines of the bsums pairs `(bsums[2l], bsums[2l+1])` per token.
/// Tokens past `k` in the last tile are zero.
#[derive(Clone, Default)]
pub(crate) struct AmxActs {
    ready: bool,
    pub(crate) k: usize,
    pub(crate) nb: usize,
    pub(crate) b: Vec<Line>,
    mins: Vec<Line>,
    pub(crate) dy: Vec<Line>,
    pub(crate) bs6: Vec<Line>,
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
    bs6: *mut Line,
}
// SAFETY: each thread writes only the units of its own range (disjoint), while `build`
// holds `&mut AmxActs`.
unsafe impl Sync for RawAmx {}

impl RawAmx {
    /// The lines of unit `u = tt·nb + i`: 16 B lines per lane (at `b_line(tt, l, i)`),
    /// 4 min lines, the `dy` line.
    ///
    /// # Safety
    /// `u` must be inside the buffers, and no other reference to unit `u` may be live.
    #[allow(clippy::mut_from_ref)]
    unsafe fn unit(
        &self,
        u: usize,
        nb: usize,
    ) -> ([&mut [Line]; 8], &mut [Line], &mut Line, &mut [Line]) {
        let (tt, i) = (u / nb, u % nb);
        // SAFETY: see the function's contract; the 8 lane ranges are disjoint.
        unsafe {
            (
                std::array::from_fn(|l| {
                    std::slice::from_raw_parts_mut(self.b.add(b_line(tt, l, i, nb)), 16)
                }),
                std::slice::from_raw_parts_mut(self.mins.add(u * 4), 4),
                &mut *self.dy.add(u),
                std::slice::from_raw_parts_mut(self.bs6.add(u * 8), 8),
            )
        }
    }
}

/// First line of the B tile of token tile `tt`, lane `l`, block `i`: lanes outermost so one
/// lane's tiles of consecutive blocks are contiguous (the order `tile_pass` reads them in).
pub(crate) fn b_line(tt: usize, l: usize, i: usize, nb: usize) -> usize {
    ((tt * 8 + l) * nb + i) * 16
}

/// First line of the two A tiles (halves 0, 1) of lane `l`, block `i` in a row tile's
/// buffer of `nb · 256` lines (same lane-outer order as `b_line`).
fn a_line(l: usize, i: usize, nb: usize) -> usize {
    (l * nb + i) * 32
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
            bs6: grow(&mut self.bs6, units * 8),
        };
        let fill = |r: Range<usize>| {
            for u in r {
                let (tt, i) = (u / nb, u % nb);
                // SAFETY: the buffers were sized for `units` above; ranges of different
                // threads are disjoint, so no unit is borrowed twice.
                let (bl, ml, dl, b6) = unsafe { raw.unit(u, nb) };
                for n in 0..16 {
                    let t = 16 * tt + n;
                    let (dw, pairs, pairs6, dy) = if t < k {
                        let q = &qs[(t * nb + i) * 256..(t * nb + i + 1) * 256];
                        let bs = &bsums[(t * nb + i) * 16..(t * nb + i + 1) * 16];
                        let s = |j: usize| (bs[2 * j] as i32 + bs[2 * j + 1] as i32) as u16;
                        let pairs: [u32; 4] =
                            std::array::from_fn(|l| s(2 * l) as u32 | (s(2 * l + 1) as u32) << 16);
                        let pairs6: [u32; 8] = std::array::from_fn(|l| {
                            bs[2 * l] as u16 as u32 | (bs[2 * l + 1] as u16 as u32) << 16
                        });
                        (Some(q), pairs, pairs6, d[t * nb + i])
                    } else {
                        (None, [0; 4], [0; 8], 0.0)
                    };
                    for g in 0..8 {
                        for l in 0..8 {
                            let v: [u8; 4] = match dw {
                                Some(q) => std::array::from_fn(|s| q[32 * g + 4 * l + s] as u8),
                                None => [0; 4],
                            };
                            bl[l][g].0[4 * n..4 * n + 4].copy_from_slice(&v);
                            bl[l][g + 8].0[4 * n..4 * n + 4].copy_from_slice(&v);
                        }
                    }
                    for l in 0..4 {
                        ml[l].0[4 * n..4 * n + 4].copy_from_slice(&pairs[l].to_le_bytes());
                    }
                    for l in 0..8 {
                        b6[l].0[4 * n..4 * n + 4].copy_from_slice(&pairs6[l].to_le_bytes());
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

/// Repacks row `r` (< 16) of block `i` of a tile into its `nb · 256` `lines` (scalar
/// reference of `repack_row_avx512`).
#[cfg(test)]
fn repack_row(b: &BlockQ4K, r: usize, i: usize, nb: usize, lines: &mut [Line], prm: &mut RowPrm) {
    let (sc, m) = scale_min_k4(&b.scales);
    for l in 0..8 {
        for p in 0..32 {
            let j = p / 4;
            let byte = b.qs[32 * (j / 2) + 4 * l + p % 4];
            let q = if j % 2 == 0 { byte & 0xF } else { byte >> 4 };
            let v = sc[j] as u16 * q as u16;
            let a = (v >> 2) as u8;
            let ab = a + (v & 3) as u8;
            let at = a_line(l, i, nb);
            lines[at + r].0[p] = ab;
            lines[at + r].0[32 + p] = a;
            lines[at + 16 + r].0[p] = a;
            lines[at + 16 + r].0[32 + p] = a;
        }
    }
    prm.dx[r] = crate::floats::f16_le(b.d);
    prm.ndmin[r] = -crate::floats::f16_le(b.dmin);
    for l in 0..4 {
        prm.mp[r][l] = m[2 * l] as i32 | (m[2 * l + 1] as i32) << 16;
    }
}

/// `repack_row` with AVX-512: per lane, one `vpermt2d` gathers the lane's four dwords of
/// `qs` (each twice), a per-dword shift picks low / high nibbles, giving `q(p)` for
/// `p = 0..31` in order; then `v = sc·q` in 16-bit lanes and the byte splits.
///
/// # Safety
/// AVX-512 F/BW must be available; `lines` must hold `nb · 256` lines.
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn repack_row_avx512(
    b: &BlockQ4K,
    r: usize,
    i: usize,
    nb: usize,
    lines: &mut [Line],
    prm: &mut RowPrm,
) {
    let (sc, m) = scale_min_k4(&b.scales);
    let q0 = _mm512_loadu_si512(b.qs.as_ptr() as *const __m512i);
    let q1 = _mm512_loadu_si512(b.qs.as_ptr().add(64) as *const __m512i);
    let shifts = _mm512_set1_epi64(4 << 32);
    let m4 = _mm512_set1_epi8(0x0F);
    // Word p of `scw` = sc[p / 4].
    let sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64(
        sc.as_ptr() as *const __m128i
    )));
    let scw = _mm512_permutexvar_epi16(
        _mm512_set_epi16(
            7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0,
            0, 0, 0,
        ),
        sc16,
    );
    let three = _mm512_set1_epi16(3);
    let dst = lines.as_mut_ptr();
    for j in 0..4 {
        // Dword 8h + 2c + e of the result = qs dword 8c + (2j + h).
        let l0 = 2 * j as i32;
        let idx = _mm512_setr_epi32(
            l0,
            l0,
            8 + l0,
            8 + l0,
            16 + l0,
            16 + l0,
            24 + l0,
            24 + l0,
            l0 + 1,
            l0 + 1,
            9 + l0,
            9 + l0,
            17 + l0,
            17 + l0,
            25 + l0,
            25 + l0,
        );
        let y = _mm512_permutex2var_epi32(q0, idx, q1);
        let q = _mm512_and_si512(_mm512_srlv_epi32(y, shifts), m4);
        for h in 0..2 {
            let l = 2 * j + h;
            let half = if h == 0 {
                _mm512_castsi512_si256(q)
            } else {
                _mm512_extracti64x4_epi64(q, 1)
            };
            let v = _mm512_mullo_epi16(_mm512_cvtepu8_epi16(half), scw);
            let a = _mm512_srli_epi16(v, 2);
            let ab = _mm512_add_epi16(a, _mm512_and_si512(v, three));
            let (a8, ab8) = (_mm512_cvtepi16_epi8(a), _mm512_cvtepi16_epi8(ab));
            let at = a_line(l, i, nb);
            let h0 = _mm512_inserti64x4(_mm512_castsi256_si512(ab8), a8, 1);
            let h1 = _mm512_inserti64x4(_mm512_castsi256_si512(a8), a8, 1);
            _mm512_store_si512(dst.add(at + r) as *mut __m512i, h0);
            _mm512_store_si512(dst.add(at + 16 + r) as *mut __m512i, h1);
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
    mut sink: impl crate::kernels::Sink,
) {
    let nb = amx.nb;
    let rb = nb * 144;
    assert_eq!(w.cols, nb * 256, "AMX activations do not match the matrix");
    let group = chunk_rows(nb);
    WBUF.with_borrow_mut(|wb| {
        let WBuf { a, prm, c } = wb;
        if c.len() < 32 {
            c.resize(32, Line::default());
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
                        let lines = &mut a[tile * nb * 256..(tile + 1) * nb * 256];
                        let p = &mut prm[tile * nb + i];
                        let zero = BlockQ4K::zeroed_block();
                        let blk: &BlockQ4K = if row < r1 {
                            let off = row * rb + i * 144;
                            bytemuck::from_bytes(&w.data[off..off + 144])
                        } else {
                            &zero
                        };
                        // SAFETY: AVX-512 F/BW are part of `Isa::Amx`; `lines` is the
                        // tile's `nb · 256` lines.
                        unsafe { repack_row_avx512(blk, r, i, nb, lines, p) };
                    }
                }
            }
            // SAFETY: `Isa::Amx` (the only caller's tier) implies `usable()`; every buffer
            // below has the sizes `tile_pass` reads (checked or resized above).
            unsafe { tile_config() };
            // Tile results, [row][token], then [token][row] for the sink.
            let (mut out, mut by_token) = ([[0.0f32; 16]; 16], [[0.0f32; 16]; 16]);
            for tt in 0..amx.k.div_ceil(16) {
                for tile in 0..n_tiles {
                    let nr = (r1 - r0 - 16 * tile).min(16);
                    // SAFETY: as above (tile config loaded, buffers sized); AVX-512 is part
                    // of `Isa::Amx`; token tile tt exists.
                    unsafe {
                        tile_pass(
                            &a[tile * nb * 256..(tile + 1) * nb * 256],
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

impl BlockQ4K {
    fn zeroed_block() -> BlockQ4K {
        bytemuck::Zeroable::zeroed()
    }
}

/// `C = A_h0·B + A_h1·B` for one lane of one block, stored to `c`. Even blocks use tiles
/// 0..3, odd blocks 4..7, so consecutive blocks do not wait on each other's tiles.
///
/// # Safety
/// AMX usable, tile configuration loaded; `a` points at 32 readable lines (the lane's two
/// A tiles), `b` at 16 readable lines, `c` at 16 writable lines.
#[inline(always)]
unsafe fn lane_tiles(odd: bool, a: *const Line, b: *const Line, c: *mut Line) {
    let s = 64usize;
    if odd {
        // SAFETY: see the function's contract; each tile is 16 lines of 64 bytes.
        unsafe {
            asm!(
                "tilezero tmm4",
                "tileloadd tmm5, [{b} + {s}*1]",
                "tileloadd tmm6, [{a0} + {s}*1]",
                "tileloadd tmm7, [{a1} + {s}*1]",
                "tdpbusd tmm4, tmm6, tmm5",
                "tdpbusd tmm4, tmm7, tmm5",
                "tilestored [{c} + {s}*1], tmm4",
                b = in(reg) b, a0 = in(reg) a, a1 = in(reg) a.add(16),
                c = in(reg) c, s = in(reg) s, options(nostack),
            )
        }
    } else {
        // SAFETY: as above.
        unsafe {
            asm!(
                "tilezero tmm0",
                "tileloadd tmm1, [{b} + {s}*1]",
                "tileloadd tmm2, [{a0} + {s}*1]",
                "tileloadd tmm3, [{a1} + {s}*1]",
                "tdpbusd tmm0, tmm2, tmm1",
                "tdpbusd tmm0, tmm3, tmm1",
                "tilestored [{c} + {s}*1], tmm0",
                b = in(reg) b, a0 = in(reg) a, a1 = in(reg) a.add(16),
                c = in(reg) c, s = in(reg) s, options(nostack),
            )
        }
    }
}

/// One 16-row tile × one 16-token tile `tt` over all blocks; `out[r][n]`.
///
/// Lane by lane: the 16 rows' accumulators of the lane stay in registers over all blocks
/// while the tile unit computes the next step's lane sums into the other half of `c`.
/// Rows past the matrix are zero blocks (`dx = 0`), harmless, and not read by the caller.
///
/// # Safety
/// AMX usable and the tile configuration loaded; AVX-512 F/BW, FMA available; `a` holds
/// `nb · 256` lines, `prm` `nb` entries, `c` ≥ 32 lines, `amx` has token tile `tt`.
// Several arrays are indexed by the same row / block number.
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
    // steps run); left uninitialised to save a 12 KiB memset per call.
    let mut lanes = [std::mem::MaybeUninit::<[__m512; 16]>::uninit(); 12];
    // Step s = (lane s / nb, block s % nb). Its lane sums land in half s % 2 of `c` (tile
    // set s % 2); step s + 1 is issued before step s is folded, also across lanes, so the
    // tile unit runs ahead of the fold.
    let issue = |s: usize| {
        let (l, i) = (s / nb, s % nb);
        // SAFETY (caller): lane l's A and B tiles of block i exist; `c` has 32 lines.
        lane_tiles(
            s % 2 == 1,
            a.as_ptr().add(a_line(l, i, nb)),
            amx.b.as_ptr().add(b_line(tt, l, i, nb)),
            cp.add(16 * (s % 2)),
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
            // Bring step s + 2's A and B tiles (3 KiB) from L2 into L1 while the tile unit
            // and the fold work on steps s + 1 and s.
            let (l2, i2) = ((s + PF_STEPS) / nb, (s + PF_STEPS) % nb);
            let pa = a.as_ptr().add(a_line(l2, i2, nb)) as *const i8;
            let pb = amx.b.as_ptr().add(b_line(tt, l2, i2, nb)) as *const i8;
            for j in 0..32 {
                _mm_prefetch(pa.add(64 * j), _MM_HINT_T0);
            }
            for j in 0..16 {
                _mm_prefetch(pb.add(64 * j), _MM_HINT_T0);
            }
        }
        let u = tt * nb + i;
        let cb = cp.add(16 * (s % 2));
        let dyv = _mm512_load_ps(amx.dy.as_ptr().add(u) as *const f32);
        let p = &prm[i];
        for r in 0..16 {
            let d = _mm512_mul_ps(dyv, _mm512_set1_ps(p.dx[r]));
            let v = _mm512_load_si512(cb.add(r) as *const __m512i);
            acc[r] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(v), acc[r]);
        }
        if i + 1 == nb {
            lanes[l].write(acc);
            acc = [_mm512_setzero_ps(); 16];
        }
    }
    for lm in 0..4 {
        let mut acc = [_mm512_setzero_ps(); 16];
        for i in 0..nb {
            let u = tt * nb + i;
            let dyv = _mm512_load_ps(amx.dy.as_ptr().add(u) as *const f32);
            let mv = _mm512_load_si512(amx.mins.as_ptr().add(4 * u + lm) as *const __m512i);
            let p = &prm[i];
            for r in 0..16 {
                let dm = _mm512_mul_ps(dyv, _mm512_set1_ps(p.ndmin[r]));
                let s = _mm512_madd_epi16(mv, _mm512_set1_epi32(p.mp[r][lm]));
                acc[r] = _mm512_fmadd_ps(dm, _mm512_cvtepi32_ps(s), acc[r]);
            }
        }
        lanes[8 + lm].write(acc);
    }
    for r in 0..16 {
        // SAFETY: every lane was written above (the step loop visits each lane's last
        // block, the min loop lanes 8..11).
        let a = |l: usize| unsafe { lanes[l].assume_init_ref()[r] };
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
            for k in [MIN_K, MIN_K + 1, 47, 48, 63] {
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
        let (rows, nb, k) = (45, 2, 40);
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
    fn the_vector_repack_equals_the_scalar_repack() {
        if !Isa::Amx.is_available() {
            eprintln!("skipped: no AMX");
            return;
        }
        let mut rng = Rng::new(47);
        let nb = 3;
        let data = rand_rows(&mut rng, 6, nb);
        let blocks: &[BlockQ4K] = bytemuck::cast_slice(&data);
        let (mut want, mut got) = (
            vec![Line::default(); nb * 256],
            vec![Line::default(); nb * 256],
        );
        let (mut pw, mut pg) = (RowPrm::default(), RowPrm::default());
        for (n, b) in blocks.iter().enumerate() {
            let (r, i) = (n % 16, n % nb);
            repack_row(b, r, i, nb, &mut want, &mut pw);
            // SAFETY: AVX-512 is part of `Isa::Amx` (checked); `got` has nb · 256 lines.
            unsafe { repack_row_avx512(b, r, i, nb, &mut got, &mut pg) };
        }
        assert!(want.iter().zip(&got).all(|(x, y)| x.0 == y.0));
        assert_eq!(bits(&pw.dx), bits(&pg.dx));
        assert_eq!(bits(&pw.ndmin), bits(&pg.ndmin));
        assert_eq!(pw.mp, pg.mp);
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
            assert!(KernelSet::new(GgmlType::Q6_K, Isa::Amx).wants_amx(256));
            assert!(!KernelSet::new(GgmlType::Q5_K, Isa::Amx).wants_amx(256));
        }
    }
}
