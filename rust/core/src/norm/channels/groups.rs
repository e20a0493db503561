//! Normalizing rows in groups that share statistics (a channel, an instance, a group of
//! channels): the statistics units, and the one-sweep and two-sweep paths.

use crate::element::Element;
use crate::error::Result;
use crate::parallel;
use crate::reduce::Moments;
use crate::rows::{check_same_rows, map_row_groups, Ahead, GroupRows, RowsMut, RowsRef};

use super::{affine_row, affine_rows, consecutive, DirectRows, ReadRows, RowAffine};

/// Which rows share statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowGrouping {
    /// Group g is rows g·len .. (g+1)·len: InstanceNorm (len 1), GroupNorm (len = channels
    /// per group), with rows (sample, channel).
    Consecutive { len: usize },
    /// Group c is rows c, c + groups, c + 2·groups, …: BatchNorm's channel c of every sample.
    Interleaved { groups: usize },
}

impl RowGrouping {
    pub fn n_groups(self, n_rows: usize) -> usize {
        match self {
            RowGrouping::Consecutive { len } => n_rows.checked_div(len).unwrap_or(0),
            RowGrouping::Interleaved { groups } => groups,
        }
    }

    fn rows_per_group(self, n_rows: usize) -> usize {
        match self {
            RowGrouping::Consecutive { len } => len,
            RowGrouping::Interleaved { groups } => n_rows.checked_div(groups).unwrap_or(0),
        }
    }

    /// The `k`-th row of group `group`.
    #[inline(always)]
    fn row(self, group: usize, k: usize) -> usize {
        match self {
            RowGrouping::Consecutive { len } => group * len + k,
            RowGrouping::Interleaved { groups } => k * groups + group,
        }
    }

    pub(super) fn group_of(self, row: usize) -> usize {
        match self {
            RowGrouping::Consecutive { len } => row / len,
            RowGrouping::Interleaved { groups } => row % groups,
        }
    }
}

/// Groups per thread below which [`normalize_row_groups`] splits rows, not groups, across threads.
const GROUPS_PER_THREAD: usize = 4;
/// Largest group [`normalize_row_groups`] reads twice from cache: its x and y together stay
/// within half of a 1 MB L2. Measured at 2 threads: groups of 25 and 100 KB ran 10–20% faster
/// in one sweep than in two; BatchNorm's 400 KB channels of (32, 64, 56, 56) did not.
const CACHED_GROUP_BYTES: usize = 256 << 10;
/// Values per statistics unit of a group (below): rows shorter than this share their lanes.
const UNIT_VALUES: usize = 4096;
/// Most groups in one step of [`normalize_row_groups`]'s one-sweep path, and the x bytes a step
/// of several groups stays within (its second read then comes from L1).
const STEP_GROUPS: usize = 8;
const STEP_BYTES: usize = 16 << 10;

/// A group's statistics are computed over units of consecutive rows of the group (of at least
/// [`UNIT_VALUES`] values, or one row when rows are that long), each unit's moments in one set of
/// lanes, then merged in unit order. Per-row moments of short rows cost more in folds and merges
/// than in values: a 7×7 BatchNorm spent 70 ns of its rows' ~90 there. Units depend on the shape
/// alone, so the one-sweep and two-sweep paths, and every thread count, give the same bits.
/// When a unit's rows are one contiguous span of native values (GroupNorm's channels of a
/// C-contiguous array), the span is summed as one slice instead of row by row.
#[derive(Clone, Copy, Debug)]
struct StatUnits {
    grouping: RowGrouping,
    rows_per_group: usize,
    rows_per_unit: usize,
    units_per_group: usize,
    row_len: usize,
    /// Consecutive groups of native rows that follow each other in memory.
    spans: bool,
}

