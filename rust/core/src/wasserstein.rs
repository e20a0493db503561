//! The 1-D Wasserstein distance (earth mover's distance) of two weighted samples.

use crate::error::{Error, Result};
use crate::scratch::{Scratch, Zeroed};

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

/// Bits per radix digit: 8 passes of 8 bits. Each pass writes into 256 buckets at once, whose
/// partly filled cache lines (16 KB) stay in L1; 11-bit digits (6 passes, 2048 lines, 128 KB)
/// made each pass cost twice as much (see decisions.md).
const DIGIT_BITS: u32 = 8;
const BUCKETS: usize = 1 << DIGIT_BITS;
const PASSES: u32 = 64_u32.div_ceil(DIGIT_BITS);
/// Below this, a comparison sort beats the radix sort's fixed cost (8 passes over 256 counters each).
const RADIX_FROM: usize = 2048;

/// The radix digit of key `k` in pass `pass` (least significant first).
#[inline(always)]
fn digit(k: u64, pass: u32) -> usize {
    ((k >> (pass * DIGIT_BITS)) as usize) & (BUCKETS - 1)
}

/// Sorts `items` by `key` ascending: an LSD radix sort (stable) for long inputs, one counting pass
/// for all digits first and no scatter pass for a digit every key shares; SciPy's sort had been
/// the whole cost of a million-value distance (pdqsort here was 3.9× SciPy).
fn radix_sort<T: Zeroed>(mut items: Scratch<T>, key: impl Fn(&T) -> u64) -> Scratch<T> {
    let n = items.len();
    if n < RADIX_FROM {
        items.sort_unstable_by_key(|t| key(t));
        return items;
    }
    let mut counts = vec![[0usize; BUCKETS]; PASSES as usize];
    for item in items.iter() {
        let k = key(item);
        for (pass, count) in (0..PASSES).zip(counts.iter_mut()) {
            count[digit(k, pass)] += 1;
        }
    }
    let mut spare = Scratch::zeroed(n);
    for (pass, count) in (0..PASSES).zip(&counts) {
        if count.contains(&n) {
            continue; // every key has this digit: the order stands
        }
        let mut next = [0usize; BUCKETS];
        let mut at = 0;
        for (slot, &c) in next.iter_mut().zip(count) {
            *slot = at;
            at += c;
        }
        for item in items.iter() {
            let b = digit(key(item), pass);
            spare[next[b]] = *item;
            next[b] += 1;
        }
        std::mem::swap(&mut items, &mut spare);
    }
    items
}

/// Keys from which one sort runs on two threads (below, the two samples sort at once, one a
/// thread): two concurrent sorts of 1M keys (16 MB of keys and scratch each) overflowed the L3
/// cache that one fits in, and two threads ran no faster than one.
const SPLIT_SORT_FROM: usize = 1 << 19;

/// [`radix_sort`], on two threads for long inputs ([`radix_sort_halves`]).
fn radix_sort_split<T: Zeroed>(items: Scratch<T>, key: impl Fn(&T) -> u64 + Sync) -> Scratch<T> {
    if items.len() < SPLIT_SORT_FROM || crate::parallel::num_threads() < 2 {
        return radix_sort(items, key);
    }
    radix_sort_halves(items, key)
}

