//! Information measures over rows (entropy, KL, cross-entropy, Jensen-Shannon), with f64
//! accumulation. They follow SciPy (scipy.stats.entropy, scipy.special.rel_entr,
//! scipy.spatial.distance.jensenshannon): each row is first divided by its sum, 0·log 0 = 0, and
//! p > 0 where q = 0 gives inf. Negative entries are reported to the caller.

use crate::element::{Element, Float};
use crate::error::{reduction_axis, shape_str, Error, Result};
use crate::fastmath::{ln_normal, ln_with, MulAdd};
use crate::reduce::{sum_pairs, LANES};
use crate::rows::{
    check_same_rows, contiguous, map_rows_weighted, without_axis, ArrayRef, Reduced, RowsMut,
    RowsRef, SharedMut,
};

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
    /// √(JS divergence), scipy.spatial.distance.jensenshannon
    JsDistance,
}

impl Measure {
    /// The public function's name, which starts its messages.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Entropy => "entropy",
            Measure::KlDivergence => "kl_div",
            Measure::CrossEntropy => "cross_entropy",
            Measure::JsDivergence => "js_divergence",
            Measure::JsDistance => "js_distance",
        }
    }
}

impl std::str::FromStr for Measure {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        [
            Measure::Entropy,
            Measure::KlDivergence,
            Measure::CrossEntropy,
            Measure::JsDivergence,
            Measure::JsDistance,
        ]
        .into_iter()
        .find(|m| m.name() == name)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown information measure {name:?}")))
    }
}

/// `measure` of the distributions along `axis` of `p` (and `q`, of p's shape): one value per
/// position of the other dims, in units of `base` (natural log when None; for js_distance the
/// divergence is converted before its square root, as SciPy does).
pub fn information<S: Element>(
    measure: Measure,
    p: &ArrayRef<S>,
    q: Option<&ArrayRef<S>>,
    axis: i64,
    base: Option<f64>,
) -> Result<Reduced> {
    let op = measure.name();
    // ln(base) divides every result: it must be finite and non-zero (base 1 is not a base).
    let scale = match base {
        None => 1.0,
        Some(b) if b > 0.0 && b.is_finite() && b.ln().abs() > 0.0 => b.ln(),
        Some(b) => {
            return Err(Error::InvalidArgument(format!(
                "{op}: base must be positive, finite and not 1, got {b}"
            )))
        }
    };
    let axis = reduction_axis(op, p.shape(), axis)?;
    if let Some(q) = q.filter(|q| q.shape() != p.shape()) {
        return Err(Error::InvalidArgument(format!(
            "{op}: q has shape {}, p has {}",
            shape_str(q.shape()),
            shape_str(p.shape())
        )));
    }
    let qv = q.map(|q| q.rows_along(axis));
    let rows = row_measure(measure, &p.rows_along(axis), qv.as_ref())?;
    let finish = |v: f64| match measure {
        Measure::JsDistance => (v.max(0.0) / scale).sqrt(),
        _ => v / scale,
    };
    let values = rows
        .into_iter()
        .map(|r| r.map(finish))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            Error::InvalidArgument(format!("{op}: probabilities must be non-negative"))
        })?;
    Ok(Reduced {
        values,
        shape: without_axis(p.shape(), axis),
    })
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

/// x·ln(ratio), ratio = x/y formed by the caller (JS divergence multiplies by one reciprocal of
/// its m), with SciPy's rel_entr cases unless `CLEAN`: rows whose shares are all positive normals
/// (see [`measure_row`]) take `ln_normal` and only the padding's case, x = 0 (the same bits).
#[inline(always)]
fn x_ln_ratio<M: MulAdd, const CLEAN: bool>(x: f64, y: f64, ratio: f64) -> f64 {
    if CLEAN {
        if x > 0.0 {
            x * ln_normal::<M>(ratio)
        } else {
            0.0
        }
    } else {
        with_entropy_cases(x, y, x * ln_with::<M>(ratio))
    }
}

