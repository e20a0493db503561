//! Moments of rows, groups and streams: the corrected two-pass sums around a center (see the
//! module above), with [`Moments::exact`] where those sums fail.

use super::exact::scale_for;
use super::{for_each_chunk, sum, underflow_bound, ExactPass, LaneTotals, BLOCK, LANES};
use crate::element::Float;
use crate::layout::Values;
use std::sync::atomic::{AtomicBool, Ordering};

/// Leading elements whose mean is the first center of [`Moments::of_slice`].
const PROBE: usize = 64;

/// Slices up to this long take [`Moments::of_short`].
const SHORT: usize = 64;

/// Σ f(x) in 8 f64 lanes (tail padded with f's zeros), folded in a fixed order.
#[inline(always)]
fn short_sum<T: Float>(x: &[T], f: impl Fn(f64) -> f64) -> f64 {
    const WIDTH: usize = 8;
    let mut lanes = [0.0f64; WIDTH];
    let chunks = x.chunks_exact(WIDTH);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v.to_f64());
        }
    }
    let last: [f64; WIDTH] = std::array::from_fn(|j| tail.get(j).map_or(0.0, |v| f(v.to_f64())));
    for (lane, v) in lanes.iter_mut().zip(last) {
        *lane += v;
    }
    ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6]))
        + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
}

/// Running (Σ (x−c), Σ (x−c)²) over values fed in runs: one row, or the rows of a group taken
/// together (BatchNorm's short rows, where a row's own lanes, folds and merge cost more than its
/// values). Short runs share the lanes until `BLOCK / LANES` chunks fill them; a longer run is
/// blocked exactly as [`blocked_sum`] blocks a slice. Each run's tail is padded with c, which
/// adds nothing; every lane sees at most `BLOCK / LANES` additions before its f64 flush.
pub struct DeviationSums<T> {
    center: T,
    dev: [T; LANES],
    sq: [T; LANES],
    /// Chunks in the lanes since their last flush.
    chunks: usize,
    count: usize,
    dev_total: LaneTotals,
    sq_total: LaneTotals,
    /// Set for [`Moments::exact`]'s passes: runs go to it instead of the lanes.
    exact: Option<ExactPass>,
}

impl<T: Float> DeviationSums<T> {
    const FLUSH_CHUNKS: usize = BLOCK / LANES;

    #[inline(always)]
    pub fn new(center: T) -> Self {
        DeviationSums {
            center,
            dev: [T::ZERO; LANES],
            sq: [T::ZERO; LANES],
            chunks: 0,
            count: 0,
            dev_total: LaneTotals::new(),
            sq_total: LaneTotals::new(),
            exact: None,
        }
    }

    /// Sums that hand every run to `pass` (one of [`Moments::exact`]'s passes).
    fn exact(pass: ExactPass) -> Self {
        DeviationSums {
            exact: Some(pass),
            ..DeviationSums::new(T::ZERO)
        }
    }

    /// Adds one run of values.
    #[inline(always)]
    pub fn add(&mut self, run: &[T]) {
        if let Some(pass) = &mut self.exact {
            pass.add(run);
            return;
        }
        self.count += run.len();
        if self.chunks + run.len().div_ceil(LANES) <= Self::FLUSH_CHUNKS {
            // A short run joins the lanes earlier runs left part-filled.
            let (mut dev, mut sq) = (self.dev, self.sq);
            self.accumulate(run, &mut dev, &mut sq);
            self.keep(run.len(), dev, sq);
            return;
        }
        if self.chunks > 0 {
            // A long run starts its own blocks (so one run is blocked exactly like a slice).
            let (dev, sq) = (self.dev, self.sq);
            self.flush(&dev, &sq);
        }
        // Whole blocks in fresh local lanes, as `blocked_sum` does: lanes carried across blocks
        // in `self` stayed in memory, and rows of LayerNorm length ran 30% slower.
        for block in run.chunks(BLOCK) {
            let (mut dev, mut sq) = ([T::ZERO; LANES], [T::ZERO; LANES]);
            self.accumulate(block, &mut dev, &mut sq);
            self.keep(block.len(), dev, sq);
        }
    }

