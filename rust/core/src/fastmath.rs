//! Elementary functions written for vectorized loops, without libm (a libm call per element is
//! what kept softmax, SELU and the information measures off the memory roofline): eˣ and eˣ − 1
//! for x ≤ 0 in f32 and f64, and ln for f64. The f32 eˣ and the information measures' ln use the
//! FMA instruction where the SIMD level has one ([`MulAdd`]: every level but scalar); the rest
//! uses none, so every level computes the same bits for it.

use crate::element::Float;

/// c[0] + x·(c[1] + x·(c[2] + …)): a polynomial in Horner form, without FMA (so every SIMD level
/// and the scalar path compute the same bits). Over a constant array the loop unrolls; written
/// out as nested parentheses, the 11-term series of an earlier `ln` took rustfmt 3 minutes.
#[inline(always)]
pub(crate) fn horner<T: Float>(x: T, coeffs: &[T]) -> T {
    let (last, rest) = coeffs
        .split_last()
        .expect("a polynomial has at least one coefficient");
    rest.iter().rev().fold(*last, |acc, &c| c + x * acc)
}

/// [`horner`] in f64 with its a·b + c steps by `M` (the same bits as `horner` for [`Separate`]).
#[inline(always)]
fn horner_with<M: MulAdd>(x: f64, coeffs: &[f64]) -> f64 {
    let (last, rest) = coeffs
        .split_last()
        .expect("a polynomial has at least one coefficient");
    rest.iter()
        .rev()
        .fold(*last, |acc, &c| M::mul_add_f64(acc, x, c))
}

/// How the f32 eˣ and [`ln_with`] compute a·b + c. The AVX2, AVX-512 and NEON levels round it
/// once (the FMA instruction), so they give the same bits; the scalar level rounds the product and
/// the sum. An exact emulation there (the f64 sum rounded to odd, then to f32) did not vectorize in
/// the softmax row: 1.2 → 54 ns a value. So that level's f32 exponentials and f64 logarithms may
/// differ from the others' in the last bit (within 1.5 ulp of eˣ and 1 ulp of ln x, as before).
/// Kernels choose it with [`with_mul_add!`].
pub trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
    fn mul_add_f64(a: f64, b: f64, c: f64) -> f64;
}

/// The fused multiply-add instruction, which the AVX2, AVX-512 and NEON levels have.
pub struct Fused;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn mul_add_f64(a: f64, b: f64, c: f64) -> f64 {
        a.mul_add(b, c)
    }
}

/// A multiply and an add, for the scalar level (x86-64 CPUs without AVX2 and FMA).
pub struct Separate;

impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    fn mul_add_f64(a: f64, b: f64, c: f64) -> f64 {
        a * b + c
    }
}

/// Whether this process's SIMD level has the fused multiply-add instruction (every level but
/// scalar).
#[inline]
pub(crate) fn fused_multiply_add() -> bool {
    crate::simd::level() != crate::simd::Level::Scalar
}

/// `$body` with `$m` naming the [`MulAdd`] for this process's SIMD level. Put it around the
/// whole pass (outside `map_rows`), not inside the element loop: each branch is its own loop.
macro_rules! with_mul_add {
    ($m:ident => $body:expr) => {
        if $crate::fastmath::fused_multiply_add() {
            type $m = $crate::fastmath::Fused;
            $body
        } else {
            type $m = $crate::fastmath::Separate;
            $body
        }
    };
}
pub(crate) use with_mul_add;

