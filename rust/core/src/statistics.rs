//! The engine-agnostic statistics API: `moments` (count, mean, M2) over chosen axes, exact in
//! f64 whatever the input's float type; `merge_parts`, many partials' union as one tree (Chan,
//! Golub & LeVeque); and `apply_statistics`, the affine map that normalizes with statistics
//! computed anywhere else (merged chunks, other machines). Any engine (Dask, Ray, MPI) is a recipe
//! over these three.

use crate::element::{Element, Float};
use crate::error::{resolve_axis, shape_str, Error, Result};
use crate::norm::channels::{affine_rows, merge_rows, row_moments, RowAffine};
use crate::norm::columns::{affine_columns, column_moments};
use crate::reduce::Moments;
use crate::rows::{ArrayMut, ArrayRef};

const OP: &str = "moments";

/// Kept positions from which a reduction over the leading axes runs down columns.
const COLUMN_PATH_FROM: usize = 8;

/// The statistics of every position of the kept dims, each over `count` values.
#[derive(Clone, Debug)]
pub struct AxisMoments {
    pub count: usize,
    pub moments: Vec<Moments>,
    /// The kept dims (x's shape without the reduced axes).
    pub shape: Vec<usize>,
}

/// The dims a reduction over `axes` (None: all) of an array of `shape` reduces and keeps.
struct Split {
    reduced: Vec<usize>,
    kept: Vec<usize>,
}

impl Split {
    fn of(op: &str, shape: &[usize], axes: Option<&[i64]>) -> Result<Split> {
        let ndim = shape.len();
        let mut reduced: Vec<usize> = match axes {
            None => (0..ndim).collect(),
            Some(axes) => axes
                .iter()
                .map(|&d| resolve_axis(op, d, ndim))
                .collect::<Result<_>>()?,
        };
        reduced.sort_unstable();
        if reduced.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::InvalidArgument(format!(
                "{op}: axis {reduced:?} repeats a dim"
            )));
        }
        let kept = (0..ndim).filter(|d| !reduced.contains(d)).collect();
        Ok(Split { reduced, kept })
    }

    fn kept_shape(&self, shape: &[usize]) -> Vec<usize> {
        self.kept.iter().map(|&d| shape[d]).collect()
    }

    /// Reduced dims at the end of the shape, below a kept one: rows of them are contiguous runs
    /// (NCHW's H and W when C is kept), read as rows and merged by kept position.
    fn trailing_reduced(&self, ndim: usize) -> usize {
        (0..ndim)
            .rev()
            .take_while(|d| self.reduced.contains(d))
            .count()
    }

    /// The kept position of each row of `rows(inner)` (the dims before the last `inner`, in C
    /// order): its index over the kept dims alone.
    fn position_of_row(&self, shape: &[usize], inner: usize) -> impl Fn(usize) -> usize + Sync {
        let outer: Vec<usize> = shape[..shape.len() - inner].to_vec();
        let mut weights = vec![0usize; outer.len()];
        let mut w = 1;
        for &d in self.kept.iter().rev() {
            weights[d] = w;
            w *= shape[d];
        }
        move |row| {
            let (mut rest, mut position) = (row, 0);
            for (&n, &w) in outer.iter().zip(&weights).rev() {
                position += (rest % n) * w;
                rest /= n;
            }
            position
        }
    }

    /// How to walk x: down columns, as rows of the reduced dims, or as rows of the trailing reduced
    /// dims merged (or applied) by kept position.
    fn walk(&self, shape: &[usize]) -> Walk {
        let trailing = self.trailing_reduced(shape.len());
        if self.by_columns(shape) {
            Walk::Columns
        } else if trailing == self.reduced.len() || trailing == 0 {
            Walk::Rows
        } else {
            Walk::Grouped { inner: trailing }
        }
    }

    /// Whether the reduced dims are the leading ones and the kept positions many: the column
    /// path. It depends on the shape alone, never on the strides: a layout must not change the
    /// bits (an F-ordered table gives what its C-ordered copy gives).
    fn by_columns(&self, shape: &[usize]) -> bool {
        let leading = self.reduced.iter().enumerate().all(|(i, &d)| i == d);
        leading && self.kept_shape(shape).iter().product::<usize>() >= COLUMN_PATH_FROM
    }
}

