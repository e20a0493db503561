//! Softmax and information measures over rows, with f64 accumulation.
//!
//! Softmax subtracts the row maximum, so logits of 1e4 never overflow; exp runs in the row's type
//! and its sum in f64. Information measures follow SciPy (scipy.stats.entropy,
//! scipy.special.rel_entr, scipy.spatial.distance.jensenshannon): each row is first divided by its
//! sum, 0·log 0 = 0, and p > 0 where q = 0 gives inf. Negative entries are reported to the caller.

use crate::element::{Element, Float};
use crate::error::{Error, Result};
use crate::reduce::{sum_pairs, BLOCK, LANES};
use crate::rows::{check_same_rows, map_rows, RowsMut, RowsRef};

/// The larger of a running maximum and `v`, NaN winning (a max that propagates NaN).
#[inline(always)]
fn keep<T: Float>(best: T, v: T) -> T {
    if v > best || v.partial_cmp(&v).is_none() {
        v
    } else {
        best
    }
}

/// Largest element of a row (NaN if any is NaN, as a max that propagates), over independent
/// lanes so the comparisons vectorize instead of forming one serial chain.
#[inline(always)]
fn row_max<T: Float>(x: &[T]) -> T {
    let mut lanes = [x[0]; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for j in 0..LANES {
            lanes[j] = keep(lanes[j], chunk[j]);
        }
    }
    let mut best = tail.iter().fold(x[0], |b, &v| keep(b, v));
    for &lane in &lanes {
        best = keep(best, lane);
    }
    best
}

/// log Σ exp(x) of a non-empty row, stable for any magnitude: max + ln Σ exp(x − max), the
/// exponentials summed in lanes of the row's type with f64 block totals (as softmax sums them).
#[inline(always)]
pub fn logsumexp<T: Float>(x: &[T]) -> f64 {
    let max = row_max(x);
    max.to_f64() + crate::reduce::sum_map(x, |v| (v - max).exp_nonpositive()).ln()
}

/// What [`cross_entropy_with_logits`] compares each row of logits with.
pub enum LogitTarget<'a, S> {
    /// One class index per row; rows whose index is `ignore` give no loss (None).
    Classes { index: &'a [i64], ignore: i64 },
    /// Class probabilities, rows like the logits'.
    Probabilities(&'a RowsRef<S>),
}

/// torch.nn.functional.cross_entropy of each row of logits (reduction 'none'): the cross-entropy
/// of softmax(x) against the target smoothed to (1 − ε)·target + ε/classes. With a class index t,
/// lse − (1 − ε)·x_t − ε·mean(x); with probabilities s, Σ s·(lse − x) in f64.
///
/// # Safety
/// As [`map_rows`].
pub unsafe fn cross_entropy_with_logits<S: Element>(
    x: &RowsRef<S>,
    target: &LogitTarget<'_, S>,
    label_smoothing: f64,
) -> Result<Vec<Option<f64>>> {
    const OP: &str = "cross_entropy_with_logits";
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::InvalidArgument(format!(
            "{OP}: label_smoothing must be in [0, 1], got {label_smoothing}"
        )));
    }
    let (n_rows, classes) = (x.rows.n_rows(), x.rows.row_len());
    if classes == 0 && n_rows > 0 {
        return Err(Error::EmptyReduction(format!(
            "{OP}: the class axis has zero elements"
        )));
    }
    let eps = label_smoothing;
    let mut out = vec![None; n_rows];
    let outputs: [&RowsMut<S>; 0] = [];
    match *target {
        LogitTarget::Classes { index, ignore } => {
            if index.len() != n_rows {
                return Err(Error::ShapeMismatch(format!(
                    "{OP}: {} class indices for {n_rows} rows",
                    index.len()
                )));
            }
            if let Some(bad) = index
                .iter()
                .find(|&&t| t != ignore && !(0..classes as i64).contains(&t))
            {
                return Err(Error::InvalidArgument(format!(
                    "{OP}: target {bad} is out of range for {classes} classes"
                )));
            }
            // SAFETY: forwarded from the caller.
            unsafe {
                map_rows(
                    [x],
                    outputs,
                    &mut out,
                    #[inline(always)]
                    |row, [x], []| {
                        // Not `bool::then`: its closure would be compiled outside the SIMD
                        // dispatch (without the target features), as a plain call.
                        let t = index[row];
                        if t == ignore {
                            return None;
                        }
                        let mean = crate::reduce::sum(x) / classes as f64;
                        Some(logsumexp(x) - (1.0 - eps) * x[t as usize].to_f64() - eps * mean)
                    },
                );
            }
        }
        LogitTarget::Probabilities(probs) => {
            check_same_rows(OP, &x.rows, &[("target", &probs.rows)])?;
            let uniform = eps / classes as f64;
            // SAFETY: forwarded from the caller.
            unsafe {
                map_rows(
                    [x, probs],
                    outputs,
                    &mut out,
                    #[inline(always)]
                    |_, [x, t], []| {
                        let lse = logsumexp(x);
                        Some(sum_pairs(
                            x,
                            t,
                            #[inline(always)]
                            |xv, tv| (tv * (1.0 - eps) + uniform) * (lse - xv),
                        ))
                    },
                );
            }
        }
    }
    Ok(out)
}

