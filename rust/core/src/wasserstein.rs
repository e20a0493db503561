//! The 1-D Wasserstein distance (earth mover's distance) of two weighted samples.

use crate::error::{Error, Result};
use crate::scratch::{Plain, Scratch};

/// f64's total order as unsigned integers (the bits, sign flipped; negatives all flipped): a radix
/// sort of these keys sorts the values as `f64::total_cmp` does.
#[inline(always)]
fn order_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The value of an [`order_key`].
#[inline(always)]
fn key_value(key: u64) -> f64 {
    f64::from_bits(if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    })
}

/// Below this, a comparison sort beats the radix sort's fixed costs (its counters).
const RADIX_FROM: usize = 2048;

/// Sorts `items` by `key` ascending, stably: a comparison sort for short inputs, else an MSD radix
/// sort ([`msd_sort`]), on two threads ([`bucket_sort`]) from [`SPLIT_SORT_FROM`] keys.
fn radix_sort<T: Plain>(mut items: Scratch<T>, key: impl Fn(&T) -> u64 + Sync) -> Scratch<T> {
    let n = items.len();
    if n < RADIX_FROM {
        items.sort_unstable_by_key(|t| key(t));
        return items;
    }
    if u32::try_from(n).is_err() {
        // Beyond the sorts' 32-bit counts (32 GB of keys): the standard library's stable sort.
        items.sort_by_key(|t| key(t));
        return items;
    }
    if n >= SPLIT_SORT_FROM && crate::parallel::num_threads() >= 2 {
        return bucket_sort(items, key);
    }
    let mut sorted = Scratch::unwritten(n);
    msd_sort(&mut items, &mut sorted, &key, &mut counters());
    sorted
}

/// Runs of at most this many keys are sorted by insertion.
const INSERTION_TO: usize = 16;
/// The most bits one distribution pass of [`distribute`] takes (8192 counters, 32 KB: L1).
const MSD_MAX_BITS: u32 = 13;

/// A stable insertion sort by `key`.
fn insertion_sort<T: Copy>(items: &mut [T], key: &impl Fn(&T) -> u64) {
    for i in 1..items.len() {
        let item = items[i];
        let k = key(&item);
        let mut j = i;
        while j > 0 && key(&items[j - 1]) > k {
            items[j] = items[j - 1];
            j -= 1;
        }
        items[j] = item;
    }
}

/// The counters of one sort's distribution passes, an array for each depth of [`distribute`]'s
/// recursion, allocated once a sort (they had been 8 KB stack arrays, zeroed whole in every
/// pass: 4% of a million-value distance's time in the passes over short runs), of which a pass
/// zeroes only the slots it uses. A pass's runs share the bits it took, so each depth has fewer
/// bits to go: 65 depths.
fn counters() -> Vec<Vec<u32>> {
    vec![Vec::new(); u64::BITS as usize + 1]
}

/// Sorts the keys of `src` into `dst` (as long), stably; `src` is left in any order. An MSD radix
/// sort: the keys' leading bits that they all share are skipped, and [`distribute`] sorts by the
/// bits below them. `levels` are the counters of this depth and the deeper ones ([`counters`]).
fn msd_sort<T: Copy>(
    src: &mut [T],
    dst: &mut [T],
    key: &impl Fn(&T) -> u64,
    levels: &mut [Vec<u32>],
) {
    if src.len() <= INSERTION_TO {
        dst.copy_from_slice(src);
        insertion_sort(dst, key);
        return;
    }
    let first = key(&src[0]);
    let differ = src.iter().fold(0, |d, t| d | (key(t) ^ first));
    let top = u64::BITS - differ.leading_zeros();
    // The shared bits, the ones below them cleared: every key is within 2^top above it.
    let low = first & !(u64::MAX.checked_shr(u64::BITS - top).unwrap_or(0));
    distribute(src, dst, key, low, top, 0, levels);
}

