//! Backward passes of the normalizations, returning what PyTorch's autograd gives.
//!
//! With x̂ = (x − mean)·rstd and g = grad_out·weight, every norm's input gradient has the form
//! dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), the means taken over the elements that shared the
//! statistics (a row for LayerNorm, a channel for BatchNorm, a group for GroupNorm). RMSNorm is
//! the uncentered case (mean 0, no mean(g) term). Parameter gradients are Σ grad_out·x̂ (weight)
//! and Σ grad_out (bias), summed in f64 in a fixed block order: the same for every thread count.

use super::split_mean;
use crate::element::{Element, Float};
use crate::error::{Error, Result};
use crate::reduce::{widened_sum, ColumnSums, LANES};
use crate::rows::{
    block_rows, check_same_rows, in_segments, map_row_blocks, map_rows, Ahead, RowsMut, RowsRef,
    Stores,
};

/// (Σ g, Σ g·x̂) over a row with g = go·w, x̂ = ((x − hi) − lo)·rstd: lanes of `T` indexed by
/// constants (so they stay in registers), folded to f64 every 1024 elements by a fixed tree; the
/// tail joins the lanes as one more chunk padded with g = 0. (The tail had been a serial f64
/// chain and the fold a serial f64 sum of 32 lanes: most of a 49-value row's time.)
#[inline(always)]
pub(super) fn grad_sums<T: Float>(
    go: &[T],
    x: &[T],
    w: Option<&[T]>,
    hi: T,
    lo: T,
    rstd: T,
) -> (f64, f64) {
    const BLOCK: usize = 1024;
    let n = go.len();
    let (mut total_g, mut total_gx) = (0.0, 0.0);
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        let full = start + (end - start) / LANES * LANES;
        let mut sg = [T::ZERO; LANES];
        let mut sgx = [T::ZERO; LANES];
        let chunks = go[start..full]
            .chunks_exact(LANES)
            .zip(x[start..full].chunks_exact(LANES));
        match w {
            Some(w) => {
                for ((g, xv), wv) in chunks.zip(w[start..full].chunks_exact(LANES)) {
                    for j in 0..LANES {
                        let gw = g[j] * wv[j];
                        sg[j] = sg[j] + gw;
                        sgx[j] = sgx[j] + gw * (((xv[j] - hi) - lo) * rstd);
                    }
                }
            }
            None => {
                for (g, xv) in chunks {
                    for j in 0..LANES {
                        sg[j] = sg[j] + g[j];
                        sgx[j] = sgx[j] + g[j] * (((xv[j] - hi) - lo) * rstd);
                    }
                }
            }
        }
        if full < end {
            // g = 0 in the padding adds nothing to either sum (x̂ there is finite).
            let len = end - full;
            let g: [T; LANES] = std::array::from_fn(|j| match (j < len, w) {
                (false, _) => T::ZERO,
                (true, Some(w)) => go[full + j] * w[full + j],
                (true, None) => go[full + j],
            });
            let xv: [T; LANES] = std::array::from_fn(|j| if j < len { x[full + j] } else { hi });
            for j in 0..LANES {
                sg[j] = sg[j] + g[j];
                sgx[j] = sgx[j] + g[j] * (((xv[j] - hi) - lo) * rstd);
            }
        }
        total_g += widened_sum(&sg);
        total_gx += widened_sum(&sgx);
        start = end;
    }
    (total_g, total_gx)
}

/// Adds a row's go·x̂ and go into the parameter gradients' column lanes, in a pass of its own
/// after [`grad_sums`] (the row is in L1 by then). Added inside that pass, the update's stores
/// left LLVM's 32-lane sum loop rolled, its lanes going through the stack on every chunk; see
/// docs/decisions.md.
#[inline(always)]
fn add_param_grads<T: Float>(
    go: &[T],
    x: &[T],
    (hi, lo, rstd): (T, T, T),
    dw: &mut [T],
    db: &mut [T],
) {
    for (((dw, db), &g), &xv) in dw.iter_mut().zip(db.iter_mut()).zip(go).zip(x) {
        *dw = *dw + g * (((xv - hi) - lo) * rstd);
        *db = *db + g;
    }
}

/// Partial parameter gradients of a block of rows: Σ go·x̂ and Σ go per element of the row.
#[derive(Clone, Debug, Default)]
pub struct ParamGradSums {
    pub dweight: Vec<f64>,
    pub dbias: Vec<f64>,
}

