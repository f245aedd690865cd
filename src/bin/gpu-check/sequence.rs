//! GDN (conv + delta rule, with snapshots) and gated attention against f64 references.

use half::f16;
use hybrid_run::gpu::{AttnScratch, GdnConvArgs, GdnRecurrenceArgs, Gpu, KvCache};
use rand::Rng;

use crate::checks::{nan_buf, Report, R, TOL_SEQ};
use crate::refs::{self, rel_l2, uniform, Rng8};

pub fn gdn_conv(gpu: &Gpu, rep: &mut Report, rng: &mut Rng8) -> R<()> {
    for &(c, t) in &[(1000usize, 1usize), (1000, 5)] {
        let x = uniform(rng, t * c, -2.0, 2.0);
        let w = uniform(rng, 4 * c, -1.0, 1.0);
        let st = uniform(rng, 3 * c, -2.0, 2.0);
        let (xd, wd) = (gpu.upload(&x, "x")?, gpu.upload(&w, "w")?);
        let mut sd = gpu.upload(&st, "conv state")?;
        let mut ud = nan_buf(gpu, t * c, "u")?;
        let mut snap = nan_buf(gpu, t * 3 * c, "snap")?;
        gpu.gdn_conv(GdnConvArgs {
            x: xd.view(),
            w: wd.view(),
            state: sd.view_mut(),
            u: ud.view_mut(),
            snapshot: Some(snap.view_mut()),
            channels: c,
            ntok: t,
        })?;
        let mut s: Vec<[f64; 3]> = (0..c)
            .map(|i| [st[i] as f64, st[c + i] as f64, st[2 * c + i] as f64])
            .collect();
        let (mut want_u, mut want_snap) = (vec![0.0; t * c], vec![0.0; t * 3 * c]);
        for tt in 0..t {
            for i in 0..c {
                let xt = x[tt * c + i] as f64;
                let conv = w[4 * i] as f64 * s[i][0]
                    + w[4 * i + 1] as f64 * s[i][1]
                    + w[4 * i + 2] as f64 * s[i][2]
                    + w[4 * i + 3] as f64 * xt;
                want_u[tt * c + i] = refs::silu(conv);
                s[i] = [s[i][1], s[i][2], xt];
                for k in 0..3 {
                    want_snap[tt * 3 * c + k * c + i] = s[i][k];
                }
            }
        }
        let want_state: Vec<f64> = (0..3 * c).map(|j| s[j % c][j / c]).collect();
        rep.check(
            &format!("gdn_conv c={c} ntok={t} u"),
            rel_l2(&gpu.download(ud.view())?, &want_u),
            TOL_SEQ,
        );
        rep.check(
            &format!("gdn_conv c={c} ntok={t} state"),
            rel_l2(&gpu.download(sd.view())?, &want_state),
            0.0,
        );
        rep.check(
            &format!("gdn_conv c={c} ntok={t} snapshots"),
            rel_l2(&gpu.download(snap.view())?, &want_snap),
            0.0,
        );
    }
    Ok(())
}