/// softmax (or log_softmax) of each row into `y`.
///
/// # Safety
/// As [`map_rows`]; `y` may be `x` itself.
pub unsafe fn softmax<S: Element>(x: &RowsRef<S>, y: &RowsMut<S>, log: bool) -> Result<()> {
    check_same_rows("softmax", &x.rows, &[("out", &y.rows)])?;
    if x.rows.row_len() == 0 && x.rows.n_rows() > 0 {
        return Err(Error::EmptyReduction(
            "softmax: the axis has zero elements".into(),
        ));
    }
    if let Some(columns) = ColumnLayout::of(x, y) {
        // SAFETY: forwarded from the caller.
        unsafe { softmax_columns(x, y, &columns, log) };
        return Ok(());
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        map_rows(
            [x],
            [y],
            &mut [],
            #[inline(always)]
            |row, [x_row], [y]| {
                // The next row (its first 32 KB, within L1) streams in while this one's
                // exponentials are computed; its max pass would otherwise wait on memory with
                // nothing to overlap. (4096, 1000) one thread: 1.13x.
                let next = x.ahead(row);
                next.touch_span(0, next.bytes().min(32 << 10));
                let x = x_row;
                let max = row_max(x);
                // Positive terms: the lane sum in the row's type with f64 block totals is exact enough.
                let sum = crate::reduce::sum_map_into(x, y, |v| (v - max).exp_nonpositive());
                if log {
                    let shift = <S::Compute as Float>::from_f64(sum.ln());
                    for (o, &v) in y.iter_mut().zip(x) {
                        *o = (v - max) - shift;
                    }
                } else {
                    let inv = <S::Compute as Float>::from_f64(1.0 / sum);
                    for o in y.iter_mut() {
                        *o = *o * inv;
                    }
                }
            },
        );
    }
    Ok(())
}

/// Columns per task of [`softmax_columns`]: with the usual few dozen classes, a block's rows
/// stay in L1 through the three passes.
const COLUMN_BLOCK: usize = 256;

/// A softmax axis that is not innermost, with a contiguous run of `width` values (other
/// positions) beside it in both x and y: softmax over the channels of NCHW, or axis 0 of a table.
/// Gathering each strided row was 10× slower than the last axis; down columns, every pass reads
/// contiguous runs.
struct ColumnLayout {
    /// Values along the axis, and its stride in x and in y.
    axis_len: usize,
    axis_stride: (isize, isize),
    /// Contiguous positions per run.
    width: usize,
    /// The remaining outer dims (runs of `width`) in x and in y.
    runs: (crate::layout::Dims, crate::layout::Dims),
}

impl ColumnLayout {
    /// Worth it from runs of 8 values; native types only (no conversion buffers).
    const MIN_WIDTH: usize = 8;

