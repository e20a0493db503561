//! The channel-wise norms — BatchNorm, InstanceNorm, GroupNorm — share two row passes over an
//! array seen as rows: per-row moments, and a per-row affine map whose mean/scale/shift come
//! from the row's channel, instance or group. Which statistics a row uses is the only difference.

use super::{normalize_into, split_mean};
use crate::element::{Element, Float};
use crate::error::Result;
use crate::reduce::Moments;
use crate::rows::{
    check_same_rows, in_segments, map_rows, Ahead, GroupRows, RowsMut, RowsRef, Stores,
};
use crate::simd;

pub mod backward;
mod groups;
mod running;

pub use groups::{normalize_row_groups, GroupStats, RowGrouping};
pub use running::{
    batched_channels, check_momentum, check_paired, mean_rstd, running_moments, update_running,
    RunningStats,
};

/// y = (x − mean) · scale + shift for one row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowAffine {
    pub mean: f64,
    pub scale: f64,
    pub shift: f64,
}

/// Moments of every row of `x`, in row order.
pub fn row_moments<S: Element>(x: &RowsRef<S>) -> Vec<Moments> {
    // Streams memory: 256-bit vectors measured faster for f32 lanes from the L3 (see
    // `simd::streaming`).
    crate::simd::streaming_lanes::<S::Compute, _>(x.bytes(), || {
        let mut moments = vec![Moments::default(); x.rows().n_rows()];
        let outputs: [&RowsMut<S>; 0] = [];
        map_rows(
            [x],
            outputs,
            &mut moments,
            #[inline(always)]
            |_, [x], []| Moments::of_slice(x),
        );
        moments
    })
}

/// Merges row moments into `groups` totals, row `r` going to `group_of(r)`, in row order (so
/// results do not depend on threads).
pub fn merge_rows(
    rows: &[Moments],
    groups: usize,
    group_of: impl Fn(usize) -> usize,
) -> Vec<Moments> {
    let mut merged = vec![Moments::default(); groups];
    for (r, m) in rows.iter().enumerate() {
        let g = group_of(r);
        merged[g] = merged[g].merge(*m);
    }
    merged
}

/// Writes `y_row = (x_row − mean) · scale + shift` with each row's parameters from `affine(row)`.
pub fn affine_rows<S: Element>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    affine: impl Fn(usize) -> RowAffine + Sync,
) -> Result<()> {
    // Streams memory: 256-bit vectors measured faster beyond the L3 (see `simd::streaming`).
    crate::simd::streaming(x.bytes() + y.bytes(), || {
        check_same_rows("normalization", x.rows(), &[("out", y.rows())])?;
        if let Some(direct) = DirectRows::of(x, y) {
            let row_len = x.rows().row_len();
            simd::for_each_range(
                x.rows().n_rows(),
                2 * row_len,
                #[inline(always)]
                |range| {
                    for row in range {
                        let ahead = crate::norm::ahead_if_useful(|| x.ahead(row));
                        // SAFETY: `DirectRows::of` these views (native, rows in range); the
                        // range gives each row to one task.
                        unsafe { direct.affine::<S::Compute>(row, affine(row), ahead) };
                    }
                },
            );
            return Ok(());
        }
        map_rows(
            [x],
            [y],
            &mut [],
            #[inline(always)]
            |row, [x_row], [y]| {
                let ahead = crate::norm::ahead_if_useful(|| x.ahead(row));
                affine_row(x_row, y, affine(row), ahead);
            },
        );
        Ok(())
    })
}

/// How a statistics unit reaches its rows: the row driver's [`GroupRows`], or [`DirectRows`].
trait ReadRows<T> {
    /// Calls `f` on row `row` of x.
    ///
    /// # Safety
    /// The calling task may read this row (see [`GroupRows::read`]).
    unsafe fn read_row<R>(&mut self, row: usize, f: impl FnOnce(&[T]) -> R) -> R;
}

