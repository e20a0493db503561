//! Information measures over rows (entropy, KL, cross-entropy, Jensen-Shannon), with f64
//! accumulation. They follow SciPy (scipy.stats.entropy, scipy.special.rel_entr,
//! scipy.spatial.distance.jensenshannon): each row is first divided by its sum, 0·log 0 = 0, and
//! p > 0 where q = 0 gives inf. Negative entries are reported to the caller.

use crate::element::{Element, Float};
use crate::error::{reduction_axis, shape_str, Error, Result};
use crate::fastmath::ln;
use crate::reduce::sum_pairs;
use crate::rows::{check_same_rows, map_rows, without_axis, ArrayRef, Reduced, RowsMut, RowsRef};

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
        Measure::JsDivergence | Measure::JsDistance => {
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
    match q {
        Some(q) => {
            check_same_rows("divergence", p.rows(), &[("q", q.rows())])?;
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