/// Sorts the keys of `src` into `dst` (as long), stably, given that every key is at least `low`
/// and below `low + 2^top`; `src` is left in any order. One counting pass and one scatter by the
/// log2(n) + `extra` bits (at most [`MSD_MAX_BITS`]) below bit `top`, counted in windows aligned
/// to those bits from `low`'s, so that runs hold one or two keys each, which one insertion pass
/// finishes; longer runs (clustered keys) are sorted by [`msd_sort`]. A run's keys are equal in
/// the bits this pass took, so the depth is bounded by 64 bits. `levels` are the counters of
/// this depth and the deeper ones ([`counters`]).
///
/// Windows aligned to the key's bits follow a float's exponent and mantissa, so a whole sample's
/// runs are each an exponent's keys, spread evenly. [`bucket_sort`]'s buckets, ranges of
/// about equal counts, straddle such boundaries: there the bits below the highest one in which
/// the keys differ would put most keys into a few runs at the two ends (11450 passes for a
/// million normal values; about 270 with each bucket's windows counted from its own range).
fn distribute<T: Copy>(
    src: &mut [T],
    dst: &mut [T],
    key: &impl Fn(&T) -> u64,
    low: u64,
    top: u32,
    extra: u32,
    levels: &mut [Vec<u32>],
) {
    let n = src.len();
    let Some((next, deeper)) = levels
        .split_first_mut()
        .filter(|_| top > 0 && n > INSERTION_TO)
    else {
        // All keys equal (top 0), or short (no counters left for a 65th depth cannot happen).
        dst.copy_from_slice(src);
        if top > 0 {
            insertion_sort(dst, key);
        }
        return;
    };
    let bits = (usize::BITS - 1 - n.leading_zeros() + extra)
        .clamp(1, MSD_MAX_BITS)
        .min(top);
    let shift = top - bits;
    // Keys from `low` to `low + 2^top − 1` fall into windows `low >> shift` to that plus 2^bits.
    let slots = (1 << bits) + 1;
    let base = low >> shift;
    let digit = |t: &T| ((key(t) >> shift) - base) as usize;
    // Counts, then each run's start, then (after the scatter) each run's end.
    next.clear();
    next.resize(slots, 0);
    for t in src.iter() {
        next[digit(t)] += 1;
    }
    let mut at = 0;
    for slot in next.iter_mut() {
        let count = *slot;
        *slot = at;
        at += count;
    }
    for t in src.iter() {
        let d = digit(t);
        dst[next[d] as usize] = *t;
        next[d] += 1;
    }
    let mut start = 0;
    for &end in next.iter() {
        let run = start..end as usize;
        start = end as usize;
        if run.len() > INSERTION_TO {
            msd_sort(&mut dst[run.clone()], &mut src[run.clone()], key, deeper);
            dst[run.clone()].copy_from_slice(&src[run]);
        }
    }
    // The short runs by one insertion pass over all of `dst`: the runs are in order and the long
    // ones sorted, so it only moves keys within short runs. Run by run, the loop's branches on
    // run lengths of 0 to 3 had cost as much as the sorting (the same order either way).
    insertion_sort(dst, key);
}

/// Keys from which one sort runs on two threads (below, the two samples sort at once, one a
/// thread): two concurrent sorts of 1M keys (16 MB of keys and scratch each) overflowed the L3
/// cache that one fits in, and two threads ran no faster than one.
const SPLIT_SORT_FROM: usize = 1 << 19;

/// Keys (of the longer sample) from which the two samples sort at once, one a thread: below it
/// both sort on the caller's thread. Handing one to the pool wakes its sleeping thread, which on
/// this VM cost more than the second sort (measured with rayon's pool): samples of 1000 values
/// took 61 µs a call on two threads against 23 on one, 16384 took 396 against 385 (SciPy's: 85 µs
/// and 4.1 ms).
const JOIN_FROM: usize = 1 << 14;
/// The bits of a key (after those all keys share) that [`bucket_sort`] counts, and at most how
/// many buckets it makes of those counts.
const PREFIX_BITS: u32 = 16;
const MAX_BUCKETS: usize = 256;

