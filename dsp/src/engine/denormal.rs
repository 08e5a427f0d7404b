//! Flushing subnormal floats to zero while the engine runs.
//!
//! A decaying state (a recurrent cell, a state-space pole, a level detector fed silence)
//! drifts towards zero through the subnormal range, where most CPUs compute 10 to 100 times
//! slower: a plugin fed silence would cost more, not less. [`FlushDenormals`] sets the
//! floating-point unit's flush-to-zero mode (and, on x86-64, denormals-are-zero for inputs)
//! for its lifetime and restores the caller's mode when dropped, so a host's own settings are
//! left as they were.
//!
//! The control register is per thread, so the guard affects only the thread that holds it. On
//! targets other than x86-64 and aarch64 it does nothing.

/// Holds flush-to-zero mode on the current thread until dropped (see the module docs).
pub struct FlushDenormals {
    /// The control register's value before the guard changed it.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    saved: ControlWord,
}

#[cfg(target_arch = "x86_64")]
type ControlWord = u32;
#[cfg(target_arch = "aarch64")]
type ControlWord = u64;

/// MXCSR bits: FTZ (results that would be subnormal become zero) and DAZ (subnormal inputs
/// read as zero). Both exist on every x86-64 processor, whose SSE2 unit is baseline, so no
/// feature detection is needed.
#[cfg(target_arch = "x86_64")]
const FLUSH_BITS: ControlWord = (1 << 15) | (1 << 6);

/// FPCR bit FZ: subnormal inputs and results of single- and double-precision operations
/// become zero. Part of every AArch64 floating-point unit.
#[cfg(target_arch = "aarch64")]
const FLUSH_BITS: ControlWord = 1 << 24;

impl FlushDenormals {
    /// Switches flush-to-zero on for the current thread. Cheap (two register accesses), so it
    /// can be taken at the start of every audio block.
    #[inline]
    #[must_use = "the mode is restored when the guard is dropped"]
    pub fn new() -> Self {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            let saved = read_control();
            write_control(saved | FLUSH_BITS);
            Self { saved }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            Self {}
        }
    }
}

impl Default for FlushDenormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushDenormals {
    #[inline]
    fn drop(&mut self) {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        write_control(self.saved);
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn read_control() -> ControlWord {
    let mut word: ControlWord = 0;
    // SAFETY: `stmxcsr` stores the 32-bit MXCSR register to the given address, which points at
    // a live, aligned, writable u32; it touches no other memory and cannot fault on x86-64,
    // where SSE is always present.
    unsafe {
        std::arch::asm!(
            "stmxcsr [{ptr}]",
            ptr = in(reg) &mut word as *mut ControlWord,
            options(nostack, preserves_flags)
        );
    }
    word
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn write_control(word: ControlWord) {
    // SAFETY: `ldmxcsr` loads MXCSR from the given address, which points at a live, aligned
    // u32. Every value written here is one read from MXCSR with only the FTZ and DAZ bits
    // changed (both defined on every x86-64 processor), so no reserved bit is set and the
    // instruction cannot fault. Only rounding of subnormal values changes; Rust code does not
    // rely on the floating-point environment otherwise.
    unsafe {
        std::arch::asm!(
            "ldmxcsr [{ptr}]",
            ptr = in(reg) &word as *const ControlWord,
            options(nostack, preserves_flags, readonly)
        );
    }
}

#[cfg(target_arch = "aarch64")]
#[inline]
fn read_control() -> ControlWord {
    let word: ControlWord;
    // SAFETY: reading FPCR into a general register has no side effects and is allowed at EL0.
    unsafe {
        std::arch::asm!("mrs {w}, fpcr", w = out(reg) word, options(nomem, nostack, preserves_flags));
    }
    word
}

#[cfg(target_arch = "aarch64")]
#[inline]
fn write_control(word: ControlWord) {
    // SAFETY: writing FPCR is allowed at EL0; every value written is one read from FPCR with
    // only the FZ bit changed, so no reserved bit is set. Only the handling of subnormal
    // values changes.
    unsafe {
        std::arch::asm!("msr fpcr, {w}", w = in(reg) word, options(nomem, nostack, preserves_flags));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    /// A product whose exact result is subnormal: `MIN_POSITIVE / 4`.
    fn subnormal_product() -> f32 {
        black_box(f32::MIN_POSITIVE) * black_box(0.25f32)
    }

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn flushes_inside_the_guard_and_restores_after() {
        let before = subnormal_product();
        assert!(
            before.is_subnormal(),
            "default mode keeps subnormals: {before:e}"
        );
        {
            let _flush = FlushDenormals::new();
            assert_eq!(subnormal_product(), 0.0);
            // Nested guards restore the flushing mode of the outer one.
            {
                let _inner = FlushDenormals::new();
                assert_eq!(subnormal_product(), 0.0);
            }
            assert_eq!(subnormal_product(), 0.0);
        }
        assert_eq!(subnormal_product().to_bits(), before.to_bits());
    }
}
