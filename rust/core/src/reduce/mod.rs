//! Sums and moments, exact enough for f32 rows of 1e4 + noise.
//!
//! Statistics use the corrected two-pass algorithm (Chan, Golub & LeVeque 1983) around a center
//! c: sum d = x − c and d², then mean = c + Σd/n and M2 = Σd² − (Σd)²/n. Near the mean, x − c
//! is exact (Sterbenz), so the sums only see the spread of the data, never its offset: rows of
//! 1e4 + noise keep their variance. Never E[x²]−E[x]², which subtracts two numbers of 1e8 and
//! loses every digit of the variance there.
//!
//! The center is the mean of the row's first elements, so one pass usually suffices. When that
//! center was far from the mean (the correction (Σd)²/n exceeds a quarter of Σd², so M2 would
//! lose more than two bits to cancellation) the pass is repeated around the mean just found.
//!
//! Sums accumulate in the row's own type over `LANES` independent lanes (a fixed association,
//! so results do not depend on the SIMD width), and every `BLOCK` elements the lanes are folded
//! into an f64 total (or, for the deviation sums, added into f64 lanes folded once per row). Each
//! lane thus sees at most BLOCK / LANES additions in the row's type (error ≤ 32 ulp of the
//! block's partial sums for f32) however long the row, at the speed of f32 vector adds.

use crate::element::Float;

mod exact;
mod moments;

pub use exact::{l2_norm, scaled_sum_squares, scaled_sum_squares_runs, ExactPass, SquareSums};
pub use moments::{merge_columns, DeviationSums, Moments};

/// Independent accumulators per sum: two AVX-512 or four AVX2 registers of f32.
pub const LANES: usize = 32;
/// Elements summed in the row's type before the lanes are flushed into f64.
pub const BLOCK: usize = 1024;
/// The sum of `count` squares in `T` below which some of them may have lost precision under the
/// type's smallest normal (or vanished): such sums are taken again, scaled ([`Moments::exact`]).
#[inline(always)]
pub(super) fn underflow_bound<T: Float>(count: f64) -> f64 {
    count * T::MIN_NORMAL / T::EPSILON
}

/// The lanes' sum by halving (lane j + lane j + width, a fixed association). Not inlined on
/// purpose: inlined next to a lane loop, a halving tree steered LLVM's SLP vectorizer into
/// 2-wide vectors for the whole loop (`sum_squares` ran at a third of its speed).
#[inline(never)]
pub(super) fn fold<T: Float>(acc: [T; LANES]) -> f64 {
    fold_inline(acc)
}

/// [`fold`] inlined, for lane loops heavy enough that the SLP trouble does not arise (the
/// exponentials of softmax): the call there cost 4% of a softmax row of 1000, its 32 lanes stored
/// for a function compiled without the target's features.
#[inline(always)]
fn fold_inline<T: Float>(mut acc: [T; LANES]) -> f64 {
    halving_tree(LANES, |j, k| acc[j] = acc[j] + acc[k]);
    acc[0].to_f64()
}

/// The pairs of [`fold`]'s halving tree over [`LANES`] lanes, in its order: `add(j, k)` adds lane
/// k into lane j, level by level, until lane 0 holds the total. Lanes from `active` on must be
/// zero; the pairs that would add only those are skipped (pass [`LANES`] where adding +0 could
/// change a bit, to −0). One tree for the single lanes here and the lanes of several rows at once
/// (softmax's columns, the information measures' tiles).
#[inline(always)]
pub(crate) fn halving_tree(active: usize, mut add: impl FnMut(usize, usize)) {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for j in 0..width.min(active.saturating_sub(width)) {
            add(j, j + width);
        }
    }
}

/// The lanes' sum in f64: each lane widened, then [`fold`]'s fixed halving tree.
#[inline(always)]
pub fn widened_sum<T: Float>(lanes: &[T; LANES]) -> f64 {
    fold(lanes.map(Float::to_f64))
}