/// [`msd_sort`] on two threads: the keys' leading [`PREFIX_BITS`] (after the bits all keys
/// share) are counted, consecutive prefixes grouped into up to [`MAX_BUCKETS`] buckets of about
/// equal size (whatever the distribution: normal samples crowd a few exponents), the keys scattered
/// into their buckets in order, and the buckets (about 32 KB each for a million keys) sorted by
/// [`distribute`] from their ranges, the threads taking runs of buckets as they go. The input's
/// halves are counted and scattered by one thread each, a bucket taking the first half's keys
/// first, so the sort stays stable.
fn bucket_sort<T: Plain>(mut items: Scratch<T>, key: impl Fn(&T) -> u64 + Sync) -> Scratch<T> {
    let n = items.len();
    let half = n / 2;
    let range = |part: &[T]| {
        part.iter().fold((u64::MAX, 0), |(low, high), t| {
            let k = key(t);
            (low.min(k), high.max(k))
        })
    };
    let ((l0, h0), (l1, h1)) = {
        let (a, b) = items.split_at(half);
        crate::parallel::join(|| range(a), || range(b))
    };
    let (low, high) = (l0.min(l1), h0.max(h1));
    if low == high {
        return items; // all keys equal
    }
    let shift = (u64::BITS - (high - low).leading_zeros()).saturating_sub(PREFIX_BITS);
    let prefix = |k: u64| ((k - low) >> shift) as usize;
    let count = |part: &[T]| {
        let mut c = vec![0u32; 1 << PREFIX_BITS];
        for t in part {
            c[prefix(key(t))] += 1;
        }
        c
    };
    let (c0, c1) = {
        let (a, b) = items.split_at(half);
        crate::parallel::join(|| count(a), || count(b))
    };
    // Consecutive prefixes into buckets: one closes once it holds `size` keys, so at most
    // MAX_BUCKETS − 1 close and one more takes the rest.
    let size = n.div_ceil(MAX_BUCKETS - 1).max(1024) as u32;
    let mut bucket_of = vec![0u8; 1 << PREFIX_BITS];
    let (mut in0, mut in1) = (vec![0u32; MAX_BUCKETS], vec![0u32; MAX_BUCKETS]);
    // Each bucket's first prefix.
    let mut first = vec![0usize];
    let mut bucket = 0;
    for p in 0..1 << PREFIX_BITS {
        bucket_of[p] = bucket as u8;
        in0[bucket] += c0[p];
        in1[bucket] += c1[p];
        if in0[bucket] + in1[bucket] >= size && bucket + 1 < MAX_BUCKETS {
            bucket += 1;
            first.push(p + 1);
        }
    }
    let buckets = bucket + 1;
    // Each bucket's keys' range from its prefixes, as `distribute` takes it: the least key it
    // may hold, and the bits of the span up to the greatest.
    let bounds = |b: usize| {
        let from = low + ((first[b] as u64) << shift);
        let to = if b + 1 < buckets {
            // (first[b + 1] << shift) − 1, which may be 2^64 − 1 (shift + PREFIX_BITS ≤ 64).
            let end = (((first[b + 1] - 1) as u64) << shift) | ((1 << shift) - 1);
            low + end.min(high - low)
        } else {
            high
        };
        (from, u64::BITS - (to - from).leading_zeros())
    };
    // Each bucket's start, and where each half's keys of it go.
    let (mut next0, mut next1) = (vec![0usize; buckets], vec![0usize; buckets]);
    let mut starts = Vec::with_capacity(buckets + 1);
    let mut at = 0;
    for b in 0..buckets {
        starts.push(at);
        next0[b] = at;
        next1[b] = at + in0[b] as usize;
        at += (in0[b] + in1[b]) as usize;
    }
    starts.push(n);
    let mut spare = Scratch::<T>::unwritten(n);
    let out = spare.as_mut_ptr() as usize;
    let scatter = |part: &[T], mut next: Vec<usize>| {
        let out = out as *mut T;
        for t in part {
            let b = usize::from(bucket_of[prefix(key(t))]);
            // SAFETY: the starts lay the buckets out over 0..n, each half's share of a bucket
            // apart from the other's, and each share's length is the count of that half's keys
            // in the bucket, so every slot is written once, by one thread, inside `spare`.
            unsafe { out.add(next[b]).write(*t) };
            next[b] += 1;
        }
    };
    {
        let (a, b) = items.split_at(half);
        crate::parallel::join(|| scatter(a, next0), || scatter(b, next1));
    }
    // Each bucket sorted from `spare` back into its place in `items`, in runs of buckets that
    // the caller and the worker claim as they go (the caller from the front): a worker that
    // shares its CPU for a while (with BLAS threads spinning after a SciPy call, or a vCPU just
    // woken) sorts fewer of them, where two fixed halves had the caller wait for its half.
    let sorted_at = items.as_mut_ptr() as usize;
    crate::parallel::for_each_range(buckets, size as usize, |range| {
        let mut counters = counters();
        for b in range {
            let (start, len) = (starts[b], starts[b + 1] - starts[b]);
            if len == 0 {
                continue; // an empty last bucket's first prefix may lie past the range
            }
            // SAFETY: the buckets are disjoint ranges of `spare` and of `items` (both n long),
            // each sorted by one task, and neither buffer is used otherwise until this returns.
            let (bucketed, sorted) = unsafe {
                (
                    std::slice::from_raw_parts_mut((out as *mut T).add(start), len),
                    std::slice::from_raw_parts_mut((sorted_at as *mut T).add(start), len),
                )
            };
            let (from, top) = bounds(b);
            // A bucket's keys spread evenly over its range: one more bit than log2(n), half a
            // key per run, pays for its counters there (a million normal values 3% faster); a
            // whole sample's windows are mostly empty (its exponents), where it did not (4000
            // values 1.17× slower).
            distribute(bucketed, sorted, &key, from, top, 1, &mut counters);
        }
    });
    items
}