/// −x·ln y, the cross-entropy term, with the cases of `rel_entr(x, y) − rel_entr(x, 1)` in one
/// logarithm instead of two (`CLEAN` as in [`x_ln_ratio`]).
#[inline(always)]
fn cross_term<M: MulAdd, const CLEAN: bool>(x: f64, y: f64) -> f64 {
    if CLEAN {
        if x > 0.0 {
            -x * ln_normal::<M>(y)
        } else {
            0.0
        }
    } else {
        with_entropy_cases(x, y, -x * ln_with::<M>(y))
    }
}

/// The smallest share from which a row is clean: every ratio the measures take of shares in
/// [`CLEAN_FROM`, 1] (p/q, p/m, q/m, and the shares themselves) is then a positive normal.
const CLEAN_FROM: f64 = 4.0 * f64::MIN_POSITIVE;

/// `b` where it is below `a`, else `a`: a running minimum that skips NaN.
#[inline(always)]
fn smaller<T: Float>(a: T, b: T) -> T {
    if b < a {
        b
    } else {
        a
    }
}

/// The smallest entry of a row (NaN skipped; +inf for none), in lanes: a fold of one `min`
/// chain does not vectorize.
#[inline(always)]
fn smallest<T: Float>(x: &[T]) -> T {
    let none = T::from_f64(f64::INFINITY);
    let mut lanes = [none; LANES];
    let wide = x.chunks_exact(LANES);
    let tail = wide.remainder().iter().fold(none, |m, &v| smaller(m, v));
    for chunk in wide {
        for j in 0..LANES {
            lanes[j] = smaller(lanes[j], chunk[j]);
        }
    }
    lanes.iter().fold(tail, |m, &v| smaller(m, v))
}

/// The measure of one row pair (p, q), both normalized to sum 1 first; NaN propagates. Returns
/// None when an entry is negative. `M`: how the logarithm rounds (see [`MulAdd`]).
#[inline(always)]
pub fn measure_row<T: Float, M: MulAdd>(measure: Measure, p: &[T], q: Option<&[T]>) -> Option<f64> {
    // `match`, not `Option::map_or`: that is not inlined, and the scan and sum it was given ran
    // outside the SIMD dispatch, unvectorized (a tenth of a cross-entropy row).
    let (q_low, q_share) = match q {
        Some(q) => (smallest(q), Share::of_total(crate::reduce::sum(q))),
        None => (T::from_f64(f64::INFINITY), Share::IDENTITY),
    };
    let p_low = smallest(p);
    if p_low < T::ZERO || q_low < T::ZERO {
        return None;
    }
    let p_share = Share::of_total(crate::reduce::sum(p));
    // Clean when the smallest shares reach CLEAN_FROM: no zero, NaN or infinity anywhere (a NaN
    // or inf total makes the smallest share NaN or 0), and every share at most 1 (a rounded sum
    // of positive entries is at least each of them). Most rows are; the cases cost the
    // logarithm's loop a third of its instructions.
    #[allow(clippy::float_cmp)] // the scale is exactly 1 or 2⁵⁴
    let clean = |share: Share, low: T| share.scale == 1.0 && share.of(low.to_f64()) >= CLEAN_FROM;
    let clean = clean(p_share, p_low) && clean(q_share, q_low);
    Some(if clean {
        measure_terms::<T, M, true>(measure, p, q, p_share, q_share)
    } else {
        measure_terms::<T, M, false>(measure, p, q, p_share, q_share)
    })
}

/// `$body` with `$k` naming the [`Term`] of `$measure`: each measure's loop is its own code.
macro_rules! with_term {
    ($measure:expr, $k:ident => $body:expr) => {
        match $measure {
            Measure::Entropy => {
                type $k = EntropyTerm;
                $body
            }
            Measure::KlDivergence => {
                type $k = KlTerm;
                $body
            }
            Measure::CrossEntropy => {
                type $k = CrossTerm;
                $body
            }
            Measure::JsDivergence | Measure::JsDistance => {
                type $k = JsTerm;
                $body
            }
        }
    };
}