    fn of<S: Element>(x: &RowsRef<S>, y: &RowsMut<S>) -> Option<Self> {
        if !S::NATIVE {
            return None;
        }
        let split = |rows: &crate::layout::Rows| {
            let (&axis_stride, &width) = (rows.inner.strides.first()?, rows.outer.shape.last()?);
            let last = rows.outer.strides.len() - 1;
            (rows.inner.shape.len() == 1 && rows.outer.strides[last] == 1).then(|| {
                let runs = crate::layout::Dims::new(
                    &rows.outer.shape[..last],
                    &rows.outer.strides[..last],
                );
                (rows.inner.shape[0], axis_stride, width, runs)
            })
        };
        let (n, sx, width, runs_x) = split(&x.rows)?;
        let (ny, sy, width_y, runs_y) = split(&y.rows)?;
        (n == ny && width == width_y && width >= Self::MIN_WIDTH && runs_x.shape == runs_y.shape)
            .then_some(ColumnLayout {
                axis_len: n,
                axis_stride: (sx, sy),
                width,
                runs: (runs_x, runs_y),
            })
    }
}

/// Softmax down columns ([`ColumnLayout`]): per block of columns, the column maxima, then
/// exp(x − max) with f64 column sums, then the scaling, as the row form computes them.
///
/// # Safety
/// As [`softmax`]; the layout comes from [`ColumnLayout::of`] for these views.
unsafe fn softmax_columns<S: Element>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    layout: &ColumnLayout,
    log: bool,
) {
    let blocks_per_run = layout.width.div_ceil(COLUMN_BLOCK);
    let n_runs = layout.runs.0.len();
    let n = layout.axis_len;
    let (xp, yp) = (x.ptr as usize, y.ptr as usize);
    crate::simd::for_each_range(
        n_runs * blocks_per_run,
        n * COLUMN_BLOCK * 3,
        #[inline(always)]
        |tasks| {
            // The column sums' lanes, on the heap and zeroed once a range: 32–64 KB, which in
            // `column_block`'s frame had been zeroed (and its stack pages probed) every block.
            let mut lanes = vec![[<S::Compute as Float>::ZERO; COLUMN_BLOCK]; LANES];
            for task in tasks {
                let (run, block) = (task / blocks_per_run, task % blocks_per_run);
                let first = block * COLUMN_BLOCK;
                let width = COLUMN_BLOCK.min(layout.width - first);
                let at = |base: usize, dims: &crate::layout::Dims, stride: isize, k: usize| {
                    (base as *mut S::Compute)
                        .wrapping_offset(dims.offset(run) + k as isize * stride)
                        .wrapping_add(first)
                };
                let x_at = |k: usize| at(xp, &layout.runs.0, layout.axis_stride.0, k);
                let y_at = |k: usize| at(yp, &layout.runs.1, layout.axis_stride.1, k);
                // SAFETY: NATIVE (S is the compute type); `width` contiguous values from
                // each position are inside the views; a task's columns are its own; y is x
                // itself or disjoint from it.
                unsafe { column_block(n, width, x_at, y_at, log, &mut lanes) };
            }
        },
    );
}

/// `row`, or (in place, where y is x) a copy of it in `copy`, so reading it does not alias the
/// y row being written.
#[inline(always)]
fn readable<'a, T: Copy>(row: &'a [T], copy: &'a mut [T], in_place: bool) -> &'a [T] {
    if in_place {
        copy[..row.len()].copy_from_slice(row);
        &copy[..row.len()]
    } else {
        row
    }
}

