//! Local response normalization across channels, with PyTorch's convention:
//! y = x / (k + α/n · Σ x²)^β over a window of n channels centred on c (n//2 before, (n−1)//2
//! after, zeros beyond the edges — the edge windows still divide by n).
//! AlexNet's paper and TensorFlow's `tf.nn.local_response_normalization` use α without the 1/n
//! (and TF's `depth_radius` r means n = 2r + 1): pass `alpha = α_tf · n` to reproduce them.

use crate::element::{Element, Float};
use crate::error::{Error, Result};
use crate::rows::{Ahead, RowsMut, RowsRef};

/// LRN parameters, checked by [`Lrn::new`].
#[derive(Clone, Copy, Debug)]
pub struct Lrn {
    pub size: usize,
    pub alpha: f64,
    pub beta: f64,
    pub k: f64,
}

impl Lrn {
    pub fn new(size: i64, alpha: f64, beta: f64, k: f64) -> Result<Self> {
        if size < 1 {
            return Err(Error::InvalidArgument(format!(
                "local_response_norm: size must be >= 1, got {size}"
            )));
        }
        for (name, v) in [("alpha", alpha), ("beta", beta), ("k", k)] {
            if !v.is_finite() {
                return Err(Error::InvalidArgument(format!(
                    "local_response_norm: {name} must be finite, got {v}"
                )));
            }
        }
        Ok(Lrn {
            size: size as usize,
            alpha,
            beta,
            k,
        })
    }

    /// The channels `[lo, hi]` in channel `c`'s window: n//2 before, (n−1)//2 after, cut at the
    /// edges.
    fn window(&self, c: usize, channels: usize) -> (usize, usize) {
        (
            c.saturating_sub(self.size / 2),
            c.saturating_add((self.size - 1) / 2).min(channels - 1),
        )
    }

    /// How base^(−β) is computed: β = 0.75 (AlexNet) and 0.5 as square roots, which vectorize
    /// where `powf` does not.
    #[allow(clippy::float_cmp)] // exactly these exponents have the square-root forms
    fn exponent(&self) -> Exponent {
        if self.beta == 0.75 {
            Exponent::ThreeQuarters
        } else if self.beta == 0.5 {
            Exponent::Half
        } else {
            Exponent::Other(self.beta)
        }
    }
}

/// The exponent's form, chosen once per call so that each kernel loop is compiled for one of them
/// (a branch on β per element kept the compiler from vectorizing the β = 0.5 loop).
#[derive(Clone, Copy)]
enum Exponent {
    ThreeQuarters,
    Half,
    Other(f64),
}