    /// Adds (x − c) and (x − c)² of `values` into the lanes, the tail padded with c.
    #[inline(always)]
    fn accumulate(&self, values: &[T], dev: &mut [T; LANES], sq: &mut [T; LANES]) {
        let center = self.center;
        for_each_chunk(
            values,
            center,
            #[inline(always)]
            |chunk| {
                for ((dev, sq), &v) in dev.iter_mut().zip(sq.iter_mut()).zip(chunk) {
                    let d = v - center;
                    *dev = *dev + d;
                    *sq = *sq + d * d;
                }
            },
        );
    }

    /// Takes lanes that now hold `added` more values: flushed into the f64 totals when full,
    /// else kept for the next run.
    #[inline(always)]
    fn keep(&mut self, added: usize, dev: [T; LANES], sq: [T; LANES]) {
        self.chunks += added.div_ceil(LANES);
        if self.chunks == Self::FLUSH_CHUNKS {
            self.flush(&dev, &sq);
        } else {
            (self.dev, self.sq) = (dev, sq);
        }
    }

    /// Adds lanes into the f64 totals and starts empty ones.
    #[inline(always)]
    fn flush(&mut self, dev: &[T; LANES], sq: &[T; LANES]) {
        self.dev_total.add(dev);
        self.sq_total.add(sq);
        (self.dev, self.sq, self.chunks) = ([T::ZERO; LANES], [T::ZERO; LANES], 0);
    }

    /// (values added, Σ (x−c), Σ (x−c)²).
    #[inline(always)]
    fn totals(mut self) -> (usize, f64, f64) {
        if self.chunks > 0 {
            let (dev, sq) = (self.dev, self.sq);
            self.flush(&dev, &sq);
        }
        (self.count, self.dev_total.sum(), self.sq_total.sum())
    }
}

/// Partial statistics of a set of values: count, mean and M2 = Σ(x−mean)².
/// Mergeable (Chan et al.), the building block of chunked and distributed statistics.
///
/// M2 is held as `scaled_m2` = M2 · scale² for a power of two `scale`, which is 1 except where M2
/// itself overflows f64 (values beyond ~1e154): the normalization of such values is still finite
/// and right ([`Moments::rstd`]), though their variance is not representable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moments {
    pub count: f64,
    pub mean: f64,
    pub scaled_m2: f64,
    pub scale: f64,
    /// What `mean` lost to rounding (the mean is `mean + mean_lo`), 0 where unknown. Merging two
    /// sets adds their squared mean difference to M2: two means near 1e6 differ by ~0.01 but each
    /// is off by up to 6e-11, which cost a merged variance 1e-12 relative per level of the merge
    /// tree; with `mean_lo` the difference is exact to ~1e-18.
    pub mean_lo: f64,
}

/// a + b as the rounded sum and its rounding error (Knuth's TwoSum), the error 0 where the sum is
/// not finite.
#[inline(always)]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, if e.is_finite() { e } else { 0.0 })
}

/// `v`, or 0 where it is not finite (a rounding error never makes a statistic NaN).
#[inline(always)]
fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

impl Default for Moments {
    #[inline]
    fn default() -> Self {
        Moments::new(0.0, 0.0, 0.0)
    }
}

impl Moments {
    /// Moments with an unscaled M2.
    #[inline]
    pub fn new(count: f64, mean: f64, m2: f64) -> Self {
        Moments {
            count,
            mean,
            scaled_m2: m2,
            scale: 1.0,
            mean_lo: 0.0,
        }
    }

    /// Moments whose M2 at `scale` is `m2`, unscaled where that stays finite and normal.
    fn at_scale(count: f64, mean: f64, m2: f64, scale: f64) -> Self {
        let plain = m2 / scale / scale;
        if plain.is_finite() && (plain >= f64::MIN_POSITIVE || m2 == 0.0) {
            Moments::new(count, mean, plain)
        } else {
            Moments {
                count,
                mean,
                scaled_m2: m2,
                scale,
                mean_lo: 0.0,
            }
        }
    }

    /// Σ(x − mean)² (infinite where it overflows f64).
    #[inline]
    pub fn m2(&self) -> f64 {
        self.scaled_m2 / self.scale / self.scale
    }

