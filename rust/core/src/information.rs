//! Information measures over rows (entropy, KL, cross-entropy, Jensen-Shannon), with f64
//! accumulation. They follow SciPy (scipy.stats.entropy, scipy.special.rel_entr,
//! scipy.spatial.distance.jensenshannon): each row is first divided by its sum, 0·log 0 = 0, and
//! p > 0 where q = 0 gives inf. Negative entries are reported to the caller.

use crate::element::{Element, Float};
use crate::error::{reduction_axis, shape_str, Error, Result};
use crate::fastmath::{ln_normal, ln_with, MulAdd};
use crate::reduce::{sum_pairs, LANES};
use crate::rows::{
    check_same_rows, map_rows_weighted, without_axis, ArrayRef, Reduced, RowsMut, RowsRef,
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

/// The smallest entry of a row (NaN skipped; +inf for none), in lanes: a fold of one `min`
/// chain does not vectorize.
#[inline(always)]
fn smallest<T: Float>(x: &[T]) -> T {
    let smaller = |a: T, b: T| if b < a { b } else { a };
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
    let q = q.unwrap_or(p);
    // A clean row's total is normal (scale 1): x · 1 · inverse is x · inverse, one multiply less.
    let (p_share, q_share) = if CLEAN {
        (p_share.unscaled(), q_share.unscaled())
    } else {
        (p_share, q_share)
    };
    match measure {
        Measure::Entropy => -sum_pairs(
            p,
            p,
            #[inline(always)]
            |a, _| {
                let a = p_share.of(a);
                x_ln_ratio::<M, CLEAN>(a, 1.0, a / 1.0)
            },
        ),
        Measure::KlDivergence => sum_pairs(
            p,
            q,
            #[inline(always)]
            |a, b| {
                let (a, b) = (p_share.of(a), q_share.of(b));
                x_ln_ratio::<M, CLEAN>(a, b, a / b)
            },
        ),
        Measure::CrossEntropy => sum_pairs(
            p,
            q,
            #[inline(always)]
            |a, b| cross_term::<M, CLEAN>(p_share.of(a), q_share.of(b)),
        ),
        Measure::JsDivergence | Measure::JsDistance => {
            0.5 * sum_pairs(
                p,
                q,
                #[inline(always)]
                |a, b| {
                    let (a, b) = (p_share.of(a), q_share.of(b));
                    let m = 0.5 * (a + b);
                    let to_m = 1.0 / m;
                    x_ln_ratio::<M, CLEAN>(a, m, a * to_m) + x_ln_ratio::<M, CLEAN>(b, m, b * to_m)
                },
            )
        }
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
}
