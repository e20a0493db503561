//! Element types. `Float` is what kernels compute in (f32, f64); `Element` is what arrays store
//! (f16, f32, f64) together with the float type its math runs in.

use half::f16;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// A floating-point type kernels compute in.
pub trait Float:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + std::fmt::Debug
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    /// Machine epsilon (the default RMSNorm eps, as `torch.finfo(dtype).eps`).
    const EPSILON: f64;
    /// The smallest positive normal value: squares below it lose precision, and sums of them
    /// their meaning (see [`crate::reduce::Moments::exact`]).
    const MIN_NORMAL: f64;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    #[must_use]
    fn sqrt(self) -> Self;
    #[must_use]
    fn powf(self, exponent: Self) -> Self;
    /// eˣ for x ≤ 0 (softmax's x − max, SELU's negative side), written so that loops over it
    /// vectorize; NaN stays NaN. Positive x give an unspecified value (callers select it away).
    #[must_use]
    fn exp_nonpositive(self) -> Self;
    /// eˣ − 1 for x ≤ 0 (SELU's negative side), with full relative precision near 0 and written
    /// so that loops over it vectorize in f32; NaN stays NaN. Positive x give an unspecified
    /// finite value (callers select it away).
    #[must_use]
    fn expm1_nonpositive(self) -> Self;
}

/// c[0] + x·(c[1] + x·(c[2] + …)): a polynomial in Horner form, without FMA (so every SIMD level
/// and the scalar path compute the same bits). Over a constant array the loop unrolls; written
/// out as nested parentheses, the 11-term series of `divergence::ln` took rustfmt 3 minutes.
#[inline(always)]
pub(crate) fn horner<T: Float>(x: T, coeffs: &[T]) -> T {
    let (last, rest) = coeffs
        .split_last()
        .expect("a polynomial has at least one coefficient");
    rest.iter().rev().fold(*last, |acc, &c| c + x * acc)
}

/// The exponentials of x ≤ 0 without libm (libm's exp and expm1 are a call per element), one
/// definition for f32 and f64 (`$bits` is the type's bit pattern, `$exp_bias` and `$mantissa`
/// its exponent layout). Per type: the Cody-Waite split of ln2 (`$ln2_hi` has zero low bits, so
/// n·ln2_hi is exact), the Taylor coefficients 1/k! (`$factorials`; eʳ takes the first
/// `$exp_terms`, (expm1(r) − r)/r² those from k = 2), the input below which eˣ leaves the normal range (`$exp_lowest`: the result
/// is 0, an absolute error under the smallest normal) and the one below which eˣ − 1 rounds to −1
/// (`$expm1_lowest`).
macro_rules! nonpositive_exponentials {
    ($t:ty, $bits:ty, $exp_bias:expr, $mantissa:expr, $log2e:expr, $ln2_hi:expr, $ln2_lo:expr,
     $exp_lowest:expr, $expm1_lowest:expr, $factorials:expr, $exp_terms:expr,
     $split:ident, $exp:ident, $expm1:ident) => {
        /// x = n·ln2 + r with |r| ≤ ln2/2, for x from the lowest input up to 0: returns
        /// (r, 2ⁿ), 2ⁿ built in the exponent bits.
        #[inline(always)]
        fn $split(x: $t) -> ($t, $t) {
            // 1.5·2^mantissa: adding and subtracting it rounds to the nearest integer in plain
            // arithmetic.
            const ROUND: $t = 1.5 * (1u64 << $mantissa) as $t;
            let shifted = x * $log2e + ROUND;
            let n = shifted - ROUND;
            let r = (x - n * $ln2_hi) - n * $ln2_lo;
            // n sits in the low mantissa bits of `shifted` (bits(ROUND) + n): integer lanes,
            // where `n as i32` would be a saturating cast that LLVM does one lane at a time.
            let biased: $bits = shifted
                .to_bits()
                .wrapping_sub(ROUND.to_bits())
                .wrapping_add($exp_bias);
            (r, <$t>::from_bits(biased << $mantissa))
        }

        /// eˣ for x ≤ 0: eʳ by its Taylor polynomial times 2ⁿ; 0 below the normal range.
        #[inline(always)]
        fn $exp(x: $t) -> $t {
            let clamped = if x > $exp_lowest { x } else { $exp_lowest };
            let (r, scale) = $split(clamped);
            let poly = horner(r, &$factorials[..$exp_terms]);
            // NaN compares false above, so it was clamped: put it back.
            if x.is_nan() {
                x
            } else if x > $exp_lowest {
                poly * scale
            } else {
                0.0
            }
        }

        /// eˣ − 1 for x ≤ 0: 2ⁿ·expm1(r) + (2ⁿ − 1), where 2ⁿ·p and 2ⁿ − 1 are exact, so one
        /// rounding remains; n = 0 keeps expm1's relative precision near 0. Positive x are
        /// clamped to 0 (callers select their value away).
        #[inline(always)]
        fn $expm1(x: $t) -> $t {
            let clamped = if x > $expm1_lowest { x } else { $expm1_lowest };
            let clamped = if clamped < 0.0 { clamped } else { 0.0 };
            let (r, scale) = $split(clamped);
            let poly = r + r * r * horner(r, &$factorials[2..]);
            if x.is_nan() {
                x
            } else {
                scale * poly + (scale - 1.0)
            }
        }
    };
}