/// Per-lane f64 totals of a row's blocks, for the deviation sums (two lane sets per block): each
/// block's lanes are widened and added lane by lane in registers, and folded once per row.
/// Passing both sets to [`fold`] every block stalled on store forwarding (the lanes go through
/// memory to a non-inlined call): 10% of a LayerNorm profile. For one set per block (`sum`,
/// `sum_squares`) the plain per-block fold measured as fast or faster.
pub(super) struct LaneTotals([f64; LANES]);

impl LaneTotals {
    #[inline(always)]
    fn new() -> Self {
        LaneTotals([0.0; LANES])
    }

    #[inline(always)]
    fn add<T: Float>(&mut self, block: &[T; LANES]) {
        for (total, &v) in self.0.iter_mut().zip(block) {
            *total += v.to_f64();
        }
    }

    #[inline(always)]
    fn sum(self) -> f64 {
        fold(self.0)
    }
}

/// Calls `f` on each `LANES`-wide chunk of `block`; the tail is padded with `pad` (a value that
/// adds nothing to the sums) into one more full chunk. Accumulators indexed only by constants
/// stay in vector registers; a dynamically indexed tail loop would force them onto the stack.
#[inline(always)]
pub(super) fn for_each_chunk<T: Float>(block: &[T], pad: T, mut f: impl FnMut(&[T; LANES])) {
    let chunks = block.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        f(chunk
            .try_into()
            .expect("chunks_exact yields LANES elements"));
    }
    if !tail.is_empty() {
        // Selected lane by lane, not `copy_from_slice`: that is a memcpy call whose small stores
        // the vector loads of `last` then wait on (store forwarding fails), a stall per row
        // that dominated rows of 49 values.
        let last: [T; LANES] = std::array::from_fn(|j| tail.get(j).copied().unwrap_or(pad));
        f(&last);
    }
}

/// Σ f(x) over a slice: lanes in `T` per block, blocks in f64. The tail's f values are padded
/// with zeros into one more full chunk (for f(0) = 0 the same as padding x with zeros).
#[inline(always)]
fn blocked_sum<T: Float>(x: &[T], f: impl Fn(T) -> T) -> f64 {
    blocked_sum_onto(0.0, x, f)
}

/// `total` + Σ f(x), each block added to the running total in turn: runs that are whole blocks
/// (all but the last) continue a sum exactly as the blocks of one slice do.
#[inline(always)]
pub(super) fn blocked_sum_onto<T: Float>(total: f64, x: &[T], f: impl Fn(T) -> T) -> f64 {
    blocked_sum_hooked(total, x, f, |_| {})
}

/// [`blocked_sum_onto`], calling `hook` with each full chunk's offset before summing it (a
/// place for prefetches spread through the pass instead of issued in one burst).
#[inline(always)]
fn blocked_sum_hooked<T: Float>(
    total: f64,
    x: &[T],
    f: impl Fn(T) -> T,
    mut hook: impl FnMut(usize),
) -> f64 {
    let mut total = total;
    for (b, block) in x.chunks(BLOCK).enumerate() {
        let mut acc = [T::ZERO; LANES];
        let chunks = block.chunks_exact(LANES);
        let tail = chunks.remainder();
        for (c, chunk) in chunks.enumerate() {
            hook(b * BLOCK + c * LANES);
            // The chunk as an array, indexed, not a loop over zipped lanes: LLVM vectorized that
            // loop over `acc` in memory behind a run-time overlap check; indexed, softmax ran
            // 3–7% faster (the log path's lanes can still live in stack slots).
            let chunk: &[T; LANES] = chunk.try_into().expect("chunks_exact yields LANES");
            for j in 0..LANES {
                acc[j] = acc[j] + f(chunk[j]);
            }
        }
        if !tail.is_empty() {
            // A separate array for the dynamically indexed tail keeps `acc` in registers.
            let mut last = [T::ZERO; LANES];
            for (l, &v) in last.iter_mut().zip(tail) {
                *l = f(v);
            }
            for (a, &l) in acc.iter_mut().zip(&last) {
                *a = *a + l;
            }
        }
        total += fold(acc);
    }
    total
}