impl<S: Element, const NO: usize> ReadRows<S::Compute> for GroupRows<'_, S, 1, NO> {
    #[inline(always)]
    unsafe fn read_row<R>(&mut self, row: usize, f: impl FnOnce(&[S::Compute]) -> R) -> R {
        // SAFETY: the caller's contract is `read`'s.
        unsafe {
            self.read(
                row,
                #[inline(always)]
                |[x]| f(x),
            )
        }
    }
}

impl<T> ReadRows<T> for DirectRows {
    #[inline(always)]
    unsafe fn read_row<R>(&mut self, row: usize, f: impl FnOnce(&[T]) -> R) -> R {
        // SAFETY: the caller's contract; `T` is the views' native type (`of` checked NATIVE).
        f(unsafe { self.x_row(row) })
    }
}

/// Whether the rows are contiguous runs that follow each other in memory.
fn consecutive(rows: &crate::layout::Rows) -> bool {
    rows.inner().single_stride() == Some(1)
        && (rows.n_rows() <= 1 || rows.outer().single_stride() == Some(rows.row_len() as isize))
}

/// Native rows that follow each other in memory, in x and in y (y may be x itself): reached by
/// pointer arithmetic instead of the row driver's per-row gather bookkeeping, which cost more
/// than a short row's work (BatchNorm eval on 7×7 rows: 0.18 → 0.10 ms on one thread).
#[derive(Clone, Copy)]
struct DirectRows {
    x: usize,
    y: usize,
    row_len: usize,
}

impl DirectRows {
    /// `Some` when both views are native rows that follow each other in memory.
    fn of<S: Element>(x: &RowsRef<S>, y: &RowsMut<S>) -> Option<Self> {
        let usable = S::NATIVE && crate::rows::same_or_apart(x, y);
        (usable && consecutive(x.rows()) && consecutive(y.rows())).then(|| DirectRows {
            x: x.as_ptr() as usize,
            y: y.as_mut_ptr() as usize,
            row_len: x.rows().row_len(),
        })
    }

    /// Row `row` of x.
    ///
    /// # Safety
    /// `T` is the views' (native) type; `row` is in range; not written while the slice lives.
    #[inline(always)]
    unsafe fn x_row<'a, T>(self, row: usize) -> &'a [T] {
        // SAFETY: the caller's contract.
        unsafe {
            std::slice::from_raw_parts((self.x as *const T).add(row * self.row_len), self.row_len)
        }
    }

    /// Writes row `row` of y from row `row` of x.
    ///
    /// # Safety
    /// As [`DirectRows::x_row`]; no other task touches the row.
    #[inline(always)]
    unsafe fn affine<T: Float>(self, row: usize, p: RowAffine, ahead: Ahead) {
        let start = row * self.row_len;
        // SAFETY: the caller's contract; in place only y is formed.
        unsafe {
            let y = std::slice::from_raw_parts_mut((self.y as *mut T).add(start), self.row_len);
            if self.x == self.y {
                affine_row_in_place(y, p, ahead);
            } else {
                affine_row(self.x_row(row), y, p, ahead);
            }
        }
    }
}

/// [`affine_row`] with y as its own input.
#[inline(always)]
fn affine_row_in_place<T: Float>(y: &mut [T], p: RowAffine, ahead: Ahead) {
    let map = p.in_type::<T>();
    in_segments(
        ahead,
        Stores::Cached,
        y,
        #[inline(always)]
        |_, y| {
            if (CHUNK..CHUNKED_BELOW).contains(&y.len()) {
                map_short_run(None, y, &map);
                return;
            }
            for v in y.iter_mut() {
                *v = map(*v);
            }
        },
    );
}

