// exp and log of the compute type, f32: the built-ins; expm1 where they cancel.

fn exp_c(x: C) -> C {
    return exp(x);
}

fn log_c(x: C) -> C {
    return log(x);
}

// eˣ - 1 without the cancellation of exp(x) - 1 near 0 (SELU's negative side): the Taylor series
// where |x| < 0.35 (the 10th term is below 1e-12 of x).
fn expm1_c(x: C) -> C {
    if abs(x) >= C(0.35) {
        return exp(x) - C(1);
    }
    var p = C(1.0 / 3628800.0);
    p = p * x + C(1.0 / 362880.0);
    p = p * x + C(1.0 / 40320.0);
    p = p * x + C(1.0 / 5040.0);
    p = p * x + C(1.0 / 720.0);
    p = p * x + C(1.0 / 120.0);
    p = p * x + C(1.0 / 24.0);
    p = p * x + C(1.0 / 6.0);
    p = p * x + C(0.5);
    return x + x * x * p;
}

// NaN by its bits: drivers may compile comparisons as if NaN did not exist (WGSL allows it; the
// NVIDIA driver turned `NaN < eps` true), so a select that must keep NaN tests for it this way.
fn is_nan_c(x: C) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}