/// Σ f(x), in lanes of `T` per block and f64 across blocks.
#[inline(always)]
pub fn sum_map<T: Float>(x: &[T], f: impl Fn(T) -> T) -> f64 {
    blocked_sum(x, f)
}

/// [`sum_map`] (the same sum), calling `hook` with the offset of each chunk of [`LANES`] values
/// before it is summed.
#[inline(always)]
pub fn sum_map_hooked<T: Float>(x: &[T], f: impl Fn(T) -> T, hook: impl FnMut(usize)) -> f64 {
    blocked_sum_hooked(0.0, x, f, hook)
}

/// Writes `y[i] = f(x[i])` and returns Σ y, summed exactly as [`sum`] would sum `y` afterwards
/// (same lanes and blocks), in one pass instead of two.
#[inline(always)]
pub fn sum_map_into<T: Float>(x: &[T], y: &mut [T], f: impl Fn(T) -> T) -> f64 {
    sum_map_into_hooked(x, y, f, |_| {})
}

/// [`sum_map_into`] (the same values and sum), calling `hook` with the offset of each chunk of
/// [`LANES`] values before it is mapped.
#[inline(always)]
pub fn sum_map_into_hooked<T: Float>(
    x: &[T],
    y: &mut [T],
    f: impl Fn(T) -> T,
    mut hook: impl FnMut(usize),
) -> f64 {
    assert_eq!(x.len(), y.len(), "sum_map_into: lengths differ");
    let mut total = 0.0f64;
    for (b, (xb, yb)) in x.chunks(BLOCK).zip(y.chunks_mut(BLOCK)).enumerate() {
        let mut acc = [T::ZERO; LANES];
        let full = xb.len() / LANES * LANES;
        for (c, (xc, yc)) in xb[..full]
            .chunks_exact(LANES)
            .zip(yb[..full].chunks_exact_mut(LANES))
            .enumerate()
        {
            hook(b * BLOCK + c * LANES);
            // Indexed arrays, as in `blocked_sum_hooked`.
            let xc: &[T; LANES] = xc.try_into().expect("chunks_exact yields LANES");
            let yc: &mut [T; LANES] = yc.try_into().expect("chunks_exact yields LANES");
            for j in 0..LANES {
                yc[j] = f(xc[j]);
                acc[j] = acc[j] + yc[j];
            }
        }
        if full < xb.len() {
            let mut last = [T::ZERO; LANES];
            for ((l, o), &v) in last.iter_mut().zip(yb[full..].iter_mut()).zip(&xb[full..]) {
                *o = f(v);
                *l = *o;
            }
            for (a, &l) in acc.iter_mut().zip(&last) {
                *a = *a + l;
            }
        }
        total += fold_inline(acc);
    }
    total
}

/// Values per tail chunk of [`sum_pairs`]: one AVX-512 vector of f64.
const TAIL_CHUNK: usize = 8;

/// Σ f(a, b) over paired entries as f64, in `LANES` independent lanes (a serial f64 sum would be
/// one dependency chain, 4 cycles an element). The tail is padded with (0, 0) into chunks of 8,
/// so f(0, 0) must be 0, and the lanes fold by [`fold`]'s tree: a scalar tail and a serial fold
/// had cost short rows (a 10-class distribution) more than their values.
#[inline(always)]
pub fn sum_pairs<T: Float>(p: &[T], q: &[T], f: impl Fn(f64, f64) -> f64) -> f64 {
    sum_pairs_by(p, q, |acc, a, b| acc + f(a, b))
}

/// Σ a·b as f64 ([`sum_pairs`]' lanes, tail and fold). Where the product of two `T` is exact in
/// f64 (f32, and the half types computed in f32: 2 × 24 significant bits ≤ 53), a fused
/// multiply-add rounds `acc + a·b` once, as the multiply and add do, so `M` changes no bit; it
/// saves the multiply (softmax_backward's row dot). f64 products round, so they stay separate.
#[inline(always)]
pub fn dot<T: Float, M: crate::fastmath::MulAdd>(p: &[T], q: &[T]) -> f64 {
    // Significant bits = 1 − log2(ε): products of up to 26 bits are exact in f64.
    if T::EPSILON >= 2.0f64.powi(-25) {
        sum_pairs_by(p, q, |acc, a, b| M::mul_add_f64(a, b, acc))
    } else {
        sum_pairs(p, q, |a, b| a * b)
    }
}