/// LRN of `x` viewed as rows (n, c) over the spatial dims, for `channels` channels.
pub fn local_response_norm<S: Element>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    channels: usize,
    p: Lrn,
) -> Result<()> {
    let n_rows = x.rows().n_rows();
    if channels == 0 || !n_rows.is_multiple_of(channels) || y.rows().n_rows() != n_rows {
        return Err(Error::ShapeMismatch(
            "local_response_norm: rows do not split into channels".into(),
        ));
    }
    let batch = n_rows / channels;
    let spatial = x.rows().row_len();
    // Rows read and written where they lie when they are contiguous native memory and y is not
    // x; otherwise a sample is gathered first (which also makes in place safe) and scattered after.
    let direct = |rows: &crate::layout::Rows| S::NATIVE && rows.inner().single_stride() == Some(1);
    // The tiles below read x and write y through raw rows: y must be x itself or apart from it.
    assert!(
        crate::rows::same_or_apart(x, y),
        "local_response_norm: out overlaps x"
    );
    let in_place = x.as_ptr().cast::<u8>() == y.as_mut_ptr().cast::<u8>().cast_const();
    let direct_x = direct(x.rows()) && !in_place;
    let direct_y = direct(y.rows()) && !in_place;
    // A task is one spatial tile of one sample when rows are used where they lie (so a batch of
    // one still spreads over the threads), a whole sample when it is gathered.
    let tiles_per_sample = if direct_x && direct_y {
        spatial.div_ceil(TILE).max(1)
    } else {
        1
    };
    let (xp, yp) = (x.as_ptr() as usize, y.as_mut_ptr() as usize);
    let work_per_task = channels * spatial.div_ceil(tiles_per_sample) * 2;
    crate::simd::for_each_range(
        batch * tiles_per_sample,
        work_per_task,
        #[inline(always)]
        |tasks| {
            let mut gathered: Vec<S::Compute> = Vec::new();
            let mut results: Vec<S::Compute> = Vec::new();
            let mut ring = SquaresRing::new(p.size.min(channels));
            let mut inputs: Vec<*const S::Compute> = Vec::with_capacity(channels);
            let mut outputs: Vec<*mut S::Compute> = Vec::with_capacity(channels);
            for task in tasks {
                let n = task / tiles_per_sample;
                let positions = if tiles_per_sample == 1 {
                    0..spatial
                } else {
                    let tile = task % tiles_per_sample;
                    tile * TILE..((tile + 1) * TILE).min(spatial)
                };
                let row_ptr = |base: usize, rows: &crate::layout::Rows, c: usize| {
                    (base as *const S).wrapping_offset(rows.row_offset(n * channels + c))
                };
                if !direct_x {
                    gathered.resize(channels * spatial, <S::Compute as Float>::ZERO);
                    for c in 0..channels {
                        let base = row_ptr(xp, x.rows(), c);
                        let row = &mut gathered[c * spatial..(c + 1) * spatial];
                        // SAFETY: the row's offsets lie inside the view's memory (its invariant).
                        x.rows().inner().for_each_offset(|s, off| {
                            row[s] = unsafe { *base.offset(off) }.load();
                        });
                    }
                }
                if !direct_y {
                    results.resize(channels * spatial, <S::Compute as Float>::ZERO);
                }
                // Row starts: where the rows lie (NATIVE: S is the compute type, contiguous
                // rows), or in the gathered and results buffers.
                inputs.clear();
                outputs.clear();
                for c in 0..channels {
                    inputs.push(if direct_x {
                        row_ptr(xp, x.rows(), c).cast()
                    } else {
                        gathered[c * spatial..].as_ptr()
                    });
                    outputs.push(if direct_y {
                        row_ptr(yp, y.rows(), c).cast_mut().cast()
                    } else {
                        results[c * spatial..].as_mut_ptr()
                    });
                }
                for start in positions.clone().step_by(TILE) {
                    let width = TILE.min(positions.end - start);
                    let (ins, outs, ring) = (&inputs[..], &outputs[..], &mut ring);
                    // SAFETY (each arm): every row has `spatial` values from its start; a
                    // task's positions of a sample are written by that task only, and y is
                    // not x (in place goes through the buffers).
                    match p.exponent() {
                        Exponent::ThreeQuarters => unsafe {
                            lrn_tile(ins, outs, start, width, ring, &p, inverse_three_quarters);
                        },
                        Exponent::Half => unsafe {
                            lrn_tile(ins, outs, start, width, ring, &p, inverse_sqrt);
                        },
                        Exponent::Other(beta) => {
                            let beta = <S::Compute as Float>::from_f64(beta);
                            let power =
                                |base: S::Compute| <S::Compute as Float>::ONE / base.powf(beta);
                            unsafe { lrn_tile(ins, outs, start, width, ring, &p, power) };
                        }
                    }
                }
                if !direct_y {
                    for c in 0..channels {
                        let base = row_ptr(yp, y.rows(), c).cast_mut();
                        let row = &results[c * spatial..(c + 1) * spatial];
                        // SAFETY: offsets inside the view; one task per sample.
                        y.rows().inner().for_each_offset(|s, off| unsafe {
                            *base.offset(off) = S::store(row[s]);
                        });
                    }
                }
            }
        },
    );
    Ok(())
}

#[inline(always)]
fn inverse_three_quarters<T: Float>(base: T) -> T {
    let root = base.sqrt();
    T::ONE / (root * root.sqrt())
}

#[inline(always)]
fn inverse_sqrt<T: Float>(base: T) -> T {
    T::ONE / base.sqrt()
}

/// Spatial positions per tile: a tile's window of squared rows stays in L1 (5 × 4 KB at the usual
/// size 5), while each row is still read in 4 KB runs the hardware prefetcher can follow.
const TILE: usize = 1024;
/// Positions summed together in registers (four AVX-512 vectors of f32).
const STEP: usize = 64;

/// The squares of the last channels of a tile, one row per channel in a ring: a channel's squares
/// are computed once, when it enters the window, and dropped when it leaves.
struct SquaresRing<T> {
    slots: usize,
    squares: Vec<T>,
    window: Vec<usize>,
    /// The window sums of a long window, per position of the tile.
    running: WindowSums,
}