/// `y = (x − mean) · scale + shift` for one row, prefetching `ahead` as it goes.
#[inline(always)]
fn affine_row<T: Float>(x: &[T], y: &mut [T], p: RowAffine, ahead: Ahead) {
    let map = p.in_type::<T>();
    in_segments(
        ahead,
        Stores::Cached,
        y,
        #[inline(always)]
        |at, y| {
            let x = &x[at..at + y.len()];
            if (CHUNK..CHUNKED_BELOW).contains(&y.len()) {
                map_short_run(Some(x), y, &map);
                return;
            }
            for (y, &x) in y.iter_mut().zip(x) {
                *y = map(x);
            }
        },
    );
}

/// Values per step of [`map_short_run`]: one 256-bit vector of f32.
const CHUNK: usize = 8;
/// Runs from this long take LLVM's own loop: unrolled 4 vectors deep, with epilogues that are
/// a small part of a long run. In chunks, (32, 64, 56, 56) BatchNorm eval ran at 0.75–0.85×.
const CHUNKED_BELOW: usize = 64;

/// `y = map(x)` (x is y itself when `None`) for a run of at least `CHUNK` values, a chunk at a
/// time. A ragged end is one more chunk over the run's last `CHUNK` values, mapped before any
/// chunk is written (so y may be x) and stored last over the same values: one vector step
/// instead of LLVM's narrower and scalar epilogues, which a 49-value row ran 4 + 1 times.
#[inline(always)]
fn map_short_run<T: Float>(x: Option<&[T]>, y: &mut [T], map: &impl Fn(T) -> T) {
    // A loop over the chunk, not `<[T; N]>::map`: LLVM left that out of line, a call per chunk
    // compiled for the baseline (SSE2) outside the SIMD dispatch, 22% of a GroupNorm
    // (32, 512, 7, 7) profile.
    #[inline(always)]
    fn mapped_chunk<T: Float>(
        x: Option<&[T]>,
        y: &[T],
        start: usize,
        map: &impl Fn(T) -> T,
    ) -> [T; CHUNK] {
        let values = &x.unwrap_or(y)[start..start + CHUNK];
        let mut chunk: [T; CHUNK] = values.try_into().expect("a whole chunk");
        for v in &mut chunk {
            *v = map(*v);
        }
        chunk
    }
    let last = y.len() - CHUNK;
    let end = mapped_chunk(x, y, last, map);
    for start in (0..last).step_by(CHUNK) {
        let values = mapped_chunk(x, y, start, map);
        y[start..start + CHUNK].copy_from_slice(&values);
    }
    y[last..].copy_from_slice(&end);
}

/// Writes `dx_row = (x_row − mean)·scale + shift + grad_row·grad_scale`, the form of a
/// channel-wise norm's input gradient, with each row's parameters from `params(row)`.
pub fn affine_rows_with_grad<S: Element>(
    grad: &RowsRef<S>,
    x: &RowsRef<S>,
    dx: &RowsMut<S>,
    params: impl Fn(usize) -> (RowAffine, f64) + Sync,
) -> Result<()> {
    // Streams memory: 256-bit vectors measured faster beyond the L3 (see `simd::streaming`).
    crate::simd::streaming(grad.bytes() + x.bytes() + dx.bytes(), || {
        check_same_rows(
            "normalization backward",
            x.rows(),
            &[("grad", grad.rows()), ("dx", dx.rows())],
        )?;
        map_rows(
            [grad, x],
            [dx],
            &mut [],
            #[inline(always)]
            |row, [g, x], [dx]| {
                let (p, grad_scale) = params(row);
                let shift = <S::Compute as Float>::from_f64(p.shift);
                let grad_scale = <S::Compute as Float>::from_f64(grad_scale);
                if p.scale == 0.0 {
                    // No term in x (evaluation mode, mean-only): an infinite x must not make
                    // 0·x NaN.
                    for (d, &g) in dx.iter_mut().zip(g) {
                        *d = shift + g * grad_scale;
                    }
                    return;
                }
                normalize_into(
                    x,
                    dx,
                    p.mean,
                    p.scale,
                    None,
                    None,
                    Ahead::NONE,
                    Stores::Cached,
                );
                for (d, &g) in dx.iter_mut().zip(g) {
                    *d = *d + shift + g * grad_scale;
                }
            },
        );
        Ok(())
    })
}