impl StatUnits {
    fn new<S: Element>(grouping: RowGrouping, x: &RowsRef<S>) -> Self {
        let (n_rows, row_len) = (x.rows().n_rows(), x.rows().row_len());
        let rows_per_group = grouping.rows_per_group(n_rows);
        let rows_per_unit = UNIT_VALUES
            .div_ceil(row_len.max(1))
            .clamp(1, rows_per_group.max(1));
        let spans = S::NATIVE
            && matches!(grouping, RowGrouping::Consecutive { .. })
            && consecutive(x.rows());
        StatUnits {
            grouping,
            rows_per_group,
            rows_per_unit,
            units_per_group: rows_per_group.div_ceil(rows_per_unit),
            row_len,
            spans,
        }
    }

    /// Moments of unit `unit` of group `group`, its rows read through `rows`.
    ///
    /// # Safety
    /// As [`GroupRows::read`]: the calling task may read these rows.
    #[inline(always)]
    unsafe fn moments<S: Element>(
        &self,
        x: &RowsRef<S>,
        rows: &mut impl ReadRows<S::Compute>,
        group: usize,
        unit: usize,
    ) -> Moments {
        let first = unit * self.rows_per_unit;
        let members = first..(first + self.rows_per_unit).min(self.rows_per_group);
        let row = |k: usize| self.grouping.row(group, k);
        if self.spans {
            // SAFETY: `spans`: native rows (S is S::Compute) that follow each other in memory,
            // so the run lies inside the view's memory (its invariant).
            let span = unsafe {
                std::slice::from_raw_parts(
                    x.as_ptr()
                        .wrapping_offset(x.rows().row_offset(row(first)))
                        .cast::<S::Compute>(),
                    members.len() * self.row_len,
                )
            };
            return Moments::of_slice(span);
        }
        if members.len() == 1 {
            // One read instead of a probe read and a sum read (the same bits).
            // SAFETY: the caller's contract: this task may read the group's rows.
            // A closure, not the function item: passed as an item, `of_slice` was called through
            // an out-of-line `FnOnce` shim, compiled without the SIMD level (InstanceNorm 7×7:
            // +14%, with its result going through memory).
            return unsafe {
                rows.read_row(
                    row(first),
                    #[inline(always)]
                    #[allow(clippy::redundant_closure)] // see above
                    |x| Moments::of_slice(x),
                )
            };
        }
        if matches!(self.grouping, RowGrouping::Consecutive { .. }) {
            // Strided or float16 rows of GroupNorm's channels: gathered into one run, so they
            // are summed exactly as the span of a contiguous copy is (the contract: results do
            // not depend on the layout).
            // On the heap: a 32–64 KB array would sit in the frame of every function this one
            // is inlined into.
            let mut run = Vec::with_capacity(members.len() * self.row_len);
            for k in members {
                // SAFETY: the caller's contract: this task may read the group's rows.
                unsafe {
                    rows.read_row(
                        row(k),
                        #[inline(always)]
                        |x| run.extend_from_slice(x),
                    );
                }
            }
            return Moments::of_slice(&run);
        }
        // SAFETY: the caller's contract: this task may read the group's rows.
        unsafe {
            let center = rows.read_row(
                row(first),
                #[inline(always)]
                #[allow(clippy::redundant_closure)]
                // an item would be called out of line
                |x| Moments::probe_center(x),
            );
            Moments::of_runs(
                center,
                #[inline(always)]
                |sums| {
                    for k in members.clone() {
                        rows.read_row(
                            row(k),
                            #[inline(always)]
                            |x| sums.add(x),
                        );
                    }
                },
            )
        }
    }

    /// (group, unit) of the `index`-th unit in memory order: for interleaved groups, the units
    /// of every group at one depth come before the next depth, so the sweep reads x in order.
    fn unit_at(&self, index: usize, n_groups: usize) -> (usize, usize) {
        match self.grouping {
            RowGrouping::Interleaved { .. } => (index % n_groups, index / n_groups),
            RowGrouping::Consecutive { .. } => {
                (index / self.units_per_group, index % self.units_per_group)
            }
        }
    }

