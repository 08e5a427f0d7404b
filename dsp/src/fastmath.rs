//! Branch-free `exp`, `sigmoid` and `tanh` for f32 that the compiler can vectorise.
//!
//! `f32::exp` and `f32::tanh` call into libm one value at a time; inside a recurrent cell they
//! cost more than the matrix-vector products. These versions are plain arithmetic and selects,
//! so loops over slices compile to SIMD code. The real-time engine and the training crate's
//! fused ops use the same functions, so both compute the same activations.
//!
//! Accuracy (checked in the tests below against `f64` math): `exp` within 2 ulp-ish relative
//! error (< 3e-7) on its clamped range, `sigmoid` and `tanh` within 3e-7 absolute error for all
//! finite inputs. NaN propagates.

/// Inputs of [`exp`] are clamped to this range so that the result stays a normal f32.
const EXP_MIN_ARG: f32 = -87.0;
/// Upper clamp of [`exp`]'s argument: `exp(88) ≈ 1.65e38 < f32::MAX`.
const EXP_MAX_ARG: f32 = 88.0;
/// Beyond ±this, `sigmoid` is 0 or 1 to within 5e-18; clamping keeps `exp` away from
/// subnormal results, which are slow on x86.
const SIGMOID_CLAMP: f32 = 40.0;
/// Adding and subtracting 1.5 * 2^23 rounds an f32 of magnitude below 2^22 to the nearest
/// integer, and leaves that integer in the low mantissa bits of the sum.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// ln 2 split in a high part with few mantissa bits (so `n * LN2_HI` is exact for |n| <= 128)
/// and the remainder (Cody and Waite's range reduction).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x` for f32, with `x` clamped to [-87, 88] (so the result is a normal number).
///
/// Range reduction `x = n ln2 + r` with |r| <= ln2 / 2, then the degree-7 Taylor polynomial of
/// `e^r` (truncation error below 6e-9 relative on that interval) scaled by `2^n` built from
/// exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Clamp with comparisons (not `f32::max`) so that NaN propagates.
    let x = if x < EXP_MIN_ARG { EXP_MIN_ARG } else { x };
    let x = if x > EXP_MAX_ARG { EXP_MAX_ARG } else { x };

    // n = round(x / ln2), read back from the mantissa bits of the rounding sum.
    let shifted = x * std::f32::consts::LOG2_E + ROUND_MAGIC;
    let n_f = shifted - ROUND_MAGIC;
    let n_i = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits()) as i32;
    let r = (x - n_f * LN2_HI) - n_f * LN2_LO;

    // e^r by Horner's rule on 1 + r + r^2/2! + ... + r^7/7!.
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;

    // 2^n with n in [-126, 127] is a normal f32 with biased exponent n + 127.
    let scale = f32::from_bits((n_i.wrapping_add(127) as u32) << 23);
    p * scale
}

/// Logistic function `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let x = if x < -SIGMOID_CLAMP {
        -SIGMOID_CLAMP
    } else {
        x
    };
    let x = if x > SIGMOID_CLAMP { SIGMOID_CLAMP } else { x };
    1.0 / (1.0 + exp(-x))
}

/// Hyperbolic tangent as `2 sigmoid(2x) - 1` (absolute error below 3e-7; the relative error
/// near 0 is larger, which is harmless where values are summed with O(1) terms).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// Applies [`sigmoid`] to every element in place.
#[inline(always)]
pub fn sigmoid_in_place(values: &mut [f32]) {
    for v in values {
        *v = sigmoid(*v);
    }
}

/// Applies [`tanh`] to every element in place.
#[inline(always)]
pub fn tanh_in_place(values: &mut [f32]) {
    for v in values {
        *v = tanh(*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense grid over [-lo, hi] plus a few special points.
    fn grid(lo: f32, hi: f32, count: usize) -> Vec<f32> {
        let mut xs: Vec<f32> = (0..=count)
            .map(|k| lo + (hi - lo) * k as f32 / count as f32)
            .collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 1e-6, -1e-6, f32::MAX, f32::MIN]);
        xs
    }

    #[test]
    fn exp_matches_f64_within_3e7_relative() {
        let mut worst = 0.0f64;
        for x in grid(-87.0, 88.0, 400_000) {
            let x = x.clamp(-87.0, 88.0);
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "worst relative error of exp: {worst:e}");
    }

    #[test]
    fn sigmoid_and_tanh_match_f64_within_3e7_absolute() {
        let mut worst_sigmoid = 0.0f64;
        let mut worst_tanh = 0.0f64;
        for x in grid(-60.0, 60.0, 400_000) {
            let xd = x as f64;
            let want_sigmoid = 1.0 / (1.0 + (-xd).exp());
            worst_sigmoid = worst_sigmoid.max((sigmoid(x) as f64 - want_sigmoid).abs());
            worst_tanh = worst_tanh.max((tanh(x) as f64 - xd.tanh()).abs());
        }
        assert!(worst_sigmoid < 3e-7, "sigmoid error {worst_sigmoid:e}");
        assert!(worst_tanh < 3e-7, "tanh error {worst_tanh:e}");
    }

    #[test]
    fn saturation_is_exact_and_nan_propagates() {
        assert_eq!(sigmoid(1e9), 1.0);
        assert!(sigmoid(-1e9) < 1e-17 && sigmoid(-1e9) >= 0.0);
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(sigmoid(f32::NAN).is_nan());
        assert!(tanh(f32::NAN).is_nan());
    }
}