impl RowAffine {
    /// (x − mean)·rstd, then channel `channel`'s weight (default 1) and bias (default 0).
    #[inline(always)]
    pub fn standardize(
        mean: f64,
        rstd: f64,
        weight: Option<&[f64]>,
        bias: Option<&[f64]>,
        channel: usize,
    ) -> RowAffine {
        let (w, b) = channel_affine(weight, bias, channel);
        RowAffine {
            mean,
            scale: rstd * w,
            shift: b,
        }
    }

    /// The map in `T`, x − mean formed from the hi/lo split of the mean (see [`split_mean`]).
    #[inline(always)]
    fn in_type<T: Float>(self) -> impl Fn(T) -> T {
        let (hi, lo) = split_mean::<T>(self.mean);
        let scale = T::from_f64(self.scale);
        let shift = T::from_f64(self.shift);
        #[inline(always)]
        move |x| ((x - hi) - lo) * scale + shift
    }
}

/// 1 / √(var + eps): a norm's scale before its weight.
pub fn rstd(var: f64, eps: f64) -> f64 {
    1.0 / (var + eps).sqrt()
}

/// Per-channel weight (default 1) and bias (default 0) of channel `c`.
#[inline(always)]
fn channel_affine(weight: Option<&[f64]>, bias: Option<&[f64]>, c: usize) -> (f64, f64) {
    (weight.map_or(1.0, |w| w[c]), bias.map_or(0.0, |b| b[c]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::ArrayRef;

    #[test]
    fn per_channel_moments_of_nchw() {
        // (2, 3, 4): channel c holds values c*10 + {0..4} in both samples.
        let x: Vec<f64> = (0..24)
            .map(|i| f64::from((i / 4) % 3 * 10 + i % 4))
            .collect();
        let view = ArrayRef::from_slice(&x, &[2, 3, 4]).rows(1);
        let per_row = row_moments(&view);
        let per_channel = merge_rows(&per_row, 3, |r| r % 3);
        for (c, m) in per_channel.iter().enumerate() {
            assert!((m.mean - (c as f64 * 10.0 + 1.5)).abs() < 1e-12);
            assert!((m.variance() - 1.25).abs() < 1e-12);
            assert!((m.count - 8.0).abs() < 1e-12);
        }
    }

    #[test]
    fn affine_rows_applies_row_parameters() {
        let x = vec![1.0f32, 2.0, 3.0, 4.0];
        let mut y = vec![0.0f32; 4];
        affine_rows(
            &RowsRef::from_slice(&x, 2),
            &RowsMut::from_slice(&mut y, 2),
            |row| RowAffine {
                mean: row as f64,
                scale: 2.0,
                shift: 0.5,
            },
        )
        .unwrap();
        assert_eq!(y, vec![2.5, 4.5, 4.5, 6.5]);
    }

    #[test]
    fn row_groups_in_one_sweep_match_two_sweeps_bitwise() {
        // (5 samples, 12 channels, 50 or 1500 values) of 1e4 + noise: BatchNorm's interleaved
        // channels, GroupNorm's groups of 3 channels, InstanceNorm's single rows. The one-sweep
        // path takes 8, 2 or 1 groups a step here, some with a shorter last step.
        for len in [50usize, 1500] {
            check_one_sweep_against_two(5, 12, len);
        }
    }

    fn check_one_sweep_against_two(n: usize, c: usize, len: usize) {
        let x: Vec<f32> = (0..n * c * len)
            .map(|i| 1e4 + ((i as f32) * 0.61).sin() * (1.0 + (i / len) as f32))
            // Sample 0 sits 100 above the rest: its rows are the units' probe, far from the mean.
            .enumerate()
            .map(|(i, v)| if i < c * len { v + 100.0 } else { v })
            .collect();
        let view = RowsRef::from_slice(&x, len);
        for grouping in [
            RowGrouping::Interleaved { groups: c },
            RowGrouping::Consecutive { len: 3 },
            RowGrouping::Consecutive { len: 1 },
        ] {
            let affine = |r: usize, g: &GroupStats| RowAffine {
                mean: g.mean,
                scale: g.rstd,
                shift: (r % c) as f64,
            };
            // One thread: every grouping here has groups enough for the one-sweep path; 64
            // threads: too few groups, two sweeps (the work is small enough to run serially).
            let run = |threads: usize| {
                crate::parallel::set_num_threads(threads);
                let mut y = vec![0.0f32; x.len()];
                let groups = normalize_row_groups(
                    &view,
                    &RowsMut::from_slice(&mut y, len),
                    grouping,
                    1e-5,
                    affine,
                )
                .unwrap();
                (groups, y)
            };
            let (groups, fused) = run(1);
            let (swept_groups, swept) = run(64);
            crate::parallel::set_num_threads(0);
            assert_eq!(groups, swept_groups);
            assert_eq!(fused, swept);
            // And the values are right: the moments those of the group's values in f64, each
            // group standardized (shift removed).
            for (g, m) in groups.iter().enumerate() {
                assert!((m.count - (n * c * len / groups.len()) as f64).abs() < 1e-9);
                let values: Vec<f64> = (0..n * c)
                    .filter(|&r| grouping.group_of(r) == g)
                    .flat_map(|r| x[r * len..(r + 1) * len].iter().map(|&v| f64::from(v)))
                    .collect();
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                let m2: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
                assert!(
                    (m.mean - mean).abs() < 1e-9 * mean.abs(),
                    "group {g}: mean {}",
                    m.mean
                );
                assert!(
                    (m.m2() - m2).abs() < 1e-5 * m2,
                    "group {g}: m2 {} vs {m2}",
                    m.m2()
                );
                let mut sum = 0.0f64;
                let mut sq = 0.0f64;
                for r in (0..n * c).filter(|&r| grouping.group_of(r) == g) {
                    for &v in &fused[r * len..(r + 1) * len] {
                        let z = f64::from(v) - (r % c) as f64;
                        sum += z;
                        sq += z * z;
                    }
                }
                assert!(
                    (sum / m.count).abs() < 1e-4,
                    "group {g}: mean {}",
                    sum / m.count
                );
                assert!(
                    (sq / m.count - 1.0).abs() < 1e-3,
                    "group {g}: var {}",
                    sq / m.count
                );
            }
        }
    }

    #[test]
    fn short_runs_map_every_value_once_in_place_or_not() {
        // Every length the chunked loop takes, ragged or whole, against a plain map; in place
        // the ragged end must come from the values before any chunk was written.
        let map = |v: f32| v * 3.0 - 1.0;
        for len in CHUNK..CHUNKED_BELOW {
            let x: Vec<f32> = (0..len).map(|i| i as f32 * 0.5).collect();
            let expected: Vec<f32> = x.iter().map(|&v| map(v)).collect();
            let mut y = vec![f32::NAN; len];
            map_short_run(Some(&x), &mut y, &map);
            assert_eq!(y, expected, "len {len}");
            let mut in_place = x.clone();
            map_short_run(None, &mut in_place, &map);
            assert_eq!(in_place, expected, "len {len} in place");
        }
    }

    #[test]
    fn argument_checks() {
        assert!(check_momentum("bn", 1.5).is_err() && check_momentum("bn", -0.1).is_err());
        assert!(check_momentum("bn", f64::NAN).is_err() && check_momentum("bn", 0.1).is_ok());
    }
}
