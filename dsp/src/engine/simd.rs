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

/// A kernel whose block loop is written once, for the compiler's vectoriser, and compiled for
/// each [`Isa`] by [`run_block`].
pub(super) trait VectorKernel {
    /// The compilation the kernel runs; only ever one of [`Isa::available`].
    fn isa_mut(&mut self) -> &mut Isa;

    /// The block loop. Implementations mark it `#[inline(always)]`, so that each compilation
    /// in [`run_block`] gets its own copy built with that compilation's instruction set.
    fn process_block(&mut self, input: &[f32], output: &mut [f32]);
}

/// Runs `kernel`'s block loop in the compilation its [`VectorKernel::isa_mut`] names. Loops
/// without sums across lanes and without `mul_add` give the same bits in every compilation.
#[inline(always)]
pub(super) fn run_block<K: VectorKernel>(kernel: &mut K, input: &[f32], output: &mut [f32]) {
    match *kernel.isa_mut() {
        Isa::Scalar | Isa::Baseline => kernel.process_block(input, output),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a kernel holds `Avx2Fma` only when `Isa::detect` found AVX2 and FMA on this
        // processor, or a test set it after checking `Isa::available`.
        Isa::Avx2Fma => unsafe { process_block_avx2_fma(kernel, input, output) },
    }
}

/// `kernel.process_block` compiled with AVX2 and FMA.
///
/// # Safety
/// The processor must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn process_block_avx2_fma<K: VectorKernel>(
    kernel: &mut K,
    input: &[f32],
    output: &mut [f32],
) {
    kernel.process_block(input, output);
}