/// [`radix_sort`] with each pass in two halves, one a thread: each half of the current order
/// counts its digits, the buckets' starts are laid out bucket by bucket with the first half's
/// share first (so the sort stays stable), and each half scatters its own keys. One sort's
/// working set at a time.
fn radix_sort_halves<T: Zeroed>(
    mut items: Scratch<T>,
    key: impl Fn(&T) -> u64 + Sync,
) -> Scratch<T> {
    let n = items.len();
    let mut spare = Scratch::zeroed(n);
    let half = n / 2;
    for pass in 0..PASSES {
        let count = |part: &[T]| {
            let mut c = vec![0usize; BUCKETS];
            for item in part {
                c[digit(key(item), pass)] += 1;
            }
            c
        };
        let (low, high) = items.split_at(half);
        let (c0, c1) = crate::parallel::join(|| count(low), || count(high));
        if c0.iter().zip(&c1).any(|(a, b)| a + b == n) {
            continue; // every key has this digit: the order stands
        }
        let (mut next0, mut next1) = (vec![0usize; BUCKETS], vec![0usize; BUCKETS]);
        let mut at = 0;
        for b in 0..BUCKETS {
            next0[b] = at;
            next1[b] = at + c0[b];
            at += c0[b] + c1[b];
        }
        let out = spare.as_mut_ptr() as usize;
        let scatter = |part: &[T], mut next: Vec<usize>| {
            let out = out as *mut T;
            for item in part {
                let b = digit(key(item), pass);
                // SAFETY: the starts lay the buckets out over 0..n, each half's share of a
                // bucket apart from the other's, and each count matches the keys scattered, so
                // every slot is written once, by one thread, inside `spare`.
                unsafe { out.add(next[b]).write(*item) };
                next[b] += 1;
            }
        };
        crate::parallel::join(|| scatter(low, next0), || scatter(high, next1));
        std::mem::swap(&mut items, &mut spare);
    }
    items
}

/// scipy.stats.wasserstein_distance: ∫|U − V| over the merged sorted support, with optional
/// non-negative weights. Sorting runs in parallel.
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
    // NaN anywhere makes the distance NaN (as SciPy's); the sweep below also assumes ordered values.
    if u.iter().chain(v).any(|x| x.is_nan()) {
        return Ok(f64::NAN);
    }
    // Each sample's values sorted as order keys (8 bytes an element), with their weights.
    let sorted =
        |values: &[f64], weights: Option<&[f64]>| -> (Scratch<f64>, Option<Scratch<f64>>) {
            match weights {
                None => {
                    let keys = Scratch::from_fn(values.len(), |i| order_key(values[i]));
                    (radix_sort_split(keys, |&k| k).map_in_place(key_value), None)
                }
                Some(w) => {
                    let pairs = Scratch::from_fn(values.len(), |i| (order_key(values[i]), w[i]));
                    let pairs = radix_sort_split(pairs, |&(k, _)| k)
                        .map_in_place(|(k, w)| (key_value(k), w));
                    let values = Scratch::from_fn(pairs.len(), |i| pairs[i].0);
                    (values, Some(Scratch::from_fn(pairs.len(), |i| pairs[i].1)))
                }
            }
        };
    // Long samples one after the other, each sort on both threads; short ones at once.
    let ((us, uw), (vs, vw)) = if u.len().max(v.len()) >= SPLIT_SORT_FROM {
        (sorted(u, u_weights), sorted(v, v_weights))
    } else {
        crate::parallel::join(|| sorted(u, u_weights), || sorted(v, v_weights))
    };
    let total =
        |w: &Option<Scratch<f64>>, n: usize| w.as_ref().map_or(n as f64, |w| w.iter().sum());
    let inv = (1.0 / total(&uw, us.len()), 1.0 / total(&vw, vs.len()));
    // Four loops, each with its weights known: the merge's steps stay free of those branches.
    Ok(match (&uw, &vw) {
        (None, None) => sweep_halves(&us, |_| 1.0, &vs, |_| 1.0, inv),
        (Some(uw), None) => sweep_halves(&us, |k| uw[k], &vs, |_| 1.0, inv),
        (None, Some(vw)) => sweep_halves(&us, |_| 1.0, &vs, |k| vw[k], inv),
        (Some(uw), Some(vw)) => sweep_halves(&us, |k| uw[k], &vs, |k| vw[k], inv),
    })
}

/// Where a merge of the samples starts: their first indices, the weights before them and the
/// value merged last (None at the very start).
#[derive(Clone, Copy)]
struct Cursor {
    i: usize,
    j: usize,
    cu: f64,
    cv: f64,
    previous: Option<f64>,
}

