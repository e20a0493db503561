//! Column statistics and a per-column affine map, for channel-wise norms whose channel is (nearly)
//! the innermost axis: BatchNorm of NHWC activations (`axis=-1`) or of (batch, features) tables.
//!
//! The row path (one row per channel slice) would hand the kernels rows of one element there.
//! Instead the array is seen as rows of `columns` values, each column being one channel (or one
//! (channel, inner index) pair, merged by the caller), and the sums run down the columns with
//! vector lanes across them. Statistics are the corrected two-pass sums of [`crate::reduce`] around
//! a per-column center (the mean of the first rows), so a training step reads x twice: once here,
//! once to normalize.
//!
//! When the whole array is one contiguous run, consecutive rows are grouped into longer rows (up
//! to [`GROUP_LEN`] elements) so the per-row bookkeeping of the row driver is paid once per group.

use crate::element::{Element, Float};
use crate::layout::Rows;
use crate::reduce::{ColumnSums, Moments};
use crate::rows::{block_rows, map_row_blocks, map_rows, RowsMut, RowsRef};

use super::channels::RowAffine;
use super::split_mean;

/// `$body` with the const `$c` = `$columns` where the column paths have a fixed-width form (16,
/// 32 or 64 columns), else false: the widths listed once for every such path.
macro_rules! at_fixed_width {
    ($columns:expr, $c:ident => $body:expr) => {
        match $columns {
            16 => {
                const $c: usize = 16;
                $body
            }
            32 => {
                const $c: usize = 32;
                $body
            }
            64 => {
                const $c: usize = 64;
                $body
            }
            _ => false,
        }
    };
}

/// Target elements per grouped row.
const GROUP_LEN: usize = 4096;
/// Leading rows whose mean is the first center.
const PROBE_ROWS: usize = 64;

/// Rows of `columns` values per grouped row when `rows` (rows of `columns` values) is one
/// contiguous run of native values: the largest common divisor of the row count and of the
/// column sums' block ([`block_rows`] of the ungrouped rows) up to `GROUP_LEN` elements, so
/// grouped rows make the same blocks (the same sums, bit for bit) as rows of any other layout.
/// 1 otherwise.
fn group_size<S: Element>(rows: &Rows, columns: usize) -> usize {
    let n_rows = rows.n_rows();
    let flat = S::NATIVE
        && rows.inner().single_stride() == Some(1)
        && rows.row_len() == columns
        && (n_rows <= 1 || rows.outer().single_stride() == Some(columns as isize));
    if !flat || n_rows == 0 {
        return 1;
    }
    let most = (GROUP_LEN / columns.max(1)).clamp(1, n_rows);
    let block = block_rows(n_rows, columns);
    (1..=most)
        .rev()
        .find(|g| n_rows.is_multiple_of(*g) && block.is_multiple_of(*g))
        .unwrap_or(1)
}

/// Grouped rows per block of the column sums: [`block_rows`] of the ungrouped rows of `columns`
/// values, which [`group_size`] divides.
fn column_block_rows<S>(x: &RowsRef<S>, columns: usize) -> usize {
    let group = x.rows().row_len() / columns.max(1);
    block_rows(x.rows().n_rows() * group, columns) / group.max(1)
}

/// `rows` with each `group` consecutive rows joined into one. Panics unless that covers the
/// same elements: contiguous rows that follow each other, in a count `group` divides.
fn grouped(rows: &Rows, group: usize) -> Rows {
    if group == 1 {
        return rows.clone();
    }
    let n_rows = rows.n_rows();
    assert!(
        group > 0
            && n_rows.is_multiple_of(group)
            && rows.inner().single_stride() == Some(1)
            && (n_rows <= 1 || rows.outer().single_stride() == Some(rows.row_len() as isize)),
        "grouped: rows that do not follow each other"
    );
    Rows::contiguous(n_rows / group, rows.row_len() * group)
}

fn regroup_ref<'a, S>(view: &RowsRef<'a, S>, group: usize) -> RowsRef<'a, S> {
    // SAFETY: `grouped` checked that its layout covers the same elements as the view's.
    unsafe { view.relayout(grouped(view.rows(), group)) }
}

fn regroup_mut<'v, S>(view: &'v RowsMut<'_, S>, group: usize) -> RowsMut<'v, S> {
    // SAFETY: as in `regroup_ref`; each element once.
    unsafe { view.relayout(grouped(view.rows(), group)) }
}