/// [`sum_pairs`] with the lane update given whole: `step(lane, a, b)` is the lane's new value.
#[inline(always)]
fn sum_pairs_by<T: Float>(p: &[T], q: &[T], step: impl Fn(f64, f64, f64) -> f64) -> f64 {
    const _: () = assert!(
        LANES == 4 * TAIL_CHUNK,
        "four groups of lanes, named one by one"
    );
    let n = p.len().min(q.len());
    let (p, q) = (&p[..n], &q[..n]);
    // Lane g·8 + j in group g, at j: one AVX-512 vector a group, each group named in the code.
    // As one flat array of 32 f64 lanes, the fat-LTO build kept the lanes in 32 scalar registers
    // rotated every step (float64 softmax_backward 1.7x slower than built without LTO); as a
    // loop over the groups, a costly f (the logs of js_divergence) kept them on the stack.
    let [mut g0, mut g1, mut g2, mut g3] = [[0.0f64; TAIL_CHUNK]; 4];
    let full = n / LANES * LANES;
    for (pc, qc) in p[..full]
        .chunks_exact(LANES)
        .zip(q[..full].chunks_exact(LANES))
    {
        const G: usize = TAIL_CHUNK;
        add_pairs(&mut g0, &pc[..G], &qc[..G], &step);
        add_pairs(&mut g1, &pc[G..2 * G], &qc[G..2 * G], &step);
        add_pairs(&mut g2, &pc[2 * G..3 * G], &qc[2 * G..3 * G], &step);
        add_pairs(&mut g3, &pc[3 * G..], &qc[3 * G..], &step);
    }
    let mut lanes = [0.0f64; LANES];
    for (lanes, group) in lanes.chunks_exact_mut(TAIL_CHUNK).zip([g0, g1, g2, g3]) {
        lanes.copy_from_slice(&group);
    }
    // The tail in chunks of `TAIL_CHUNK` into the first lanes, padded with (0, 0): a whole
    // 32-lane chunk had spent most of a 10-value row on padding. Set lane by lane, not copied
    // into a zeroed array (see `for_each_chunk`), and in a loop, not by `array::from_fn`, which
    // was compiled as a call outside the SIMD dispatch. Into the flat lanes, after the loop: a
    // group picked at run time had put the groups on the stack for the whole loop.
    for (k, start) in (full..n).step_by(TAIL_CHUNK).enumerate() {
        let (mut a, mut b) = ([0.0f64; TAIL_CHUNK], [0.0f64; TAIL_CHUNK]);
        for j in 0..TAIL_CHUNK {
            a[j] = p.get(start + j).map_or(0.0, |v| v.to_f64());
            b[j] = q.get(start + j).map_or(0.0, |v| v.to_f64());
        }
        let group: &mut [f64; TAIL_CHUNK] = (&mut lanes[k * TAIL_CHUNK..(k + 1) * TAIL_CHUNK])
            .try_into()
            .expect("a group of TAIL_CHUNK lanes");
        add_pairs(group, &a, &b, &step);
    }
    fold(lanes)
}

/// One group of [`sum_pairs`]' lanes: `group[j] = step(group[j], p[j], q[j])` for its 8 lanes.
#[inline(always)]
fn add_pairs<T: Float>(
    group: &mut [f64; TAIL_CHUNK],
    p: &[T],
    q: &[T],
    step: &impl Fn(f64, f64, f64) -> f64,
) {
    let (p, q) = (&p[..TAIL_CHUNK], &q[..TAIL_CHUNK]);
    for j in 0..TAIL_CHUNK {
        group[j] = step(group[j], p[j].to_f64(), q[j].to_f64());
    }
}

/// Σ x.
#[inline(always)]
pub fn sum<T: Float>(x: &[T]) -> f64 {
    blocked_sum(x, |v| v)
}