/// The paths of `moments` and `apply_statistics`, chosen from the shape alone.
enum Walk {
    /// Leading dims reduced, many kept positions: sums down the columns.
    Columns,
    /// One row per kept position (the reduced dims gathered as its elements).
    Rows,
    /// Mixed (NCHW over N, H, W): contiguous rows of the `inner` trailing reduced dims, each
    /// belonging to one kept position; gathering a channel's strided elements as one row was 4-8x
    /// slower than these rows.
    Grouped { inner: usize },
}

/// The shape of the statistics of an array of `shape` over `axes` (None: all dims): its dims
/// without those, in order.
pub fn kept_shape(op: &str, shape: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>> {
    Ok(Split::of(op, shape, axes)?.kept_shape(shape))
}

/// (count, mean, M2) of `x` over `axes` (None: all dims). Values of a type narrower than f64 are
/// read as f64 ([`crate::element::Wide`]): these statistics are merged across chunks and machines,
/// so they keep f64 precision from the first sum on (the normalization kernels accumulate in the
/// row's type).
pub fn moments<S: Element>(x: &ArrayRef<S>, axes: Option<&[i64]>) -> Result<AxisMoments> {
    if <S::Compute as Float>::EPSILON > f64::EPSILON {
        moments_in(&x.widened(), axes)
    } else {
        moments_in(x, axes)
    }
}

fn moments_in<S: Element>(x: &ArrayRef<S>, axes: Option<&[i64]>) -> Result<AxisMoments> {
    let shape = x.shape();
    let split = Split::of(OP, shape, axes)?;
    let kept_shape = split.kept_shape(shape);
    let count: usize = split.reduced.iter().map(|&d| shape[d]).product();
    let columns: usize = kept_shape.iter().product();
    if count == 0 && columns > 0 {
        return Err(Error::InvalidArgument(format!(
            "{OP}: reducing over zero elements of x with shape {}",
            shape_str(shape)
        )));
    }
    let moments = match split.walk(shape) {
        // Column statistics of a table (leading axes reduced): down the columns, contiguous ones
        // read in place; gathering each strided column as a row was 6x slower.
        Walk::Columns => column_moments(&x.rows(split.kept.len()), columns),
        Walk::Rows => row_moments(&x.with_leading(&split.kept).rows(split.reduced.len())),
        Walk::Grouped { inner } => {
            let rows = row_moments(&x.rows(inner));
            merge_rows(&rows, columns, split.position_of_row(shape, inner))
        }
    };
    Ok(AxisMoments {
        count,
        moments,
        shape: kept_shape,
    })
}

/// Position `c`'s partials of parts `lo..hi` merged as a pairwise tree.
fn tree(parts: &[Moments], columns: usize, c: usize, lo: usize, hi: usize) -> Moments {
    match hi - lo {
        0 => Moments::default(),
        1 => parts[lo * columns + c],
        len => {
            let mid = lo + len / 2;
            tree(parts, columns, c, lo, mid).merge(tree(parts, columns, c, mid, hi))
        }
    }
}

/// The union of `parts` partials of `columns` positions each (part-major: part p's position c at
/// `p * columns + c`): per position, a pairwise tree over the parts in order, so the result does
/// not depend on how an engine grouped them. Counts must be non-negative integers.
pub fn merge_parts(parts: &[Moments], columns: usize) -> Result<Vec<Moments>> {
    const OP: &str = "merge_moments";
    if parts
        .iter()
        .any(|m| m.count < 0.0 || m.count.fract() != 0.0)
    {
        return Err(Error::InvalidArgument(format!(
            "{OP}: counts must be non-negative integers"
        )));
    }
    if columns == 0 {
        return Ok(Vec::new());
    }
    let n = parts.len() / columns;
    Ok((0..columns)
        .map(|c| tree(parts, columns, c, 0, n))
        .collect())
}

/// y = (x − mean) · scale + shift, each position of the kept dims (x's without `axes`, None: all)
/// with its own parameters — `params` in the order of `moments`' results over the same `axes`.
/// The normalization kernels' own affine passes (the mean split in two in the row's type), so
/// statistics merged anywhere normalize as exactly as a single call's.
pub fn apply_statistics<S: Element>(
    x: &ArrayRef<S>,
    y: ArrayMut<S>,
    axes: Option<&[i64]>,
    params: &[RowAffine],
) -> Result<()> {
    const OP: &str = "apply_statistics";
    let shape = x.shape();
    if y.shape() != shape {
        return Err(Error::InvalidArgument(format!(
            "{OP}: out has shape {}, expected {}",
            shape_str(y.shape()),
            shape_str(shape)
        )));
    }
    let split = Split::of(OP, shape, axes)?;
    let columns: usize = split.kept_shape(shape).iter().product();
    if params.len() != columns {
        return Err(Error::InvalidArgument(format!(
            "{OP}: {} sets of statistics for {columns} positions",
            params.len()
        )));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    match split.walk(shape) {
        Walk::Columns => {
            affine_columns(&x.rows(split.kept.len()), &y.rows(split.kept.len()), params)
        }
        Walk::Rows => {
            let rows = split.reduced.len();
            let y = y.with_leading(&split.kept);
            affine_rows(
                &x.with_leading(&split.kept).rows(rows),
                &y.rows(rows),
                |r| params[r],
            )
        }
        Walk::Grouped { inner } => {
            let position = split.position_of_row(shape, inner);
            affine_rows(&x.rows(inner), &y.rows(inner), |r| params[position(r)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_columns_give_each_kept_position_its_statistics() {
        // (2, 3, 10): axis 0 (columns path, 30 kept), axes (0, 2) (rows path, 3 kept), all.
        let x: Vec<f64> = (0..60).map(|i| f64::from((i * 13) % 17)).collect();
        let shape = [2, 3, 10];
        let view = ArrayRef::from_slice(&x, &shape);
        let at = |n: usize, c: usize, l: usize| x[n * 30 + c * 10 + l];
        let check = |values: Vec<f64>, m: &Moments| {
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let m2: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
            assert!((m.mean - mean).abs() < 1e-12 && (m.m2() - m2).abs() < 1e-9);
        };
        let by_column = moments(&view, Some(&[0])).unwrap();
        assert_eq!((by_column.count, by_column.shape.clone()), (2, vec![3, 10]));
        for (k, m) in by_column.moments.iter().enumerate() {
            check(vec![at(0, k / 10, k % 10), at(1, k / 10, k % 10)], m);
        }
        let by_row = moments(&view, Some(&[2, -3])).unwrap();
        assert_eq!((by_row.count, by_row.shape.clone()), (20, vec![3]));
        for (c, m) in by_row.moments.iter().enumerate() {
            check((0..20).map(|i| at(i / 10, c, i % 10)).collect(), m);
        }
        let all = moments(&view, None).unwrap();
        assert_eq!((all.count, all.shape.len()), (60, 0));
        check(x.clone(), &all.moments[0]);
    }

    #[test]
    fn float32_is_read_as_f64_exactly_as_its_f64_copy() {
        // Both paths (columns: axis 0 of (300, 9); rows: axis 1), strided and contiguous.
        let x: Vec<f32> = crate::reduce::tests::noise(2700, 5)
            .iter()
            .map(|v| (1e4 + v) as f32)
            .collect();
        let wide: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        for axes in [[0i64], [1]] {
            let a = moments(&ArrayRef::from_slice(&x, &[300, 9]), Some(&axes)).unwrap();
            let b = moments(&ArrayRef::from_slice(&wide, &[300, 9]), Some(&axes)).unwrap();
            assert_eq!(a.moments, b.moments, "axis {axes:?}");
        }
    }

    #[test]
    #[allow(clippy::cast_precision_loss, clippy::float_cmp)] // integers far below 2^53
    fn merged_parts_at_a_large_offset_are_exact() {
        // float32 1e6 + k/16 (exact in f32) in 100 parts of 997: the exact M2 is a ratio of
        // integers. Each part's mean rounds at 6e-11; without the mean's low part the merged M2
        // was off by ~5e-12 relative.
        let steps: Vec<i64> = crate::reduce::tests::noise(99_700, 9)
            .iter()
            .map(|v| (v * 16.0).round() as i64)
            .collect();
        let x: Vec<f32> = steps.iter().map(|&k| 1e6 + k as f32 / 16.0).collect();
        let parts: Vec<Moments> = x
            .chunks(997)
            .map(|c| {
                moments(&ArrayRef::from_slice(c, &[c.len()]), None)
                    .unwrap()
                    .moments[0]
            })
            .collect();
        let merged = merge_parts(&parts, 1).unwrap()[0];
        let n = steps.len() as i128;
        let (s1, s2) = steps.iter().fold((0i128, 0i128), |(a, b), &k| {
            (a + i128::from(k), b + i128::from(k) * i128::from(k))
        });
        let exact_m2 = (n * s2 - s1 * s1) as f64 / (256.0 * n as f64);
        let exact_mean = 1e6 + s1 as f64 / (16.0 * n as f64);
        assert!(
            ((merged.m2() - exact_m2) / exact_m2).abs() < 2e-15,
            "{merged:?}"
        );
        assert!((merged.mean + merged.mean_lo - exact_mean).abs() < 1e-15 * 1e6);
        assert_eq!(merged.count, n as f64);
    }

    #[test]
    #[allow(clippy::float_cmp)] // the kernel's own formula, in f64: the same bits
    fn statistics_apply_to_their_positions_on_both_paths() {
        let x: Vec<f64> = (0..60).map(|i| f64::from((i * 7) % 11)).collect();
        for (axes, kept) in [
            (vec![0i64], 30usize),
            (vec![0, 2], 3),
            (vec![2], 6),
            (vec![1, 2], 2),
            (vec![1], 20),
        ] {
            let params: Vec<RowAffine> = (0..kept)
                .map(|k| RowAffine {
                    mean: k as f64,
                    scale: 0.5 + k as f64,
                    shift: -(k as f64),
                })
                .collect();
            let mut y = vec![0.0; 60];
            let xv = ArrayRef::from_slice(&x, &[2, 3, 10]);
            let yv = ArrayMut::from_slice(&mut y, &[2, 3, 10]);
            apply_statistics(&xv, yv, Some(&axes), &params).unwrap();
            for (i, (&xi, &yi)) in x.iter().zip(&y).enumerate() {
                let (n, c, l) = (i / 30, (i / 10) % 3, i % 10);
                let k = match axes.as_slice() {
                    [0, 2] => c,
                    [0] => c * 10 + l,
                    [2] => n * 3 + c,
                    [1, 2] => n,
                    _ => n * 10 + l,
                };
                let p = params[k];
                assert_eq!(
                    yi,
                    (xi - p.mean) * p.scale + p.shift,
                    "axes {axes:?} at {i}"
                );
            }
        }
    }

    #[test]
    fn refusals() {
        let x = [0.0; 6];
        let view = ArrayRef::from_slice(&x, &[2, 3]);
        let err = |axes: &[i64]| moments(&view, Some(axes)).unwrap_err().to_string();
        assert!(err(&[1, -1]).contains("repeats a dim"));
        assert!(err(&[2]).contains("axis 2 is out of range"));
        let empty = ArrayRef::from_slice(&[] as &[f64], &[0, 3]);
        let err = moments(&empty, Some(&[0])).unwrap_err().to_string();
        assert!(err.contains("reducing over zero elements"));
        let mut y = [0.0; 6];
        let one = [RowAffine {
            mean: 0.0,
            scale: 1.0,
            shift: 0.0,
        }];
        let err = apply_statistics(
            &view,
            ArrayMut::from_slice(&mut y, &[2, 3]),
            Some(&[0]),
            &one,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("1 sets of statistics for 3 positions"),
            "{err}"
        );
        let bad = [Moments::new(1.5, 0.0, 0.0)];
        assert!(merge_parts(&bad, 1)
            .unwrap_err()
            .to_string()
            .contains("non-negative integers"));
    }
}