/// Σ(x − center) and Σ(x − center)² per column, blocks folded in order (thread-count independent).
fn deviation_sums<S: Element>(
    x: &RowsRef<S>,
    columns: usize,
    center: &[S::Compute],
) -> (Vec<f64>, Vec<f64>) {
    let outputs: [&RowsMut<S>; 0] = [];
    let blocks = map_row_blocks(
        [x],
        outputs,
        column_block_rows(x, columns),
        || ColumnSums::<S::Compute>::new(columns),
        ColumnSums::finish,
        #[inline(always)]
        |acc, _, [group], []| {
            // Rows as wide as a few vectors: the sums in registers across the rows of a run, with
            // every row's additions in the same order (the same bits). Through the lanes in memory
            // and a loop of run-time length, each row's aliasing and length checks had cost more
            // than its arithmetic ((4, 16, 16, 32) channel-last BatchNorm).
            if at_fixed_width!(columns, C => fixed_deviation_sums::<_, C>(acc, group, center)) {
                return;
            }
            for row in group.chunks_exact(columns) {
                acc.add_row(
                    #[inline(always)]
                    |dev, sq| {
                        for (((dev, sq), &x), &c) in
                            dev.iter_mut().zip(sq.iter_mut()).zip(row).zip(center)
                        {
                            let d = x - c;
                            *dev = *dev + d;
                            *sq = *sq + d * d;
                        }
                    },
                );
            }
        },
    );
    ColumnSums::fold_in_order(blocks, columns)
}

/// [`deviation_sums`]' additions for rows of `C` values, their sums held in registers across each
/// run of rows between flushes. False (nothing added) unless there are `C` columns.
#[inline(always)]
fn fixed_deviation_sums<T: Float, const C: usize>(
    acc: &mut ColumnSums<T>,
    group: &[T],
    center: &[T],
) -> bool {
    let Ok(center) = <&[T; C]>::try_from(center) else {
        return false;
    };
    let mut rows = group.chunks_exact(C);
    acc.add_rows(rows.len(), |dev, sq, n| {
        let (Ok(dev), Ok(sq)) = (<&mut [T; C]>::try_from(dev), <&mut [T; C]>::try_from(sq)) else {
            unreachable!("column sums of C columns");
        };
        let (mut dev_acc, mut sq_acc) = (*dev, *sq);
        for row in rows.by_ref().take(n) {
            let row: &[T; C] = row.try_into().expect("chunks_exact yields C values");
            for j in 0..C {
                let d = row[j] - center[j];
                dev_acc[j] = dev_acc[j] + d;
                sq_acc[j] = sq_acc[j] + d * d;
            }
        }
        (*dev, *sq) = (dev_acc, sq_acc);
    });
    true
}

/// Calls `f` on the values of each row of `columns` values, as f64, in order, until it returns
/// false.
fn for_each_row<S: Element>(x: &RowsRef<S>, columns: usize, mut f: impl FnMut(&[f64]) -> bool) {
    let row_len = x.rows().row_len();
    let mut values = vec![0.0f64; row_len];
    let contiguous = x.rows().inner().single_stride() == Some(1);
    for group in 0..x.rows().n_rows() {
        let base = x.as_ptr().wrapping_offset(x.rows().row_offset(group));
        if contiguous {
            // SAFETY: a contiguous row of the view: inside its memory (the views' invariant).
            let row = unsafe { std::slice::from_raw_parts(base, row_len) };
            for (v, &s) in values.iter_mut().zip(row) {
                *v = s.load().to_f64();
            }
        } else {
            // SAFETY: the row's offsets lie inside the view's memory (its invariant).
            x.rows().inner().for_each_offset(|k, off| {
                values[k] = unsafe { *base.offset(off) }.load().to_f64();
            });
        }
        for row in values.chunks_exact(columns) {
            if !f(row) {
                return;
            }
        }
    }
}

/// Mean of each column over the first `PROBE_ROWS` rows, read serially (a few KB).
fn probe_center<S: Element>(x: &RowsRef<S>, columns: usize) -> Vec<f64> {
    let mut sums = vec![0.0f64; columns];
    let mut rows = 0usize;
    for_each_row(x, columns, |row| {
        for (s, v) in sums.iter_mut().zip(row) {
            *s += v;
        }
        rows += 1;
        rows < PROBE_ROWS
    });
    sums.iter().map(|s| s / rows.max(1) as f64).collect()
}

