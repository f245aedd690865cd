//! A CPU-placed FFN layer with the GPU's PCIe share (`gpu::share`): the orchestration of
//! which rows go where and how the device's rows rejoin the CPU's. The device side is a
//! [`RowShare`]: the real one ([`OnGpu`]) queues the exact kernels; the tests below use a CPU
//! stand-in that computes the same rows with the `simd` kernels, so CI checks the layouts,
//! the row ranges and the SwiGLU of the device's rows against the CPU-only FFN, bit for bit.

use simd::{MatRef, Pool, QuantizedActs};

use super::super::device::Gpu;
use super::super::error::Result;
use super::super::share::{PcieShare, ShareKind, SharedMat};
use crate::placement::profile::{self, Phase};

/// The device side of a shared step.
pub(crate) trait RowShare {
    /// A matrix the device computes rows of.
    type Mat: Copy;

    /// Rows `..r` of a `rows`-row matrix the device takes at k tokens (0: none).
    fn rows_for(&self, kind: ShareKind, k: usize, rows: usize) -> usize;

    /// Queues rows `..rows` of each matrix of `mats` (same columns) for the k tokens of
    /// `acts`.
    fn launch(
        &mut self,
        acts: &QuantizedActs,
        mats: &[Self::Mat],
        rows: usize,
        k: usize,
    ) -> Result<()>;

    /// Waits for the queued rows: matrix j's token t row r at `[(j * k + t) * rows + r]`.
    /// `cpu_rows` / `cpu_secs`: what the CPU did meanwhile (for the split's controller).
    fn finish(&mut self, kind: ShareKind, cpu_rows: usize, cpu_secs: f64) -> Result<&[f32]>;
}

/// The real device side: the exact kernels over registered host memory.
pub(crate) struct OnGpu<'s, 'g> {
    pub sh: &'s mut PcieShare,
    pub gpu: &'g Gpu,
}

impl RowShare for OnGpu<'_, '_> {
    type Mat = SharedMat;

    fn rows_for(&self, kind: ShareKind, k: usize, rows: usize) -> usize {
        self.sh.rows_for(kind, k, rows)
    }

    fn launch(
        &mut self,
        acts: &QuantizedActs,
        mats: &[SharedMat],
        rows: usize,
        k: usize,
    ) -> Result<()> {
        self.sh.launch(self.gpu, acts, mats, rows, k)
    }

    fn finish(&mut self, kind: ShareKind, cpu_rows: usize, cpu_secs: f64) -> Result<&[f32]> {
        self.sh.finish(kind, cpu_rows, cpu_secs)
    }
}

