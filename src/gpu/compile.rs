//! Run-time compilation of `cuda/*.cu` with NVRTC, cached on disk.
//!
//! Sources are embedded with `include_str!`, their `#include "x.cuh"` lines replaced by the
//! header text, and compiled to a cubin for the device's exact compute capability
//! (`--gpu-architecture=sm_XY`). The cubin is cached under
//! `$HYBRID_RUN_CACHE/nvrtc` (default `$XDG_CACHE_HOME/hybrid-run/nvrtc`, then
//! `~/.cache/hybrid-run/nvrtc`) as `<module>-sm<XY>-<hash>.cubin`, where the hash covers the
//! expanded source, options, architecture, NVRTC version and driver version; a second start
//! loads it without compiling. Cache trouble is logged and otherwise ignored.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};

use super::error::{GpuError, Result};

const COMMON_CUH: &str = include_str!("../../cuda/common.cuh");
const QUANT_CUH: &str = include_str!("../../cuda/quant.cuh");

/// NVRTC options. Precise division/sqrt and no fast math: the kernels rely on IEEE f32.
const OPTIONS: [&str; 3] = ["-std=c++17", "--prec-div=true", "--prec-sqrt=true"];

/// One CUDA source file, compiled as one module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Mmvq,
    Norm,
    Rope,
    Elementwise,
    Gdn,
    Attn,
    Argmax,
    Dequant,
    Exact,
}

impl Kernel {
    pub const ALL: [Kernel; 9] = [
        Kernel::Mmvq,
        Kernel::Norm,
        Kernel::Rope,
        Kernel::Elementwise,
        Kernel::Gdn,
        Kernel::Attn,
        Kernel::Argmax,
        Kernel::Dequant,
        Kernel::Exact,
    ];

    /// File stem under `cuda/`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Mmvq => "mmvq",
            Kernel::Norm => "norm",
            Kernel::Rope => "rope",
            Kernel::Elementwise => "elementwise",
            Kernel::Gdn => "gdn",
            Kernel::Attn => "attn",
            Kernel::Argmax => "argmax",
            Kernel::Dequant => "dequant",
            Kernel::Exact => "exact",
        }
    }

    /// The `.cu` text as stored in the repository.
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Mmvq => include_str!("../../cuda/mmvq.cu"),
            Kernel::Norm => include_str!("../../cuda/norm.cu"),
            Kernel::Rope => include_str!("../../cuda/rope.cu"),
            Kernel::Elementwise => include_str!("../../cuda/elementwise.cu"),
            Kernel::Gdn => include_str!("../../cuda/gdn.cu"),
            Kernel::Attn => include_str!("../../cuda/attn.cu"),
            Kernel::Argmax => include_str!("../../cuda/argmax.cu"),
            Kernel::Dequant => include_str!("../../cuda/dequant.cu"),
            Kernel::Exact => include_str!("../../cuda/exact.cu"),
        }
    }

    /// The source with every `#include "*.cuh"` replaced by the header (each header once).
    /// Kernel development: with `HYBRID_CUDA_SRC_DIR=DIR`, `DIR/<name>.cu` and `DIR/*.cuh`
    /// replace the embedded files where they exist (variants are timed without rebuilding the
    /// binary; the disk cache is keyed by the source text, so variants never collide).
    pub fn expanded_source(self) -> String {
        let dir = std::env::var_os("HYBRID_CUDA_SRC_DIR").map(std::path::PathBuf::from);
        let from_dir = |file: &str| {
            dir.as_ref()
                .and_then(|d| std::fs::read_to_string(d.join(file)).ok())
        };
        let src = from_dir(&format!("{}.cu", self.name()));
        let mut out = String::new();
        let mut seen = Vec::new();
        expand(
            src.as_deref().unwrap_or(self.source()),
            &mut out,
            &mut seen,
            &from_dir,
        );
        out
    }
}

fn header(name: &str) -> Option<&'static str> {
    match name {
        "common.cuh" => Some(COMMON_CUH),
        "quant.cuh" => Some(QUANT_CUH),
        _ => None,
    }
}

fn expand(
    src: &str,
    out: &mut String,
    seen: &mut Vec<String>,
    from_dir: &dyn Fn(&str) -> Option<String>,
) {
    for line in src.lines() {
        let t = line.trim();
        if t == "#pragma once" {
            continue;
        }
        if let Some(name) = t
            .strip_prefix("#include \"")
            .and_then(|r| r.strip_suffix('"'))
        {
            if let Some(h) = header(name) {
                if !seen.iter().any(|s| s == name) {
                    seen.push(name.to_string());
                    let disk = from_dir(name);
                    expand(disk.as_deref().unwrap_or(h), out, seen, from_dir);
                }
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
}

/// FNV-1a, 64 bit: a hash that is stable across Rust versions (unlike `DefaultHasher`).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The cache folder, or `None` when no home is known.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("HYBRID_RUN_CACHE") {
        return Some(PathBuf::from(d).join("nvrtc"));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("hybrid-run").join("nvrtc"));
    }
    std::env::var_os("HOME").map(|h| {
        PathBuf::from(h)
            .join(".cache")
            .join("hybrid-run")
            .join("nvrtc")
    })
}

/// NVRTC's version as (major, minor).
pub fn nvrtc_version() -> Result<(i32, i32)> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: plain out-parameter FFI call; the library was found by `nvrtc_present` first.
    let r = unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) };
    r.result()
        .map_err(|e| GpuError::NoDevice(format!("nvrtcVersion failed: {e:?}")))?;
    Ok((major, minor))
}

