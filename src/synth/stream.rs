//! Parallel generation with an ordered, streaming write. Tensors are cut into chunks of
//! whole rows (about 1M values each, a function of the shape only, so the bytes do not
//! depend on thread count or batching). Batches of ~64 MB of chunks are generated with
//! rayon while a writer thread appends the previous batch to the file.

use std::io::Write;

use rayon::prelude::*;

use crate::gguf::GgufWriter;

use super::random_blocks::{chunk_rng, dist_for, fill};
use super::{SynthError, SynthPlan};

/// Values per chunk (rounded down to whole rows, at least one row).
const CHUNK_ELEMS: u64 = 1 << 20;
/// Bytes generated per batch.
const BATCH_BYTES: u64 = 64 << 20;
/// Batches in flight between the generator and the writer.
const QUEUE_DEPTH: usize = 2;

#[derive(Clone, Copy)]
struct Job {
    tensor: usize,
    chunk: u64,
    n_bytes: u64,
}

/// The chunks of every tensor, in file order.
fn jobs(plan: &SynthPlan) -> impl Iterator<Item = Job> + '_ {
    plan.tensors.iter().enumerate().flat_map(|(ti, t)| {
        let row_len = t.spec.dims[0].max(1);
        let rows = (t.spec.n_elements() / row_len).max(1);
        let row_bytes = t.n_bytes / rows;
        let rows_per_chunk = (CHUNK_ELEMS / row_len).max(1);
        let n_chunks = rows.div_ceil(rows_per_chunk);
        (0..n_chunks).map(move |c| {
            let r = rows_per_chunk.min(rows - c * rows_per_chunk);
            Job {
                tensor: ti,
                chunk: c,
                n_bytes: r * row_bytes,
            }
        })
    })
}

fn generate(plan: &SynthPlan, job: Job) -> Result<Vec<u8>, SynthError> {
    let t = &plan.tensors[job.tensor];
    let len = usize::try_from(job.n_bytes).map_err(|_| SynthError::TooLarge {
        name: t.spec.name.clone(),
        n_bytes: job.n_bytes,
    })?;
    let mut buf = vec![0u8; len];
    let dist = dist_for(t.spec.kind, &t.spec.dims, plan.config());
    let mut rng = chunk_rng(plan.seed, &t.spec.name, job.chunk);
    fill(t.ty, dist, &mut rng, &mut buf)?;
    Ok(buf)
}

/// Writes the header and all tensor data; returns the output and the file size.
pub(super) fn write_all<W: Write + Send>(
    plan: &SynthPlan,
    mut w: GgufWriter<W>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(W, u64), SynthError> {
    w.write_header()?;
    let (tx, rx) = crossbeam_channel::bounded::<Vec<(usize, Vec<u8>)>>(QUEUE_DEPTH);

    std::thread::scope(|s| {
        let writer = s.spawn(move || -> Result<(W, u64), SynthError> {
            for batch in rx {
                for (ti, data) in batch {
                    w.write_tensor_data(&plan.tensors[ti].spec.name, &data)?;
                    progress(data.len() as u64);
                }
            }
            let size = w.bytes_written();
            Ok((w.finish()?, size))
        });

        let generated = (|| -> Result<(), SynthError> {
            let mut batch: Vec<Job> = Vec::new();
            let mut batch_bytes = 0u64;
            let flush = |batch: &mut Vec<Job>| -> Result<bool, SynthError> {
                let out: Vec<(usize, Vec<u8>)> = batch
                    .par_iter()
                    .map(|&j| generate(plan, j).map(|d| (j.tensor, d)))
                    .collect::<Result<_, _>>()?;
                batch.clear();
                // a closed channel means the writer failed; its error is reported below
                Ok(tx.send(out).is_ok())
            };
            for job in jobs(plan) {
                batch_bytes += job.n_bytes;
                batch.push(job);
                if batch_bytes >= BATCH_BYTES {
                    batch_bytes = 0;
                    if !flush(&mut batch)? {
                        return Ok(());
                    }
                }
            }
            if !batch.is_empty() {
                flush(&mut batch)?;
            }
            Ok(())
        })();
        drop(tx);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        generated?;
        written
    })
}