/// [`measure_row`]'s sum over the row of non-negative entries, with every case (`CLEAN` false) or
/// none.
#[inline(always)]
fn measure_terms<T: Float, M: MulAdd, const CLEAN: bool>(
    measure: Measure,
    p: &[T],
    q: Option<&[T]>,
    p_share: Share,
    q_share: Share,
) -> f64 {
    with_term!(measure, K => row_terms::<T, M, CLEAN, K>(p, q, p_share, q_share))
}

/// [`measure_terms`] of one measure: its terms of the normalized pairs, summed.
#[inline(always)]
fn row_terms<T: Float, M: MulAdd, const CLEAN: bool, K: Term>(
    p: &[T],
    q: Option<&[T]>,
    p_share: Share,
    q_share: Share,
) -> f64 {
    let q = q.unwrap_or(p);
    // A clean row's total is normal (scale 1): x · 1 · inverse is x · inverse, one multiply less.
    let (p_share, q_share) = if CLEAN {
        (p_share.unscaled(), q_share.unscaled())
    } else {
        (p_share, q_share)
    };
    K::total(sum_pairs(
        p,
        q,
        #[inline(always)]
        |a, b| K::at::<M, CLEAN>(p_share.of(a), q_share.of(b)),
    ))
}

/// A measure as a term of a pair of normalized entries (a of p, b of q; entropy reads a alone)
/// and what its sum becomes: one definition for rows taken one at a time and in tiles.
trait Term {
    fn at<M: MulAdd, const CLEAN: bool>(a: f64, b: f64) -> f64;

    #[inline(always)]
    fn total(sum: f64) -> f64 {
        sum
    }
}

struct EntropyTerm;
struct KlTerm;
struct CrossTerm;
struct JsTerm;

impl Term for EntropyTerm {
    #[inline(always)]
    fn at<M: MulAdd, const CLEAN: bool>(a: f64, _: f64) -> f64 {
        x_ln_ratio::<M, CLEAN>(a, 1.0, a / 1.0)
    }

    #[inline(always)]
    fn total(sum: f64) -> f64 {
        -sum
    }
}

impl Term for KlTerm {
    #[inline(always)]
    fn at<M: MulAdd, const CLEAN: bool>(a: f64, b: f64) -> f64 {
        x_ln_ratio::<M, CLEAN>(a, b, a / b)
    }
}

impl Term for CrossTerm {
    #[inline(always)]
    fn at<M: MulAdd, const CLEAN: bool>(a: f64, b: f64) -> f64 {
        cross_term::<M, CLEAN>(a, b)
    }
}

impl Term for JsTerm {
    #[inline(always)]
    fn at<M: MulAdd, const CLEAN: bool>(a: f64, b: f64) -> f64 {
        let m = 0.5 * (a + b);
        let to_m = 1.0 / m;
        x_ln_ratio::<M, CLEAN>(a, m, a * to_m) + x_ln_ratio::<M, CLEAN>(b, m, b * to_m)
    }

    #[inline(always)]
    fn total(sum: f64) -> f64 {
        0.5 * sum
    }
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

    /// The same shares as `self` where its scale is 1, with the multiply by it known to be one.
    #[inline(always)]
    fn unscaled(self) -> Self {
        Share {
            scale: 1.0,
            inverse: self.inverse,
        }
    }

    #[inline(always)]
    fn of(self, x: f64) -> f64 {
        x * self.scale * self.inverse
    }
}

/// A native view's values in their compute type (the same type).
fn compute_slice<S: Element>(x: &[S]) -> &[S::Compute] {
    assert!(S::NATIVE, "compute_slice: a converted type");
    // SAFETY: NATIVE means S::Compute is S: the same values, size and alignment.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) }
}

/// Rows per tile of [`measure_tiles`]: one per f64 lane of a 512-bit vector.
const TILE: usize = 8;