    /// Moments of a slice by the corrected two-pass algorithm (plain two-pass in f64 for a
    /// slice of at most [`SHORT`] values).
    #[inline(always)]
    pub fn of_slice<T: Float>(x: &[T]) -> Self {
        if x.len() <= SHORT {
            return Moments::of_short(x);
        }
        Moments::of_runs(
            Moments::probe_center(x),
            #[inline(always)]
            |sums| sums.add(x),
        )
    }

    /// Two passes in f64 lanes: the exact mean, then Σ (x − mean)². For a short row the f32
    /// lanes' probe and three folds (calls, through memory) cost more than the values: an
    /// InstanceNorm of 7×7 rows spent a third of its time in them.
    #[inline(always)]
    fn of_short<T: Float>(x: &[T]) -> Self {
        if x.is_empty() {
            return Moments::default();
        }
        let count = x.len() as f64;
        let mean = short_sum(x, |v| v) / count;
        let m2 = short_sum(x, |v| (v - mean) * (v - mean));
        let moments = Moments::new(count, mean, m2);
        // Squares that overflowed or underflowed f64 (values beyond 1e154 or below 1e-154) are
        // summed again, scaled; a row of equal values (zero padding) keeps its M2 of 0.
        if moments.is_finite()
            && (m2 >= underflow_bound::<f64>(count)
                || x.iter().all(|v| v.to_f64().to_bits() == mean.to_bits()))
        {
            return moments;
        }
        Moments::exact_of_slice(x)
    }

    /// [`Moments::exact`] of a slice: the cold path, kept out of the short rows' code.
    #[cold]
    #[inline(never)]
    fn exact_of_slice<T: Float>(x: &[T]) -> Self {
        Moments::exact(|pass| pass.add(x))
    }

    /// The first center for values that start with `x`: the mean of its first elements (lane
    /// sums, not a serial f64 chain: that chain cost more than the pass over a 1024 row).
    #[inline(always)]
    pub fn probe_center<T: Float>(x: &[T]) -> T {
        let probe = &x[..x.len().min(PROBE)];
        if probe.is_empty() {
            return T::ZERO;
        }
        T::from_f64(sum(probe) / probe.len() as f64)
    }

    /// Moments of all the values `feed` adds (in runs) to the deviation sums it is given, around
    /// `center` (from [`Moments::probe_center`] of the first run), fed a second time around the
    /// mean when `center` was too far from it, and again through [`Moments::exact`] when the
    /// sums in `T` overflowed or underflowed.
    #[inline(always)]
    pub fn of_runs<T: Float>(center: T, mut feed: impl FnMut(&mut DeviationSums<T>)) -> Self {
        let mut center = center;
        let mut recentered = false;
        loop {
            let mut sums = DeviationSums::new(center);
            feed(&mut sums);
            let (count, dev, sq) = sums.totals();
            if count == 0 {
                return Moments::default();
            }
            let count = count as f64;
            if !recentered && Moments::off_center(count, dev, sq) {
                center = T::from_f64(center.to_f64() + dev / count);
                recentered = true;
                continue;
            }
            let moments = Moments::around(count, center.to_f64(), dev, sq);
            if !Moments::lost::<T>(&moments, dev, sq) {
                return moments;
            }
            return Moments::exact_of_runs(feed);
        }
    }

    /// [`Moments::exact`] of fed runs: the cold path, kept out of the rows' code.
    #[cold]
    #[inline(never)]
    fn exact_of_runs<T: Float>(mut feed: impl FnMut(&mut DeviationSums<T>)) -> Self {
        Moments::exact(|pass| {
            let mut sums = DeviationSums::exact(*pass);
            feed(&mut sums);
            *pass = sums.exact.expect("exact sums stay exact");
        })
    }

    /// Whether moments from sums in `T` lost their meaning: a square overflowed `T` (or a value
    /// was not finite), or the squares underflowed where the values still differ.
    #[inline(always)]
    pub fn lost<T: Float>(moments: &Moments, dev: f64, sq: f64) -> bool {
        !moments.is_finite()
            || (moments.scaled_m2 < underflow_bound::<T>(moments.count)
                && (dev != 0.0 || sq != 0.0))
    }

    /// Whether the mean and M2 are finite.
    #[inline]
    pub fn is_finite(&self) -> bool {
        self.mean.is_finite() && self.scaled_m2.is_finite()
    }

