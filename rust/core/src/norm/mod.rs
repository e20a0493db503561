//! Normalization kernels.

pub mod backward;
pub mod batch_norm;
pub mod channels;
pub mod columns;
pub mod group_norm;
pub mod instance_norm;
pub mod layer_norm;
pub mod lp_normalize;
pub mod lrn;
pub mod rms_norm;
pub mod weight_norm;

pub use layer_norm::{add_layer_norm, layer_norm, layer_norm_row, RowStats};
pub use rms_norm::{add_rms_norm, rms_norm, rms_norm_row};

use crate::element::Float;
use crate::error::{Error, Result};
use crate::rows::{in_segments, Ahead, RowsMut, RowsRef, Stores};

/// y = ((x − mean) · scale) · weight + bias, with x − mean formed in `T` from a hi/lo split of the
/// f64 mean: for f32 rows of 1e4 + noise, rounding the mean to f32 alone (ulp ≈ 1e-3) would
/// shift every output by up to 1e-3; x − mean_hi is exact there (Sterbenz) and mean_lo restores
/// the rest. For f64, mean_lo is zero.
#[inline(always)]
pub(crate) fn normalize_into<T: Float>(
    x: &[T],
    y: &mut [T],
    mean: f64,
    scale: f64,
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    ahead: Ahead,
    stores: Stores,
) {
    let (mean_hi, mean_lo) = split_mean::<T>(mean);
    let scale = T::from_f64(scale);
    let norm = |v: T| ((v - mean_hi) - mean_lo) * scale;
    in_segments(
        ahead,
        stores,
        y,
        #[inline(always)]
        |at, y| {
            let x = &x[at..at + y.len()];
            match (weight, bias) {
                (Some(w), Some(b)) => {
                    for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(&w[at..]).zip(&b[at..]) {
                        *y = norm(x) * w + b;
                    }
                }
                (Some(w), None) => {
                    for ((y, &x), &w) in y.iter_mut().zip(x).zip(&w[at..]) {
                        *y = norm(x) * w;
                    }
                }
                (None, Some(b)) => {
                    for ((y, &x), &b) in y.iter_mut().zip(x).zip(&b[at..]) {
                        *y = norm(x) + b;
                    }
                }
                (None, None) => {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = norm(x);
                    }
                }
            }
        },
    );
}

/// The f64 mean as hi + lo in `T`: x − hi is exact near the mean (Sterbenz), lo restores the
/// rest (0 for f64).
#[inline(always)]
pub(crate) fn split_mean<T: Float>(mean: f64) -> (T, T) {
    let hi = T::from_f64(mean);
    (hi, T::from_f64(mean - hi.to_f64()))
}

/// `target()` when this CPU's norms gain from prefetching their next rows in software
/// ([`crate::simd::row_prefetch`]), else nothing (the hardware prefetcher follows the rows alone).
#[inline(always)]
pub(crate) fn ahead_if_useful(target: impl FnOnce() -> Ahead) -> Ahead {
    if crate::simd::row_prefetch() {
        target()
    } else {
        Ahead::NONE
    }
}

/// The next row as prefetch target of a row norm that writes `y` with `stores`. A streamed
/// (non-temporal) output takes no prefetch, but the next input row does, on any CPU
/// ([`crate::simd::streamed_row_prefetch`]): on the Zen 3 EPYC, where the vendor rule prefetches
/// nothing, LayerNorm and RMSNorm (8192, 4096) ran 1.3× faster with it (LayerNorm with a weight
/// and bias less), and no row length from 1 KB up lost (decisions.md). Otherwise the vendor
/// rule: the next input row and, from [`Ahead::MIN_OUTPUT_BYTES`], the next output row.
#[inline(always)]
pub(crate) fn row_norm_ahead<S>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    row: usize,
    stores: Stores,
) -> Ahead {
    if stores == Stores::NonTemporal {
        return if crate::simd::streamed_row_prefetch() {
            x.ahead(row)
        } else {
            Ahead::NONE
        };
    }
    ahead_if_useful(|| x.ahead(row).and(y.ahead_beyond_cache(row)))
}

/// The next row of a fused-add norm's views (x, residual, y, sum) as one prefetch target, when
/// the outputs are large ([`RowsMut::ahead_beyond_cache`]); below that, even the inputs'
/// prefetches cost more than they saved (add_rms_norm (64, 768) 0.80×, add_layer_norm
/// (4096, 1024) 0.86× with them; (4096, 4096) 1.18–1.21×).
#[inline(always)]
pub(crate) fn fused_add_ahead<S>(
    x: &RowsRef<S>,
    residual: &RowsRef<S>,
    y: &RowsMut<S>,
    sum: &RowsMut<S>,
    row: usize,
) -> Ahead {
    let out = ahead_if_useful(|| y.ahead_beyond_cache(row));
    if out.bytes() == 0 {
        return Ahead::NONE;
    }
    // The sum has y's rows (checked), so y's size decided for it too.
    x.ahead(row)
        .and(residual.ahead(row))
        .and(out)
        .and(sum.ahead(row))
}