/// The three passes of [`softmax_columns`] over one block of `width` ≤ `COLUMN_BLOCK` columns,
/// whose row k starts at `x_at(k)` and `y_at(k)`; `lanes` holds `LANES` zeroed lane arrays (and is
/// left so).
///
/// # Safety
/// Each row has `width` valid values; y rows are x rows themselves or disjoint from all x rows.
#[inline(always)]
unsafe fn column_block<T: Float>(
    n: usize,
    width: usize,
    x_at: impl Fn(usize) -> *mut T,
    y_at: impl Fn(usize) -> *mut T,
    log: bool,
    lanes: &mut [[T; COLUMN_BLOCK]],
) {
    // SAFETY (both): the caller's contract; a row of x is only read while no row of y is borrowed.
    let x_row = |k: usize| unsafe { std::slice::from_raw_parts(x_at(k).cast_const(), width) };
    let y_row = |k: usize| unsafe { std::slice::from_raw_parts_mut(y_at(k), width) };
    // In place, the passes that read x while writing y read a copy of the row ([`readable`]).
    let in_place = x_at(0) == y_at(0);
    let mut copy = [T::ZERO; COLUMN_BLOCK];
    let mut max = [T::ZERO; COLUMN_BLOCK];
    let max = &mut max[..width];
    max.copy_from_slice(x_row(0));
    for k in 1..n {
        for (m, &v) in max.iter_mut().zip(x_row(k)) {
            *m = keep(*m, v);
        }
    }
    // Each column summed as `sum_map_into` sums a row, so a column gives the bits its row would
    // (the contract: results do not depend on the layout): value k into lane k % LANES in T,
    // the lanes folded by the same halving tree into an f64 total every BLOCK values.
    let mut sums = [0.0f64; COLUMN_BLOCK];
    let sums = &mut sums[..width];
    for start in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - start);
        for k in start..start + len {
            let lane = &mut lanes[k % LANES][..width];
            if log {
                for ((s, &v), &m) in lane.iter_mut().zip(x_row(k)).zip(&*max) {
                    *s = *s + (v - m).exp_nonpositive();
                }
            } else {
                // y holds the exponentials until they are scaled.
                let x = readable(x_row(k), &mut copy, in_place);
                for (((s, o), &v), &m) in lane.iter_mut().zip(y_row(k)).zip(x).zip(&*max) {
                    *o = (v - m).exp_nonpositive();
                    *s = *s + *o;
                }
            }
        }
        fold_columns(lanes, len.min(LANES), sums);
    }
    let mut factor = [T::ZERO; COLUMN_BLOCK];
    let factor = &mut factor[..width];
    for (f, &s) in factor.iter_mut().zip(&*sums) {
        *f = T::from_f64(if log { s.ln() } else { 1.0 / s });
    }
    for k in 0..n {
        if log {
            let x = readable(x_row(k), &mut copy, in_place);
            for (((o, &v), &m), &shift) in y_row(k).iter_mut().zip(x).zip(&*max).zip(&*factor) {
                *o = (v - m) - shift;
            }
        } else {
            for (o, &inv) in y_row(k).iter_mut().zip(&*factor) {
                *o = *o * inv;
            }
        }
    }
}

/// Adds each column's `LANES` lanes (the first `active` hold values, the rest zeros) into `sums`
/// by [`crate::reduce`]'s halving tree, lane j taking lane j + width at each level, and empties
/// them. Zero lanes are skipped: adding +0 to a sum of exponentials changes no bit, and a
/// 10-class softmax would otherwise fold 32 lanes for 10 values.
#[inline(always)]
fn fold_columns<T: Float>(lanes: &mut [[T; COLUMN_BLOCK]], active: usize, sums: &mut [f64]) {
    let width = sums.len();
    let mut half = LANES;
    while half > 1 {
        half /= 2;
        for j in 0..half.min(active.saturating_sub(half)) {
            let (low, high) = lanes.split_at_mut(half);
            for (a, &b) in low[j][..width].iter_mut().zip(&high[j][..width]) {
                *a = *a + b;
            }
        }
    }
    for (s, &lane) in sums.iter_mut().zip(&lanes[0][..width]) {
        *s += lane.to_f64();
    }
    for lane in &mut lanes[..active] {
        lane[..width].fill(T::ZERO);
    }
}

/// Which information measure [`row_measure`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// −Σ p log p
    Entropy,
    /// Σ p log(p/q)
    KlDivergence,
    /// −Σ p log q
    CrossEntropy,
    /// ½ Σ [p log(p/m) + q log(q/m)], m = (p + q)/2
    JsDivergence,
}