pub fn gdn_recurrence(gpu: &Gpu, rep: &mut Report, rng: &mut Rng8) -> R<()> {
    let eps = 1e-6f32;
    for &(hk, hv, t, pad, d) in &[
        (2usize, 6usize, 1usize, 0usize, 128usize),
        (2, 6, 4, 64, 128),
        (16, 48, 2, 0, 128),
        (2, 4, 3, 32, 64),
    ] {
        let us = (2 * hk + hv) * d + pad;
        let u = uniform(rng, t * us, -1.0, 1.0);
        // With a pad, beta and alpha are columns of wider rows (the stacked z|beta|alpha).
        let bas = hv + pad / 32;
        let beta = uniform(rng, t * bas, -3.0, 3.0);
        let alpha = uniform(rng, t * bas, -3.0, 3.0);
        let dt_bias = uniform(rng, hv, -1.0, 1.0);
        let ssm_a: Vec<f32> = (0..hv)
            .map(|_| -rng.gen_range(-1.0f32..1.0).exp())
            .collect();
        let s0 = uniform(rng, hv * d * d, -0.1, 0.1);
        let (ud, bd, ad, dtd, sad) = (
            gpu.upload(&u, "u")?,
            gpu.upload(&beta, "beta")?,
            gpu.upload(&alpha, "alpha")?,
            gpu.upload(&dt_bias, "dt")?,
            gpu.upload(&ssm_a, "a")?,
        );
        let mut sd = gpu.upload(&s0, "ssm state")?;
        let mut od = nan_buf(gpu, t * hv * d, "o")?;
        let mut snap = nan_buf(gpu, t * hv * d * d, "snap")?;
        gpu.gdn_recurrence(GdnRecurrenceArgs {
            u: ud.view(),
            u_stride: us,
            beta: bd.view(),
            alpha: ad.view(),
            ba_stride: bas,
            dt_bias: dtd.view(),
            ssm_a: sad.view(),
            state: sd.view_mut(),
            out: od.view_mut(),
            snapshot: Some(snap.view_mut()),
            h_k: hk,
            h_v: hv,
            d,
            ntok: t,
            eps,
        })?;
        // f64 reference of spec §4 steps 2-3, 7-8, tiled mapping i = j mod h_k.
        let mut s: Vec<f64> = s0.iter().map(|&v| v as f64).collect();
        let (mut want_o, mut want_snap) = (vec![0.0; t * hv * d], vec![0.0; t * hv * d * d]);
        let l2 = |v: &[f32]| -> Vec<f64> {
            let ss: f64 = v.iter().map(|&x| x as f64 * x as f64).sum();
            let sc = 1.0 / ss.sqrt().max(eps as f64);
            v.iter().map(|&x| x as f64 * sc).collect()
        };
        for tt in 0..t {
            let ut = &u[tt * us..];
            for j in 0..hv {
                let i = j % hk;
                let q = l2(&ut[i * d..(i + 1) * d]);
                let k = l2(&ut[(hk + i) * d..(hk + i + 1) * d]);
                let v = &ut[(2 * hk + j) * d..(2 * hk + j + 1) * d];
                let b = refs::sigmoid(beta[tt * bas + j] as f64);
                let g = refs::softplus(alpha[tt * bas + j] as f64 + dt_bias[j] as f64)
                    * ssm_a[j] as f64;
                let sj = &mut s[j * d * d..(j + 1) * d * d];
                for e in sj.iter_mut() {
                    *e *= g.exp();
                }
                for col in 0..d {
                    let c = &mut sj[col * d..(col + 1) * d];
                    let kv: f64 = (0..d).map(|a| c[a] * k[a]).sum();
                    let delta = b * (v[col] as f64 - kv);
                    for a in 0..d {
                        c[a] += k[a] * delta;
                    }
                    want_o[(tt * hv + j) * d + col] =
                        (0..d).map(|a| c[a] * q[a]).sum::<f64>() / (d as f64).sqrt();
                }
                want_snap[(tt * hv + j) * d * d..(tt * hv + j + 1) * d * d].copy_from_slice(sj);
            }
        }
        let name = format!("gdn_recurrence h_k={hk} h_v={hv} d={d} ntok={t}");
        rep.check(
            &format!("{name} out"),
            rel_l2(&gpu.download(od.view())?, &want_o),
            TOL_SEQ,
        );
        rep.check(
            &format!("{name} state"),
            rel_l2(&gpu.download(sd.view())?, &s),
            TOL_SEQ,
        );
        rep.check(
            &format!("{name} snapshots"),
            rel_l2(&gpu.download(snap.view())?, &want_snap),
            TOL_SEQ,
        );
    }
    Ok(())
}