impl<T: Float> SquaresRing<T> {
    /// `slots` ≥ the channels one window spans (min(size, channels)). A window longer than
    /// [`LONG_WINDOW`] keeps no ring (its rows are squared again as they leave; see
    /// [`lrn_tile_running`]), so a huge `size` costs no memory.
    fn new(slots: usize) -> Self {
        let kept = if slots > LONG_WINDOW { 0 } else { slots };
        SquaresRing {
            slots,
            squares: vec![T::ZERO; kept * TILE],
            window: Vec::with_capacity(kept),
            running: WindowSums::default(),
        }
    }

    /// Squares `row[..width]` into channel `c`'s slot.
    #[inline(always)]
    fn enter(&mut self, c: usize, row: &[T]) {
        let at = c % self.slots * TILE;
        for (s, &v) in self.squares[at..at + row.len()].iter_mut().zip(row) {
            *s = v * v;
        }
    }
}

/// LRN of positions `[start, start + width)` of a sample with channel rows starting at `inputs`,
/// written to the rows at `outputs`. Channels are taken in order with their window's squares
/// in the ring, so x and y are each one sequential run per channel.
///
/// # Safety
/// Each pointer is the start of a row with at least `start + width` values; the outputs do not
/// overlap the inputs or each other.
#[inline(always)]
unsafe fn lrn_tile<T: Float>(
    inputs: &[*const T],
    outputs: &[*mut T],
    start: usize,
    width: usize,
    ring: &mut SquaresRing<T>,
    p: &Lrn,
    inverse_power: impl Fn(T) -> T,
) {
    let channels = inputs.len();
    if ring.slots > LONG_WINDOW {
        // SAFETY: the caller's contract.
        unsafe {
            lrn_tile_running(
                inputs,
                outputs,
                start,
                width,
                &mut ring.running,
                p,
                inverse_power,
            );
        }
        return;
    }
    let after = (p.size - 1) / 2;
    // SAFETY: the caller's contract.
    let row = |c: usize| unsafe { std::slice::from_raw_parts(inputs[c].add(start), width) };
    for c in 0..after.min(channels) {
        ring.enter(c, row(c));
    }
    let scale = T::from_f64(p.alpha / p.size as f64);
    let k = T::from_f64(p.k);
    for (c, &output) in outputs.iter().enumerate() {
        if c + after < channels {
            ring.enter(c + after, row(c + after));
        }
        ring.window.clear();
        let (lo, hi) = p.window(c, channels);
        ring.window.extend((lo..=hi).map(|w| w % ring.slots * TILE));
        let (window, squares) = (&ring.window[..], &ring.squares[..]);
        // Rows are read and written in runs too short (4 KB, over two pages) for the hardware
        // prefetcher to follow, so while this channel computes, in step with its positions, the
        // input row entering two channels on and the output row written next are prefetched.
        // Without the output row the stores waited on memory: (32, 64, 56, 56) ran at 45% of
        // copy speed, 1.4× slower. Two channels ahead for the input, rather than one, gained only
        // together with it.
        let ahead = |row: Option<*const T>| match row {
            // Only an address (prefetches never fault); in bounds by the caller's contract.
            Some(row) => Ahead::of(row.wrapping_add(start), width),
            None => Ahead::NONE,
        };
        let next_in = ahead(inputs.get(c + after + 2).copied());
        let next_out = ahead(outputs.get(c + 1).map(|&row| row.cast_const()));
        let prefetch_bytes = STEP * std::mem::size_of::<T>();
        let x = row(c);
        // SAFETY: the caller's contract.
        let y = unsafe { std::slice::from_raw_parts_mut(output.add(start), width) };
        // The window summed in registers, STEP positions at a time; additions in ascending
        // channel order. A last partial step of at least STEP / 4 positions sums a whole STEP
        // too (a ring row has TILE values, so this stays inside it) and keeps the first
        // `width − body` results: rows shorter than a step (7×7 maps) had gone one position at
        // a time, at 3% of copy speed.
        let step_values = |at: usize| {
            let mut sums = [T::ZERO; STEP];
            for &slot in window {
                let sq: &[T; STEP] = squares[slot + at..slot + at + STEP]
                    .try_into()
                    .expect("STEP long");
                for (acc, &v) in sums.iter_mut().zip(sq) {
                    *acc = *acc + v;
                }
            }
            sums.map(|sq| inverse_power(k + scale * sq))
        };
        let body = width / STEP * STEP;
        for (i, (ys, xs)) in y[..body]
            .chunks_exact_mut(STEP)
            .zip(x[..body].chunks_exact(STEP))
            .enumerate()
        {
            let at = i * STEP;
            next_in.touch_span(at * std::mem::size_of::<T>(), prefetch_bytes);
            next_out.touch_span(at * std::mem::size_of::<T>(), prefetch_bytes);
            for ((o, &v), &f) in ys.iter_mut().zip(xs).zip(&step_values(at)) {
                *o = v * f;
            }
        }
        if width - body >= STEP / 4 {
            let factors = step_values(body);
            for ((o, &v), &f) in y[body..].iter_mut().zip(&x[body..]).zip(&factors) {
                *o = v * f;
            }
        } else {
            // A few positions: one at a time (the same additions, in the same order).
            for j in body..width {
                let sum = window
                    .iter()
                    .fold(T::ZERO, |acc, &slot| acc + squares[slot + j]);
                y[j] = x[j] * inverse_power(k + scale * sum);
            }
        }
    }
}