    /// Moments of every group, each merged from its units in order.
    fn all_groups<S: Element>(&self, x: &RowsRef<S>, n_groups: usize) -> Vec<Moments> {
        let mut units = vec![Moments::default(); n_groups * self.units_per_group];
        let outputs: [&RowsMut<S>; 0] = [];
        // SAFETY: step `index` (one per task) reads only the rows of its own unit, `unit_at(index)`;
        // units split their group's rows, so no two steps share a row.
        unsafe {
            map_row_groups(
                [x],
                outputs,
                &mut units,
                self.rows_per_unit,
                1,
                #[inline(always)]
                |index, slot, rows| {
                    let (group, unit) = self.unit_at(index, n_groups);
                    slot[0] = self.moments(x, rows, group, unit);
                },
            );
        }
        let mut groups = vec![Moments::default(); n_groups];
        for (index, unit) in units.iter().enumerate() {
            // Indices run through each group's units in unit order (whatever the grouping).
            let (group, _) = self.unit_at(index, n_groups);
            groups[group] = groups[group].merge(*unit);
        }
        groups
    }
}

/// Normalizes rows by the moments of their group: `y_row = (x_row − mean) · scale + shift` with
/// `affine(row, group_stats)` (`eps` enters the group's rstd). Returns each group's moments (see
/// [`StatUnits`]).
///
/// With enough groups to keep every thread busy, and groups small enough for cache, each task
/// takes whole groups and reads a group for its moments, then again for y while it is still in
/// cache: x comes from memory once. Otherwise (a BatchNorm of 2 channels, or of 400 KB channels)
/// statistics units, then rows, are split across threads in two sweeps.
/// Both give the same bits: the units, their merge order and the arithmetic are the same.
pub fn normalize_row_groups<S: Element>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    grouping: RowGrouping,
    eps: f64,
    affine: impl Fn(usize, &GroupStats) -> RowAffine + Sync,
) -> Result<Vec<Moments>> {
    // Streams memory: 256-bit vectors measured faster beyond the L3 (see `simd::streaming`).
    crate::simd::streaming(x.bytes() + y.bytes(), || {
        check_same_rows("normalization", x.rows(), &[("out", y.rows())])?;
        let n_rows = x.rows().n_rows();
        let n_groups = grouping.n_groups(n_rows);
        let units = StatUnits::new(grouping, x);
        let per_group = units.rows_per_group;
        let group_bytes = per_group * x.rows().row_len() * std::mem::size_of::<S>();
        if n_groups < GROUPS_PER_THREAD * parallel::num_threads()
            || group_bytes > CACHED_GROUP_BYTES
        {
            let groups = units.all_groups(x, n_groups);
            let stats: Vec<GroupStats> = (groups.iter().enumerate())
                .map(|(g, m)| GroupStats::of(g, m, eps))
                .collect();
            affine_rows(x, y, |r| affine(r, &stats[grouping.group_of(r)]))?;
            return Ok(groups);
        }
        // Steps of a few small groups: every group's statistics in a step are taken before any
        // is applied, so their divisions and square roots (some 50 cycles of latency a group)
        // overlap instead of stalling each short group's normalize.
        let groups_per_step = (STEP_BYTES / group_bytes.max(1)).clamp(1, STEP_GROUPS);
        let mut groups = vec![Moments::default(); n_groups];
        let direct = DirectRows::of(x, y);
        // SAFETY: a step normalizes groups `first..first + groups_per_step` (`run`), reaching only
        // rows `grouping.row(g, k)` of those groups, which belong to no other group; `direct`
        // is `DirectRows::of` these views.
        unsafe {
            map_row_groups(
                [x],
                [y],
                &mut groups,
                per_group,
                groups_per_step,
                #[inline(always)]
                |first, moments, rows| {
                    let step = OneSweepStep {
                        x,
                        units: &units,
                        direct,
                        grouping,
                        eps,
                        affine: &affine,
                        next: first + groups_per_step,
                        n_groups,
                    };
                    // A step of one group gets its own code: the 8-group form measured 3% slower
                    // on InstanceNorm's 12 KB rows, which take one group per step.
                    if moments.len() == 1 {
                        step.run::<1>(first, moments, rows);
                    } else {
                        step.run::<STEP_GROUPS>(first, moments, rows);
                    }
                },
            );
        }
        Ok(groups)
    })
}