/// scipy.stats.wasserstein_distance: ∫|U − V| over the merged sorted support, with optional
/// non-negative weights. Sorting and sweeping run in parallel; the result's bits do not depend
/// on the thread count.
pub fn wasserstein_1d(
    u: &[f64],
    v: &[f64],
    u_weights: Option<&[f64]>,
    v_weights: Option<&[f64]>,
) -> Result<f64> {
    for (name, values, weights) in [("u", u, u_weights), ("v", v, v_weights)] {
        if values.is_empty() {
            return Err(Error::EmptyReduction(format!(
                "wasserstein_1d: {name}_values is empty"
            )));
        }
        if let Some(w) = weights {
            if w.len() != values.len() {
                return Err(Error::ShapeMismatch(format!(
                    "wasserstein_1d: {name}_weights has {} entries, {name}_values has {}",
                    w.len(),
                    values.len()
                )));
            }
            if let Some(bad) = w.iter().find(|&&x| !(x >= 0.0 && x.is_finite())) {
                return Err(Error::InvalidArgument(format!(
                    "wasserstein_1d: {name}_weights must be non-negative and finite, got {bad}"
                )));
            }
            if w.iter().sum::<f64>() <= 0.0 {
                return Err(Error::InvalidArgument(format!(
                    "wasserstein_1d: {name}_weights must have a positive sum"
                )));
            }
        }
    }
    // Each sample's values sorted as order keys (8 bytes an element), with their weights.
    let sorted =
        |values: &[f64], weights: Option<&[f64]>| -> (Scratch<f64>, Option<Scratch<f64>>) {
            match weights {
                None => {
                    let keys = Scratch::from_fn(values.len(), |i| order_key(values[i]));
                    (radix_sort(keys, |&k| k).map_in_place(key_value), None)
                }
                Some(w) => {
                    let pairs = Scratch::from_fn(values.len(), |i| (order_key(values[i]), w[i]));
                    let pairs = radix_sort(pairs, |&(k, _)| k);
                    let values = Scratch::from_fn(pairs.len(), |i| key_value(pairs[i].0));
                    (values, Some(Scratch::from_fn(pairs.len(), |i| pairs[i].1)))
                }
            }
        };
    // Long samples one after the other, each sort on both threads; mid-size ones at once, one a
    // thread; short ones one after the other on this thread.
    let longer = u.len().max(v.len());
    let ((us, uw), (vs, vw)) = if (JOIN_FROM..SPLIT_SORT_FROM).contains(&longer) {
        crate::parallel::join(|| sorted(u, u_weights), || sorted(v, v_weights))
    } else {
        (sorted(u, u_weights), sorted(v, v_weights))
    };
    // NaN anywhere makes the distance NaN (as SciPy's); the sweep below also assumes ordered
    // values. NaNs sort to the ends (their keys lie beyond ±inf's), so the sorted ends tell,
    // where a scan of both samples had been a pass on one thread.
    if [&us, &vs]
        .iter()
        .any(|s| s[0].is_nan() || s[s.len() - 1].is_nan())
    {
        return Ok(f64::NAN);
    }
    let total =
        |w: &Option<Scratch<f64>>, n: usize| w.as_ref().map_or(n as f64, |w| w.iter().sum());
    let inv = (1.0 / total(&uw, us.len()), 1.0 / total(&vw, vs.len()));
    let (uw, vw) = (uw.as_deref(), vw.as_deref());
    // Four loops, each with its weights known: the merge's steps stay free of those branches.
    Ok(match (uw, vw) {
        (None, None) => Merge::new(&us, |_| 1.0, &vs, |_| 1.0, inv).distance(uw, vw),
        (Some(w), None) => Merge::new(&us, |k| w[k], &vs, |_| 1.0, inv).distance(uw, vw),
        (None, Some(w)) => Merge::new(&us, |_| 1.0, &vs, |k| w[k], inv).distance(uw, vw),
        (Some(wu), Some(wv)) => Merge::new(&us, |k| wu[k], &vs, |k| wv[k], inv).distance(uw, vw),
    })
}

