//! Every tensor of a qwen35 model uploaded to the device: matrices in their GGUF encoding
//! (the mat-vec reads them as they are in the file), small float tensors (norms, conv taps,
//! GDN gates) as f32. The token embedding stays in host memory: a token's row is dequantized
//! on the CPU and its n_embd floats uploaded (as llama.cpp keeps the input layer on the CPU);
//! it is uploaded only when the LM head is tied to it.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::gguf::{GgmlType, TensorView};
use crate::model::qwen35::{AttnWeights, FfnWeights, LayerKind, MtpWeights, Qwen35Weights};

use super::super::buffer::{GpuBuf, GpuMatrix};
use super::super::device::Gpu;
use super::super::error::Result;

/// Gated attention (trunk attention layers and the MTP block).
pub struct GpuAttn {
    /// [2·n_head·hd rows][n_embd]: per head h, rows [2h·hd, 2h·hd+hd) query, then gate.
    pub q: GpuMatrix,
    /// [n_kv·hd][n_embd].
    pub k: GpuMatrix,
    pub v: GpuMatrix,
    /// [hd] f32.
    pub q_norm: GpuBuf<f32>,
    pub k_norm: GpuBuf<f32>,
    /// [n_embd][n_head·hd].
    pub o: GpuMatrix,
}

/// Gated DeltaNet mixer.
pub struct GpuGdn {
    /// [conv_dim][n_embd]: q | k | v channels.
    pub qkv: GpuMatrix,
    /// z, beta and alpha projections.
    pub zba: GdnZba,
    /// [conv_dim][4] f32 taps.
    pub conv_w: GpuBuf<f32>,
    /// [h_v] f32.
    pub dt_bias: GpuBuf<f32>,
    pub ssm_a: GpuBuf<f32>,
    /// [d] f32, shared by all heads.
    pub ssm_norm: GpuBuf<f32>,
    /// [n_embd][value_dim].
    pub out: GpuMatrix,
}

/// The GDN z ([value_dim][n_embd]), beta and alpha ([h_v][n_embd] each) projections, which
/// all read the normed input: stacked into one [value_dim + 2 h_v][n_embd] matrix when they
/// share a type (one mat-vec launch instead of three; token t's outputs are then one row
/// z | beta | alpha), else three matrices. (One per GDN layer, so the variants' size
/// difference costs nothing.)
#[allow(clippy::large_enum_variant)]
pub enum GdnZba {
    Stacked(GpuMatrix),
    Separate {
        gate: GpuMatrix,
        beta: GpuMatrix,
        alpha: GpuMatrix,
    },
}

impl GdnZba {
    pub fn matrices(&self) -> Vec<&GpuMatrix> {
        match self {
            GdnZba::Stacked(m) => vec![m],
            GdnZba::Separate { gate, beta, alpha } => vec![gate, beta, alpha],
        }
    }
}

pub struct GpuFfn {
    /// [n_ff][n_embd].
    pub gate: GpuMatrix,
    pub up: GpuMatrix,
    /// [n_embd][n_ff].
    pub down: GpuMatrix,
}

// One per layer (a few dozen), so the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum GpuMixer {
    Gdn(GpuGdn),
    Attention(GpuAttn),
}

pub struct GpuLayer {
    /// [n_embd] f32.
    pub attn_norm: GpuBuf<f32>,
    pub mixer: GpuMixer,
    pub post_norm: GpuBuf<f32>,
    /// `None` when this layer's dense FFN stays in host memory (hybrid split).
    pub ffn: Option<GpuFfn>,
}

pub struct GpuMtp {
    pub attn_norm: GpuBuf<f32>,
    pub attn: GpuAttn,
    pub post_norm: GpuBuf<f32>,
    pub ffn: GpuFfn,
    /// [n_embd][2·n_embd].
    pub eh_proj: GpuMatrix,
    pub enorm: GpuBuf<f32>,
    pub hnorm: GpuBuf<f32>,
    pub head_norm: GpuBuf<f32>,
    /// The MTP LM head when it is not the trunk's (`None`: use the trunk's `output`).
    pub head: Option<GpuMatrix>,
}

pub struct GpuWeights {
    pub layers: Vec<GpuLayer>,
    pub output_norm: GpuBuf<f32>,
    /// [n_vocab][n_embd].
    pub output: GpuMatrix,
    pub mtp: Option<GpuMtp>,
    /// Bytes of everything uploaded.
    pub bytes: usize,
    /// Bytes a one-token trunk forward reads from device memory (every trunk matrix on the
    /// device and the LM head), for the bandwidth roofline.
    pub trunk_bytes_per_token: usize,
}

/// A matrix's rows dequantized to f32, as little-endian bytes.
fn dequantized(v: &TensorView<'_>) -> Vec<u8> {
    let (rows, cols) = (v.info.rows() as usize, v.info.row_len() as usize);
    let rb = v.data.len() / rows.max(1);
    let mut f = vec![0.0f32; cols];
    let mut bytes = Vec::with_capacity(rows * cols * 4);
    for r in v.data.chunks_exact(rb.max(1)) {
        simd::dequantize_row(v.info.ty, r, &mut f);
        bytes.extend(f.iter().flat_map(|x| x.to_le_bytes()));
    }
    bytes
}