    /// The moments of one stream of values in f64, whatever their magnitude: `pass(p)` adds every
    /// value to `p` (in any order, the same each time). See [`Moments::exact_each`].
    pub fn exact(mut pass: impl FnMut(&mut ExactPass)) -> Moments {
        Moments::exact_each(1, |passes| pass(&mut passes[0]))[0]
    }

    /// The moments of `streams` streams of values in f64, whatever their magnitude: `pass(p)`
    /// adds stream i's values to `p[i]` (in any order, the same each time). A first pass finds
    /// each stream's largest |x|; its values are then taken times a power of two that brings it
    /// near 1, so no square overflows or underflows, for their mean and then M2 around it. A
    /// stream holding NaN or ±inf gets NumPy's answer, whatever the order or layout of its
    /// values: their plain mean, and M2 NaN. The slow path of sums that failed in the row's
    /// type: three passes, but only over such values.
    pub fn exact_each(streams: usize, mut pass: impl FnMut(&mut [ExactPass])) -> Vec<Moments> {
        let mut run = |scale: &dyn Fn(usize) -> f64, center: &dyn Fn(usize) -> f64| {
            let mut passes: Vec<ExactPass> = (0..streams)
                .map(|i| ExactPass::new(scale(i), center(i)))
                .collect();
            pass(&mut passes);
            passes
        };
        let scans = run(&|_| 1.0, &|_| 0.0);
        let count = |i: usize| scans[i].count.max(1) as f64;
        let scale = |i: usize| scale_for(scans[i].max);
        let sums = run(&scale, &|_| 0.0);
        let center = |i: usize| sums[i].dev / count(i);
        let devs = run(&scale, &center);
        (0..streams)
            .map(|i| {
                let (scan, p) = (&scans[i], &devs[i]);
                if scan.count == 0 {
                    return Moments::default();
                }
                if !scan.finite {
                    return Moments::new(count(i), scan.dev / count(i), f64::NAN);
                }
                let m2 = p.sq - p.dev * p.dev / count(i);
                let mean = (center(i) + p.dev / count(i)) / p.scale;
                Moments::at_scale(count(i), mean, if m2 < 0.0 { 0.0 } else { m2 }, p.scale)
            })
            .collect()
    }

    /// Whether a center is too far from the mean for sums around it: M2 = Σ(x−c)² − (Σ(x−c))²/n
    /// then cancels, and loses its precision, so the sums are taken again around the mean.
    #[inline(always)]
    pub fn off_center(count: f64, dev: f64, sq: f64) -> bool {
        dev * dev / count > 0.25 * sq
    }

    /// The moments of `count` values from their sums around `center`: Σ(x−c) and Σ(x−c)².
    #[inline(always)]
    pub fn around(count: f64, center: f64, dev: f64, sq: f64) -> Moments {
        // A non-finite center (inf/NaN in the values) makes every statistic NaN/inf, as it
        // should.
        let m2 = sq - dev * dev / count;
        // Rounding can leave a hair below zero for constant rows; NaN must stay NaN (no `max`).
        let m2 = if m2 < 0.0 { 0.0 } else { m2 };
        // The mean's rounding is that of the sum: the quotient's own (and in `merge`, the
        // product's) is an ulp of a value far smaller than the mean.
        let (mean, e) = two_sum(center, dev / count);
        Moments {
            mean_lo: finite_or_zero(e),
            ..Moments::new(count, mean, m2)
        }
    }