/// Σ x² (the mean square of RMSNorm; no cancellation there, all terms are ≥ 0).
#[inline(always)]
pub fn sum_squares<T: Float>(x: &[T]) -> f64 {
    blocked_sum(x, |v| v * v)
}

/// Two sums per position accumulated over many rows (column sums: per-channel statistics of
/// channel-last data, parameter gradients over the rows of a block). Each row adds into lanes of
/// the row's type, which are flushed into f64 every [`ColumnSums::FLUSH_ROWS`] rows, so every
/// lane sees at most that many additions (as a row sum's lanes see 1024 / 32) at f32 speed.
pub struct ColumnSums<T> {
    /// Both sums' lanes in one buffer, each starting on a cache line (at `at` and `at + gap`):
    /// 16 bytes off a line, every other vector the row adds split across two lines, and the
    /// parameter-gradient pass of the norm backward ran 1.4–1.6× slower (decisions.md).
    lanes: Vec<T>,
    at: usize,
    gap: usize,
    /// The first sum's f64 totals, then the second's (from [`spare`]).
    totals: Vec<f64>,
    pending: usize,
}

impl<T: Float> ColumnSums<T> {
    pub const FLUSH_ROWS: usize = 32;

    pub fn new(len: usize) -> Self {
        // Blocks without column sums (a backward without parameter gradients) allocate nothing.
        let (lanes, at, gap) = if len == 0 {
            (Vec::new(), 0, 0)
        } else {
            let size = std::mem::size_of::<T>();
            let per_line = (crate::simd::LINE / size).max(1);
            let gap = len.next_multiple_of(per_line);
            let lanes = vec![T::ZERO; 2 * gap + per_line];
            // The buffer is aligned to T, whose size divides a line.
            let at = (lanes.as_ptr() as usize).wrapping_neg() % crate::simd::LINE / size;
            (lanes, at, gap)
        };
        ColumnSums {
            lanes,
            at,
            gap,
            totals: spare::zeroed(2 * len),
            pending: 0,
        }
    }

    /// Both sums' lanes, `len` each (none once the block is finished).
    #[inline(always)]
    fn split(lanes: &mut [T], at: usize, gap: usize, len: usize) -> (&mut [T], &mut [T]) {
        if lanes.is_empty() {
            return (&mut [], &mut []);
        }
        let (first, second) = lanes[at..].split_at_mut(gap);
        (&mut first[..len], &mut second[..len])
    }

    /// Adds one row: `add(first_lanes, second_lanes)` adds the row's values into both.
    #[inline(always)]
    pub fn add_row<R>(&mut self, add: impl FnOnce(&mut [T], &mut [T]) -> R) -> R {
        let len = self.totals.len() / 2;
        let (first, second) = Self::split(&mut self.lanes, self.at, self.gap, len);
        let result = add(first, second);
        self.pending += 1;
        if self.pending == Self::FLUSH_ROWS {
            self.flush();
        }
        result
    }

    /// Adds `rows` rows, as that many [`ColumnSums::add_row`] calls would (the same flushes):
    /// `add(first_lanes, second_lanes, n)` adds the next `n` rows, a run that no flush splits,
    /// so a caller can keep the lanes in registers across it.
    #[inline(always)]
    pub fn add_rows(&mut self, rows: usize, mut add: impl FnMut(&mut [T], &mut [T], usize)) {
        let len = self.totals.len() / 2;
        let mut left = rows;
        while left > 0 {
            let n = left.min(Self::FLUSH_ROWS - self.pending);
            let (first, second) = Self::split(&mut self.lanes, self.at, self.gap, len);
            add(first, second, n);
            self.pending += n;
            left -= n;
            if self.pending == Self::FLUSH_ROWS {
                self.flush();
            }
        }
    }

    #[inline(always)]
    fn flush(&mut self) {
        let len = self.totals.len() / 2;
        let (first_total, second_total) = self.totals.split_at_mut(len);
        let (first, second) = Self::split(&mut self.lanes, self.at, self.gap, len);
        for (lanes, totals) in [(first, first_total), (second, second_total)] {
            for (total, lane) in totals.iter_mut().zip(lanes.iter_mut()) {
                *total += lane.to_f64();
                *lane = T::ZERO;
            }
        }
        self.pending = 0;
    }