// f32: degree-6 eʳ and degree-7 expm1(r) (error < 2e-8 relative for |r| ≤ ln2/2).
nonpositive_exponentials!(
    f32,
    u32,
    127,
    23,
    std::f32::consts::LOG2_E,
    0.693_145_75,
    1.428_606_8e-6,
    -87.336_54,
    -88.0,
    [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0
    ],
    7,
    split_ln2_f32,
    exp_nonpositive_f32,
    expm1_nonpositive_f32
);

// f64: degree-13 polynomials (truncation < 5e-18 relative); fdlibm's ln2 split. Both within 1 ulp
// of libm (tested).
nonpositive_exponentials!(
    f64,
    u64,
    1023,
    52,
    std::f64::consts::LOG2_E,
    6.931_471_803_691_238e-1,
    1.908_214_929_270_587_7e-10,
    -708.39,
    -40.0,
    [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0
    ],
    14,
    split_ln2_f64,
    exp_nonpositive_f64,
    expm1_nonpositive_f64
);

impl Float for f32 {
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn powf(self, exponent: Self) -> Self {
        f32::powf(self, exponent)
    }
    #[inline(always)]
    fn exp_nonpositive(self) -> Self {
        exp_nonpositive_f32(self)
    }
    #[inline(always)]
    fn expm1_nonpositive(self) -> Self {
        expm1_nonpositive_f32(self)
    }
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const EPSILON: f64 = f32::EPSILON as f64;
    const MIN_NORMAL: f64 = f32::MIN_POSITIVE as f64;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Float for f64 {
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn powf(self, exponent: Self) -> Self {
        f64::powf(self, exponent)
    }
    #[inline(always)]
    fn exp_nonpositive(self) -> Self {
        exp_nonpositive_f64(self)
    }
    #[inline(always)]
    fn expm1_nonpositive(self) -> Self {
        expm1_nonpositive_f64(self)
    }
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const EPSILON: f64 = f64::EPSILON;
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// A storage type of arrays, and the float type its math is done in.
pub trait Element: Copy + Send + Sync + 'static {
    type Compute: Float;
    /// True when `Compute` is `Self`, so rows can be used in place without conversion.
    const NATIVE: bool;
    /// Machine epsilon of the storage type (f16: 2^-10).
    const EPSILON: f64;
    const NAME: &'static str;
    fn load(self) -> Self::Compute;
    fn store(v: Self::Compute) -> Self;
    /// `dst[i] = src[i].load()` over a contiguous run (types with a faster bulk conversion
    /// override it).
    #[inline(always)]
    fn load_slice(src: &[Self], dst: &mut [Self::Compute]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s.load();
        }
    }
    /// `dst[i] = store(src[i])` over a contiguous run.
    #[inline(always)]
    fn store_slice(src: &[Self::Compute], dst: &mut [Self]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = Self::store(s);
        }
    }
}

macro_rules! native_element {
    ($t:ty, $name:literal) => {
        impl Element for $t {
            type Compute = $t;
            const NATIVE: bool = true;
            const EPSILON: f64 = <$t as Float>::EPSILON;
            const NAME: &'static str = $name;
            #[inline(always)]
            fn load(self) -> $t {
                self
            }
            #[inline(always)]
            fn store(v: $t) -> $t {
                v
            }
        }
    };
}
native_element!(f32, "float32");
native_element!(f64, "float64");