/// [`measure_row`] of short rows (fewer than [`LANES`] entries) a tile of [`TILE`] rows at a time,
/// across the rows: entry j of the tile's rows is one vector, so the logarithm, the sums and the
/// lane folds run on full vectors where one 10-value row filled two of eight lanes and paid the
/// folds alone (about 70 ns a row, NumPy's `-(p * log p).sum(-1)` 32). Every row gets the bits
/// [`measure_row`] gives it: the same operations in the same order, lane by lane (a sum's padding
/// included). `p` (and `q`) hold the rows one after another; `out` has one slot per row.
fn measure_tiles<T: Float, M: MulAdd>(
    measure: Measure,
    p: &[T],
    q: Option<&[T]>,
    row_len: usize,
    out: &mut [Option<f64>],
) {
    debug_assert!(row_len > 0 && row_len < LANES && p.len() == out.len() * row_len);
    let tiles = out.len() / TILE;
    let slots = SharedMut(out.as_mut_ptr());
    let tile_values = TILE * row_len;
    crate::simd::for_each_range(
        tiles,
        tile_values * 8 * if q.is_some() { 2 } else { 1 },
        #[inline(always)]
        |range| {
            let mut scratch = TileScratch::<T>::new();
            for t in range {
                let values = t * tile_values..(t + 1) * tile_values;
                let p = &p[values.clone()];
                // `Option::map`'s closure was compiled outside the SIMD dispatch (3% of a
                // short-row profile, with its result copied).
                #[allow(clippy::manual_map)]
                let q = match q {
                    Some(q) => Some(&q[values]),
                    None => None,
                };
                let s = &mut scratch;
                let results = with_term!(measure, K => tile_measure::<T, M, K>(p, q, row_len, s));
                for (r, result) in results.into_iter().enumerate() {
                    // SAFETY: slot t·TILE + r < tiles·TILE ≤ out.len(); tile t is this task's.
                    unsafe { *slots.at(t * TILE + r) = result };
                }
            }
        },
    );
    // The last rows, fewer than a tile, one at a time.
    for (row, slot) in out.iter_mut().enumerate().skip(tiles * TILE) {
        let values = row * row_len..(row + 1) * row_len;
        *slot = measure_row::<T, M>(measure, &p[values.clone()], q.map(|q| &q[values]));
    }
}

/// A task's columns and lanes for [`tile_measure`], zeroed once: a tile writes the columns and
/// lanes below its row length (or chunk end) and its folds add 0 + 0 above them, so they stay 0
/// for the next tile (zeroing them per tile was a tenth of the time).
struct TileScratch<T> {
    p: [[T; TILE]; LANES],
    q: [[T; TILE]; LANES],
    sums: [[T; TILE]; LANES],
    terms: [[f64; TILE]; LANES],
}

impl<T: Float> TileScratch<T> {
    fn new() -> Self {
        TileScratch {
            p: [[T::ZERO; TILE]; LANES],
            q: [[T::ZERO; TILE]; LANES],
            sums: [[T::ZERO; TILE]; LANES],
            terms: [[0.0; TILE]; LANES],
        }
    }
}

/// One tile of [`measure_tiles`]: `p` (and `q`) are [`TILE`] rows of `row_len` entries.
#[inline(always)]
fn tile_measure<T: Float, M: MulAdd, K: Term>(
    p: &[T],
    q: Option<&[T]>,
    row_len: usize,
    s: &mut TileScratch<T>,
) -> [Option<f64>; TILE] {
    // Entry j of row r at [j][r]; entries past the row are 0, as `sum`'s and `sum_pairs`'
    // padding.
    to_columns(p, row_len, &mut s.p);
    let none = [T::from_f64(f64::INFINITY); TILE];
    let shares = |sums: [f64; TILE]| {
        let mut shares = [Share::IDENTITY; TILE];
        for r in 0..TILE {
            shares[r] = Share::of_total(sums[r]);
        }
        shares
    };
    let (q_low, q_share) = match q {
        Some(q) => {
            to_columns(q, row_len, &mut s.q);
            let sums = columns_sum(&s.q, row_len, &mut s.sums);
            (columns_smallest(&s.q, row_len), shares(sums))
        }
        None => (none, [Share::IDENTITY; TILE]),
    };
    let p_low = columns_smallest(&s.p, row_len);
    let p_share = shares(columns_sum(&s.p, row_len, &mut s.sums));
    #[allow(clippy::float_cmp)] // the scale is exactly 1 or 2⁵⁴
    let clean = |share: Share, low: T| share.scale == 1.0 && share.of(low.to_f64()) >= CLEAN_FROM;
    let mut all_clean = true;
    for r in 0..TILE {
        all_clean &= clean(p_share[r], p_low[r]) && clean(q_share[r], q_low[r]);
    }
    let qc = if q.is_some() { &s.q } else { &s.p };
    let sums = if all_clean {
        let unscaled = |mut shares: [Share; TILE]| {
            for share in &mut shares {
                *share = share.unscaled();
            }
            shares
        };
        let (ps, qs) = (unscaled(p_share), unscaled(q_share));
        columns_terms::<T, M, true, K>(&s.p, qc, ps, qs, row_len, &mut s.terms)
    } else {
        columns_terms::<T, M, false, K>(&s.p, qc, p_share, q_share, row_len, &mut s.terms)
    };
    // Loops, not `array::from_fn` or `then`, whose closures were compiled outside the SIMD
    // dispatch.
    let mut results = [None; TILE];
    for r in 0..TILE {
        if p_low[r] >= T::ZERO && q_low[r] >= T::ZERO {
            results[r] = Some(K::total(sums[r]));
        }
    }
    results
}