/// ln x for f64, written without branches or int↔float casts so loops over it vectorize (libm's
/// ln is a call per element). x = m·2ᵉ with m in [√½, √2); ln m = 2·atanh(s), s = (m − 1)/(m + 1),
/// |s| ≤ 0.1716, with atanh(s)/s as 1 + z·P(z), z = s², P of degree 6 interpolating at its
/// Chebyshev nodes on [0, 0.1716²] (fitted in 50-digit arithmetic; within 5e-18 there, where
/// the Taylor series needs degree 11 for the same); e·ln 2 in a hi/lo split. Within 1 ulp of
/// libm over positive normals and subnormals (tested densely over the reduced range); ln 0 =
/// −inf, ln inf = inf, else NaN.
#[inline(always)]
#[allow(clippy::unreadable_literal)]
pub fn ln(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1; // ln 2 with its low 32 bits zero
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const TWO_54: f64 = 18_014_398_509_481_984.0;
    // 2⁵² as f64: or-ing an integer below 2⁵² into its mantissa and subtracting 2⁵² converts it.
    const MAGIC: u64 = 0x4330_0000_0000_0000;
    const TWO_52: f64 = 4_503_599_627_370_496.0;
    let subnormal = x < f64::MIN_POSITIVE;
    let scaled = if subnormal { x * TWO_54 } else { x };
    let bits = scaled.to_bits();
    let biased_exponent = f64::from_bits(MAGIC | ((bits >> 52) & 0x7ff)) - TWO_52;
    let mantissa = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let high = mantissa > std::f64::consts::SQRT_2;
    let m = if high { mantissa * 0.5 } else { mantissa };
    let e = biased_exponent - 1023.0 + if high { 1.0 } else { 0.0 }
        - if subnormal { 54.0 } else { 0.0 };
    // ln(1 + f) = f − s·(f − R) with s = f/(2 + f) and R = 2·atanh(s)/s − 2, arranged so that
    // the exact f leads and the rest is a correction: (f − R)·s as hfsq − s·(hfsq + R), hfsq =
    // f²/2. Forming 2·atanh(s) directly lost up to 4 ulp where e·ln 2 cancels most of it.
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    // atanh(s)/s − 1 = z·P(z).
    let r = 2.0
        * z
        * crate::element::horner(
            z,
            &[
                0.333_333_333_333_333_5,
                0.199_999_999_999_497_52,
                0.142_857_143_129_877_43,
                0.111_111_055_673_975_4,
                0.090_914_445_626_308_61,
                0.076_658_608_002_780_21,
                0.073_082_248_425_217_03,
            ],
        );
    let hfsq = 0.5 * f * f;
    let result = e * LN2_HI - ((hfsq - (s * (hfsq + r) + e * LN2_LO)) - f);
    if x > 0.0 && x < f64::INFINITY {
        result
    } else if x == 0.0 {
        f64::NEG_INFINITY
    } else if x == f64::INFINITY {
        x
    } else {
        f64::NAN
    }
}

/// `value` (a term of x and y) where x > 0 and y > 0, else SciPy's rel_entr cases: 0 for
/// x = 0 ≤ y, NaN for NaN, inf otherwise. Selects, not branches, so rows vectorize.
#[inline(always)]
fn with_entropy_cases(x: f64, y: f64, value: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        value
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else {
        f64::INFINITY
    }
}

/// x·ln(x/y) with SciPy's rel_entr conventions.
#[inline(always)]
fn rel_entr(x: f64, y: f64) -> f64 {
    rel_entr_of_ratio(x, y, x / y)
}

/// [`rel_entr`] given x/y already formed (JS divergence multiplies by one reciprocal of its m).
#[inline(always)]
fn rel_entr_of_ratio(x: f64, y: f64, ratio: f64) -> f64 {
    with_entropy_cases(x, y, x * ln(ratio))
}

/// −x·ln y, the cross-entropy term, with the cases of `rel_entr(x, y) − rel_entr(x, 1)` in one
/// logarithm instead of two.
#[inline(always)]
fn cross_term(x: f64, y: f64) -> f64 {
    with_entropy_cases(x, y, -x * ln(y))
}