impl Element for f16 {
    type Compute = f32;
    const NATIVE: bool = false;
    const EPSILON: f64 = 0.000_976_562_5;
    const NAME: &'static str = "float16";
    #[inline(always)]
    fn load(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn store(v: f32) -> f16 {
        f16::from_f32(v)
    }
    /// `half`'s slice conversion: F16C eight at a time where the CPU has it (detected once per
    /// call), the same round-to-nearest-even bits as one at a time. Per element, the conversion
    /// was a call with its own feature check: f16 LayerNorm ran at 2.2 ns per element.
    fn load_slice(src: &[f16], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(dst);
    }
    fn store_slice(src: &[f32], dst: &mut [f16]) {
        use half::slice::HalfFloatSliceExt;
        dst.convert_from_f32_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_slice_conversions_match_one_at_a_time() {
        // Every f16 bit pattern one way; the other way f32 values around every f16 step
        // (ties, subnormals, overflow to inf, NaN), lengths not a multiple of the 8-wide chunks.
        let halves: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        let mut wide = vec![0.0f32; halves.len()];
        f16::load_slice(&halves, &mut wide);
        for (h, w) in halves.iter().zip(&wide) {
            assert_eq!(h.to_f32().to_bits(), w.to_bits(), "{h}");
        }
        let singles: Vec<f32> = wide
            .iter()
            .flat_map(|&w| {
                [
                    w,
                    w * (1.0 + 1.0 / 2048.0),
                    w * (1.0 - 1.0 / 4096.0),
                    w * 7.0e4,
                ]
            })
            .take(262_139)
            .collect();
        let mut narrow = vec![f16::ZERO; singles.len()];
        f16::store_slice(&singles, &mut narrow);
        for (s, n) in singles.iter().zip(&narrow) {
            let one = f16::from_f32(*s);
            assert!(
                one.to_bits() == n.to_bits() || (one.is_nan() && n.is_nan()),
                "{s}"
            );
        }
    }

    #[test]
    #[allow(clippy::float_cmp)] // exact zeros and ones are intended
    fn fast_exp_matches_libm() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -(i as f32) * 0.000_5; // 0 down to −100
            let fast = f64::from(exp_nonpositive_f32(x));
            let exact = f64::from(x).exp();
            if exact > 1.2e-38 {
                worst = worst.max((fast - exact).abs() / exact);
            }
        }
        assert!(worst < 3e-7, "max relative error {worst}");
        assert!(exp_nonpositive_f32(f32::NAN).is_nan());
        assert!(exp_nonpositive_f32(f32::NEG_INFINITY) == 0.0 && exp_nonpositive_f32(-1e4) == 0.0);
        assert!((exp_nonpositive_f32(0.0) - 1.0).abs() < f32::EPSILON);
    }

    #[test]
    #[allow(clippy::float_cmp)] // exact zeros and ones are intended
    fn fast_exp_f64_within_one_ulp_of_libm() {
        let mut worst_ulps = 0.0f64;
        for i in 0..=2_000_000 {
            let x = -f64::from(i) * 0.000_354_2; // 0 down to −708.4
            let (fast, exact) = (exp_nonpositive_f64(x), x.exp());
            if exact > 2.3e-308 {
                let ulp = f64::from_bits(exact.to_bits() + 1) - exact;
                worst_ulps = worst_ulps.max((fast - exact).abs() / ulp);
            }
        }
        assert!(worst_ulps <= 1.0, "max error {worst_ulps} ulp");
        assert!(exp_nonpositive_f64(f64::NAN).is_nan());
        assert!(exp_nonpositive_f64(f64::NEG_INFINITY) == 0.0 && exp_nonpositive_f64(-1e4) == 0.0);
        assert!(exp_nonpositive_f64(0.0) == 1.0 && exp_nonpositive_f64(-0.0) == 1.0);
    }

    #[test]
    fn fast_expm1_f64_matches_libm_with_relative_precision_near_zero() {
        let mut worst_ulps = 0.0f64;
        let even = (0..=1_000_000).map(|i| -f64::from(i) * 0.000_05); // 0 down to −50
        let tiny = (0..400).map(|k| -(2.0f64).powi(-(k % 300)) * (1.0 + f64::from(k) / 500.0));
        for x in even.chain(tiny) {
            let (fast, exact) = (expm1_nonpositive_f64(x), x.exp_m1());
            if exact != 0.0 {
                let ulp = f64::from_bits(exact.abs().to_bits() + 1) - exact.abs();
                worst_ulps = worst_ulps.max((fast - exact).abs() / ulp);
            }
        }
        assert!(worst_ulps <= 1.0, "max error {worst_ulps} ulp");
        assert!(expm1_nonpositive_f64(f64::NAN).is_nan());
        assert!((expm1_nonpositive_f64(-1e4) + 1.0).abs() < f64::EPSILON);
    }

    #[test]
    #[allow(clippy::float_cmp)] // exact values are intended
    fn fast_expm1_matches_libm_with_relative_precision_near_zero() {
        let mut worst = 0.0f64;
        // 0 down to −100 evenly, then tiny magnitudes where eˣ − 1 would lose every digit.
        let even = (0..=200_000).map(|i| -(i as f32) * 0.000_5);
        let tiny = (0..200).map(|k| -(2.0f32).powi(-(k % 140)) * (1.0 + k as f32 / 300.0));
        for x in even.chain(tiny) {
            let fast = f64::from(expm1_nonpositive_f32(x));
            let exact = f64::from(x).exp_m1();
            if exact != 0.0 {
                worst = worst.max((fast - exact).abs() / exact.abs());
            }
        }
        assert!(worst < 2.5e-7, "max relative error {worst}");
        assert!(expm1_nonpositive_f32(f32::NAN).is_nan());
        assert!(expm1_nonpositive_f32(f32::NEG_INFINITY) == -1.0);
        assert!(expm1_nonpositive_f32(-1e4) == -1.0 && expm1_nonpositive_f32(0.0) == 0.0);
        assert!(expm1_nonpositive_f32(-0.0) == 0.0 && expm1_nonpositive_f32(-1e-30) == -1e-30);
    }
}