/// Uploads tensors one by one with a byte progress bar on stderr.
struct Uploader<'g> {
    gpu: &'g Gpu,
    bar: ProgressBar,
    bytes: usize,
    /// Upload every matrix dequantized to F32 (the accuracy reference).
    dequantize: bool,
}

impl Uploader<'_> {
    fn matrix(&mut self, v: &TensorView<'_>) -> Result<GpuMatrix> {
        let (rows, cols) = (v.info.rows() as usize, v.info.row_len() as usize);
        let m = if self.dequantize && v.info.ty != GgmlType::F32 {
            let bytes = dequantized(v);
            self.gpu
                .upload_matrix(&v.info.name, GgmlType::F32, rows, cols, &bytes)?
        } else {
            self.gpu
                .upload_matrix(&v.info.name, v.info.ty, rows, cols, v.data)?
        };
        self.done(v.data.len());
        Ok(m)
    }

    /// The GDN z, beta and alpha projections, stacked when they share a type and width.
    fn zba(
        &mut self,
        gate: &TensorView<'_>,
        beta: &TensorView<'_>,
        alpha: &TensorView<'_>,
    ) -> Result<GdnZba> {
        let parts = [gate, beta, alpha];
        let cols = gate.info.row_len();
        // HYBRID_STACK_ZBA=0 keeps them apart (the A/B baseline).
        let stack = super::super::env_switch("HYBRID_STACK_ZBA", true);
        if !stack
            || !parts
                .iter()
                .all(|v| v.info.ty == gate.info.ty && v.info.row_len() == cols)
        {
            return Ok(GdnZba::Separate {
                gate: self.matrix(gate)?,
                beta: self.matrix(beta)?,
                alpha: self.matrix(alpha)?,
            });
        }
        let rows: usize = parts.iter().map(|v| v.info.rows() as usize).sum();
        let deq = self.dequantize && gate.info.ty != GgmlType::F32;
        let mut bytes = Vec::new();
        for v in parts {
            if deq {
                bytes.extend(dequantized(v));
            } else {
                bytes.extend_from_slice(v.data);
            }
        }
        let ty = if deq { GgmlType::F32 } else { gate.info.ty };
        let name = format!("{}+beta+alpha", gate.info.name);
        let m = self
            .gpu
            .upload_matrix(&name, ty, rows, cols as usize, &bytes)?;
        self.done(parts.iter().map(|v| v.data.len()).sum());
        Ok(GdnZba::Stacked(m))
    }

    fn vector(&mut self, v: &TensorView<'_>) -> Result<GpuBuf<f32>> {
        let n = v.info.n_elements() as usize;
        let mut host = vec![0.0f32; n];
        if v.info.ty == GgmlType::F32 {
            for (o, b) in host.iter_mut().zip(v.data.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        } else {
            simd::dequantize_row(v.info.ty, v.data, &mut host);
        }
        let b = self.gpu.upload(&host, &v.info.name)?;
        self.done(v.data.len());
        Ok(b)
    }

    fn done(&mut self, n: usize) {
        self.bytes += n;
        self.bar.inc(n as u64);
    }

    fn attn(&mut self, a: &AttnWeights<'_>) -> Result<GpuAttn> {
        Ok(GpuAttn {
            q: self.matrix(&a.attn_q)?,
            k: self.matrix(&a.attn_k)?,
            v: self.matrix(&a.attn_v)?,
            q_norm: self.vector(&a.attn_q_norm)?,
            k_norm: self.vector(&a.attn_k_norm)?,
            o: self.matrix(&a.attn_output)?,
        })
    }

    fn ffn(&mut self, f: &FfnWeights<'_>) -> Result<GpuFfn> {
        Ok(GpuFfn {
            gate: self.matrix(&f.gate)?,
            up: self.matrix(&f.up)?,
            down: self.matrix(&f.down)?,
        })
    }

    fn mtp(&mut self, m: &MtpWeights<'_>, trunk_output: &TensorView<'_>) -> Result<GpuMtp> {
        let head = if m.shared_head_head.info.name == trunk_output.info.name {
            None
        } else {
            Some(self.matrix(&m.shared_head_head)?)
        };
        Ok(GpuMtp {
            attn_norm: self.vector(&m.attn_norm)?,
            attn: self.attn(&m.attn)?,
            post_norm: self.vector(&m.post_attention_norm)?,
            ffn: self.ffn(&m.ffn)?,
            eh_proj: self.matrix(&m.eh_proj)?,
            enorm: self.vector(&m.enorm)?,
            hnorm: self.vector(&m.hnorm)?,
            head_norm: self.vector(&m.shared_head_norm)?,
            head,
        })
    }
}