    /// Moments of the union of two disjoint sets (Chan, Golub & LeVeque's pairwise update), at
    /// a common scale when M2 or the squared distance of the means would overflow.
    #[must_use]
    #[inline]
    pub fn merge(self, other: Moments) -> Moments {
        if other.count == 0.0 {
            return self;
        }
        if self.count == 0.0 {
            return other;
        }
        // Exact compares: 1 is the unscaled form (powers of two are exact).
        if self.scale.to_bits() == 1f64.to_bits() && other.scale.to_bits() == 1f64.to_bits() {
            let count = self.count + other.count;
            let (delta, delta_lo) = two_sum(other.mean, -self.mean);
            let weight = other.count / count;
            let step = delta * weight;
            let (mean, mean_err) = two_sum(self.mean, step);
            // The exact difference of the means, and the rounding the merged mean left behind.
            let full = delta + (delta_lo + (other.mean_lo - self.mean_lo));
            let lo = self.mean_lo + mean_err + (delta_lo + (other.mean_lo - self.mean_lo)) * weight;
            let merged = Moments {
                mean_lo: finite_or_zero(lo),
                ..Moments::new(
                    count,
                    mean,
                    self.scaled_m2
                        + other.scaled_m2
                        + full * full * (self.count * other.count / count),
                )
            };
            if merged.is_finite() || !(self.is_finite() && other.is_finite()) {
                return merged;
            }
        }
        self.merge_scaled(other)
    }

    /// [`Moments::merge`] at a scale that brings both sets' magnitudes near 1 (the cold path).
    #[cold]
    #[inline(never)]
    fn merge_scaled(self, other: Moments) -> Moments {
        let count = self.count + other.count;
        let spread = |m: &Moments| m.mean.abs().max((m.scaled_m2 / m.count).sqrt() / m.scale);
        let scale = scale_for(spread(&self).max(spread(&other)));
        let m2_at = |m: &Moments| m.scaled_m2 * (scale / m.scale) * (scale / m.scale);
        let (a, b) = (self.mean * scale, other.mean * scale);
        let delta = b - a;
        let m2 = m2_at(&self) + m2_at(&other) + delta * delta * (self.count * other.count / count);
        Moments::at_scale(
            count,
            (a + delta * (other.count / count)) / scale,
            m2,
            scale,
        )
    }

    /// Biased (population) variance, the one normalization layers divide by (infinite where it
    /// overflows f64).
    #[inline]
    pub fn variance(&self) -> f64 {
        self.scaled_m2 / self.count / self.scale / self.scale
    }

    /// 1 / √(variance + eps), finite for any finite values (from the scaled M2 where the
    /// variance overflows).
    #[inline]
    pub fn rstd(&self, eps: f64) -> f64 {
        self.scale / (self.scaled_m2 / self.count + eps * self.scale * self.scale).sqrt()
    }
}

/// Positions one block of `merge_columns` converts into stack buffers.
const MERGE_BLOCK: usize = 256;