/// [`Moments::exact_each`] of the columns `lost` (whose sums in the row's type overflowed,
/// underflowed or met a non-finite value), all in the same passes over `x`.
fn exact_columns<S: Element>(x: &RowsRef<S>, columns: usize, lost: &[usize]) -> Vec<Moments> {
    Moments::exact_each(lost.len(), |passes| {
        for_each_row(x, columns, |row| {
            for (pass, &c) in passes.iter_mut().zip(lost) {
                pass.add_value(row[c]);
            }
            true
        });
    })
}

/// Moments of each of the `columns` columns of `x`, whose rows hold `columns` values each.
pub fn column_moments<S: Element>(x: &RowsRef<S>, columns: usize) -> Vec<Moments> {
    // Streams memory: 256-bit vectors measured faster beyond the L3 (see `simd::streaming`).
    crate::simd::streaming(x.bytes(), || {
        debug_assert_eq!(x.rows().row_len(), columns);
        let n = x.rows().n_rows();
        if n == 0 || columns == 0 {
            return vec![Moments::default(); columns];
        }
        let x = regroup_ref(x, group_size::<S>(x.rows(), columns));
        let count = n as f64;
        let to_compute =
            |c: &[f64]| -> Vec<S::Compute> { c.iter().map(|&v| Float::from_f64(v)).collect() };
        let mut center = to_compute(&probe_center(&x, columns));
        let (mut dev, mut sq) = deviation_sums(&x, columns, &center);
        // As `Moments::of_slice`: a center far from some column's mean costs that column's M2 its
        // precision, so the pass is repeated around the means just found.
        if dev
            .iter()
            .zip(&sq)
            .any(|(&d, &s)| Moments::off_center(count, d, s))
        {
            let means: Vec<f64> = center
                .iter()
                .zip(&dev)
                .map(|(c, d)| c.to_f64() + d / count)
                .collect();
            center = to_compute(&means);
            (dev, sq) = deviation_sums(&x, columns, &center);
        }
        let mut moments: Vec<Moments> = center
            .iter()
            .zip(dev.iter().zip(&sq))
            .map(|(c, (&d, &s))| Moments::around(count, c.to_f64(), d, s))
            .collect();
        let lost: Vec<usize> = (0..columns)
            .filter(|&c| Moments::lost::<S::Compute>(&moments[c], dev[c], sq[c]))
            .collect();
        if !lost.is_empty() {
            let exact = exact_columns(&x, columns, &lost);
            for (&c, m) in lost.iter().zip(exact) {
                moments[c] = m;
            }
        }
        moments
    })
}

/// Writes `y = (x − mean)·scale + shift` with each column's parameters from `params[column]`,
/// forming x − mean from a hi/lo split of the f64 mean as the row path does.
pub fn affine_columns<S: Element>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    params: &[RowAffine],
) -> crate::error::Result<()> {
    // Streams memory: 256-bit vectors measured faster beyond the L3 (see `simd::streaming`).
    crate::simd::streaming(x.bytes() + y.bytes(), || {
        crate::rows::check_same_rows("normalization", x.rows(), &[("out", y.rows())])?;
        let columns = params.len();
        debug_assert_eq!(x.rows().row_len(), columns);
        let group = common_group::<S>(&[x.rows(), y.rows()], columns);
        let (x, y) = (regroup_ref(x, group), regroup_mut(y, group));
        let (mean_hi, mean_lo): (Vec<S::Compute>, Vec<S::Compute>) = params
            .iter()
            .map(|p| split_mean::<S::Compute>(p.mean))
            .unzip();
        let scale: Vec<S::Compute> = params.iter().map(|p| Float::from_f64(p.scale)).collect();
        let shift: Vec<S::Compute> = params.iter().map(|p| Float::from_f64(p.shift)).collect();
        let params = [&mean_hi[..], &mean_lo[..], &scale[..], &shift[..]];
        map_rows(
            [&x],
            [&y],
            &mut [],
            #[inline(always)]
            |_, [x], [y]| {
                // Rows as wide as a few vectors: the parameters in registers (see
                // `deviation_sums`).
                if at_fixed_width!(columns, C => fixed_affine::<_, C>(x, y, params)) {
                    return;
                }
                for (x, y) in x.chunks_exact(columns).zip(y.chunks_exact_mut(columns)) {
                    for (((((y, &x), &hi), &lo), &s), &b) in y
                        .iter_mut()
                        .zip(x)
                        .zip(&mean_hi)
                        .zip(&mean_lo)
                        .zip(&scale)
                        .zip(&shift)
                    {
                        *y = ((x - hi) - lo) * s + b;
                    }
                }
            },
        );
        Ok(())
    })
}