/// eˣ for x ≤ 0 in f32, its a·b + c steps by `M`: x = n·ln2 + r, |r| ≤ ln2/2, eʳ by its
/// polynomial times 2ⁿ built in the exponent bits; 0 below the normal range. Fused, it is 17
/// vector instructions where separate multiplies and adds take 26, and within 1.04 ulp where
/// they are within 1.31. NaN compares false, is not zeroed and flows through as NaN.
#[inline(always)]
pub(crate) fn exp_nonpositive_f32<M: MulAdd>(x: f32) -> f32 {
    // 1.5·2²³: adding it rounds to the nearest integer, which lands in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let low = x <= EXP_LOWEST_F32;
    // Values below the range are not clamped: whatever they compute is replaced by 0.
    let shifted = M::mul_add(x, std::f32::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    let r = M::mul_add(-n, LN2_LO_F32, M::mul_add(-n, LN2_HI_F32, x));
    let (last, rest) = EXP_POLY_F32.split_last().expect("coefficients");
    let poly = rest
        .iter()
        .rev()
        .fold(*last, |acc, &c| M::mul_add(acc, r, c));
    let scale = f32::from_bits(
        shifted
            .to_bits()
            .wrapping_sub(ROUND.to_bits())
            .wrapping_add(127)
            << 23,
    );
    if low {
        0.0
    } else {
        poly * scale
    }
}

/// ln 2 for the f32 reduction, as hi + lo with hi's low bits zero (n·hi is exact).
const LN2_HI_F32: f32 = 0.693_145_75;
const LN2_LO_F32: f32 = 1.428_606_8e-6;
/// The input below which the f32 eˣ leaves the normal range: the result is 0 there.
const EXP_LOWEST_F32: f32 = -87.336_54;
/// eʳ on |r| ≤ ln2/2 in f32: degree 6 of minimal relative error (fitted in f64 by reweighted
/// least squares, 2e-9 there; the Taylor series of the same degree is 1.2e-7 off at the ends).
/// Constant term 1, so e⁰ = 1 exactly.
const EXP_POLY_F32: [f32; 7] = [
    1.0,
    1.0,
    0.499_999_94,
    0.166_664_32,
    0.041_668,
    0.008_374_156,
    0.001_384_365,
];

/// eˣ − 1 for x ≤ 0 without libm (libm's expm1 is a call per element), one definition for f32
/// and f64 (`$bits` is the type's bit pattern, `$exp_bias` and `$mantissa` its exponent layout),
/// with the split of x the f64 eˣ shares. Per type: the Cody-Waite split of ln2 (`$ln2_hi` has
/// zero low bits, so n·ln2_hi is exact), the Taylor coefficients 1/k! from k = 2 of
/// (expm1(r) − r)/r² (`$expm1_factorials`) and the input below which eˣ − 1 rounds to −1
/// (`$expm1_lowest`).
macro_rules! nonpositive_expm1 {
    ($t:ty, $bits:ty, $exp_bias:expr, $mantissa:expr, $log2e:expr, $ln2_hi:expr, $ln2_lo:expr,
     $expm1_lowest:expr, $expm1_factorials:expr, $fma:ident, $split:ident, $expm1:ident) => {
        /// x = n·ln2 + r with |r| ≤ ln2/2, for x from the lowest input up to 0: returns
        /// (r, 2ⁿ), 2ⁿ built in the exponent bits. a·b + c steps by `M`.
        #[inline(always)]
        fn $split<M: MulAdd>(x: $t) -> ($t, $t) {
            // 1.5·2^mantissa: adding and subtracting it rounds to the nearest integer in plain
            // arithmetic.
            const ROUND: $t = 1.5 * (1u64 << $mantissa) as $t;
            let shifted = M::$fma(x, $log2e, ROUND);
            let n = shifted - ROUND;
            let r = M::$fma(-n, $ln2_lo, M::$fma(-n, $ln2_hi, x));
            // n sits in the low mantissa bits of `shifted` (bits(ROUND) + n): integer lanes,
            // where `n as i32` would be a saturating cast that LLVM does one lane at a time.
            let biased: $bits = shifted
                .to_bits()
                .wrapping_sub(ROUND.to_bits())
                .wrapping_add($exp_bias);
            (r, <$t>::from_bits(biased << $mantissa))
        }

        /// eˣ − 1 for x ≤ 0: 2ⁿ·expm1(r) + (2ⁿ − 1), where 2ⁿ·p and 2ⁿ − 1 are exact, so one
        /// rounding remains; n = 0 keeps expm1's relative precision near 0. Positive x are
        /// clamped to 0 (callers select their value away). a·b + c steps by `M` ([`Separate`]:
        /// the bits of a multiply and an add written out).
        #[inline(always)]
        pub(crate) fn $expm1<M: MulAdd>(x: $t) -> $t {
            // Two selects, each one max or min instruction (one three-way select took five): NaN
            // compares false both times and flows through as NaN; −0.0 stays, and gives +0 as
            // 0.0 does.
            let above_lowest = if x < $expm1_lowest { $expm1_lowest } else { x };
            let clamped = if above_lowest > 0.0 {
                0.0
            } else {
                above_lowest
            };
            let (r, scale) = $split::<M>(clamped);
            let (last, rest) = $expm1_factorials
                .split_last()
                .expect("a polynomial has at least one coefficient");
            let tail = rest.iter().rev().fold(*last, |acc, &c| M::$fma(acc, r, c));
            M::$fma(scale, M::$fma(r * r, tail, r), scale - 1.0)
        }
    };
}

// f32: expm1(r) of degree 7 (error < 2e-8 relative for |r| ≤ ln2/2).
nonpositive_expm1!(
    f32,
    u32,
    127,
    23,
    std::f32::consts::LOG2_E,
    LN2_HI_F32,
    LN2_LO_F32,
    -88.0,
    [
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0
    ],
    mul_add,
    split_ln2_f32,
    expm1_nonpositive_f32
);

/// 1/k! for k = 0..13, the f64 Taylor coefficients of eʳ (all) and of (expm1(r) − r)/r² (from 2).
const INVERSE_FACTORIALS_F64: [f64; 14] = [
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
    1.0 / 6_227_020_800.0,
];

// f64: degree-13 polynomials (truncation < 5e-18 relative); fdlibm's ln2 split. Both within 1 ulp
// of libm (tested).
nonpositive_expm1!(
    f64,
    u64,
    1023,
    52,
    std::f64::consts::LOG2_E,
    6.931_471_803_691_238e-1,
    1.908_214_929_270_587_7e-10,
    -40.0,
    INVERSE_FACTORIALS_F64[2..],
    mul_add_f64,
    split_ln2_f64,
    expm1_nonpositive_f64
);

/// eˣ for x ≤ 0 in f64: eʳ by its Taylor polynomial times 2ⁿ; 0 below the normal range (an
/// absolute error under the smallest normal). No FMA: its emulation in f64 would take a
/// double-double product. NaN compares false, so it is not clamped and flows through as NaN.
#[inline(always)]
pub(crate) fn exp_nonpositive_f64(x: f64) -> f64 {
    const LOWEST: f64 = -708.39;
    let low = x <= LOWEST;
    let clamped = if low { LOWEST } else { x };
    let (r, scale) = split_ln2_f64::<Separate>(clamped);
    let poly = horner(r, &INVERSE_FACTORIALS_F64);
    if low {
        0.0
    } else {
        poly * scale
    }
}

/// ln x for f64, written without branches or int↔float casts so loops over it vectorize (libm's
/// ln is a call per element). x = m·2ᵉ with m in [√½, √2); ln m = 2·atanh(s), s = (m − 1)/(m + 1),
/// |s| ≤ 0.1716, with atanh(s)/s as 1 + z·P(z), z = s², P of degree 6 interpolating at its
/// Chebyshev nodes on [0, 0.1716²] (fitted in 50-digit arithmetic; within 5e-18 there, where
/// the Taylor series needs degree 11 for the same); e·ln 2 in a hi/lo split. Within 1 ulp of
/// libm over positive normals and subnormals (tested densely over the reduced range); ln 0 =
/// −inf, ln inf = inf, else NaN. No FMA: every SIMD level gives the same bits.
#[inline(always)]
pub fn ln(x: f64) -> f64 {
    ln_with::<Separate>(x)
}

/// [`ln`] with its polynomial's a·b + c steps by `M`: fused, the information measures' rows of
/// x·ln x ran 1.2× faster.
#[inline(always)]
pub(crate) fn ln_with<M: MulAdd>(x: f64) -> f64 {
    const TWO_54: f64 = 18_014_398_509_481_984.0;
    let subnormal = x < f64::MIN_POSITIVE;
    let scaled = if subnormal { x * TWO_54 } else { x };
    let result = ln_reduced::<M>(scaled, if subnormal { 54.0 } else { 0.0 });
    if x > 0.0 && x < f64::INFINITY {
        result
    } else if x == 0.0 {
        f64::NEG_INFINITY
    } else if x == f64::INFINITY {
        x
    } else {
        f64::NAN
    }
}

/// [`ln_with`] of a positive, finite, normal x, the same bits without the other cases' selects
/// (75 → 54 vector instructions for 8 values of a cross-entropy row): for loops whose values are
/// known to be such.
#[inline(always)]
pub(crate) fn ln_normal<M: MulAdd>(x: f64) -> f64 {
    ln_reduced::<M>(x, 0.0)
}

/// ln(x · 2^−shift) for a positive normal x (`shift` 54 when x is a subnormal scaled by 2⁵⁴).
#[inline(always)]
#[allow(clippy::unreadable_literal)]
fn ln_reduced<M: MulAdd>(scaled: f64, shift: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1; // ln 2 with its low 32 bits zero
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // 2⁵² as f64: or-ing an integer below 2⁵² into its mantissa and subtracting 2⁵² converts it.
    const MAGIC: u64 = 0x4330_0000_0000_0000;
    const TWO_52: f64 = 4_503_599_627_370_496.0;
    let bits = scaled.to_bits();
    let biased_exponent = f64::from_bits(MAGIC | ((bits >> 52) & 0x7ff)) - TWO_52;
    let mantissa = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let high = mantissa > std::f64::consts::SQRT_2;
    let m = if high { mantissa * 0.5 } else { mantissa };
    let e = biased_exponent - 1023.0 + if high { 1.0 } else { 0.0 } - shift;
    // ln(1 + f) = f − s·(f − R) with s = f/(2 + f) and R = 2·atanh(s)/s − 2, arranged so that
    // the exact f leads and the rest is a correction: (f − R)·s as hfsq − s·(hfsq + R), hfsq =
    // f²/2. Forming 2·atanh(s) directly lost up to 4 ulp where e·ln 2 cancels most of it.
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    // atanh(s)/s − 1 = z·P(z).
    let r = 2.0
        * z
        * horner_with::<M>(
            z,
            &[
                0.333_333_333_333_333_5,
                0.199_999_999_999_497_52,
                0.142_857_143_129_877_43,
                0.111_111_055_673_975_4,
                0.090_914_445_626_308_61,
                0.076_658_608_002_780_21,
                0.073_082_248_425_217_03,
            ],
        );
    let hfsq = 0.5 * f * f;
    e * LN2_HI - ((hfsq - (s * (hfsq + r) + e * LN2_LO)) - f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::float_cmp)] // exact zeros and ones are intended
    fn fast_exp_f32_within_1_1_ulp_fused_and_1_5_separate() {
        // In ulps of the exact value's f32 binade: fused 1.04, separate 1.31 (the Taylor
        // polynomial before the fitted one was 3.0).
        fn worst(exp: fn(f32) -> f32) -> f64 {
            let mut worst_ulps = 0.0f64;
            for i in 0..=2_000_000 {
                let x = -(i as f32) * 0.000_05; // 0 down to −100
                let (fast, exact) = (f64::from(exp(x)), f64::from(x).exp());
                if exact > 1.2e-38 {
                    let rounded = exact as f32;
                    let ulp = f64::from(f32::from_bits(rounded.to_bits() + 1) - rounded);
                    worst_ulps = worst_ulps.max((fast - exact).abs() / ulp);
                }
            }
            worst_ulps
        }
        let fused = worst(exp_nonpositive_f32::<Fused>);
        assert!(fused < 1.1, "fused: max error {fused} ulp");
        let separate = worst(exp_nonpositive_f32::<Separate>);
        assert!(separate < 1.5, "separate: max error {separate} ulp");
        for exp in [
            exp_nonpositive_f32::<Fused>,
            exp_nonpositive_f32::<Separate>,
        ] {
            assert!(exp(f32::NAN).is_nan());
            assert!(exp(f32::NEG_INFINITY) == 0.0 && exp(-1e4) == 0.0 && exp(-f32::MAX) == 0.0);
            assert!(exp(-87.336_54) == 0.0 && exp(-87.3) > 0.0);
            assert!(exp(0.0) == 1.0 && exp(-0.0) == 1.0);
        }
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
            let (fast, exact) = (expm1_nonpositive_f64::<Separate>(x), x.exp_m1());
            if exact != 0.0 {
                let ulp = f64::from_bits(exact.abs().to_bits() + 1) - exact.abs();
                worst_ulps = worst_ulps.max((fast - exact).abs() / ulp);
            }
        }
        assert!(worst_ulps <= 1.0, "max error {worst_ulps} ulp");
        assert!(expm1_nonpositive_f64::<Separate>(f64::NAN).is_nan());
        assert!(expm1_nonpositive_f64::<Separate>(-0.0).to_bits() == 0.0f64.to_bits());
        assert!((expm1_nonpositive_f64::<Separate>(-1e4) + 1.0).abs() < f64::EPSILON);
    }

    #[test]
    #[allow(clippy::float_cmp)] // exact values are intended
    fn fast_expm1_matches_libm_with_relative_precision_near_zero() {
        expm1_f32_matches_libm_by(expm1_nonpositive_f32::<Separate>);
        expm1_f32_matches_libm_by(expm1_nonpositive_f32::<Fused>);
    }

    #[allow(clippy::float_cmp)] // exact values are intended
    fn expm1_f32_matches_libm_by(expm1: fn(f32) -> f32) {
        let mut worst = 0.0f64;
        // 0 down to −100 evenly, then tiny magnitudes where eˣ − 1 would lose every digit.
        let even = (0..=200_000).map(|i| -(i as f32) * 0.000_5);
        let tiny = (0..200).map(|k| -(2.0f32).powi(-(k % 140)) * (1.0 + k as f32 / 300.0));
        for x in even.chain(tiny) {
            let fast = f64::from(expm1(x));
            let exact = f64::from(x).exp_m1();
            if exact != 0.0 {
                worst = worst.max((fast - exact).abs() / exact.abs());
            }
        }
        assert!(worst < 2.5e-7, "max relative error {worst}");
        assert!(expm1(f32::NAN).is_nan());
        assert!(expm1(f32::NEG_INFINITY) == -1.0);
        assert!(expm1(-1e4) == -1.0 && expm1(0.0) == 0.0);
        assert!(expm1(-0.0).to_bits() == 0.0f32.to_bits() && expm1(-1e-30) == -1e-30);
        assert!(expm1(0.0).to_bits() == 0.0f32.to_bits() && expm1(1e30) == 0.0);
    }

    #[test]
    #[allow(clippy::float_cmp)] // exact special values
    fn ln_within_one_ulp_of_libm() {
        ln_within_one_ulp_of_libm_by(ln);
        ln_within_one_ulp_of_libm_by(ln_with::<Fused>);
        // The cases' selects aside, ln_normal is the same function.
        let mut x = f64::MIN_POSITIVE;
        while x < f64::MAX / 1.37 {
            for v in [x, x * 1.000_000_1, x * 1.42] {
                assert_eq!(ln_normal::<Separate>(v).to_bits(), ln(v).to_bits(), "{v:e}");
                let fused = ln_with::<Fused>(v).to_bits();
                assert_eq!(ln_normal::<Fused>(v).to_bits(), fused, "{v:e}");
            }
            x *= 1.37;
        }
        // Fusing does change a last bit, rarely (16 of these million): the polynomial is a small
        // correction to the result.
        let dense = (0..1_000_000).map(|i| 0.70 + f64::from(i) * 7.3e-7);
        assert!(dense.filter(|&v| ln(v) != ln_with::<Fused>(v)).count() > 0);
    }

    #[allow(clippy::float_cmp)] // exact special values
    fn ln_within_one_ulp_of_libm_by(ln: fn(f64) -> f64) {
        let ulp = |v: f64| f64::from_bits(v.abs().to_bits() + 1) - v.abs();
        let check = |v: f64| {
            let (got, want) = (ln(v), v.ln());
            assert!(
                (got - want).abs() <= ulp(want).max(f64::MIN_POSITIVE),
                "ln({v:e}): {got} vs {want}"
            );
        };
        let mut x = 4.9e-324f64; // smallest subnormal, then up by irregular factors to the top
        while x < f64::MAX / 1.37 {
            for v in [x, x * 1.000_000_1, x * 0.71, x * 1.42] {
                check(v);
            }
            // (Among subnormals x·1.37 can round back to x: step at least one ulp.)
            x = (x * 1.37).max(f64::from_bits(x.to_bits() + 1));
        }
        // Densely over the reduced range [√½, √2) and beside 1, where the polynomial does the work.
        let dense = (0..400_000).map(|i| 0.70 + f64::from(i) * 1.8e-6);
        let near_one =
            (1..20_000).flat_map(|i| [1.0 + f64::from(i) * 1e-12, 1.0 - f64::from(i) * 1e-12]);
        let edges = [
            1.0 + f64::EPSILON,
            1.0 - f64::EPSILON / 2.0,
            0.999,
            1.001,
            2.0,
            0.5,
        ];
        dense.chain(near_one).chain(edges).for_each(check);
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert_eq!(ln(f64::INFINITY), f64::INFINITY);
        assert!(ln(-1.0).is_nan() && ln(f64::NAN).is_nan() && ln(f64::NEG_INFINITY).is_nan());
        assert_eq!(ln(1.0), 0.0);
    }
}
