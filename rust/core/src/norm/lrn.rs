//! Local response normalization across channels, with PyTorch's convention:
//! y = x / (k + α/n · Σ x²)^β over a window of n channels centred on c (n//2 before, (n−1)//2
//! after, zeros beyond the edges — the edge windows still divide by n).
//! AlexNet's paper and TensorFlow's `tf.nn.local_response_normalization` use α without the 1/n
//! (and TF's `depth_radius` r means n = 2r + 1): pass `alpha = α_tf · n` to reproduce them.

use crate::element::{Element, Float};
use crate::error::{Error, Result};
use crate::parallel;
use crate::rows::{RowsMut, RowsRef};

/// LRN parameters, checked by [`Lrn::new`].
#[derive(Clone, Copy, Debug)]
pub struct Lrn {
    pub size: usize,
    pub alpha: f64,
    pub beta: f64,
    pub k: f64,
}

impl Lrn {
    pub fn new(size: i64, alpha: f64, beta: f64, k: f64) -> Result<Self> {
        if size < 1 {
            return Err(Error::InvalidArgument(format!(
                "local_response_norm: size must be >= 1, got {size}"
            )));
        }
        for (name, v) in [("alpha", alpha), ("beta", beta), ("k", k)] {
            if !v.is_finite() {
                return Err(Error::InvalidArgument(format!(
                    "local_response_norm: {name} must be finite, got {v}"
                )));
            }
        }
        Ok(Lrn {
            size: size as usize,
            alpha,
            beta,
            k,
        })
    }

    /// base^(−β) — with β = 0.75 (AlexNet) and 0.5 as square roots, which vectorize where
    /// `powf` does not.
    #[inline(always)]
    #[allow(clippy::float_cmp)] // exactly these exponents have the square-root forms
    fn inverse_power<T: Float>(&self, base: T) -> T {
        if self.beta == 0.75 {
            let root = base.sqrt();
            T::ONE / (root * root.sqrt())
        } else if self.beta == 0.5 {
            T::ONE / base.sqrt()
        } else {
            T::ONE / base.powf(T::from_f64(self.beta))
        }
    }
}

/// LRN of `x` viewed as rows (n, c) over the spatial dims, for `channels` channels.
///
/// # Safety
/// `x` and `y` describe valid memory of the same shape; `y` may be `x` itself (each sample is read
/// whole before it is written) but may not otherwise overlap it.
pub unsafe fn local_response_norm<S: Element>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    channels: usize,
    p: Lrn,
) -> Result<()> {
    let n_rows = x.rows.n_rows();
    if channels == 0 || n_rows % channels != 0 || y.rows.n_rows() != n_rows {
        return Err(Error::ShapeMismatch(
            "local_response_norm: rows do not split into channels".into(),
        ));
    }
    let batch = n_rows / channels;
    let spatial = x.rows.row_len();
    let half_before = p.size / 2;
    let half_after = (p.size - 1) / 2;
    let (xp, yp) = (x.ptr as usize, y.ptr as usize);
    parallel::for_each_range(batch, channels * spatial * 2, |range| {
        crate::simd::dispatch(
            #[inline(always)]
            || {
                let mut sample = vec![<S::Compute as Float>::ZERO; channels * spatial];
                let mut sums = vec![<S::Compute as Float>::ZERO; spatial];
                let mut out_row = vec![<S::Compute as Float>::ZERO; spatial];
                let scale = <S::Compute as Float>::from_f64(p.alpha / p.size as f64);
                let k = <S::Compute as Float>::from_f64(p.k);
                for n in range {
                    for c in 0..channels {
                        let base =
                            (xp as *const S).wrapping_offset(x.rows.row_offset(n * channels + c));
                        let row = &mut sample[c * spatial..(c + 1) * spatial];
                        // SAFETY: offsets inside the view (caller's contract).
                        x.rows
                            .inner
                            .for_each_offset(|s, off| row[s] = unsafe { *base.offset(off) }.load());
                    }
                    for c in 0..channels {
                        sums.fill(<S::Compute as Float>::ZERO);
                        let lo = c.saturating_sub(half_before);
                        let hi = (c + half_after).min(channels - 1);
                        for window in lo..=hi {
                            for (acc, &v) in sums
                                .iter_mut()
                                .zip(&sample[window * spatial..(window + 1) * spatial])
                            {
                                *acc = *acc + v * v;
                            }
                        }
                        let xs = &sample[c * spatial..(c + 1) * spatial];
                        for ((o, &v), &sq) in out_row.iter_mut().zip(xs).zip(&sums) {
                            *o = v * p.inverse_power(k + scale * sq);
                        }
                        let base =
                            (yp as *mut S).wrapping_offset(y.rows.row_offset(n * channels + c));
                        // SAFETY: offsets inside the view; rows of one sample belong to one task.
                        y.rows.inner.for_each_offset(|s, off| unsafe {
                            *base.offset(off) = S::store(out_row[s]);
                        });
                    }
                }
            },
        );
    });
    Ok(())
}