/// A tile's rows into columns: entry j of row r at [j][r] (columns from `row_len` untouched).
#[inline(always)]
fn to_columns<T: Float>(x: &[T], row_len: usize, c: &mut [[T; TILE]; LANES]) {
    for (r, row) in x.chunks_exact(row_len).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            c[j][r] = v;
        }
    }
}

/// Each row's `reduce::sum` (lanes 0 + x, the fold, 0 + the folded lane), lane by lane; `acc`'s
/// lanes from `row_len` are 0.
#[inline(always)]
fn columns_sum<T: Float>(
    c: &[[T; TILE]; LANES],
    row_len: usize,
    acc: &mut [[T; TILE]; LANES],
) -> [f64; TILE] {
    for j in 0..row_len {
        for r in 0..TILE {
            acc[j][r] = T::ZERO + c[j][r];
        }
    }
    let folded = fold_columns(acc);
    let mut sums = [0.0; TILE];
    for r in 0..TILE {
        sums[r] = 0.0 + folded[r].to_f64();
    }
    sums
}

/// Each row's smallest entry as `smallest` finds it (in order, NaN skipped).
#[inline(always)]
fn columns_smallest<T: Float>(c: &[[T; TILE]; LANES], row_len: usize) -> [T; TILE] {
    let mut low = [T::from_f64(f64::INFINITY); TILE];
    for column in &c[..row_len] {
        for r in 0..TILE {
            low[r] = smaller(low[r], column[r]);
        }
    }
    low
}

/// Each row's `sum_pairs` of `K`'s terms (lanes 0 + term, chunks of 8 from lane 0 padded with
/// (0, 0) to the chunk's end, the fold); `lanes` from the chunk end are 0.
#[inline(always)]
fn columns_terms<T: Float, M: MulAdd, const CLEAN: bool, K: Term>(
    pc: &[[T; TILE]; LANES],
    qc: &[[T; TILE]; LANES],
    p_share: [Share; TILE],
    q_share: [Share; TILE],
    row_len: usize,
    lanes: &mut [[f64; TILE]; LANES],
) -> [f64; TILE] {
    const CHUNK: usize = 8;
    // In clean rows a padding pair's term is 0 (a share of 0 is 0, whose term is 0), and 0 + 0
    // is what the fold leaves in those lanes: only the entries are computed.
    let end = row_len.div_ceil(CHUNK) * CHUNK;
    let columns = if CLEAN { row_len } else { end };
    for j in 0..columns {
        for r in 0..TILE {
            let (a, b) = (
                p_share[r].of(pc[j][r].to_f64()),
                q_share[r].of(qc[j][r].to_f64()),
            );
            lanes[j][r] = 0.0 + K::at::<M, CLEAN>(a, b);
        }
    }
    for lane in &mut lanes[columns..end] {
        *lane = [0.0; TILE];
    }
    fold_columns(lanes)
}

