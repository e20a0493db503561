//! Weight normalization (Salimans & Kingma 2016, as torch.nn.utils.weight_norm): w = g · v/‖v‖,
//! the norm taken over every dim but `dim`.

use crate::element::{Element, Float};
use crate::error::{Error, Result};
use crate::reduce::l2_norm;
use crate::rows::{check_same_rows, map_rows, RowsMut, RowsRef};

/// `w_row = v_row · g[row] / ‖v_row‖` for each row of `v`; returns the norms ‖v_row‖.
pub fn weight_norm<S: Element>(v: &RowsRef<S>, w: &RowsMut<S>, g: &[f64]) -> Result<Vec<f64>> {
    check_same_rows("weight_norm", v.rows(), &[("out", w.rows())])?;
    if g.len() != v.rows().n_rows() {
        return Err(Error::ShapeMismatch(format!(
            "weight_norm: g has {} elements, v has {} slices along dim",
            g.len(),
            v.rows().n_rows()
        )));
    }
    let mut norms = vec![0.0; v.rows().n_rows()];
    map_rows(
        [v],
        [w],
        &mut norms,
        #[inline(always)]
        |row, [v], [w]| {
            let norm = l2_norm(v);
            let scale = <S::Compute as Float>::from_f64(g[row] / norm);
            for (w, &v) in w.iter_mut().zip(v) {
                *w = v * scale;
            }
            norm
        },
    );
    Ok(norms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_get_norm_g() {
        let v = vec![3.0f64, 4.0, 0.0, 2.0];
        let mut w = vec![0.0; 4];
        let norms = weight_norm(
            &RowsRef::from_slice(&v, 2),
            &RowsMut::from_slice(&mut w, 2),
            &[10.0, 1.0],
        )
        .unwrap();
        assert_eq!(norms, vec![5.0, 2.0]);
        assert_eq!(w, vec![6.0, 8.0, 0.0, 1.0]);
        let mut y = vec![0.0; 4];
        super::super::lp_normalize::l2_normalize(
            &RowsRef::from_slice(&v, 2),
            &RowsMut::from_slice(&mut y, 2),
            1e-12,
        )
        .unwrap();
        assert!(y
            .iter()
            .zip([0.6, 0.8, 0.0, 1.0])
            .all(|(a, b)| (a - b).abs() < 1e-15));
    }
}