/// Parts of the merged order that long samples are swept in, [`LOCKSTEP`] at a time on each
/// thread. A fixed number, whatever the thread count, so the result's bits are too.
const PARTS: usize = 8;
/// Merges advanced together in one loop: a merge step waits on the previous one (load, compare,
/// advance an index, load again), about 20 cycles; independent merges overlap their waits.
const LOCKSTEP: usize = 4;
/// Merged lengths from which the samples are swept in parts.
const PARTS_FROM: usize = 1 << 16;
// `Merge::distance` hands the parts to two threads, LOCKSTEP each.
const _: () = assert!(PARTS == 2 * LOCKSTEP);

/// A merge of the two sorted samples under way: their next indices, the weights taken so far,
/// the value merged last, and the distance summed so far.
#[derive(Clone, Copy)]
struct Cursor {
    i: usize,
    j: usize,
    cu: f64,
    cv: f64,
    previous: f64,
    distance: f64,
}

impl Cursor {
    /// Before the first value (which has no value before it, so no gap).
    const START: Cursor = Cursor {
        i: 0,
        j: 0,
        cu: 0.0,
        cv: 0.0,
        previous: f64::NAN,
        distance: 0.0,
    };
}

/// The two sorted samples and what a merge step needs of them: weights by index (1 where
/// unweighted) and 1 / each total weight.
struct Merge<'a, U, V> {
    u: &'a [f64],
    u_weight: U,
    v: &'a [f64],
    v_weight: V,
    inv: (f64, f64),
}

impl<'a, U: Fn(usize) -> f64 + Sync, V: Fn(usize) -> f64 + Sync> Merge<'a, U, V> {
    fn new(u: &'a [f64], u_weight: U, v: &'a [f64], v_weight: V, inv: (f64, f64)) -> Self {
        Merge {
            u,
            u_weight,
            v,
            v_weight,
            inv,
        }
    }