/// The checks every row norm shares: eps, the same rows in every view, a non-empty row when there
/// are rows, and parameters (weight, bias) of the row's length.
pub(crate) fn check_row_norm<T>(
    op: &str,
    eps: f64,
    x: &crate::layout::Rows,
    others: &[(&str, &crate::layout::Rows)],
    params: &[(&str, Option<&[T]>)],
) -> Result<()> {
    crate::error::check_eps(op, eps)?;
    crate::rows::check_same_rows(op, x, others)?;
    check_row_len(op, x.n_rows(), x.row_len())?;
    for (name, param) in params {
        check_param(op, name, *param, x.row_len())?;
    }
    Ok(())
}

/// Checks an optional per-row-element parameter (weight, bias) against the row length.
pub(crate) fn check_param<T>(
    op: &str,
    name: &str,
    param: Option<&[T]>,
    row_len: usize,
) -> Result<()> {
    check_param_len(op, name, param.map(<[T]>::len), row_len)
}

/// Checks the length of an optional per-row-element parameter against the row length.
pub fn check_param_len(op: &str, name: &str, len: Option<usize>, row_len: usize) -> Result<()> {
    match len {
        Some(len) if len != row_len => Err(Error::ShapeMismatch(format!(
            "{op}: {name} has {len} elements, the normalized dims have {row_len}"
        ))),
        _ => Ok(()),
    }
}

/// A row count of zero is an empty result; a row of zero elements is a mean of nothing.
pub fn check_row_len(op: &str, n_rows: usize, row_len: usize) -> Result<()> {
    if row_len == 0 && n_rows > 0 {
        return Err(Error::EmptyReduction(format!(
            "{op}: the normalized dims have zero elements, so there is no mean to normalize by"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::RowsRef;

    #[test]
    fn prefetching_does_not_change_results() {
        // Lengths around the segment size, and a prefetch target shorter than the row (f16 rows).
        for len in [1usize, 255, 256, 257, 1000, 4097] {
            let x: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let w: Vec<f32> = (0..len).map(|i| 1.0 + i as f32 * 1e-3).collect();
            let next = vec![0.0f32; 2 * len];
            let ahead = Ahead::of(next[len..].as_ptr(), len);
            assert_eq!(ahead.bytes(), len * 4);
            let (mut plain, mut fetched) = (vec![0.0f32; len], vec![0.0f32; len]);
            normalize_into(
                &x,
                &mut plain,
                0.25,
                1.5,
                Some(&w),
                None,
                Ahead::NONE,
                Stores::Cached,
            );
            normalize_into(
                &x,
                &mut fetched,
                0.25,
                1.5,
                Some(&w),
                None,
                ahead,
                Stores::Cached,
            );
            assert_eq!(plain, fetched);
            let want: Vec<f32> = x
                .iter()
                .zip(&w)
                .map(|(&x, &w)| ((x - 0.25) * 1.5) * w)
                .collect();
            assert_eq!(plain, want);
        }
        // The last row has nothing after it; rows under `Ahead::MIN_ROW_BYTES` are not
        // prefetched, longer ones are.
        let data = vec![0.0f32; 1024];
        assert_eq!(RowsRef::from_slice(&data, 256).ahead(3).bytes(), 0);
        assert_eq!(RowsRef::from_slice(&data, 4).ahead(0).bytes(), 0);
        assert_eq!(RowsRef::from_slice(&data, 4).prefetch_target(1).bytes(), 0);
        assert_eq!(RowsRef::from_slice(&data, 256).ahead(0).bytes(), 1024);
    }

    #[test]
    fn outputs_are_prefetch_targets_only_when_large() {
        // 8 MiB rows: four make the 32 MiB of `Ahead::MIN_OUTPUT_BYTES`, three do not.
        let row = 2 << 20;
        let mut big = vec![0.0f32; 4 * row];
        let large = RowsMut::from_slice(&mut big, row);
        assert_eq!(large.ahead_beyond_cache(0).bytes(), row * 4);
        assert_eq!(large.ahead_beyond_cache(3).bytes(), 0); // no row after the last
        let small = RowsMut::from_slice(&mut big[..3 * row], row);
        assert_eq!(small.ahead_beyond_cache(0).bytes(), 0);
        assert_eq!(small.ahead(0).bytes(), row * 4);
        // `and` fills the free regions in order and keeps the first's length as the pace.
        let data = vec![0.0f32; 4096];
        let x = RowsRef::from_slice(&data, 1024);
        let both = Ahead::NONE.and(x.ahead(0)).and(Ahead::NONE).and(x.ahead(1));
        assert_eq!(both.bytes(), 4096);
        let four = (0..5).fold(Ahead::NONE, |a, _| a.and(x.ahead(0)));
        assert_eq!(four.capped(100).bytes(), 100);
    }
}
