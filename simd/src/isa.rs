//! Which instruction set the kernels use, decided once at run time.
//!
//! `Isa::detect()` picks the best tier this CPU supports and caches it in a `OnceLock`;
//! `HYBRID_ISA=scalar|avx2|avx2vnni|avx512|amx` overrides it (`avx512` keeps the AMX tile
//! unit unused) (a tier the CPU lacks is refused
//! with a warning and the detected one is used instead).

use std::sync::OnceLock;

/// A kernel tier. Each tier's kernels are `#[target_feature]` functions; a tier is only ever
/// dispatched to after `is_available()` said yes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust loops: the reference every other tier is tested against.
    Scalar,
    /// AVX2 + FMA + F16C, integer dots with `vpmaddubsw`/`vpmaddwd`.
    Avx2,
    /// AVX2 plus AVX-VNNI (VEX `vpdpwssd`/`vpdpbusd`), e.g. Alder Lake, Sapphire Rapids.
    Avx2Vnni,
    /// AVX-512 F/BW/VL + AVX512-VNNI (512-bit integer work, `vpdpwssd`/`vpdpbusd`).
    Avx512,
    /// `Avx512` plus the AMX tile unit (AMX-TILE/INT8, OS permission granted) for Q4_K and
    /// Q6_K mat-muls of at least `q4_k_amx::MIN_K` tokens; every other kernel is `Avx512`'s.
    Amx,
}

impl Isa {
    /// Every tier, slowest first.
    pub const ALL: [Isa; 5] = [Isa::Scalar, Isa::Avx2, Isa::Avx2Vnni, Isa::Avx512, Isa::Amx];

    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx2Vnni => "avx2vnni",
            Isa::Avx512 => "avx512",
            Isa::Amx => "amx",
        }
    }

    pub fn from_name(s: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this CPU can run the tier.
    pub fn is_available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            match self {
                Isa::Scalar => true,
                Isa::Avx2 => avx2,
                Isa::Avx2Vnni => avx2 && std::arch::is_x86_feature_detected!("avxvnni"),
                Isa::Avx512 => {
                    avx2 && std::arch::is_x86_feature_detected!("avx512f")
                        && std::arch::is_x86_feature_detected!("avx512bw")
                        && std::arch::is_x86_feature_detected!("avx512vl")
                        && std::arch::is_x86_feature_detected!("avx512vnni")
                }
                Isa::Amx => crate::q4_k_amx::usable(),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            matches!(self, Isa::Scalar)
        }
    }

    /// The tiers this CPU can run, slowest first (tests loop over these).
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The best available tier, or the one named by `HYBRID_ISA`. Decided once and logged.
    pub fn detect() -> Isa {
        static CHOSEN: OnceLock<Isa> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let best = Isa::available().last().copied().unwrap_or(Isa::Scalar);
            let chosen = match std::env::var("HYBRID_ISA") {
                Ok(v) => match Isa::from_name(&v) {
                    Some(i) if i.is_available() => i,
                    Some(i) => {
                        tracing::warn!(requested = i.name(), using = best.name(), "HYBRID_ISA names a tier this CPU lacks");
                        best
                    }
                    None => {
                        tracing::warn!(value = %v, using = best.name(), "HYBRID_ISA not one of scalar|avx2|avx2vnni|avx512|amx");
                        best
                    }
                },
                Err(_) => best,
            };
            tracing::info!(isa = chosen.name(), "CPU kernel tier");
            chosen
        })
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