    /// One step of the merge up to the indices `end` (at least one of them ahead): the smaller
    /// next value (u's on a tie), as SciPy steps through its concatenated sorted values, adding
    /// |U − V| times the gap from the value before it. So ties add gaps of 0, and a repeated ±inf
    /// a gap of inf − inf, NaN, as SciPy's does. `gap` false for the very first value. Branch-free
    /// (selects): interleaved samples had mispredicted half the steps.
    #[inline(always)]
    fn step(&self, at: &mut Cursor, (end_u, end_v): (usize, usize), gap: bool) {
        let Cursor { i, j, .. } = *at;
        // Clamped reads: an exhausted sample's index may sit at its end.
        let (iu, jv) = (i.min(self.u.len() - 1), j.min(self.v.len() - 1));
        let (a, b) = (self.u[iu], self.v[jv]);
        // Bitwise on purpose: lazy operators compile to the branches this loop avoids.
        #[allow(clippy::needless_bitwise_bool)]
        let take_u = (i < end_u) & ((j >= end_v) | (a <= b));
        // The smaller value, with an exhausted sample's as +inf (no NaN gets here; ties give the
        // same value either way). `if take_u { a } else { b }` compiled to a branch, which
        // mispredicted on every other step of interleaved samples (10 ns a step); a bitwise
        // select was turned back into that branch.
        let a_in = if i < end_u { a } else { f64::INFINITY };
        let b_in = if j < end_v { b } else { f64::INFINITY };
        let x = a_in.min(b_in);
        if gap {
            at.distance += (at.cu * self.inv.0 - at.cv * self.inv.1).abs() * (x - at.previous);
        }
        at.cu += if take_u { (self.u_weight)(iu) } else { 0.0 };
        at.cv += if take_u { 0.0 } else { (self.v_weight)(jv) };
        at.i += usize::from(take_u);
        at.j += usize::from(!take_u);
        at.previous = x;
    }

    /// Where the merged order's first `r` values end: (i, j) with i + j = r such that u[..i] and
    /// v[..j] are those values (u's first on ties), by bisection on i.
    fn split(&self, r: usize) -> (usize, usize) {
        let (nu, nv) = (self.u.len(), self.v.len());
        let (mut low, mut high) = (r.saturating_sub(nv), r.min(nu));
        while low < high {
            let i = low + (high - low) / 2;
            let j = r - i;
            // Too few of u's: u[i] comes before v[j − 1] (or ties it, and u's go first).
            if j > 0 && self.u[i] <= self.v[j - 1] {
                low = i + 1;
            } else {
                high = i;
            }
        }
        (low, r - low)
    }

    /// ∫|U − V| over the whole merged order: in one merge for short samples, else in [`PARTS`]
    /// parts of equal length (each starting from the weights and value before it), [`LOCKSTEP`]
    /// merges at a time, half of them on each thread; the parts' distances are added in order.
    fn distance(&self, u_weights: Option<&[f64]>, v_weights: Option<&[f64]>) -> f64 {
        let (nu, nv) = (self.u.len(), self.v.len());
        if nu + nv < PARTS_FROM {
            return self.sweep([Cursor::START], [(nu, nv)])[0];
        }
        let splits: Vec<(usize, usize)> = (0..=PARTS)
            .map(|k| self.split((nu + nv) * k / PARTS))
            .collect();
        // The weights before each split, summed in the merge's order (so the same bits as a
        // merge from the start would have there).
        let before = |weights: Option<&[f64]>, at: Vec<usize>| -> Vec<f64> {
            let Some(w) = weights else {
                return at.iter().map(|&to| to as f64).collect();
            };
            let (mut total, mut from) = (0.0, 0);
            at.iter()
                .map(|&to| {
                    total = w[from..to].iter().fold(total, |t, &x| t + x);
                    from = to;
                    total
                })
                .collect()
        };
        let cu = before(u_weights, splits.iter().map(|s| s.0).collect());
        let cv = before(v_weights, splits.iter().map(|s| s.1).collect());
        let cursors: Vec<Cursor> = (0..PARTS)
            .map(|k| {
                let (i, j) = splits[k];
                // The value merged last before the part: the larger of the two last ones.
                let last = |values: &[f64], n: usize| n.checked_sub(1).map(|n| values[n]);
                let previous = match (last(self.u, i), last(self.v, j)) {
                    (Some(a), Some(b)) => a.max(b),
                    (a, b) => a.or(b).unwrap_or(f64::NAN),
                };
                Cursor {
                    i,
                    j,
                    cu: cu[k],
                    cv: cv[k],
                    previous,
                    distance: 0.0,
                }
            })
            .collect();
        let group = |g: usize| -> [f64; LOCKSTEP] {
            let at: [Cursor; LOCKSTEP] = std::array::from_fn(|k| cursors[g * LOCKSTEP + k]);
            let ends = std::array::from_fn(|k| splits[g * LOCKSTEP + k + 1]);
            self.sweep(at, ends)
        };
        let (low, high) = crate::parallel::join(|| group(0), || group(1));
        low.iter().chain(&high).fold(0.0, |total, &d| total + d)
    }

