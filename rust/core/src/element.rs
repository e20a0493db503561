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
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    #[must_use]
    fn sqrt(self) -> Self;
    /// e^x − 1, exact near 0 (SELU's negative branch).
    #[must_use]
    fn exp_m1(self) -> Self;
    #[must_use]
    fn powf(self, exponent: Self) -> Self;
}

impl Float for f32 {
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn exp_m1(self) -> Self {
        f32::exp_m1(self)
    }
    #[inline(always)]
    fn powf(self, exponent: Self) -> Self {
        f32::powf(self, exponent)
    }
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const EPSILON: f64 = f32::EPSILON as f64;
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
    fn exp_m1(self) -> Self {
        f64::exp_m1(self)
    }
    #[inline(always)]
    fn powf(self, exponent: Self) -> Self {
        f64::powf(self, exponent)
    }
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const EPSILON: f64 = f64::EPSILON;
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
}