/// The CPU matrices of one FFN layer and the device's handles of the same three.
pub(crate) struct FfnMats<'w, M> {
    pub gate: (MatRef<'w>, M),
    pub up: (MatRef<'w>, M),
    pub down: (MatRef<'w>, M),
}

/// `o = down(swiglu(gate·xn, up·xn))` for k = t tokens, the device computing the first rows
/// of each matrix while the pool does the rest: the same bits as the CPU-only path
/// (`Pool::ffn_gate_up_swiglu` then `Pool::matmul`) when the device's rows are.
pub(crate) fn run_shared<S: RowShare>(
    sh: &mut S,
    m: &FfnMats<'_, S::Mat>,
    pool: &Pool,
    xn: &[f32],
    t: usize,
    hid: &mut [f32],
    o: &mut [f32],
) -> Result<()> {
    let ff = m.gate.0.rows;
    // Gate and up: the device's rows come back raw and get the CPU's SwiGLU.
    let rg = sh.rows_for(ShareKind::GateUp, t, ff);
    let res = shared_step(
        sh,
        ShareKind::GateUp,
        &[m.gate.1, m.up.1],
        rg,
        ff,
        t,
        |hook| pool.ffn_gate_up_swiglu_from(m.gate.0, m.up.0, xn, t, hid, rg, hook),
    )?;
    for tt in 0..t {
        let h = &mut hid[tt * ff..tt * ff + rg];
        h.copy_from_slice(&res[tt * rg..(tt + 1) * rg]);
        simd::act::swiglu_inplace(h, &res[(t + tt) * rg..(t + tt + 1) * rg]);
    }
    // Down.
    let d = m.down.0.rows;
    let rd = sh.rows_for(ShareKind::Down, t, d);
    let res = shared_step(sh, ShareKind::Down, &[m.down.1], rd, d, t, |hook| {
        pool.matmul_from(m.down.0, hid, t, o, rd, hook)
    })?;
    for tt in 0..t {
        o[tt * d..tt * d + rd].copy_from_slice(&res[tt * rd..(tt + 1) * rd]);
    }
    Ok(())
}

/// One shared step: `cpu(hook)` runs a pool call that computes rows `r..rows` after `hook`
/// has seen the quantized input; the hook queues the device's rows `..r` of `mats` (it runs
/// on the calling thread once the workers are on their rows). Waits for the device and
/// returns its results ([`RowShare::finish`]'s layout).
#[allow(clippy::too_many_arguments)]
fn shared_step<'s, S: RowShare>(
    sh: &'s mut S,
    kind: ShareKind,
    mats: &[S::Mat],
    r: usize,
    rows: usize,
    t: usize,
    cpu: impl FnOnce(&mut dyn FnMut(&QuantizedActs)),
) -> Result<&'s [f32]> {
    let mut launched = Ok(());
    let mut start = None;
    cpu(&mut |acts| {
        start = Some(std::time::Instant::now());
        launched = sh.launch(acts, mats, r, t);
    });
    launched?;
    let cpu_secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let p0 = profile::start();
    let res = sh.finish(kind, rows - r, cpu_secs);
    profile::record(Phase::ShareWait, 0, p0);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use simd::{GgmlType, Isa};

    /// The device side played by the CPU kernels on the same activation bits.
    struct CpuStandIn<'w> {
        frac: f64,
        out: Vec<f32>,
        n: usize,
        calls: usize,
        _w: std::marker::PhantomData<MatRef<'w>>,
    }

    impl<'w> RowShare for CpuStandIn<'w> {
        type Mat = MatRef<'w>;

        fn rows_for(&self, _kind: ShareKind, _k: usize, rows: usize) -> usize {
            ((rows as f64 * self.frac) as usize).min(rows)
        }

        fn launch(
            &mut self,
            acts: &QuantizedActs,
            mats: &[MatRef<'w>],
            rows: usize,
            k: usize,
        ) -> Result<()> {
            let s = self;
            s.n = mats.len() * k * rows;
            s.out.clear();
            s.out.resize(s.n, f32::NAN);
            for (j, m) in mats.iter().enumerate() {
                if rows > 0 {
                    let o = &mut s.out[j * k * rows..(j + 1) * k * rows];
                    simd::matvec_rows(Isa::detect(), *m, acts, 0..rows, o, rows);
                }
            }
            s.calls += 1;
            Ok(())
        }

        fn finish(&mut self, _kind: ShareKind, _cpu_rows: usize, _cpu_secs: f64) -> Result<&[f32]> {
            Ok(&self.out[..self.n])
        }
    }

    /// Deterministic pseudo-random bytes.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    /// A random `ty` matrix with small finite super-scales (the f16 at each block's `d`).
    fn matrix(seed: u64, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
        let bb = ty.block_bytes();
        let mut b = bytes(seed, rows * cols / 256 * bb);
        let d = half::f16::from_f32(0.003).to_bits().to_le_bytes();
        for blk in b.chunks_mut(bb) {
            match ty {
                GgmlType::Q4_K => {
                    blk[0..2].copy_from_slice(&d);
                    blk[2..4].copy_from_slice(&d);
                }
                _ => blk[bb - 2..].copy_from_slice(&d),
            }
        }
        b
    }

    /// Whatever share of rows the device takes (none, some, all) and whatever k, the shared
    /// FFN gives the CPU-only FFN's bits.
    #[test]
    fn the_shared_ffn_equals_the_cpu_ffn_bit_for_bit() {
        let (d, ff) = (512, 1024);
        let (g, u, w) = (
            matrix(1, GgmlType::Q4_K, ff, d),
            matrix(2, GgmlType::Q4_K, ff, d),
            matrix(3, GgmlType::Q6_K, d, ff),
        );
        fn mr(ty: GgmlType, data: &[u8], rows: usize, cols: usize) -> MatRef<'_> {
            MatRef {
                ty,
                data,
                rows,
                cols,
            }
        }
        let (gm, um, dm) = (
            mr(GgmlType::Q4_K, &g, ff, d),
            mr(GgmlType::Q4_K, &u, ff, d),
            mr(GgmlType::Q6_K, &w, d, ff),
        );
        let mats = FfnMats {
            gate: (gm, gm),
            up: (um, um),
            down: (dm, dm),
        };
        let pool = Pool::new(3);
        let xs: Vec<f32> = bytes(9, 8 * d)
            .iter()
            .map(|&b| (b as f32 - 127.5) / 40.0)
            .collect();
        for k in 1..=8usize {
            let x = &xs[..k * d];
            let (mut hid_ref, mut o_ref) = (vec![0f32; k * ff], vec![0f32; k * d]);
            pool.ffn_gate_up_swiglu(gm, um, x, k, &mut hid_ref);
            pool.matmul(dm, &hid_ref, k, &mut o_ref);
            for frac in [0.0, 0.3, 0.55, 1.0] {
                let mut sh = CpuStandIn {
                    frac,
                    out: Vec::new(),
                    n: 0,
                    calls: 0,
                    _w: std::marker::PhantomData,
                };
                let (mut hid, mut o) = (vec![f32::NAN; k * ff], vec![f32::NAN; k * d]);
                run_shared(&mut sh, &mats, &pool, x, k, &mut hid, &mut o).unwrap();
                assert_eq!(sh.calls, 2);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&hid), bits(&hid_ref), "hidden, k = {k}, frac = {frac}");
                assert_eq!(bits(&o), bits(&o_ref), "output, k = {k}, frac = {frac}");
            }
        }
    }
}
