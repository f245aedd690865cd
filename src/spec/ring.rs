//! The GDN snapshot ring: the conv and recurrent state of every GDN layer after each token
//! of a verify batch, so that a rejected draft can be undone without re-running the accepted
//! tokens. Attention KV needs no snapshot: rows past the kept position are overwritten later.
//!
//! Slot `t` holds the state after batch token `t`. A batch of k tokens fills slots
//! `0..k−1`; the state after the last token is the live state itself, so `n_slots` slots
//! serve batches of up to `n_slots + 1` tokens (one slot per draft depth). All memory is
//! allocated in [`SnapshotRing::new`]; recording and restoring only copy.

use crate::model::qwen35::state::LayerState;
use crate::model::qwen35::{GdnStateSink, SeqState};
use simd::Pool;

pub struct SnapshotRing {
    n_slots: usize,
    /// Floats per slot: Σ over GDN layers of conv_len + ssm_len.
    slot_len: usize,
    /// Per trunk layer: where its conv state starts inside a slot (None for attention layers).
    offsets: Vec<Option<usize>>,
    /// [n_slots][slot_len].
    data: Vec<f32>,
    /// Slots the current forward writes: `0..recording`.
    recording: usize,
}

impl SnapshotRing {
    /// A ring of `n_slots` slots shaped after `st`'s GDN layers.
    pub fn new(st: &SeqState, n_slots: usize) -> SnapshotRing {
        let mut offsets = Vec::with_capacity(st.layers.len());
        let mut slot_len = 0;
        for l in &st.layers {
            match l {
                LayerState::Gdn { conv, ssm } => {
                    offsets.push(Some(slot_len));
                    slot_len += conv.len() + ssm.len();
                }
                LayerState::Attention { .. } => offsets.push(None),
            }
        }
        // Written out now (not lazily zero-mapped) so the first verify steps do not pay
        // page faults and the memory is committed before decoding starts.
        let mut data = Vec::with_capacity(n_slots * slot_len);
        data.resize(n_slots * slot_len, 0.0);
        SnapshotRing {
            n_slots,
            slot_len,
            offsets,
            data,
            recording: 0,
        }
    }

    pub fn n_slots(&self) -> usize {
        self.n_slots
    }

    /// Bytes held by the ring.
    pub fn bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<f32>()
    }

    /// Prepares to record a batch of `k` tokens (slots `0..k−1`). Returns false when the
    /// ring is too small for the batch.
    pub fn begin(&mut self, k: usize) -> bool {
        let need = k.saturating_sub(1);
        self.recording = need;
        need <= self.n_slots
    }

    /// Copies slot `t` (the state after batch token `t`) into `st`'s GDN layers.
    /// Panics if `t` was not recorded by the last batch (a driver bug, not bad input).
    pub fn restore(&self, pool: &Pool, t: usize, st: &mut SeqState) {
        assert!(
            t < self.recording,
            "snapshot slot {t} not recorded ({} slots written)",
            self.recording
        );
        let slot = &self.data[t * self.slot_len..(t + 1) * self.slot_len];
        for (l, off) in st.layers.iter_mut().zip(&self.offsets) {
            if let (LayerState::Gdn { conv, ssm }, Some(off)) = (l, off) {
                let (nc, ns) = (conv.len(), ssm.len());
                conv.copy_from_slice(&slot[*off..off + nc]);
                par_copy(pool, ssm, &slot[off + nc..off + nc + ns]);
            }
        }
    }
}

impl GdnStateSink for SnapshotRing {
    fn after_token(&mut self, pool: &Pool, layer: usize, t: usize, conv: &[f32], ssm: &[f32]) {
        if t >= self.recording {
            return;
        }
        let Some(Some(off)) = self.offsets.get(layer) else {
            return;
        };
        let base = t * self.slot_len + off;
        self.data[base..base + conv.len()].copy_from_slice(conv);
        let base = base + conv.len();
        par_copy(pool, &mut self.data[base..base + ssm.len()], ssm);
    }
}

/// `dst.copy_from_slice(src)` spread over the pool: one thread's memcpy reaches a fraction
/// of the memory bandwidth, and a 27B model's recurrent state is ~150 MB per slot.
fn par_copy(pool: &Pool, dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "par_copy: lengths");
    const MIN_PIECE: usize = 16 * 1024;
    let len = dst.len();
    let pieces = (1..=4 * pool.n_threads())
        .rev()
        .find(|&p| len % p == 0 && len / p >= MIN_PIECE)
        .unwrap_or(1);
    if pieces == 1 {
        dst.copy_from_slice(src);
        return;
    }
    let chunk = len / pieces;
    simd::par::for_each_chunk_mut(pool, dst, chunk, &|i, c| {
        c.copy_from_slice(&src[i * chunk..(i + 1) * chunk])
    });
}
