//! `moments`: the mergeable statistics (count, mean, M2) over chosen axes, which
//! `reduce::merge_columns` combines across chunks and machines (Chan, Golub & LeVeque).

use crate::element::Element;
use crate::error::{resolve_axis, shape_str, Error, Result};
use crate::norm::channels::row_moments;
use crate::norm::columns::column_moments;
use crate::reduce::Moments;
use crate::rows::ArrayRef;

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

/// (count, mean, M2) of `x` over `axes` (None: all dims).
pub fn moments<S: Element>(x: &ArrayRef<S>, axes: Option<&[i64]>) -> Result<AxisMoments> {
    let shape = &x.shape();
    let ndim = shape.len();
    let mut reduced: Vec<usize> = match axes {
        None => (0..ndim).collect(),
        Some(axes) => axes
            .iter()
            .map(|&d| resolve_axis(OP, d, ndim))
            .collect::<Result<_>>()?,
    };
    reduced.sort_unstable();
    if reduced.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::InvalidArgument(format!(
            "{OP}: axis {reduced:?} repeats a dim"
        )));
    }
    let kept: Vec<usize> = (0..ndim).filter(|d| !reduced.contains(d)).collect();
    let kept_shape: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
    let count: usize = reduced.iter().map(|&d| shape[d]).product();
    let columns: usize = kept_shape.iter().product();
    if count == 0 && columns > 0 {
        return Err(Error::InvalidArgument(format!(
            "{OP}: reducing over zero elements of x with shape {}",
            shape_str(shape)
        )));
    }
    let leading = reduced.iter().enumerate().all(|(i, &d)| i == d);
    // The path depends on the shape alone, never on the strides: a layout must not change the
    // bits (an F-ordered table gives what its C-ordered copy gives).
    let moments = if leading && columns >= COLUMN_PATH_FROM {
        // Column statistics of a table (leading axes reduced): down the columns, contiguous ones
        // read in place; gathering each strided column as a row was 6x slower.
        column_moments(&x.rows(kept.len()), columns)
    } else {
        row_moments(&x.with_leading(&kept).rows(reduced.len()))
    };
    Ok(AxisMoments {
        count,
        moments,
        shape: kept_shape,
    })
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
    fn refusals() {
        let x = [0.0; 6];
        let view = ArrayRef::from_slice(&x, &[2, 3]);
        let err = |axes: &[i64]| moments(&view, Some(axes)).unwrap_err().to_string();
        assert!(err(&[1, -1]).contains("repeats a dim"));
        assert!(err(&[2]).contains("axis 2 is out of range"));
        let empty = ArrayRef::from_slice(&[] as &[f64], &[0, 3]);
        let err = moments(&empty, Some(&[0])).unwrap_err().to_string();
        assert!(err.contains("reducing over zero elements"));
    }
}