/// The measure of one row pair (p, q), both normalized to sum 1 first; NaN propagates. Returns
/// None when an entry is negative.
#[inline(always)]
pub fn measure_row<T: Float>(measure: Measure, p: &[T], q: Option<&[T]>) -> Option<f64> {
    // A fold without early exit vectorizes; `any` would stop at each element to test.
    #[allow(clippy::needless_bitwise_bool)] // `||` would branch per element
    let negative = |x: &[T]| x.iter().fold(false, |seen, &v| seen | (v < T::ZERO));
    if negative(p) || q.is_some_and(negative) {
        return None;
    }
    let p_share = Share::of_total(crate::reduce::sum(p));
    let q_share = q.map_or(Share::IDENTITY, |q| Share::of_total(crate::reduce::sum(q)));
    let q = q.unwrap_or(p);
    Some(match measure {
        Measure::Entropy => -sum_pairs(
            p,
            p,
            #[inline(always)]
            |a, _| rel_entr(p_share.of(a), 1.0),
        ),
        Measure::KlDivergence => sum_pairs(
            p,
            q,
            #[inline(always)]
            |a, b| rel_entr(p_share.of(a), q_share.of(b)),
        ),
        Measure::CrossEntropy => sum_pairs(
            p,
            q,
            #[inline(always)]
            |a, b| cross_term(p_share.of(a), q_share.of(b)),
        ),
        Measure::JsDivergence => {
            0.5 * sum_pairs(
                p,
                q,
                #[inline(always)]
                |a, b| {
                    let (a, b) = (p_share.of(a), q_share.of(b));
                    let m = 0.5 * (a + b);
                    let to_m = 1.0 / m;
                    rel_entr_of_ratio(a, m, a * to_m) + rel_entr_of_ratio(b, m, b * to_m)
                },
            )
        }
    })
}

/// An entry's share of its row's total, x · scale · inverse = x / total: entries are normalized
/// by multiplying (an f64 division per entry had cost as much as the logarithm); `scale` is 2⁵⁴
/// for a subnormal total, whose inverse alone would overflow, and exact either way.
#[derive(Clone, Copy)]
struct Share {
    scale: f64,
    inverse: f64,
}

impl Share {
    /// Entries as they are (q absent: entropy).
    const IDENTITY: Share = Share {
        scale: 1.0,
        inverse: 1.0,
    };

    #[inline(always)]
    fn of_total(total: f64) -> Self {
        const TWO_54: f64 = 18_014_398_509_481_984.0;
        if total < f64::MIN_POSITIVE {
            Share {
                scale: TWO_54,
                inverse: 1.0 / (total * TWO_54),
            }
        } else {
            Share {
                scale: 1.0,
                inverse: 1.0 / total,
            }
        }
    }

    #[inline(always)]
    fn of(self, x: f64) -> f64 {
        x * self.scale * self.inverse
    }
}