/// Windows spanning more channels than this are summed as a running sum (O(C) per position
/// instead of O(C · window): `size=10**9` over 49,795 channels took 76 s summed window by window).
/// Shorter ones keep the ring, whose additions in ascending channel order vectorize.
const LONG_WINDOW: usize = 32;

/// Per position of a tile: the f64 sum of a window's finite squares, and how many of its squares
/// are NaN and infinite. With the counts beside the sum, a NaN or inf that leaves the window
/// leaves no trace (as when each window is summed afresh).
#[derive(Default)]
struct WindowSums {
    finite: Vec<f64>,
    nans: Vec<u32>,
    infs: Vec<u32>,
}

impl WindowSums {
    fn reset(&mut self, width: usize) {
        for v in [&mut self.nans, &mut self.infs] {
            v.clear();
            v.resize(width, 0);
        }
        self.finite.clear();
        self.finite.resize(width, 0.0);
    }

    /// Adds (`enter`) or removes a row's squares.
    #[inline(always)]
    fn update<T: Float>(&mut self, row: &[T], enter: bool) {
        let parts = self
            .finite
            .iter_mut()
            .zip(&mut self.nans)
            .zip(&mut self.infs);
        for (((sum, nans), infs), &v) in parts.zip(row) {
            let v = v.to_f64();
            let sq = v * v;
            if sq.is_finite() {
                *sum += if enter { sq } else { -sq };
            } else {
                let count = if sq.is_nan() { nans } else { infs };
                *count = if enter { *count + 1 } else { *count - 1 };
            }
        }
    }

    #[inline(always)]
    fn total(&self, at: usize) -> f64 {
        if self.nans[at] > 0 {
            f64::NAN
        } else if self.infs[at] > 0 {
            f64::INFINITY
        } else {
            // A cancelled sum can leave a hair below zero.
            self.finite[at].max(0.0)
        }
    }
}

/// [`lrn_tile`] for long windows: per position a running sum of the window's squares, the
/// entering channel's squares added and the leaving one's (squared again from x) subtracted.
/// Squares of f32 values are exact in f64, so the sum only rounds once it outgrows 2⁵³ ulps of its
/// smallest terms; it is recomputed from scratch every window length of channels, which bounds
/// the drift (and a cancelled huge value) at O(1) amortized cost per channel.
///
/// # Safety
/// As [`lrn_tile`].
#[inline(always)]
unsafe fn lrn_tile_running<T: Float>(
    inputs: &[*const T],
    outputs: &[*mut T],
    start: usize,
    width: usize,
    sums: &mut WindowSums,
    p: &Lrn,
    inverse_power: impl Fn(T) -> T,
) {
    let channels = inputs.len();
    // SAFETY: the caller's contract.
    let row = |c: usize| unsafe { std::slice::from_raw_parts(inputs[c].add(start), width) };
    let span = p.size.min(channels);
    let scale = p.alpha / p.size as f64;
    let mut previous = (0, 0);
    for (c, &output) in outputs.iter().enumerate() {
        let (lo, hi) = p.window(c, channels);
        if c % span == 0 {
            sums.reset(width);
            for w in lo..=hi {
                sums.update(row(w), true);
            }
        } else {
            if hi > previous.1 {
                sums.update(row(hi), true);
            }
            if lo > previous.0 {
                sums.update(row(previous.0), false);
            }
        }
        previous = (lo, hi);
        // SAFETY: the caller's contract.
        let y = unsafe { std::slice::from_raw_parts_mut(output.add(start), width) };
        for (at, (o, &v)) in y.iter_mut().zip(row(c)).enumerate() {
            *o = v * inverse_power(T::from_f64(p.k + scale * sums.total(at)));
        }
    }
}