/// [`sweep`] in two halves, one per thread for long samples: below and from u's median value
/// (each sample split where its values reach it), the second half starting from the first's
/// totals. The two partial distances are added in that order, so the result is the same on every
/// run.
fn sweep_halves(
    u: &[f64],
    u_weight: impl Fn(usize) -> f64 + Sync,
    v: &[f64],
    v_weight: impl Fn(usize) -> f64 + Sync,
    inv: (f64, f64),
) -> f64 {
    let start = Cursor {
        i: 0,
        j: 0,
        cu: 0.0,
        cv: 0.0,
        previous: None,
    };
    let (nu, nv) = (u.len(), v.len());
    if nu + nv < 1 << 16 || crate::parallel::num_threads() < 2 {
        return sweep(u, &u_weight, v, &v_weight, inv, start, (nu, nv));
    }
    let split = u[nu / 2];
    let (i, j) = (
        u.partition_point(|&x| x < split),
        v.partition_point(|&x| x < split),
    );
    let before = |values: &[f64], weight: &dyn Fn(usize) -> f64, n: usize| -> (f64, Option<f64>) {
        (
            (0..n).map(weight).sum(),
            n.checked_sub(1).map(|k| values[k]),
        )
    };
    let ((cu, last_u), (cv, last_v)) = (before(u, &u_weight, i), before(v, &v_weight, j));
    let previous = match (last_u, last_v) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let middle = Cursor {
        i,
        j,
        cu,
        cv,
        previous,
    };
    let (low, high) = crate::parallel::join(
        || sweep(u, &u_weight, v, &v_weight, inv, start, (i, j)),
        || sweep(u, &u_weight, v, &v_weight, inv, middle, (nu, nv)),
    );
    low + high
}

/// ∫|U − V| of two sorted samples (weights by index; `inv`: 1 / each total weight) from `at` to
/// the indices `end`: their values merged one at a time, as SciPy steps through its concatenated
/// sorted values, each step adding |U − V| times the gap to the next value. So ties add gaps of
/// 0, and a repeated ±inf a gap of inf − inf, NaN, as SciPy's does. The merge is branch-free
/// (selects): interleaved samples had mispredicted half its steps.
#[inline(always)]
fn sweep(
    u: &[f64],
    u_weight: impl Fn(usize) -> f64,
    v: &[f64],
    v_weight: impl Fn(usize) -> f64,
    (inv_u, inv_v): (f64, f64),
    at: Cursor,
    (end_u, end_v): (usize, usize),
) -> f64 {
    let Cursor {
        mut i,
        mut j,
        mut cu,
        mut cv,
        previous,
    } = at;
    let mut distance = 0.0;
    let steps = (end_u - i) + (end_v - j);
    if steps == 0 {
        return 0.0;
    }
    let (mut previous, first) = match previous {
        Some(p) => (p, 0),
        // The very first value has no gap before it.
        None => (f64::NAN, 1),
    };
    for step in 0..steps {
        let (iu, jv) = (i.min(end_u.max(1) - 1), j.min(end_v.max(1) - 1));
        let (a, b) = (u[iu], v[jv]);
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
        if step >= first {
            distance += (cu * inv_u - cv * inv_v).abs() * (x - previous);
        }
        cu += if take_u { u_weight(iu) } else { 0.0 };
        cv += if take_u { 0.0 } else { v_weight(jv) };
        i += usize::from(take_u);
        j += usize::from(!take_u);
        previous = x;
    }
    distance
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
    fn split_radix_sort_matches_the_serial_one() {
        // As long as the inputs that take it; few distinct high digits (as normal samples have), and a
        // payload that must keep its stable order among equal keys.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let n = SPLIT_SORT_FROM + 12_345;
        let pairs: Vec<(u64, f64)> = (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let v = (state >> 11) as f64 / (1u64 << 53) as f64 * 8.0 - 4.0;
                let v = if i % 7 == 0 { v.round() } else { v }; // many equal keys
                (order_key(v), i as f64)
            })
            .collect();
        let serial = radix_sort(Scratch::from_fn(n, |i| pairs[i]), |&(k, _)| k);
        // The halves directly: `radix_sort_split` would sort serially on a one-CPU machine.
        let split = radix_sort_halves(Scratch::from_fn(n, |i| pairs[i]), |&(k, _)| k);
        assert!(serial.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(serial
            .iter()
            .zip(split.iter())
            .all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits()));
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
}