/// The measure of every row of `p` (and `q`); `out[row]` is None where a row had a negative entry.
///
/// # Safety
/// As [`map_rows`].
pub unsafe fn row_measure<S: Element>(
    measure: Measure,
    p: &RowsRef<S>,
    q: Option<&RowsRef<S>>,
) -> Result<Vec<Option<f64>>> {
    if p.rows.row_len() == 0 && p.rows.n_rows() > 0 {
        return Err(Error::EmptyReduction(
            "the distributions have zero entries along axis".into(),
        ));
    }
    let mut out = vec![None; p.rows.n_rows()];
    let outputs: [&RowsMut<S>; 0] = [];
    // SAFETY: forwarded from the caller.
    unsafe {
        match q {
            Some(q) => {
                check_same_rows("divergence", &p.rows, &[("q", &q.rows)])?;
                map_rows(
                    [p, q],
                    outputs,
                    &mut out,
                    #[inline(always)]
                    |_, [p, q], []| measure_row(measure, p, Some(q)),
                );
            }
            None => map_rows(
                [p],
                outputs,
                &mut out,
                #[inline(always)]
                |_, [p], []| measure_row(measure, p, None),
            ),
        }
    }
    Ok(out)
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
    // Each sample as (value, weight) sorted by value; cumulative weight fractions give the CDFs.
    let sorted = |values: &[f64], weights: Option<&[f64]>| -> Vec<(f64, f64)> {
        let mut pairs: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, &x)| (x, weights.map_or(1.0, |w| w[i])))
            .collect();
        crate::parallel::sort_unstable_by(&mut pairs, |a, b| a.0.total_cmp(&b.0));
        pairs
    };
    let (us, vs) = crate::parallel::join(|| sorted(u, u_weights), || sorted(v, v_weights));
    let (u_total, v_total) = (
        us.iter().map(|p| p.1).sum::<f64>(),
        vs.iter().map(|p| p.1).sum::<f64>(),
    );
    // Sweep the merged support: between consecutive support points both CDFs are constant.
    let (mut i, mut j) = (0, 0);
    let (mut u_cdf, mut v_cdf) = (0.0f64, 0.0f64);
    let mut previous: Option<f64> = None;
    let mut distance = 0.0;
    while i < us.len() || j < vs.len() {
        let next = match (us.get(i), vs.get(j)) {
            (Some(a), Some(b)) => a.0.min(b.0),
            (Some(a), None) => a.0,
            (None, Some(b)) => b.0,
            (None, None) => unreachable!(),
        };
        if let Some(prev) = previous {
            distance += (u_cdf - v_cdf).abs() * (next - prev);
        }
        let (i0, j0) = (i, j);
        while i < us.len() && us[i].0 <= next {
            u_cdf += us[i].1 / u_total;
            i += 1;
        }
        while j < vs.len() && vs[j].0 <= next {
            v_cdf += vs[j].1 / v_total;
            j += 1;
        }
        // SciPy steps through the merged values one by one: a repeated ±inf there is a step of
        // inf − inf, which makes the distance NaN.
        if next.is_infinite() && (i - i0) + (j - j0) > 1 {
            return Ok(f64::NAN);
        }
        previous = Some(next);
    }
    Ok(distance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::float_cmp)] // exact special values
    fn ln_within_one_ulp_of_libm() {
        let ulp = |v: f64| f64::from_bits(v.abs().to_bits() + 1) - v.abs();
        let check = |v: f64| {
            let (got, want) = (ln(v), v.ln());
            assert!(
                (got - want).abs() <= ulp(want).max(f64::MIN_POSITIVE),
                "ln({v:e}): {got} vs {want}"
            );
        };
        let mut x = 4.9e-324f64; // smallest subnormal, then up by irregular factors to the top
        while x < f64::MAX / 1.37 {
            for v in [x, x * 1.000_000_1, x * 0.71, x * 1.42] {
                check(v);
            }
            // (Among subnormals x·1.37 can round back to x: step at least one ulp.)
            x = (x * 1.37).max(f64::from_bits(x.to_bits() + 1));
        }
        // Densely over the reduced range [√½, √2) and beside 1, where the polynomial does the work.
        let dense = (0..400_000).map(|i| 0.70 + f64::from(i) * 1.8e-6);
        let near_one =
            (1..20_000).flat_map(|i| [1.0 + f64::from(i) * 1e-12, 1.0 - f64::from(i) * 1e-12]);
        let edges = [
            1.0 + f64::EPSILON,
            1.0 - f64::EPSILON / 2.0,
            0.999,
            1.001,
            2.0,
            0.5,
        ];
        dense.chain(near_one).chain(edges).for_each(check);
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert_eq!(ln(f64::INFINITY), f64::INFINITY);
        assert!(ln(-1.0).is_nan() && ln(f64::NAN).is_nan() && ln(f64::NEG_INFINITY).is_nan());
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn measures_follow_scipy_conventions() {
        let p = [0.5f64, 0.5, 0.0];
        let q = [0.25f64, 0.25, 0.5];
        let h = measure_row(Measure::Entropy, &p, None).unwrap();
        assert!((h - std::f64::consts::LN_2).abs() < 1e-15);
        let kl = measure_row(Measure::KlDivergence, &p, Some(&q)).unwrap();
        assert!((kl - std::f64::consts::LN_2).abs() < 1e-15);
        assert!(measure_row(Measure::KlDivergence, &q, Some(&p))
            .unwrap()
            .is_infinite());
        let js = measure_row(Measure::JsDivergence, &[1.0f64, 0.0], Some(&[0.0, 1.0])).unwrap();
        assert!((js - std::f64::consts::LN_2).abs() < 1e-15);
        assert!(measure_row(Measure::Entropy, &[1.0f64, -0.1], None).is_none());
        // Unnormalized input is normalized first.
        let h2 = measure_row(Measure::Entropy, &[2.0f64, 2.0], None).unwrap();
        assert!((h2 - std::f64::consts::LN_2).abs() < 1e-15);
    }

    #[test]
    fn softmax_of_huge_logits_is_finite() {
        assert!((logsumexp(&[1e4f32, 1e4]) - (1e4 + std::f64::consts::LN_2)).abs() < 1e-9);
    }

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
}
