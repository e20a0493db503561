//! The kernels on whatever adapter this machine has (lavapipe in CI), against float64 references.
//! Without an adapter each test says so and passes, unless RSNORM_REQUIRE_GPU=1 (CI sets it).

use rsnorm_gpu::{selu, softmax, DType, RowKind, RowNorm, Tensor};

fn adapter() -> bool {
    if rsnorm_gpu::is_available() {
        return true;
    }
    assert!(
        std::env::var("RSNORM_REQUIRE_GPU").as_deref() != Ok("1"),
        "RSNORM_REQUIRE_GPU=1 but there is no GPU adapter"
    );
    eprintln!("no GPU adapter: skipped");
    false
}

fn upload(x: &[f32], shape: &[usize]) -> Tensor {
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    Tensor::from_bytes(&bytes, shape, DType::F32).unwrap()
}

fn download(t: &Tensor) -> Vec<f32> {
    t.to_bytes()
        .unwrap()
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn data(n: usize, offset: f64) -> Vec<f32> {
    (0..n)
        .map(|i| (offset + ((i * 7919) % 113) as f64 / 37.0 - 1.5) as f32)
        .collect()
}

fn layer_norm_ref(x: &[f32], cols: usize, eps: f64) -> Vec<f64> {
    let mut y = Vec::new();
    for row in x.chunks(cols) {
        let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        let n = cols as f64;
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        y.extend(row.iter().map(|v| (v - mean) / (var + eps).sqrt()));
    }
    y
}

fn norm(kind: RowKind, x: &Tensor, rows: usize, cols: usize) -> RowNorm<'_> {
    RowNorm {
        op: "layer_norm",
        kind,
        x,
        rows,
        row_len: cols,
        residual: None,
        weight: None,
        bias: None,
        eps: 1e-5,
        channels: None,
        out: None,
        residual_out: None,
        stats: true,
    }
}

#[test]
fn layer_norm_of_offset_rows_matches_f64() {
    if !adapter() {
        return;
    }
    for (rows, cols) in [(3, 1), (5, 7), (4, 64), (2, 1000), (3, 5000)] {
        let x = data(rows * cols, 1e4);
        let t = upload(&x, &[rows, cols]);
        let out = norm(RowKind::Layer, &t, rows, cols).run().unwrap();
        let got = download(&out.y);
        let want = layer_norm_ref(&x, cols, 1e-5);
        let err = got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (f64::from(g) - w).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-4, "({rows}, {cols}): max error {err}");
        assert_eq!(download(out.mean.as_ref().unwrap()).len(), rows);
    }
}

#[test]
fn split_dispatches_match_one() {
    if !adapter() {
        return;
    }
    let x = data(300 * 33, 0.5);
    let t = upload(&x, &[300, 33]);
    let y = download(&norm(RowKind::Rms, &t, 300, 33).run().unwrap().y);
    for (row, chunk) in x.chunks(33).enumerate() {
        let ms = chunk.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / 33.0;
        for (j, &v) in chunk.iter().enumerate() {
            let want = f64::from(v) / (ms + 1e-5).sqrt();
            assert!((f64::from(y[row * 33 + j]) - want).abs() < 1e-5);
        }
    }
}

#[test]
fn softmax_and_selu() {
    if !adapter() {
        return;
    }
    let x = data(4 * 6 * 5, 0.0);
    let t = upload(&x, &[4, 6, 5]);
    let y = download(&softmax(&t, 1, false, None).unwrap());
    for o in 0..4 {
        for i in 0..5 {
            let at = |j: usize| o * 30 + j * 5 + i;
            let m = (0..6).map(|j| f64::from(x[at(j)])).fold(f64::MIN, f64::max);
            let s: f64 = (0..6).map(|j| (f64::from(x[at(j)]) - m).exp()).sum();
            for j in 0..6 {
                let want = (f64::from(x[at(j)]) - m).exp() / s;
                assert!((f64::from(y[at(j)]) - want).abs() < 1e-6);
            }
        }
    }
    let y = download(&selu(&t, None).unwrap());
    for (&v, &g) in x.iter().zip(&y) {
        let v = f64::from(v);
        let want = if v > 0.0 {
            1.050_700_987_355_480_5 * v
        } else {
            1.050_700_987_355_480_5 * 1.673_263_242_354_377_3 * (v.exp() - 1.0)
        };
        assert!((f64::from(g) - want).abs() < 1e-6);
    }
}

#[test]
fn float64_softmax_uses_exact_exp_and_log() {
    if !adapter() {
        return;
    }
    // Spans exp's range reduction and log's subnormal and scaling branches.
    let x: Vec<f64> = (0..64).map(|i| f64::from(i) * 11.3 - 700.0).collect();
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let Ok(t) = Tensor::from_bytes(&bytes, &[4, 16], DType::F64) else {
        return; // no SHADER_F64
    };
    let y: Vec<f64> = softmax(&t, -1, true, None)
        .unwrap()
        .to_bytes()
        .unwrap()
        .chunks(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    for (row, chunk) in x.chunks(16).enumerate() {
        let m = chunk.iter().copied().fold(f64::MIN, f64::max);
        let lse = m + chunk.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        for (j, v) in chunk.iter().enumerate() {
            let got = y[row * 16 + j];
            assert!(
                (got - (v - lse)).abs() <= 1e-12 * (v - lse).abs().max(1.0),
                "{got} vs {}",
                v - lse
            );
        }
    }
}

#[test]
fn timestamps_order_the_work() {
    if !adapter() {
        return;
    }
    let Some(start) = rsnorm_gpu::Timestamp::record().unwrap() else {
        return; // no TIMESTAMP_QUERY
    };
    let x = upload(&data(256 * 1024, 0.0), &[256, 1024]);
    for _ in 0..4 {
        norm(RowKind::Layer, &x, 256, 1024).run().unwrap();
    }
    let end = rsnorm_gpu::Timestamp::record().unwrap().unwrap();
    let elapsed = end.nanoseconds().unwrap() - start.nanoseconds().unwrap();
    assert!(elapsed > 0.0 && elapsed < 60e9, "{elapsed} ns");
}