/// [`affine_columns`]' map for rows of `C` values, `params` (mean_hi, mean_lo, scale, shift) as
/// arrays. False (nothing written) unless there are `C` columns.
#[inline(always)]
fn fixed_affine<T: Float, const C: usize>(x: &[T], y: &mut [T], params: [&[T]; 4]) -> bool {
    let (Ok(hi), Ok(lo), Ok(scale), Ok(shift)) = (
        <&[T; C]>::try_from(params[0]),
        <&[T; C]>::try_from(params[1]),
        <&[T; C]>::try_from(params[2]),
        <&[T; C]>::try_from(params[3]),
    ) else {
        return false;
    };
    for (x, y) in x.chunks_exact(C).zip(y.chunks_exact_mut(C)) {
        let x: &[T; C] = x.try_into().expect("chunks_exact yields C values");
        let y: &mut [T; C] = y.try_into().expect("chunks_exact yields C values");
        for j in 0..C {
            y[j] = ((x[j] - hi[j]) - lo[j]) * scale[j] + shift[j];
        }
    }
    true
}

/// The group size usable by every view (each either contiguous, with the largest divisor found,
/// or 1): the smallest, itself a divisor of the row count.
fn common_group<S: Element>(views: &[&Rows], columns: usize) -> usize {
    views
        .iter()
        .map(|rows| group_size::<S>(rows, columns))
        .min()
        .unwrap_or(1)
}

/// Per column: Σ go and Σ go·x̂ with x̂ = ((x − hi) − lo)·rstd from the column's statistics (the
/// sums BatchNorm's backward needs), folded in block order.
pub fn column_grad_sums<S: Element>(
    grad_out: &RowsRef<S>,
    x: &RowsRef<S>,
    hi: &[S::Compute],
    lo: &[S::Compute],
    rstd: &[S::Compute],
) -> (Vec<f64>, Vec<f64>) {
    // Streams memory: 256-bit vectors measured faster beyond the L3 (see `simd::streaming`).
    crate::simd::streaming(grad_out.bytes() + x.bytes(), || {
        let columns = hi.len();
        if columns == 0 {
            return (Vec::new(), Vec::new());
        }
        let group = common_group::<S>(&[grad_out.rows(), x.rows()], columns);
        let (go, x) = (regroup_ref(grad_out, group), regroup_ref(x, group));
        let outputs: [&RowsMut<S>; 0] = [];
        let blocks = map_row_blocks(
            [&go, &x],
            outputs,
            column_block_rows(&x, columns),
            || ColumnSums::<S::Compute>::new(columns),
            ColumnSums::finish,
            #[inline(always)]
            |acc, _, [go, x], []| {
                for (go, x) in go.chunks_exact(columns).zip(x.chunks_exact(columns)) {
                    acc.add_row(
                        #[inline(always)]
                        |sg, sgx| {
                            let stats = hi.iter().zip(lo).zip(rstd);
                            for (((sg, sgx), (&g, &xv)), ((&hi, &lo), &r)) in sg
                                .iter_mut()
                                .zip(sgx.iter_mut())
                                .zip(go.iter().zip(x))
                                .zip(stats)
                            {
                                *sg = *sg + g;
                                *sgx = *sgx + g * (((xv - hi) - lo) * r);
                            }
                        },
                    );
                }
            },
        );
        ColumnSums::fold_in_order(blocks, columns)
    })
}

