//! The float types the CPU reference is generic over: `f32` for speed, `f64` for gradient checks.

use std::fmt::{Debug, Display};
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Float:
    Copy
    + Send
    + Sync
    + Default
    + Debug
    + Display
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const NAME: &'static str;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    /// ln(1 + x), accurate for small x
    fn ln_1p(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    fn is_finite(self) -> bool;
    /// sigma(x) = 1 / (1 + e^-x)
    #[inline(always)]
    fn sigmoid(self) -> Self {
        Self::ONE / (Self::ONE + (-self).exp())
    }
    /// `xs[i] = sigma(xs[i])` over a slice. f32 uses a vectorised polynomial exp (relative error
    /// about 1e-7, see [`exp_f32_fast`]); f64 stays exact (libm), for the gradient checks.
    #[inline(always)]
    fn sigmoid_slice(xs: &mut [Self]) {
        xs.iter_mut().for_each(|x| *x = x.sigmoid());
    }
    /// `out[i] = e^(xs[i])` over a slice (f32: vectorised polynomial, clamped to the normal range;
    /// f64: libm).
    #[inline(always)]
    fn exp_slice(xs: &[Self], out: &mut [Self]) {
        for (o, &x) in out.iter_mut().zip(xs) {
            *o = x.exp();
        }
    }
    /// e^x, fast where it matters: f32 uses [`exp_f32_fast`] (relative error about 1e-7, argument
    /// clamped to [-87.3, 88.3]), f64 is exact (libm). Inlines into vectorised loops.
    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp()
    }
    /// softplus(x) = log(1 + e^x), computed without overflow.
    #[inline(always)]
    fn softplus(self) -> Self {
        if self > Self::ZERO {
            self + (Self::ONE + (-self).exp()).ln()
        } else {
            (Self::ONE + self.exp()).ln()
        }
    }
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAME: &'static str = "f32";
    #[inline(always)]
    fn sigmoid_slice(xs: &mut [Self]) {
        sigmoid_slice_f32(xs)
    }
    #[inline(always)]
    fn exp_slice(xs: &[Self], out: &mut [Self]) {
        exp_slice_f32(xs, out)
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        exp_f32_fast(self)
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f32::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f32::ln(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        f32::ln_1p(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NAME: &'static str = "f64";
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        f64::ln_1p(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
}

/// Whether the CPU has AVX2 and FMA (cached by the standard library); the hot loops of the CPU
/// backend run an AVX2-compiled copy when it does.
#[inline(always)]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// e^x in f32 without libm, written so that a loop over it vectorises: Cephes `expf` (range
/// reduction x = n ln 2 + r, |r| <= ln2/2, degree-6 polynomial), relative error about 1e-7.
/// The argument is clamped to [-87.3, 88.3] so the result is always a finite normal number
/// (e^-87.3 instead of smaller values, e^88.3 instead of larger ones); NaN gives NaN.
#[inline(always)]
pub fn exp_f32_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4; // ln 2, high part (exact in few bits)
    const C2: f32 = -2.121_944_4e-4; // ln 2 - C1
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = if x > 88.3 { 88.3 } else { x };
    let x = if x < -87.3 { -87.3 } else { x };
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = x - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    e * f32::from_bits(((ni + 127) << 23) as u32)
}

#[inline(always)]
fn sigmoid_kernel(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = 1.0 / (1.0 + exp_f32_fast(-*x));
    }
}

#[inline(always)]
fn exp_kernel(xs: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(xs) {
        *o = exp_f32_fast(x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sigmoid_avx2(xs: &mut [f32]) {
    sigmoid_kernel(xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_avx2(xs: &[f32], out: &mut [f32]) {
    exp_kernel(xs, out)
}

/// `xs[i] = 1 / (1 + e^-xs[i])` with [`exp_f32_fast`], vectorised (AVX2 when available).
pub fn sigmoid_slice_f32(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA.
            unsafe { sigmoid_avx2(xs) };
            return;
        }
    }
    sigmoid_kernel(xs)
}

/// `out[i] = e^xs[i]` with [`exp_f32_fast`], vectorised (AVX2 when available).
pub fn exp_slice_f32(xs: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA.
            unsafe { exp_avx2(xs, out) };
            return;
        }
    }
    exp_kernel(xs, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let e = exp_f32_fast(x) as f64;
            let r = (x as f64).exp();
            worst = worst.max(((e - r) / r).abs());
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert!(exp_f32_fast(-1000.0) > 0.0 && exp_f32_fast(1000.0).is_finite());
        assert!(exp_f32_fast(f32::NAN).is_nan());
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.05).collect();
        let mut s = xs.clone();
        f32::sigmoid_slice(&mut s);
        for (a, &x) in s.iter().zip(&xs) {
            assert!((a - x.sigmoid()).abs() < 1e-7, "sigmoid({x})");
        }
    }
}