    /// The merges `at` each up to its `ends`, in lockstep for as many steps as all of them have
    /// left, then each alone; their distances. The very first step of the whole merge (i = j = 0)
    /// has no gap before it.
    #[inline(always)]
    fn sweep<const K: usize>(&self, mut at: [Cursor; K], ends: [(usize, usize); K]) -> [f64; K] {
        for k in 0..K {
            if at[k].i + at[k].j == 0 && ends[k] != (0, 0) {
                self.step(&mut at[k], ends[k], false);
            }
        }
        let left: [usize; K] =
            std::array::from_fn(|k| (ends[k].0 - at[k].i) + (ends[k].1 - at[k].j));
        let common = left.iter().copied().min().unwrap_or(0);
        for _ in 0..common {
            for k in 0..K {
                self.step(&mut at[k], ends[k], true);
            }
        }
        for k in 0..K {
            for _ in common..left[k] {
                self.step(&mut at[k], ends[k], true);
            }
        }
        std::array::from_fn(|k| at[k].distance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasserstein_matches_hand_values() {
        // Two point masses 3 apart.
        assert!((wasserstein_1d(&[0.0], &[3.0], None, None).unwrap() - 3.0).abs() < 1e-15);
        // scipy docs: wasserstein_distance([0, 1, 3], [5, 6, 8]) = 5.0
        assert!(
            (wasserstein_1d(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0], None, None).unwrap() - 5.0).abs()
                < 1e-12
        );
        // scipy docs: weighted example = 4.0781331438047861
        let d = wasserstein_1d(
            &[3.4, 3.9, 7.5, 7.8],
            &[4.5, 1.4],
            Some(&[1.4, 0.9, 3.1, 7.2]),
            Some(&[3.2, 3.5]),
        )
        .unwrap();
        assert!((d - 4.078_133_143_804_786).abs() < 1e-12);
        assert!(wasserstein_1d(&[1.0], &[1.0], Some(&[-1.0]), None).is_err());
        assert!(wasserstein_1d(&[], &[1.0], None, None).is_err());
    }

    #[test]
    fn a_nan_anywhere_makes_the_distance_nan() {
        // NaNs of either sign, first, inside or last, in samples for the comparison sort, the
        // MSD sort and the bucket sort, weighted or not: the sorted ends are what is checked.
        for n in [10, RADIX_FROM + 5, SPLIT_SORT_FROM + 3] {
            let clean: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 1e3).collect();
            let weights: Vec<f64> = (0..n).map(|i| (i % 5) as f64 + 0.5).collect();
            let at = if n < SPLIT_SORT_FROM {
                vec![0, n / 2, n - 1]
            } else {
                vec![n / 3]
            };
            for nan in [f64::NAN, -f64::NAN] {
                for &i in &at {
                    let mut u = clean.clone();
                    u[i] = nan;
                    assert!(wasserstein_1d(&u, &clean, None, None).unwrap().is_nan());
                    let d = wasserstein_1d(&clean, &u, Some(&weights), None).unwrap();
                    assert!(d.is_nan(), "n {n}, at {i}, {nan}");
                }
            }
            let shifted: Vec<f64> = clean.iter().map(|x| x + 1.0).collect();
            let d = wasserstein_1d(&clean, &shifted, None, None).unwrap();
            assert!((d - 1.0).abs() < 1e-9, "n {n}: {d}");
        }
    }