    /// Ends a block: its lanes are flushed into the totals and freed, so the next block on this
    /// thread gets their memory back from the allocator.
    pub fn finish(&mut self) {
        self.flush();
        self.lanes = Vec::new();
    }

    /// Folds blocks' sums in the order given (so totals do not depend on the thread count),
    /// finishing any block not yet finished (a second `finish` adds nothing). Their totals go
    /// back to [`spare`].
    pub fn fold_in_order(blocks: Vec<Self>, len: usize) -> (Vec<f64>, Vec<f64>) {
        let (mut first, mut second) = (vec![0.0; len], vec![0.0; len]);
        for mut block in blocks {
            block.finish();
            let (a, b) = block.totals.split_at(len);
            for (t, v) in first.iter_mut().zip(a) {
                *t += v;
            }
            for (t, v) in second.iter_mut().zip(b) {
                *t += v;
            }
            spare::give(block.totals);
        }
        (first, second)
    }
}

/// The f64 totals of finished column sums, kept for the next call's. Allocated afresh, the 64
/// blocks of LayerNorm backward (4096, 1024) (1 MB of totals) were page-faulted in on every call:
/// glibc gives freed memory that size back to the system.
mod spare {
    use std::sync::Mutex;

    static SPARE: Mutex<Vec<Vec<f64>>> = Mutex::new(Vec::new());
    /// At most 8 MB kept.
    const MAX_VALUES: usize = 1 << 20;

    /// `len` zeros, in a kept buffer when one is large enough. `try_lock`: a thread that finds
    /// the list busy allocates instead of waiting (and a child process forked while another
    /// thread held the lock cannot hang on it).
    pub(super) fn zeroed(len: usize) -> Vec<f64> {
        if len == 0 {
            // Blocks without column sums (a backward without parameter gradients): no lock, and
            // no kept buffer taken out of use until the fold.
            return Vec::new();
        }
        let kept = SPARE.try_lock().ok().and_then(|mut spare| {
            let at = spare.iter().position(|v| v.capacity() >= len)?;
            Some(spare.swap_remove(at))
        });
        match kept {
            Some(mut v) => {
                v.clear();
                v.resize(len, 0.0);
                v
            }
            None => vec![0.0; len],
        }
    }