fn total_bytes(w: &Qwen35Weights<'_>) -> usize {
    let mut n = w.output.data.len() + w.output_norm.data.len();
    let ffn = |f: &FfnWeights<'_>| f.gate.data.len() + f.up.data.len() + f.down.data.len();
    let attn = |a: &AttnWeights<'_>| {
        [
            &a.attn_q,
            &a.attn_k,
            &a.attn_v,
            &a.attn_q_norm,
            &a.attn_k_norm,
            &a.attn_output,
        ]
        .iter()
        .map(|t| t.data.len())
        .sum::<usize>()
    };
    for l in &w.layers {
        n += l.attn_norm.data.len() + l.post_attention_norm.data.len() + ffn(&l.ffn);
        n += match &l.kind {
            LayerKind::Attention(a) => attn(a),
            LayerKind::Gdn(g) => [
                &g.attn_qkv,
                &g.attn_gate,
                &g.ssm_beta,
                &g.ssm_alpha,
                &g.ssm_conv1d,
                &g.ssm_dt_bias,
                &g.ssm_a,
                &g.ssm_norm,
                &g.ssm_out,
            ]
            .iter()
            .map(|t| t.data.len())
            .sum::<usize>(),
        };
    }
    if let Some(m) = &w.mtp {
        n += attn(&m.attn) + ffn(&m.ffn) + m.eh_proj.data.len();
        n += 5 * m.enorm.data.len();
        if m.shared_head_head.info.name != w.output.info.name {
            n += m.shared_head_head.data.len();
        }
    }
    n
}

impl GpuWeights {
    /// Uploads every tensor the GPU forward reads. An allocation failure is
    /// `GpuError::OutOfMemory` naming the tensor and its bytes.
    /// With `dequantize`, every matrix goes up as F32 (dequantized on the host): the mat-vecs
    /// then use unquantized f32 activations, which makes the model an accuracy reference.
    /// The dense FFN of layers `n_gpu_ffn..` is not uploaded (it runs on the CPU).
    pub fn upload(
        gpu: &Gpu,
        w: &Qwen35Weights<'_>,
        dequantize: bool,
        n_gpu_ffn: usize,
    ) -> Result<GpuWeights> {
        let ffn_bytes =
            |f: &FfnWeights<'_>| f.gate.data.len() + f.up.data.len() + f.down.data.len();
        let total = total_bytes(w)
            - w.layers
                .iter()
                .skip(n_gpu_ffn)
                .map(|l| ffn_bytes(&l.ffn))
                .sum::<usize>();
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "uploading to the GPU {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let mut up = Uploader {
            gpu,
            bar,
            bytes: 0,
            dequantize,
        };
        let mut layers = Vec::with_capacity(w.layers.len());
        for (il, l) in w.layers.iter().enumerate() {
            let mixer = match &l.kind {
                LayerKind::Gdn(g) => GpuMixer::Gdn(GpuGdn {
                    qkv: up.matrix(&g.attn_qkv)?,
                    zba: up.zba(&g.attn_gate, &g.ssm_beta, &g.ssm_alpha)?,
                    conv_w: up.vector(&g.ssm_conv1d)?,
                    dt_bias: up.vector(&g.ssm_dt_bias)?,
                    ssm_a: up.vector(&g.ssm_a)?,
                    ssm_norm: up.vector(&g.ssm_norm)?,
                    out: up.matrix(&g.ssm_out)?,
                }),
                LayerKind::Attention(a) => GpuMixer::Attention(up.attn(a)?),
            };
            layers.push(GpuLayer {
                attn_norm: up.vector(&l.attn_norm)?,
                mixer,
                post_norm: up.vector(&l.post_attention_norm)?,
                ffn: if il < n_gpu_ffn {
                    Some(up.ffn(&l.ffn)?)
                } else {
                    None
                },
            });
        }
        let output_norm = up.vector(&w.output_norm)?;
        let output = up.matrix(&w.output)?;
        let mtp = match &w.mtp {
            Some(m) => Some(up.mtp(m, &w.output)?),
            None => None,
        };
        up.bar.finish_and_clear();
        let trunk_bytes_per_token =
            layers.iter().map(layer_matrix_bytes).sum::<usize>() + output.bytes();
        if up.bytes != total {
            // Only the progress bar's total is off; every tensor was uploaded.
            tracing::warn!(
                uploaded = up.bytes,
                expected = total,
                "GPU upload byte count"
            );
        }
        Ok(GpuWeights {
            layers,
            output_norm,
            output,
            mtp,
            bytes: up.bytes,
            trunk_bytes_per_token,
        })
    }
}

fn layer_matrix_bytes(l: &GpuLayer) -> usize {
    let mut n = l
        .ffn
        .as_ref()
        .map(|f| f.gate.bytes() + f.up.bytes() + f.down.bytes())
        .unwrap_or(0);
    n += match &l.mixer {
        GpuMixer::Gdn(g) => {
            let zba: usize = g.zba.matrices().iter().map(|m| m.bytes()).sum();
            g.qkv.bytes() + zba + g.out.bytes()
        }
        GpuMixer::Attention(a) => a.q.bytes() + a.k.bytes() + a.v.bytes() + a.o.bytes(),
    };
    n
}