/// One step of [`normalize_row_groups`]'s one-sweep path: up to `N` consecutive groups.
struct OneSweepStep<'a, S: Element, F> {
    x: &'a RowsRef<'a, S>,
    units: &'a StatUnits,
    direct: Option<DirectRows>,
    grouping: RowGrouping,
    eps: f64,
    affine: &'a F,
    /// The first group of the next step, whose rows are prefetched.
    next: usize,
    n_groups: usize,
}

impl<S: Element, F: Fn(usize, &GroupStats) -> RowAffine> OneSweepStep<'_, S, F> {
    /// Takes the moments of groups `first..first + moments.len()` (at most `N`) into `moments`,
    /// then normalizes their rows.
    ///
    /// # Safety
    /// As [`normalize_row_groups`]; the groups are this task's own.
    #[inline(always)]
    unsafe fn run<const N: usize>(
        &self,
        first: usize,
        moments: &mut [Moments],
        rows: &mut GroupRows<'_, S, 1, 1>,
    ) {
        let units = self.units;
        for (i, moments) in moments.iter_mut().enumerate() {
            for unit in 0..units.units_per_group {
                // SAFETY: the caller's contract: the step's groups are this task's.
                let unit_moments = unsafe {
                    match self.direct {
                        Some(mut direct) => units.moments(self.x, &mut direct, first + i, unit),
                        None => units.moments(self.x, rows, first + i, unit),
                    }
                };
                // The first unit is taken as it is, not merged into empty moments: that copy of
                // the 32-byte moments through memory stalled every short row (InstanceNorm 7×7).
                *moments = if unit == 0 {
                    unit_moments
                } else {
                    moments.merge(unit_moments)
                };
            }
        }
        let mut stats = [GroupStats::default(); N];
        for (i, (stats, m)) in stats.iter_mut().zip(moments.iter()).enumerate() {
            *stats = GroupStats::of(first + i, m, self.eps);
        }
        for (i, stats) in stats[..moments.len()].iter().enumerate() {
            let g = stats.group;
            for k in 0..units.rows_per_group {
                let r = self.grouping.row(g, k);
                let p = (self.affine)(r, stats);
                // The next step's matching row streams in while this one is written.
                let ahead = if self.next + i < self.n_groups {
                    self.x.prefetch_target(self.grouping.row(self.next + i, k))
                } else {
                    Ahead::NONE
                };
                // SAFETY: as above; `r` is a row of group `g`, one of this task's.
                unsafe {
                    match self.direct {
                        Some(direct) => direct.affine::<S::Compute>(r, p, ahead),
                        None => rows.write(
                            r,
                            #[inline(always)]
                            |[x], [y]| affine_row(x, y, p, ahead),
                        ),
                    }
                }
            }
        }
    }
}

/// A group's statistics as its rows' affine maps use them: computed once per group, so a short
/// row pays no square root or division of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GroupStats {
    pub group: usize,
    pub mean: f64,
    /// 1 / √(biased variance + eps).
    pub rstd: f64,
}

impl GroupStats {
    /// The map standardizing a row of channel `channel`, then applying its weight and bias.
    /// Inlined: it is made once a row (out of line, 8% of GroupNorm on 7×7 rows).
    #[inline(always)]
    pub fn affine(
        &self,
        weight: Option<&[f64]>,
        bias: Option<&[f64]>,
        channel: usize,
    ) -> RowAffine {
        RowAffine::standardize(self.mean, self.rstd, weight, bias, channel)
    }

    fn of(group: usize, m: &Moments, eps: f64) -> Self {
        GroupStats {
            group,
            mean: m.mean,
            rstd: m.rstd(eps),
        }
    }
}