/// `reduce::fold`'s halving tree, lane by lane, in place; returns lane 0.
#[inline(always)]
fn fold_columns<T: Float>(acc: &mut [[T; TILE]; LANES]) -> [T; TILE] {
    crate::reduce::halving_tree(LANES, |j, k| {
        let (low, high) = acc.split_at_mut(k);
        for (a, &b) in low[j].iter_mut().zip(&high[0]) {
            *a = *a + b;
        }
    });
    acc[0]
}

/// The measure of every row of `p` (and `q`); `out[row]` is None where a row had a negative entry.
pub fn row_measure<S: Element>(
    measure: Measure,
    p: &RowsRef<S>,
    q: Option<&RowsRef<S>>,
) -> Result<Vec<Option<f64>>> {
    if p.rows().row_len() == 0 && p.rows().n_rows() > 0 {
        return Err(Error::EmptyReduction(
            "the distributions have zero entries along axis".into(),
        ));
    }
    let mut out = vec![None; p.rows().n_rows()];
    let outputs: [&RowsMut<S>; 0] = [];
    if let Some(q) = q {
        check_same_rows("divergence", p.rows(), &[("q", q.rows())])?;
    }
    // Short rows of C-contiguous arrays (p, and q where given) go in tiles; the layout is looked
    // at only for them.
    let row_len = p.rows().row_len();
    if S::NATIVE && row_len < LANES && out.len() >= TILE {
        if let (Some(p_flat), q_flat) = (contiguous(p), q.map(contiguous)) {
            if !matches!(q_flat, Some(None)) {
                crate::fastmath::with_mul_add!(M => measure_tiles::<S::Compute, M>(
                    measure,
                    compute_slice(p_flat),
                    q_flat.flatten().map(compute_slice),
                    row_len,
                    &mut out,
                ));
                return Ok(out);
            }
        }
    }
    crate::fastmath::with_mul_add!(M => match q {
        Some(q) => map_rows_weighted(
            [p, q],
            outputs,
            &mut out,
            8,
            #[inline(always)]
            |_, [p, q], []| measure_row::<_, M>(measure, p, Some(q)),
        ),
        None => map_rows_weighted(
            [p],
            outputs,
            &mut out,
            8,
            #[inline(always)]
            |_, [p], []| measure_row::<_, M>(measure, p, None),
        ),
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastmath::Separate;

    #[test]
    fn measures_follow_scipy_conventions() {
        let p = [0.5f64, 0.5, 0.0];
        let q = [0.25f64, 0.25, 0.5];
        let h = measure_row::<_, Separate>(Measure::Entropy, &p, None).unwrap();
        assert!((h - std::f64::consts::LN_2).abs() < 1e-15);
        let kl = measure_row::<_, Separate>(Measure::KlDivergence, &p, Some(&q)).unwrap();
        assert!((kl - std::f64::consts::LN_2).abs() < 1e-15);
        assert!(
            measure_row::<_, Separate>(Measure::KlDivergence, &q, Some(&p))
                .unwrap()
                .is_infinite()
        );
        let js =
            measure_row::<_, Separate>(Measure::JsDivergence, &[1.0f64, 0.0], Some(&[0.0, 1.0]))
                .unwrap();
        assert!((js - std::f64::consts::LN_2).abs() < 1e-15);
        assert!(measure_row::<_, Separate>(Measure::Entropy, &[1.0f64, -0.1], None).is_none());
        // Unnormalized input is normalized first.
        let h2 = measure_row::<_, Separate>(Measure::Entropy, &[2.0f64, 2.0], None).unwrap();
        assert!((h2 - std::f64::consts::LN_2).abs() < 1e-15);
    }

    #[test]
    fn clean_rows_give_the_bits_of_the_general_terms() {
        clean_rows_give_the_bits_of_the_general_terms_by::<Separate>();
        clean_rows_give_the_bits_of_the_general_terms_by::<crate::fastmath::Fused>();
    }

    fn clean_rows_give_the_bits_of_the_general_terms_by<M: MulAdd>() {
        let positive = |n: usize, seed: u64| -> Vec<f64> {
            let x = crate::reduce::tests::noise(n, seed);
            x.iter().map(|v| v.abs() * 3.0 + 1e-9).collect()
        };
        let measures = [
            Measure::Entropy,
            Measure::KlDivergence,
            Measure::CrossEntropy,
            Measure::JsDivergence,
        ];
        for n in [1, 7, 31, 32, 33, 100, 1000, 1037] {
            let (p, q) = (positive(n, n as u64), positive(n, n as u64 + 99));
            let (ps, qs) = (
                Share::of_total(crate::reduce::sum(&p)),
                Share::of_total(crate::reduce::sum(&q)),
            );
            for measure in measures {
                let general = measure_terms::<f64, M, false>(measure, &p, Some(&q), ps, qs);
                let clean = measure_terms::<f64, M, true>(measure, &p, Some(&q), ps, qs);
                assert_eq!(general.to_bits(), clean.to_bits(), "{measure:?}, n = {n}");
                let row = measure_row::<_, M>(measure, &p, Some(&q)).unwrap();
                assert_eq!(row.to_bits(), clean.to_bits(), "{measure:?}, n = {n}");
            }
        }
        // Rows that are not clean keep their cases: a zero, a share below a normal, a NaN.
        let h = |p: &[f64]| measure_row::<_, M>(Measure::Entropy, p, None).unwrap();
        assert!((h(&[0.5, 0.5, 0.0]) - std::f64::consts::LN_2).abs() < 1e-15);
        let tiny = h(&[1.0, 1e-310]);
        assert!(tiny > 0.0 && tiny < 1e-300, "{tiny:e}");
        assert!(h(&[1.0, f64::NAN]).is_nan());
        let ce =
            measure_row::<_, M>(Measure::CrossEntropy, &[1.0, 1.0], Some(&[1.0, 0.0])).unwrap();
        assert!(ce.is_infinite());
    }

    #[test]
    fn tiles_give_each_row_the_bits_of_measure_row() {
        tiles_match_rows::<f64, Separate>();
        tiles_match_rows::<f64, crate::fastmath::Fused>();
        tiles_match_rows::<f32, crate::fastmath::Fused>();
    }

    fn tiles_match_rows<T: Float, M: MulAdd>() {
        let measures = [
            Measure::Entropy,
            Measure::KlDivergence,
            Measure::CrossEntropy,
            Measure::JsDivergence,
        ];
        for row_len in 1..LANES {
            // 3 tiles and 5 rows more; every tile but the first has unclean rows: a zero, a
            // NaN, a negative entry, an all-zero row, subnormal entries, a -0.
            let n_rows = 3 * TILE + 5;
            let values = |seed: u64| -> Vec<T> {
                let noise = crate::reduce::tests::noise(n_rows * row_len, seed);
                let mut x: Vec<T> = noise.iter().map(|v| T::from_f64(v.abs() + 1e-3)).collect();
                let mut set = |row: usize, j: usize, v: f64| {
                    if j < row_len {
                        x[row * row_len + j] = T::from_f64(v);
                    }
                };
                set(TILE, 0, 0.0);
                set(TILE + 1, row_len - 1, f64::NAN);
                set(TILE + 2, 0, -0.5);
                (0..row_len).for_each(|j| set(TILE + 3, j, 0.0));
                (0..row_len).for_each(|j| set(2 * TILE, j, 1e-310));
                set(2 * TILE + 1, 0, -0.0);
                set(3 * TILE + 2, 0, f64::INFINITY);
                x
            };
            let (p, q) = (values(row_len as u64), values(row_len as u64 + 50));
            for measure in measures {
                let q = (measure != Measure::Entropy).then_some(&q[..]);
                let mut tiled = vec![None; n_rows];
                measure_tiles::<T, M>(measure, &p, q, row_len, &mut tiled);
                for (row, got) in tiled.iter().enumerate() {
                    let at = row * row_len..(row + 1) * row_len;
                    let want = measure_row::<T, M>(measure, &p[at.clone()], q.map(|q| &q[at]));
                    assert_eq!(
                        got.map(f64::to_bits),
                        want.map(f64::to_bits),
                        "{measure:?}, row_len {row_len}, row {row}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }
}