    #[test]
    fn bucket_sort_matches_a_stable_sort() {
        // Long enough for the bucket sort; normal-like samples (few distinct high digits), small
        // integers (low bits all zero), one value in most places (one bucket holds nearly all),
        // a narrow range, keys over all 64 bits, and a payload that must keep its stable order
        // among equal keys: the bucket sort and the MSD sort of the whole, against the standard
        // library's stable sort.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for kind in 0..5 {
            let n = SPLIT_SORT_FROM + 12_345;
            let pairs: Vec<(u64, f64)> = (0..n)
                .map(|i| {
                    let v = match kind {
                        0 => (next() + next() + next() - 1.5) * 4.0,
                        1 => (next() * 400.0).round(),
                        2 if i % 50 != 0 => 1.25,
                        3 => next() * 1e-3 + 7.0,
                        // Any bits, NaNs included: keys over the whole 64-bit range.
                        _ => f64::from_bits(((next() * 2f64.powi(53)) as u64) << 11 | i as u64),
                    };
                    let v = if i % 7 == 0 { v.round() } else { v }; // many equal keys
                    (order_key(v), i as f64)
                })
                .collect();
            let mut want = pairs.clone();
            want.sort_by_key(|&(k, _)| k);
            let same = |got: &[(u64, f64)]| {
                got.len() == want.len()
                    && got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits())
            };
            // The bucket sort directly: `radix_sort` would not take it on a one-CPU machine.
            let got = bucket_sort(Scratch::from_fn(n, |i| pairs[i]), |&(k, _)| k);
            assert!(same(&got), "kind {kind}, buckets");
            let (mut items, mut sorted) = (pairs.clone(), pairs.clone());
            msd_sort(
                &mut items,
                &mut sorted,
                &|&(k, _): &(u64, f64)| k,
                &mut counters(),
            );
            assert!(same(&sorted), "kind {kind}, msd");
        }
    }

    #[test]
    fn radix_sort_orders_as_total_cmp() {
        // Signs, ±0, ±inf, subnormals, duplicates and magnitudes over the whole range, long enough
        // for the radix path, with a payload that must travel with its key (a stable sort).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut values: Vec<f64> = (0..10_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let v = f64::from_bits(state);
                if v.is_nan() {
                    (state % 1000) as f64 - 500.0
                } else {
                    v
                }
            })
            .collect();
        values.extend([
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            5e-324,
            -5e-324,
            1.5,
            1.5,
        ]);
        let pairs: Vec<(u64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (order_key(v), i as f64))
            .collect();
        let got = radix_sort(Scratch::from_fn(pairs.len(), |i| pairs[i]), |&(k, _)| k);
        let mut want: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, i as f64))
            .collect();
        want.sort_by(|a, b| a.0.total_cmp(&b.0));
        let got: Vec<(f64, f64)> = got.iter().map(|&(k, i)| (key_value(k), i)).collect();
        assert!(got
            .iter()
            .zip(&want)
            .all(|(a, b)| a.0.to_bits() == b.0.to_bits() && a.1.to_bits() == b.1.to_bits()));
        // short inputs take the comparison sort
        let short = radix_sort(Scratch::from_fn(3, |i| [3u64, 1, 2][i]), |&k| k);
        assert_eq!(*short, [1, 2, 3]);
    }

    #[test]
    fn parts_split_where_the_merge_is_and_sum_to_the_whole_sweep() {
        let mut state = 0x1234_5678_9abc_def1_u64;
        let mut sample = |n: usize, scale: f64| -> Vec<f64> {
            let mut x: Vec<f64> = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state >> 11) as f64 / (1u64 << 53) as f64 * scale).round()
                    // many ties
                })
                .collect();
            x.sort_by(f64::total_cmp);
            x
        };
        let (u, v) = (sample(70_001, 500.0), sample(40_003, 300.0));
        let weights: Vec<f64> = (0..u.len().max(v.len()))
            .map(|k| (k % 7) as f64 + 0.5)
            .collect();
        let merge = Merge::new(&u, |k| weights[k], &v, |k| weights[k], (1e-5, 2e-5));
        // The split after r values is where r steps of one merge from the start have got to.
        let mut at = Cursor::START;
        let ends = (u.len(), v.len());
        for r in 0..u.len() + v.len() {
            if r % 997 == 0 {
                assert_eq!(merge.split(r), (at.i, at.j), "r = {r}");
            }
            merge.step(&mut at, ends, r > 0);
        }
        assert_eq!(merge.split(u.len() + v.len()), ends);
        // The parts' distances add up to the one merge's (up to the order of the additions).
        let parts = merge.distance(Some(&weights[..u.len()]), Some(&weights[..v.len()]));
        assert!(
            (parts - at.distance).abs() <= 1e-12 * at.distance,
            "{parts} vs {}",
            at.distance
        );
        assert!(parts > 0.0);
    }
}