pub fn attention(gpu: &Gpu, rep: &mut Report, rng: &mut Rng8, quick: bool) -> R<()> {
    let cases: &[(usize, usize, usize, usize, usize, usize)] = if quick {
        &[(6, 2, 3, 600, 1024, 256), (4, 2, 2, 300, 512, 64)]
    } else {
        &[
            (6, 2, 1, 0, 1024, 256),
            (6, 2, 3, 600, 1024, 256),
            (24, 4, 4, 4000, 4096, 256),
            (4, 2, 5, 700, 1024, 128),
            (4, 2, 2, 300, 512, 64),
        ]
    };
    for &(nh, nkv, t, pos0, n_ctx, hd) in cases {
        let kv_dim = nkv * hd;
        let mut cache = KvCache::new(gpu, n_ctx, nkv, hd, "test")?;
        // Earlier positions hold random f16 keys/values; later ones are left zero.
        let old_k: Vec<u16> = (0..pos0 * kv_dim)
            .map(|_| f16::from_f32(rng.gen_range(-1.0..1.0)).to_bits())
            .collect();
        let old_v: Vec<u16> = (0..pos0 * kv_dim)
            .map(|_| f16::from_f32(rng.gen_range(-1.0..1.0)).to_bits())
            .collect();
        {
            let (kc, vc) = cache.k_v_mut();
            gpu.write(&old_k, kc)?;
            gpu.write(&old_v, vc)?;
        }
        let (k, v) = (
            uniform(rng, t * kv_dim, -1.0, 1.0),
            uniform(rng, t * kv_dim, -1.0, 1.0),
        );
        let q = uniform(rng, t * nh * hd, -1.0, 1.0);
        let (kd, vd, qd) = (
            gpu.upload(&k, "k")?,
            gpu.upload(&v, "v")?,
            gpu.upload(&q, "q")?,
        );
        let slot = gpu.upload(&[pos0 as i32], "position")?;
        let pos = hybrid_run::gpu::DevPos::new(slot.view(), pos0);
        gpu.kv_store(&mut cache, kd.view(), vd.view(), t, pos)?;
        let mut scratch = AttnScratch::new(gpu, t, nh, n_ctx)?;
        let mut od = nan_buf(gpu, t * nh * hd, "o")?;
        let scale = 1.0 / (hd as f32).sqrt();
        gpu.attn_decode(
            qd.view(),
            &cache,
            &mut scratch,
            od.view_mut(),
            nh,
            t,
            pos,
            scale,
        )?;
        let got = gpu.download(od.view())?;
        // The grid a CUDA graph launches (every split of the context, the ones past the
        // position empty) must give the same bits.
        scratch.set_whole_context_grid(true);
        let mut od2 = nan_buf(gpu, t * nh * hd, "o")?;
        gpu.attn_decode(
            qd.view(),
            &cache,
            &mut scratch,
            od2.view_mut(),
            nh,
            t,
            pos,
            scale,
        )?;
        scratch.set_whole_context_grid(false);
        let got2 = gpu.download(od2.view())?;
        rep.truth(
            &format!("attn_decode whole-context grid n_ctx={n_ctx} pos0={pos0} ntok={t}"),
            got.iter()
                .zip(&got2)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "bit-identical to the exact grid",
        );
        let ck = gpu.download(cache.k().sub(0, (pos0 + t) * kv_dim)?)?;
        let cv = gpu.download(cache.v().sub(0, (pos0 + t) * kv_dim)?)?;
        let stored_ok = (0..t * kv_dim).all(|i| {
            ck[pos0 * kv_dim + i] == f16::from_f32(k[i]).to_bits()
                && cv[pos0 * kv_dim + i] == f16::from_f32(v[i]).to_bits()
        }) && ck[..pos0 * kv_dim] == old_k[..];
        rep.truth(
            &format!("kv_store n_kv={nkv} hd={hd} ntok={t} pos0={pos0}"),
            stored_ok,
            "f16 bits (nearest even)",
        );
        let f = |b: u16| f16::from_bits(b).to_f64();
        let mut want = vec![0.0f64; t * nh * hd];
        for tt in 0..t {
            for h in 0..nh {
                let g = h / (nh / nkv);
                let qh = &q[(tt * nh + h) * hd..][..hd];
                let len = pos0 + tt + 1;
                let scores: Vec<f64> = (0..len)
                    .map(|p| {
                        (0..hd)
                            .map(|i| qh[i] as f64 * f(ck[p * kv_dim + g * hd + i]))
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let l: f64 = e.iter().sum();
                for i in 0..hd {
                    want[(tt * nh + h) * hd + i] = (0..len)
                        .map(|p| e[p] * f(cv[p * kv_dim + g * hd + i]))
                        .sum::<f64>()
                        / l;
                }
            }
        }
        rep.check(
            &format!("attn_decode n_head={nh} n_kv={nkv} hd={hd} ntok={t} pos0={pos0}"),
            rel_l2(&got, &want),
            TOL_SEQ,
        );
    }
    Ok(())
}
