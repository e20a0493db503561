//! Model-selection criteria over many fitted models: AIC = 2k − 2 ln L̂ and BIC = k ln n − 2 ln L̂,
//! in one pass that reads each operand once, converts integer counts as it reads them, checks the
//! counts (k ≥ 0, n > 0) and broadcasts an operand of one value. NumPy's formula makes a temporary
//! per operation, and the checks had been reductions of their own: BIC over a million models ran
//! at 0.6× NumPy's formula.

use crate::error::{Error, Result};
use crate::fastmath;
pub use crate::layout::Values;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Models one block of a range takes: the operands are converted into stack buffers of this many.
const BLOCK: usize = 256;

/// AIC of each model into `out`: 2k − 2 ln L̂. Each operand has one value or one per model.
pub fn aic(log_likelihood: Values<'_>, k: Values<'_>, out: &mut [f64]) -> Result<()> {
    criterion("aic", log_likelihood, k, None, out)
}

/// BIC of each model into `out`: k ln n − 2 ln L̂ (n: the observations the model was fitted to).
pub fn bic(
    log_likelihood: Values<'_>,
    k: Values<'_>,
    n: Values<'_>,
    out: &mut [f64],
) -> Result<()> {
    criterion("bic", log_likelihood, k, Some(n), out)
}

/// A parameter count below 0, or NaN.
#[inline(always)]
fn bad_count(x: f64) -> bool {
    x.is_nan() || x < 0.0
}

/// An observation count not above 0, or NaN.
#[inline(always)]
fn bad_observations(x: f64) -> bool {
    x.is_nan() || x <= 0.0
}

/// The first value of `block` that `bad` refuses. The test is an OR over the whole block (which
/// vectorizes, where a search that stops early does not), the search only in a bad block.
#[inline(always)]
fn first_bad(block: &[f64], bad: impl Fn(f64) -> bool) -> Option<usize> {
    let any = block.iter().fold(0u8, |acc, &x| acc | u8::from(bad(x)));
    if any == 0 {
        return None;
    }
    block.iter().position(|&x| bad(x))
}

fn criterion(
    op: &str,
    log_likelihood: Values<'_>,
    k: Values<'_>,
    n: Option<Values<'_>>,
    out: &mut [f64],
) -> Result<()> {
    let models = out.len();
    let operands = [
        ("log_likelihood", Some(log_likelihood)),
        ("k", Some(k)),
        ("n", n),
    ];
    for (name, values) in operands {
        if let Some(v) = values.filter(|v| v.len() != 1 && v.len() != models) {
            return Err(Error::ShapeMismatch(format!(
                "{op}: {name} has {} values for {models} models (one, or one per model)",
                v.len()
            )));
        }
    }
    // The first model whose k (n) is out of range, or `models`.
    let bad_k = AtomicUsize::new(models);
    let bad_n = AtomicUsize::new(models);
    let out_ptr = out.as_mut_ptr() as usize;
    crate::simd::for_each_range(
        models,
        8,
        #[inline(always)]
        |range| {
            // SAFETY: ranges are disjoint and inside `out`.
            let out = unsafe {
                std::slice::from_raw_parts_mut((out_ptr as *mut f64).add(range.start), range.len())
            };
            let (mut ll_buf, mut k_buf, mut n_buf) = ([0.0; BLOCK], [0.0; BLOCK], [0.0; BLOCK]);
            for (b, out) in out.chunks_mut(BLOCK).enumerate() {
                let start = range.start + b * BLOCK;
                let (ll_b, k_b) = (&mut ll_buf[..out.len()], &mut k_buf[..out.len()]);
                log_likelihood.fill(start, ll_b);
                k.fill(start, k_b);
                if let Some(first) = first_bad(k_b, bad_count) {
                    bad_k.fetch_min(start + first, Ordering::Relaxed);
                }
                match n {
                    None => {
                        for ((o, &k), &ll) in out.iter_mut().zip(&*k_b).zip(&*ll_b) {
                            *o = 2.0 * k - 2.0 * ll;
                        }
                    }
                    Some(n) => {
                        let n_b = &mut n_buf[..out.len()];
                        n.fill(start, n_b);
                        if let Some(first) = first_bad(n_b, bad_observations) {
                            bad_n.fetch_min(start + first, Ordering::Relaxed);
                        }
                        for (((o, &k), &n), &ll) in out.iter_mut().zip(&*k_b).zip(&*n_b).zip(&*ll_b)
                        {
                            *o = k * fastmath::ln(n) - 2.0 * ll;
                        }
                    }
                }
            }
        },
    );
    // n is reported before k, the order the arguments are checked in.
    let bad = |name: &str, values: Values<'_>, i: usize, rule: &str| {
        Error::InvalidArgument(format!(
            "{op}: {name} must be {rule}, got {}",
            values.show(i)
        ))
    };
    if let Some(n) = n {
        let i = bad_n.into_inner();
        if i < models {
            return Err(bad("n", n, i, "> 0"));
        }
    }
    let i = bad_k.into_inner();
    if i < models {
        return Err(bad("k", k, i, ">= 0"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::float_cmp)] // these values are exact in binary floating point
    fn criteria_broadcast_one_value_and_match_the_formulas() {
        let ll = [-10.0, -20.5, 3.0];
        let mut out = [0.0; 3];
        aic(Values::F64(&ll), Values::I64(&[3]), &mut out).unwrap();
        assert_eq!(out, [26.0, 47.0, 0.0]);
        bic(
            Values::F64(&ll),
            Values::I64(&[1, 2, 3]),
            Values::F64(&[std::f64::consts::E]),
            &mut out,
        )
        .unwrap();
        for (o, want) in out.iter().zip([21.0, 43.0, -3.0]) {
            assert!((o - want).abs() < 1e-12, "{o} vs {want}");
        }
    }

    #[test]
    fn the_first_bad_count_is_reported_n_before_k() {
        let models = 3 * BLOCK + 5;
        let mut k = vec![1i64; models];
        k[BLOCK + 7] = -4;
        k[2 * BLOCK] = -1;
        let mut n = vec![10.0; models];
        n[2 * BLOCK + 1] = f64::NAN;
        let ll = [0.0];
        let mut out = vec![0.0; models];
        let err = bic(Values::F64(&ll), Values::I64(&k), Values::F64(&n), &mut out).unwrap_err();
        assert_eq!(err.to_string(), "bic: n must be > 0, got nan");
        let err = aic(Values::F64(&ll), Values::I64(&k), &mut out).unwrap_err();
        assert_eq!(err.to_string(), "aic: k must be >= 0, got -4");
        let err = aic(Values::F64(&ll), Values::F64(&[-0.5]), &mut out).unwrap_err();
        assert_eq!(err.to_string(), "aic: k must be >= 0, got -0.5");
        let err = aic(Values::F64(&[1.0, 2.0]), Values::I64(&k), &mut out).unwrap_err();
        assert!(
            err.to_string().contains("log_likelihood has 2 values for"),
            "{err}"
        );
    }
}