/// True if libnvrtc can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen candidate library names.
    unsafe { nvrtc_sys::is_culib_present() }
}

/// Cubin of `kernel` for compute capability `cc`, from the cache or freshly compiled.
/// Returns the image and whether it came from the cache.
pub fn cubin(kernel: Kernel, cc: (i32, i32), driver_version: i32) -> Result<(Vec<u8>, bool)> {
    let src = kernel.expanded_source();
    let arch = format!("--gpu-architecture=sm_{}{}", cc.0, cc.1);
    let nv = nvrtc_version()?;
    let key = fnv1a(&[
        src.as_bytes(),
        OPTIONS.join(" ").as_bytes(),
        arch.as_bytes(),
        format!("nvrtc {}.{} driver {driver_version}", nv.0, nv.1).as_bytes(),
    ]);
    let file = cache_dir().map(|d| {
        d.join(format!(
            "{}-sm{}{}-{key:016x}.cubin",
            kernel.name(),
            cc.0,
            cc.1
        ))
    });
    if let Some(f) = &file {
        if let Ok(bytes) = std::fs::read(f) {
            if !bytes.is_empty() {
                return Ok((bytes, true));
            }
        }
    }
    let image = compile(kernel.name(), &src, &arch)?;
    if let Some(f) = &file {
        if let Err(e) = store(f, &image) {
            tracing::warn!("could not cache compiled kernels: {e}");
        }
    }
    Ok((image, false))
}

/// Compiles `kernel` for sm_`cc` without a device or cache (an NVRTC check that needs only
/// libnvrtc); returns the cubin size.
pub fn compile_only(kernel: Kernel, cc: (i32, i32)) -> Result<usize> {
    if !nvrtc_present() {
        return Err(GpuError::NoDevice(
            "libnvrtc (CUDA's run-time compiler) was not found".into(),
        ));
    }
    let arch = format!("--gpu-architecture=sm_{}{}", cc.0, cc.1);
    Ok(compile(kernel.name(), &kernel.expanded_source(), &arch)?.len())
}

fn store(path: &Path, image: &[u8]) -> Result<()> {
    let err = |source| GpuError::Cache {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // Write then rename, so a concurrent start never reads half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, image).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Compiles one expanded source to a cubin.
pub fn compile(module: &'static str, src: &str, arch: &str) -> Result<Vec<u8>> {
    let nv_err = |what: &str, e: cudarc::nvrtc::result::NvrtcError| GpuError::Nvrtc {
        module,
        log: format!("{what}: {e:?}"),
    };
    let c_src = CString::new(src).map_err(|_| GpuError::Nvrtc {
        module,
        log: "source contains a NUL byte".into(),
    })?;
    let c_name = CString::new(format!("{module}.cu")).map_err(|_| GpuError::Nvrtc {
        module,
        log: "bad name".into(),
    })?;
    let prog = nvrtc::create_program(&c_src, Some(&c_name))
        .map_err(|e| nv_err("nvrtcCreateProgram", e))?;
    let mut opts: Vec<String> = OPTIONS.iter().map(|s| s.to_string()).collect();
    opts.push(arch.to_string());
    // SAFETY: `prog` was just created and is destroyed below, after its last use.
    let compiled = unsafe { nvrtc::compile_program(prog, &opts) };
    let result = match compiled {
        Err(e) => {
            // SAFETY: `prog` is live.
            let log = unsafe { nvrtc::get_program_log(prog) }
                .map(|l| l.iter().map(|&c| c as u8 as char).collect::<String>())
                .unwrap_or_default();
            Err(GpuError::Nvrtc {
                module,
                log: format!("{e:?}\n{}", log.trim_end_matches('\0')),
            })
        }
        // SAFETY: `prog` compiled successfully and is live.
        Ok(()) => unsafe { get_cubin(prog) }.map_err(|e| nv_err("nvrtcGetCUBIN", e)),
    };
    // SAFETY: `prog` came from create_program and is not used after this.
    let _ = unsafe { nvrtc::destroy_program(prog) };
    result
}

/// # Safety
/// `prog` must be a live, successfully compiled NVRTC program.
unsafe fn get_cubin(
    prog: nvrtc_sys::nvrtcProgram,
) -> std::result::Result<Vec<u8>, cudarc::nvrtc::result::NvrtcError> {
    let mut size = 0usize;
    // SAFETY: out-parameter call on a live program (caller's contract).
    unsafe { nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size) }.result()?;
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` has exactly the size NVRTC reported.
    unsafe { nvrtc_sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut std::ffi::c_char) }
        .result()?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanded_sources_inline_each_header_once_and_keep_no_include_lines() {
        for k in Kernel::ALL {
            let s = k.expanded_source();
            assert!(
                !s.lines().any(|l| l.trim_start().starts_with("#include")),
                "{} still has an #include",
                k.name()
            );
            assert_eq!(
                s.matches("typedef unsigned char u8;").count(),
                1,
                "{}",
                k.name()
            );
        }
        assert!(Kernel::Mmvq
            .expanded_source()
            .contains("struct Fmt<FMT_Q6_K>"));
    }

    #[test]
    fn the_cache_key_hash_changes_with_any_part() {
        let a = fnv1a(&[b"abc", b"sm_90"]);
        assert_ne!(a, fnv1a(&[b"abc", b"sm_89"]));
        assert_ne!(a, fnv1a(&[b"ab", b"csm_90"]));
        assert_eq!(a, fnv1a(&[b"abc", b"sm_90"]));
    }
}