/// `merge_moments`: the statistics of each pair of sets' union, elementwise over `(count, mean,
/// m2)` columns with a value per position or one for all (the binding broadcasts the rest), into
/// `out` (counts as i64). Counts must be non-negative integers.
///
/// [`Moments::merge`] branches per position (empty sets, overflow), so a loop of it stays scalar:
/// merging 4096 positions ran at 0.4× NumPy's five vector operations. Here a block's positions
/// take the merge's common path (both sets non-empty, the result finite; inputs from
/// `Moments::new`, whose `mean_lo` is 0 and scale 1) in a loop without branches, and only the
/// positions off that path go through `merge` itself: the same bits either way.
pub fn merge_columns(
    a: [Values<'_>; 3],
    b: [Values<'_>; 3],
    (count, mean, m2): (&mut [i64], &mut [f64], &mut [f64]),
) -> crate::error::Result<()> {
    let positions = count.len();
    assert!(
        mean.len() == positions
            && m2.len() == positions
            && a.iter()
                .chain(&b)
                .all(|v| v.len() == 1 || v.len() == positions),
        "merge_columns: operands of other lengths than the output"
    );
    let bad = AtomicBool::new(false);
    let out = (
        count.as_mut_ptr() as usize,
        mean.as_mut_ptr() as usize,
        m2.as_mut_ptr() as usize,
    );
    crate::simd::for_each_range(
        positions.div_ceil(MERGE_BLOCK),
        MERGE_BLOCK * 4,
        #[inline(always)]
        |blocks| {
            // The blocks' staging buffers, zeroed once a task (12 KB: zeroing them per block of 256
            // positions was a seventh of the merge's time).
            let mut bufs = [[0.0f64; MERGE_BLOCK]; 6];
            for block in blocks {
                let start = block * MERGE_BLOCK;
                let len = MERGE_BLOCK.min(positions - start);
                // SAFETY: blocks are disjoint and inside the three outputs.
                let (count, mean, m2) = unsafe {
                    (
                        std::slice::from_raw_parts_mut((out.0 as *mut i64).add(start), len),
                        std::slice::from_raw_parts_mut((out.1 as *mut f64).add(start), len),
                        std::slice::from_raw_parts_mut((out.2 as *mut f64).add(start), len),
                    )
                };
                if !merge_block(&a, &b, start, &mut bufs, count, mean, m2) {
                    bad.store(true, Ordering::Relaxed);
                }
            }
        },
    );
    if bad.into_inner() {
        return Err(crate::error::Error::InvalidArgument(
            "merge_moments: counts must be non-negative integers".to_string(),
        ));
    }
    Ok(())
}

/// One block of [`merge_columns`]: false when a count is not a non-negative integer.
#[inline(always)]
fn merge_block(
    a: &[Values<'_>; 3],
    b: &[Values<'_>; 3],
    start: usize,
    bufs: &mut [[f64; MERGE_BLOCK]; 6],
    count: &mut [i64],
    mean: &mut [f64],
    m2: &mut [f64],
) -> bool {
    let len = count.len();
    // Each operand's values at the block's positions: f64 columns read in place, counts (i64)
    // and single values (broadcast) converted into a buffer.
    let mut columns: [&[f64]; 6] = [&[]; 6];
    for ((column, buf), values) in columns
        .iter_mut()
        .zip(bufs.iter_mut())
        .zip(a.iter().chain(b))
    {
        *column = match values {
            Values::F64(v) if v.len() > 1 => &v[start..start + len],
            _ => {
                values.fill(start, &mut buf[..len]);
                &buf[..len]
            }
        };
    }
    let [na, ma, qa, nb, mb, qb] = columns;
    let (mean, m2) = (&mut mean[..len], &mut m2[..len]);
    let bad_count = |c: f64| c < 0.0 || c.fract() != 0.0;
    let bad = na
        .iter()
        .chain(nb)
        .fold(0u8, |acc, &c| acc | u8::from(bad_count(c)));
    if bad != 0 {
        return false;
    }
    // The common path of `Moments::merge`, written out; `off` marks positions it does not cover.
    let mut off = 0u8;
    for i in 0..len {
        let n = na[i] + nb[i];
        let (delta, delta_lo) = two_sum(mb[i], -ma[i]);
        let merged_mean = ma[i] + delta * (nb[i] / n);
        // merge's `delta + (delta_lo + (mean_lo − mean_lo))` with both mean_lo 0: only the sign
        // of a zero can differ, and it is squared.
        let full = delta + delta_lo;
        let merged_m2 = qa[i] + qb[i] + full * full * (na[i] * nb[i] / n);
        off |= u8::from(
            na[i] == 0.0 || nb[i] == 0.0 || !(merged_mean.is_finite() && merged_m2.is_finite()),
        );
        mean[i] = merged_mean;
        m2[i] = merged_m2;
    }
    // A loop of its own: x86-64 below AVX-512 has no vector f64 → i64 conversion, and inside the
    // loop above it kept that loop scalar (`perf annotate`: xmm only).
    for ((c, &a), &b) in count.iter_mut().zip(na).zip(nb) {
        *c = (a + b) as i64;
    }
    if off != 0 {
        for i in 0..len {
            let left = Moments::new(na[i], ma[i], qa[i]);
            let m = left.merge(Moments::new(nb[i], mb[i], qb[i]));
            (count[i], mean[i], m2[i]) = (m.count as i64, m.mean, m.m2());
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduce::tests::{naive_two_pass, noise};

    #[test]
    fn moments_match_reference_for_all_tail_lengths() {
        for n in [1usize, 2, 15, 16, 17, 33, 1000] {
            let x = noise(n, n as u64);
            let m = Moments::of_slice(&x);
            let (mean, m2) = naive_two_pass(&x);
            assert!((m.mean - mean).abs() < 1e-14, "n={n}");
            assert!((m.m2() - m2).abs() < 1e-12 * m2.max(1.0), "n={n}");
        }
    }

    #[test]
    #[allow(clippy::float_cmp)] // counts are small integers held exactly
    fn runs_of_any_lengths_give_the_moments_of_all_their_values() {
        // Short runs sharing lanes across flushes, long runs with their own blocks, and a
        // center far from the mean (re-centered), on f32 data of 1e4 + noise.
        let lengths = [49usize, 1, 7, 49, 1000, 33, 1500, 5000, 64, 2, 1024, 31, 3];
        let runs: Vec<Vec<f32>> = lengths
            .iter()
            .cycle()
            .take(60)
            .enumerate()
            .map(|(i, &n)| {
                let offset = if i == 0 { 1.0e4 + 50.0 } else { 1.0e4 };
                noise(n, i as u64 + 1)
                    .iter()
                    .map(|v| offset + *v as f32)
                    .collect()
            })
            .collect();
        let exact: Vec<f64> = runs.iter().flatten().map(|&v| f64::from(v)).collect();
        let (mean, m2) = naive_two_pass(&exact);
        let m = Moments::of_runs(Moments::probe_center(&runs[0]), |sums| {
            for run in &runs {
                sums.add(run);
            }
        });
        assert_eq!(m.count, exact.len() as f64);
        assert!(
            (m.mean - mean).abs() < 1e-7,
            "mean off by {}",
            m.mean - mean
        );
        assert!(
            (m.m2() - m2).abs() / m2 < 1e-5,
            "m2 off by {}",
            (m.m2() - m2) / m2
        );
        // One run is summed exactly as a slice.
        let long = &runs[7];
        let one = Moments::of_runs(Moments::probe_center(long), |sums| sums.add(long));
        assert_eq!(one, Moments::of_slice(long));
    }

    #[test]
    fn short_rows_with_large_offset_are_exact() {
        // The f64 two-pass of short slices: f32 values of 1e4 + noise, every length up to 64.
        for n in 1..=SHORT {
            let x: Vec<f32> = noise(n, n as u64)
                .iter()
                .map(|v| 1.0e4 + *v as f32)
                .collect();
            let exact: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let (mean, m2) = naive_two_pass(&exact);
            let m = Moments::of_slice(&x);
            assert!(
                (m.mean - mean).abs() < 1e-11,
                "n={n}: mean {}",
                m.mean - mean
            );
            assert!(
                (m.m2() - m2).abs() <= 1e-12 * m2.max(1e-300),
                "n={n}: m2 {} vs {m2}",
                m.m2()
            );
        }
    }

    #[test]
    fn large_offset_keeps_variance() {
        // f32 data 1e4 + noise: E[x²]−E[x]² in f32 would give garbage, ours keeps ~1e-6 relative.
        for n in [4096usize, 100_000] {
            let x: Vec<f32> = noise(n, 7).iter().map(|v| 1.0e4 + *v as f32).collect();
            let exact: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let (mean, m2) = naive_two_pass(&exact);
            let m = Moments::of_slice(&x);
            assert!(
                (m.mean - mean).abs() < 1e-7,
                "n={n}: mean off by {}",
                m.mean - mean
            );
            assert!(
                (m.m2() - m2).abs() / m2 < 1e-5,
                "n={n}: m2 off by {}",
                (m.m2() - m2) / m2
            );
        }
    }

    #[test]
    fn outlier_first_element_still_exact() {
        // The probe center lands far from the mean: the second pass must recover full accuracy.
        let mut x: Vec<f32> = noise(5000, 11).iter().map(|v| 1.0e4 + *v as f32).collect();
        for v in x.iter_mut().take(64) {
            *v += 1.0e3;
        }
        let exact: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let (mean, m2) = naive_two_pass(&exact);
        let m = Moments::of_slice(&x);
        assert!((m.mean - mean).abs() < 1e-6);
        assert!((m.m2() - m2).abs() / m2 < 1e-5);
    }

    #[test]
    #[allow(clippy::float_cmp)] // counts are small integers held exactly
    fn merged_chunks_equal_whole() {
        let x = noise(1001, 3);
        let whole = Moments::of_slice(&x);
        let merged = x
            .chunks(97)
            .map(Moments::of_slice)
            .fold(Moments::default(), Moments::merge);
        assert_eq!(merged.count, whole.count);
        assert!((merged.mean - whole.mean).abs() < 1e-15);
        assert!((merged.m2() - whole.m2()).abs() / whole.m2() < 1e-12);
    }
}
