//! The 1-D Wasserstein distance (earth mover's distance) of two weighted samples.

use crate::error::{Error, Result};

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