/// `dx = (x − mean)·scale + shift + go·grad_scale` with each column's parameters: the input
/// gradient of BatchNorm over channel-last data.
pub fn affine_columns_with_grad<S: Element>(
    grad_out: &RowsRef<S>,
    x: &RowsRef<S>,
    dx: &RowsMut<S>,
    params: &[(RowAffine, f64)],
) -> crate::error::Result<()> {
    // Streams memory: 256-bit vectors measured faster beyond the L3 (see `simd::streaming`).
    crate::simd::streaming(grad_out.bytes() + x.bytes() + dx.bytes(), || {
        crate::rows::check_same_rows(
            "normalization backward",
            x.rows(),
            &[("grad", grad_out.rows()), ("dx", dx.rows())],
        )?;
        let columns = params.len();
        let group = common_group::<S>(&[grad_out.rows(), x.rows(), dx.rows()], columns);
        let (go, x) = (regroup_ref(grad_out, group), regroup_ref(x, group));
        let dx = regroup_mut(dx, group);
        let (hi, lo): (Vec<S::Compute>, Vec<S::Compute>) = params
            .iter()
            .map(|(p, _)| split_mean::<S::Compute>(p.mean))
            .unzip();
        let convert = |f: &dyn Fn(&(RowAffine, f64)) -> f64| -> Vec<S::Compute> {
            params.iter().map(|p| Float::from_f64(f(p))).collect()
        };
        let scale = convert(&|p| p.0.scale);
        let shift = convert(&|p| p.0.shift);
        let grad_scale = convert(&|p| p.1);
        // Without a term in x (evaluation mode, mean-only), an infinite x must not make 0·x NaN.
        let x_term = scale.iter().any(|&s| s != S::Compute::ZERO);
        map_rows(
            [&go, &x],
            [&dx],
            &mut [],
            #[inline(always)]
            |_, [go, x], [dx]| {
                if !x_term {
                    for (dx, go) in dx.chunks_exact_mut(columns).zip(go.chunks_exact(columns)) {
                        let per_column = shift.iter().zip(&grad_scale);
                        for ((d, &g), (&b, &gs)) in dx.iter_mut().zip(go).zip(per_column) {
                            *d = b + g * gs;
                        }
                    }
                    return;
                }
                let rows = dx
                    .chunks_exact_mut(columns)
                    .zip(go.chunks_exact(columns).zip(x.chunks_exact(columns)));
                for (dx, (go, x)) in rows {
                    let per_column = hi
                        .iter()
                        .zip(&lo)
                        .zip(scale.iter().zip(&shift))
                        .zip(&grad_scale);
                    for ((d, (&g, &xv)), (((&hi, &lo), (&s, &b)), &gs)) in
                        dx.iter_mut().zip(go.iter().zip(x)).zip(per_column)
                    {
                        *d = ((xv - hi) - lo) * s + b + g * gs;
                    }
                }
            },
        );
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::ArrayRef;

    fn reference(x: &[f64], columns: usize) -> Vec<(f64, f64)> {
        let n = (x.len() / columns) as f64;
        (0..columns)
            .map(|c| {
                let col: Vec<f64> = x.iter().skip(c).step_by(columns).copied().collect();
                let mean = col.iter().sum::<f64>() / n;
                (mean, col.iter().map(|v| (v - mean).powi(2)).sum::<f64>())
            })
            .collect()
    }

    #[test]
    fn moments_match_reference_grouped_and_strided() {
        for (rows, columns) in [(1usize, 3usize), (7, 5), (1000, 64), (4099, 3), (130, 17)] {
            let x: Vec<f32> = (0..rows * columns)
                .map(|i| 1.0e4 + ((i * 7919) % 1013) as f32 / 1013.0 + (i % columns) as f32)
                .collect();
            let exact: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let want = reference(&exact, columns);
            let view = RowsRef::from_slice(&x, columns);
            let got = column_moments(&view, columns);
            for ((m, (mean, m2)), c) in got.iter().zip(&want).zip(0..) {
                assert!((m.mean - mean).abs() < 1e-6, "{rows}x{columns} col {c}");
                assert!(
                    (m.m2() - m2).abs() <= 1e-5 * m2.max(1e-3),
                    "{rows}x{columns} col {c}: {} vs {m2}",
                    m.m2()
                );
            }
            // The same values read through a transposed (column-major) layout: no grouping.
            let xt: Vec<f32> = (0..rows * columns)
                .map(|i| x[(i % rows) * columns + i / rows])
                .collect();
            // xt is (columns, rows) C-ordered: its transpose is x again, strided.
            let strided = ArrayRef::from_slice(&xt, &[columns, rows])
                .with_leading(&[1])
                .rows(1);
            let got_strided = column_moments(&strided, columns);
            for (a, b) in got.iter().zip(&got_strided) {
                assert!(
                    (a.mean - b.mean).abs() < 1e-9
                        && (a.m2() - b.m2()).abs() <= 1e-9 * a.m2().max(1.0)
                );
            }
        }
    }

    #[test]
    fn sorted_columns_take_the_second_pass() {
        // A drifting column: its first rows are far from its mean.
        let rows = 5000i32;
        let x: Vec<f64> = (0..rows).map(f64::from).collect();
        let got = column_moments(&RowsRef::from_slice(&x, 1), 1);
        let (mean, m2) = reference(&x, 1)[0];
        assert!((got[0].mean - mean).abs() < 1e-9 && (got[0].m2() - m2).abs() < 1e-9 * m2);
    }

    /// The fixed-width paths against the row-by-row forms they replace, bit for bit: sums over
    /// runs that cross flushes (every 32 rows), and the affine map.
    fn fixed_width_matches_row_by_row<const C: usize>(rows: usize) {
        let x: Vec<f32> = (0..rows * C)
            .map(|i| 1.0e4 + ((i * 7919) % 1013) as f32 / 97.0)
            .collect();
        // Far from the values, so that where the runs flush changes the rounded sums.
        let center: Vec<f32> = (0..C).map(|c| 9.5e3 + c as f32 / 3.0).collect();
        let mut by_row = ColumnSums::<f32>::new(C);
        for row in x.chunks_exact(C) {
            by_row.add_row(|dev, sq| {
                for ((dev, sq), (&v, &c)) in dev.iter_mut().zip(sq).zip(row.iter().zip(&center)) {
                    *dev += v - c;
                    *sq += (v - c) * (v - c);
                }
            });
        }
        let mut fixed = ColumnSums::<f32>::new(C);
        // In two calls, the first ending mid-run, as grouped rows arrive.
        let split = rows / 3 * C;
        assert!(fixed_deviation_sums::<_, C>(
            &mut fixed,
            &x[..split],
            &center
        ));
        assert!(fixed_deviation_sums::<_, C>(
            &mut fixed,
            &x[split..],
            &center
        ));
        let want = ColumnSums::fold_in_order(vec![by_row], C);
        let got = ColumnSums::fold_in_order(vec![fixed], C);
        let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got.0), bits(&want.0), "{rows} rows of {C}: sums");
        assert_eq!(bits(&got.1), bits(&want.1), "{rows} rows of {C}: squares");
        assert!(!fixed_deviation_sums::<_, C>(
            &mut ColumnSums::new(C + 1),
            &x,
            &[0.0; 3]
        ));
        let params: [Vec<f32>; 4] =
            std::array::from_fn(|k| (0..C).map(|c| (k * C + c) as f32 / 7.0 - 3.0).collect());
        let mut y = vec![0.0f32; x.len()];
        let [hi, lo, scale, shift] = &params;
        assert!(fixed_affine::<_, C>(
            &x,
            &mut y,
            [hi.as_slice(), lo, scale, shift]
        ));
        for (i, (&v, &got)) in x.iter().zip(&y).enumerate() {
            let c = i % C;
            let want = ((v - hi[c]) - lo[c]) * scale[c] + shift[c];
            assert_eq!(got.to_bits(), want.to_bits(), "{rows} rows of {C}: y[{i}]");
        }
    }

    #[test]
    fn fixed_width_rows_match_row_by_row() {
        for rows in [1, 2, 31, 32, 33, 64, 100, 1000] {
            fixed_width_matches_row_by_row::<16>(rows);
            fixed_width_matches_row_by_row::<32>(rows);
            fixed_width_matches_row_by_row::<64>(rows);
        }
    }

    #[test]
    fn affine_columns_applies_column_parameters() {
        let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut y = vec![0.0f32; 12];
        let params: Vec<RowAffine> = (0..3)
            .map(|c| RowAffine {
                mean: f64::from(c),
                scale: 2.0,
                shift: 0.5,
            })
            .collect();
        affine_columns(
            &RowsRef::from_slice(&x, 3),
            &RowsMut::from_slice(&mut y, 3),
            &params,
        )
        .unwrap();
        let want: Vec<f32> = (0..12)
            .map(|i| (i as f32 - (i % 3) as f32) * 2.0 + 0.5)
            .collect();
        assert_eq!(y, want);
    }
}
