//! Which instruction set the engine's vector kernels run on, chosen once at run time.

/// An implementation of a kernel's inner loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain scalar code in formula order: the reference the others are tested against.
    Scalar,
    /// Vector code for the target's baseline: SSE2 on x86-64, NEON on aarch64 (both part of
    /// every processor of those architectures), whatever the compiler finds elsewhere.
    Baseline,
    /// Vector code with AVX2 and fused multiply-add, on x86-64 processors that have both.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Isa {
    /// The fastest implementation the running processor supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Self::Avx2Fma;
        }
        Self::Baseline
    }

    /// Every implementation the running processor supports, the scalar one first.
    pub fn available() -> Vec<Self> {
        let mut all = vec![Self::Scalar, Self::Baseline];
        #[cfg(target_arch = "x86_64")]
        if Self::detect() == Self::Avx2Fma {
            all.push(Self::Avx2Fma);
        }
        all
    }
}
