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
    /// `M` is how f32 rounds its a·b + c steps ([`crate::fastmath::with_mul_add!`] picks it); f64 has none.
    #[must_use]
    fn exp_nonpositive<M: crate::fastmath::MulAdd>(self) -> Self;
    /// eˣ − 1 for x ≤ 0 (SELU's negative side), with full relative precision near 0 and written
    /// so that loops over it vectorize; NaN stays NaN. Positive x give an unspecified finite
    /// value (callers select it away). `M` as for [`Float::exp_nonpositive`].
    #[must_use]
    fn expm1_nonpositive<M: crate::fastmath::MulAdd>(self) -> Self;
}

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
    fn exp_nonpositive<M: crate::fastmath::MulAdd>(self) -> Self {
        crate::fastmath::exp_nonpositive_f32::<M>(self)
    }
    #[inline(always)]
    fn expm1_nonpositive<M: crate::fastmath::MulAdd>(self) -> Self {
        crate::fastmath::expm1_nonpositive_f32::<M>(self)
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
    fn exp_nonpositive<M: crate::fastmath::MulAdd>(self) -> Self {
        crate::fastmath::exp_nonpositive_f64(self)
    }
    #[inline(always)]
    fn expm1_nonpositive<M: crate::fastmath::MulAdd>(self) -> Self {
        crate::fastmath::expm1_nonpositive_f64::<crate::fastmath::Separate>(self)
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

/// Values of `S` read as f64: a view's elements reinterpreted (same layout) so a generic kernel
/// computes in f64 without a copy of the array. `moments` reads float32 data this way: its
/// partial sums are merged across chunks and machines, so they keep f64 precision from the
/// first value on, without the float64 copy of every chunk the binding used to make (47-60 ms
/// per 64 MB chunk).
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct Wide<S>(pub S);

impl<S: Element> Element for Wide<S> {
    type Compute = f64;
    const NATIVE: bool = false;
    const EPSILON: f64 = S::EPSILON;
    const NAME: &'static str = S::NAME;
    #[inline(always)]
    fn load(self) -> f64 {
        self.0.load().to_f64()
    }
    #[inline(always)]
    fn store(v: f64) -> Self {
        Wide(S::store(S::Compute::from_f64(v)))
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
}