/// LayerNorm (`mean` given) or RMSNorm (`mean` None) backward over rows of any layout.
/// `mean`/`rstd` are the forward's per-row statistics. `grad_sum`, for the fused add forms, is
/// the gradient that reached their `x + residual` output: it adds to dx. Returns Σ go·x̂ and Σ go
/// per row element (empty vectors when `param_grads` is false).
#[allow(clippy::too_many_arguments)]
pub fn row_norm_backward<S: Element>(
    grad_out: &RowsRef<S>,
    x: &RowsRef<S>,
    dx: &RowsMut<S>,
    mean: Option<&[f64]>,
    rstd: &[f64],
    weight: Option<&[S::Compute]>,
    param_grads: bool,
    grad_sum: Option<&RowsRef<S>>,
) -> Result<ParamGradSums> {
    let bytes = grad_out.bytes() + x.bytes() + dx.bytes() + grad_sum.map_or(0, RowsRef::bytes);
    // Streams memory: 256-bit vectors measured faster for f32 lanes from the L3 (see
    // `simd::streaming`).
    crate::simd::streaming_lanes::<S::Compute, _>(bytes, || {
        const OP: &str = "norm backward";
        check_same_rows(
            OP,
            x.rows(),
            &[("grad_out", grad_out.rows()), ("dx", dx.rows())],
        )?;
        let (n_rows, row_len) = (x.rows().n_rows(), x.rows().row_len());
        if rstd.len() != n_rows || mean.is_some_and(|m| m.len() != n_rows) {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: the statistics have {} values, x has {n_rows} rows (stats from another shape?)",
                rstd.len()
            )));
        }
        if weight.is_some_and(|w| w.len() != row_len) {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: weight does not match the normalized dims"
            )));
        }
        let centered = mean.is_some();
        let sums_len = if param_grads { row_len } else { 0 };
        let init = || ColumnSums::<S::Compute>::new(sums_len);
        let stores = Stores::for_outputs([grad_out, x], [dx]);
        let blocks = map_row_blocks(
            [grad_out, x],
            [dx],
            block_rows(n_rows, row_len),
            init,
            ColumnSums::finish,
            #[inline(always)]
            |acc: &mut ColumnSums<S::Compute>, row, [go, x], [dx]| {
                let (hi, lo) = split_mean::<S::Compute>(mean.map_or(0.0, |m| m[row]));
                let r = <S::Compute as Float>::from_f64(rstd[row]);
                let (sg, sgx) = grad_sums(go, x, weight, hi, lo, r);
                if param_grads {
                    acc.add_row(
                        #[inline(always)]
                        |dw, db| add_param_grads(go, x, (hi, lo, r), dw, db),
                    );
                }
                let n = row_len as f64;
                let a = <S::Compute as Float>::from_f64(if centered { sg / n } else { 0.0 });
                let b = <S::Compute as Float>::from_f64(sgx / n);
                let x_hat = |xv: S::Compute| ((xv - hi) - lo) * r;
                let dx_of = |g: S::Compute, xv: S::Compute| (g - a - x_hat(xv) * b) * r;
                in_segments(
                    Ahead::NONE,
                    stores,
                    dx,
                    #[inline(always)]
                    |at, dx| {
                        let (go, x) = (&go[at..at + dx.len()], &x[at..at + dx.len()]);
                        match weight {
                            Some(w) => {
                                let w = &w[at..at + dx.len()];
                                for (((d, &g0), &xv), &wv) in dx.iter_mut().zip(go).zip(x).zip(w) {
                                    *d = dx_of(g0 * wv, xv);
                                }
                            }
                            None => {
                                for ((d, &g0), &xv) in dx.iter_mut().zip(go).zip(x) {
                                    *d = dx_of(g0, xv);
                                }
                            }
                        }
                    },
                );
            },
        );
        if let Some(extra) = grad_sum {
            // A second pass, adding to dx as stored (rounded to S): what NumPy's `dx += extra`
            // gave when the binding did it.
            let stored = dx.as_input();
            crate::rows::map_elements([&stored, extra], dx, |[d, e], out| {
                for ((o, &d), &e) in out.iter_mut().zip(d).zip(e) {
                    *o = d + e;
                }
            })?;
        }
        let (dweight, dbias) = ColumnSums::fold_in_order(blocks, sums_len);
        Ok(ParamGradSums { dweight, dbias })
    })
}

/// Weight-norm backward per row (slice along `dim`): with n = ‖v‖ and w = g·v/n,
/// dg = Σ grad_w·v / n and dv = (g/n)·(grad_w − v·dg/n). Returns dg per row.
pub fn weight_norm_backward<S: Element>(
    grad_w: &RowsRef<S>,
    v: &RowsRef<S>,
    dv: &RowsMut<S>,
    g: &[f64],
) -> Result<Vec<f64>> {
    check_same_rows(
        "weight_norm_backward",
        v.rows(),
        &[("grad_w", grad_w.rows()), ("dv", dv.rows())],
    )?;
    if g.len() != v.rows().n_rows() {
        return Err(Error::ShapeMismatch(
            "weight_norm_backward: g does not match v along dim".into(),
        ));
    }
    let mut dg = vec![0.0; g.len()];
    map_rows(
        [grad_w, v],
        [dv],
        &mut dg,
        #[inline(always)]
        |row, [gw, v], [dv]| {
            let norm = crate::reduce::l2_norm(v);
            let dot = crate::reduce::sum_pairs(gw, v, |a, b| a * b);
            let dg = dot / norm;
            let scale = <S::Compute as Float>::from_f64(g[row] / norm);
            let coef = <S::Compute as Float>::from_f64(dg / norm);
            for ((d, &gw), &v) in dv.iter_mut().zip(gw).zip(v) {
                *d = scale * (gw - v * coef);
            }
            dg
        },
    );
    Ok(dg)
}
