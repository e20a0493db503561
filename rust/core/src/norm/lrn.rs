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
    // Rows read and written where they lie when they are contiguous native memory and y is not
    // x; otherwise a sample is gathered first (which also makes in place safe) and scattered after.
    let direct = |rows: &crate::layout::Rows| S::NATIVE && rows.inner.single_stride() == Some(1);
    let in_place = x.ptr.cast::<u8>() == y.ptr.cast::<u8>().cast_const();
    let direct_x = direct(&x.rows) && !in_place;
    let direct_y = direct(&y.rows) && !in_place;
    let (xp, yp) = (x.ptr as usize, y.ptr as usize);
    let level = crate::simd::active_level();
    parallel::for_each_range(batch, channels * spatial * 2, |range| {
        crate::simd::dispatch_at(
            level,
            #[inline(always)]
            || {
                let mut gathered: Vec<S::Compute> = Vec::new();
                let mut results: Vec<S::Compute> = Vec::new();
                let mut squares = vec![<S::Compute as Float>::ZERO; channels * TILE];
                for n in range {
                    let row_ptr = |base: usize, rows: &crate::layout::Rows, c: usize| {
                        (base as *const S).wrapping_offset(rows.row_offset(n * channels + c))
                    };
                    if !direct_x {
                        gathered.resize(channels * spatial, <S::Compute as Float>::ZERO);
                        for c in 0..channels {
                            let base = row_ptr(xp, &x.rows, c);
                            let row = &mut gathered[c * spatial..(c + 1) * spatial];
                            // SAFETY: offsets inside the view (caller's contract).
                            x.rows.inner.for_each_offset(|s, off| {
                                row[s] = unsafe { *base.offset(off) }.load();
                            });
                        }
                    }
                    if !direct_y {
                        results.resize(channels * spatial, <S::Compute as Float>::ZERO);
                    }
                    let input = |c: usize| -> &[S::Compute] {
                        if direct_x {
                            // SAFETY: NATIVE (S is the compute type) and the row is contiguous.
                            unsafe {
                                std::slice::from_raw_parts(row_ptr(xp, &x.rows, c).cast(), spatial)
                            }
                        } else {
                            &gathered[c * spatial..(c + 1) * spatial]
                        }
                    };
                    let inputs: Vec<&[S::Compute]> = (0..channels).map(input).collect();
                    for start in (0..spatial).step_by(TILE) {
                        let width = TILE.min(spatial - start);
                        lrn_tile(&inputs, start, width, &mut squares, &p, |c, values| {
                            if direct_y {
                                let at = row_ptr(yp, &y.rows, c).cast_mut().cast::<S::Compute>();
                                // SAFETY: as above for y; rows of one sample belong to one task
                                // and do not overlap x (not in place).
                                let out =
                                    unsafe { std::slice::from_raw_parts_mut(at.add(start), width) };
                                out.copy_from_slice(values);
                            } else {
                                results[c * spatial + start..c * spatial + start + width]
                                    .copy_from_slice(values);
                            }
                        });
                    }
                    if !direct_y {
                        for c in 0..channels {
                            let base = row_ptr(yp, &y.rows, c).cast_mut();
                            let row = &results[c * spatial..(c + 1) * spatial];
                            // SAFETY: offsets inside the view; one task per sample.
                            y.rows.inner.for_each_offset(|s, off| unsafe {
                                *base.offset(off) = S::store(row[s]);
                            });
                        }
                    }
                }
            },
        );
    });
    Ok(())
}

/// Spatial positions per tile: the tile's squares for every channel stay in L2.
const TILE: usize = 512;
/// Positions summed together in registers.
const STEP: usize = 16;

/// LRN of one spatial tile `[start, start + width)` of a sample whose channel rows are `inputs`:
/// squares once per element, window sums by adding the `size` squares rows, then
/// `emit(c, values)` with channel c's outputs.
#[inline(always)]
fn lrn_tile<T: Float>(
    inputs: &[&[T]],
    start: usize,
    width: usize,
    squares: &mut [T],
    p: &Lrn,
    mut emit: impl FnMut(usize, &[T]),
) {
    let channels = inputs.len();
    let (before, after) = (p.size / 2, (p.size - 1) / 2);
    for (c, row) in inputs.iter().enumerate() {
        let sq = &mut squares[c * TILE..c * TILE + width];
        for (s, &v) in sq.iter_mut().zip(&row[start..start + width]) {
            *s = v * v;
        }
    }
    let scale = T::from_f64(p.alpha / p.size as f64);
    let k = T::from_f64(p.k);
    let mut out = [T::ZERO; TILE];
    for (c, row) in inputs.iter().enumerate() {
        let window = c.saturating_sub(before)..=(c + after).min(channels - 1);
        let x = &row[start..start + width];
        let out = &mut out[..width];
        // Lane-sized steps with the window summed in registers (a sums buffer re-stored once per
        // window row was the bottleneck); the additions keep their order, ascending channels.
        let body = width / STEP * STEP;
        for (i, (o, xv)) in out[..body]
            .chunks_exact_mut(STEP)
            .zip(x[..body].chunks_exact(STEP))
            .enumerate()
        {
            let at = i * STEP;
            let mut sums = [T::ZERO; STEP];
            for w in window.clone() {
                let sq: &[T; STEP] = squares[w * TILE + at..w * TILE + at + STEP]
                    .try_into()
                    .expect("STEP long");
                for (acc, &v) in sums.iter_mut().zip(sq) {
                    *acc = *acc + v;
                }
            }
            for ((o, &v), &sq) in o.iter_mut().zip(xv).zip(&sums) {
                *o = v * p.inverse_power(k + scale * sq);
            }
        }
        for j in body..width {
            let sum = window
                .clone()
                .fold(T::ZERO, |acc, w| acc + squares[w * TILE + j]);
            out[j] = x[j] * p.inverse_power(k + scale * sum);
        }
        emit(c, out);
    }
}