    /// Keeps `v` for a later [`zeroed`], unless that would keep more than [`MAX_VALUES`].
    pub(super) fn give(v: Vec<f64>) {
        if v.capacity() == 0 {
            return;
        }
        if let Ok(mut spare) = SPARE.try_lock() {
            let kept: usize = spare.iter().map(Vec::capacity).sum();
            if kept + v.capacity() <= MAX_VALUES {
                spare.push(v);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(super) fn naive_two_pass(x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        (mean, x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>())
    }

    pub(crate) fn noise(n: usize, seed: u64) -> Vec<f64> {
        // xorshift: deterministic, dependency-free test data in [-1, 1).
        let mut s = seed.max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    /// `dot` fuses the multiply only where the product is exact, so it has `sum_pairs`' bits
    /// whichever `MulAdd`; f64 keeps the rounded product (fused, these values would differ).
    #[test]
    fn dot_has_the_bits_of_the_separate_products() {
        use crate::fastmath::{Fused, Separate};
        for n in [0, 1, 7, 8, 31, 32, 33, 100, 1000, 4099] {
            let (p, q) = (noise(n, 3 + n as u64), noise(n, 11 + n as u64));
            // Scaled apart, so the f32 products span many binades and the lanes round.
            let p32: Vec<f32> = p.iter().map(|&v| (v * 1e4) as f32).collect();
            let q32: Vec<f32> = q.iter().map(|&v| (v * 1e-3) as f32).collect();
            let want = sum_pairs(&p32, &q32, |a, b| a * b).to_bits();
            assert_eq!(
                dot::<f32, Fused>(&p32, &q32).to_bits(),
                want,
                "f32 fused, n {n}"
            );
            assert_eq!(
                dot::<f32, Separate>(&p32, &q32).to_bits(),
                want,
                "f32 separate, n {n}"
            );
            let want = sum_pairs(&p, &q, |a, b| a * b).to_bits();
            assert_eq!(dot::<f64, Fused>(&p, &q).to_bits(), want, "f64, n {n}");
        }
        // The same f64 values with the multiply fused round differently somewhere: the test above
        // would catch a fused f64 path.
        let (p, q) = (noise(1000, 5), noise(1000, 9));
        let fused = sum_pairs_by(&p, &q, |acc, a, b| a.mul_add(b, acc));
        assert_ne!(fused.to_bits(), sum_pairs(&p, &q, |a, b| a * b).to_bits());
    }

    #[test]
    #[allow(clippy::float_cmp)] // small integers: exact in f32 and f64
    fn column_sums_lanes_start_on_cache_lines_and_sum_in_order() {
        fn check<T: Float>(len: usize) {
            let mut sums = ColumnSums::<T>::new(len);
            for row in 0..ColumnSums::<T>::FLUSH_ROWS + 3 {
                sums.add_row(|first, second| {
                    assert_eq!((first.len(), second.len()), (len, len));
                    for lanes in [&*first, &*second] {
                        assert_eq!(lanes.as_ptr() as usize % crate::simd::LINE, 0, "len {len}");
                    }
                    for (j, (a, b)) in first.iter_mut().zip(second.iter_mut()).enumerate() {
                        *a = *a + T::from_f64((row + j) as f64);
                        *b = *b + T::from_f64(1.0);
                    }
                });
            }
            let (first, second) = ColumnSums::fold_in_order(vec![sums], len);
            let rows = ColumnSums::<T>::FLUSH_ROWS + 3;
            for (j, (a, b)) in first.iter().zip(&second).enumerate() {
                assert_eq!(*a, (0..rows).map(|r| (r + j) as f64).sum::<f64>());
                assert_eq!(*b, rows as f64);
            }
        }
        for len in [1, 5, 16, 17, 1000, 1024] {
            check::<f32>(len);
            check::<f64>(len);
        }
        // No lanes without sums; finishing twice adds nothing.
        let mut none = ColumnSums::<f32>::new(0);
        none.add_row(|a, b| assert!(a.is_empty() && b.is_empty()));
        none.finish();
        assert_eq!(ColumnSums::fold_in_order(vec![none], 0), (vec![], vec![]));
    }

    #[test]
    #[allow(clippy::float_cmp)] // small integers, summed exactly
    fn column_sums_take_their_totals_zeroed_from_the_spare_list() {
        // A folded block's totals are kept and handed to the next block: they must start at
        // zero again, however dirty they were given back. A block left unfinished is finished
        // by the fold, one finished twice adds nothing more.
        let block = |rows: &[[f32; 3]], finish: bool| {
            let mut sums = ColumnSums::<f32>::new(3);
            for row in rows {
                sums.add_row(|a, b| {
                    for ((a, b), &v) in a.iter_mut().zip(b.iter_mut()).zip(row) {
                        *a += v;
                        *b += v * v;
                    }
                });
            }
            if finish {
                sums.finish();
            }
            sums
        };
        let rows = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let want = (vec![10.0, 14.0, 18.0], vec![34.0, 58.0, 90.0]);
        for _ in 0..3 {
            let blocks = vec![block(&rows, true), block(&[], false), block(&rows, false)];
            assert_eq!(ColumnSums::fold_in_order(blocks, 3), want);
        }
        spare::give(vec![7.0; 64]);
        assert!(spare::zeroed(6).iter().all(|&v| v == 0.0));
        assert_eq!(spare::zeroed(6).len(), 6);
    }

    #[test]
    fn sum_squares_matches() {
        let x = noise(100, 9);
        let want: f64 = x.iter().map(|v| v * v).sum();
        assert!((sum_squares(&x) - want).abs() < 1e-12);
    }
}
