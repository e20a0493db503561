// exp and log in f64. Vulkan's GLSL.std.450 Exp and Log take 16- and 32-bit floats only, so f64
// kernels carry their own: range reduction to a small interval and a series there, both accurate
// to about 1 ulp.

const LN2_HI: f64 = 6.93147180369123816490e-01;
const LN2_LO: f64 = 1.90821492927058770002e-10;

fn exp_c(x: f64) -> f64 {
    if x != x {
        return x;
    }
    if x > 709.782712893384 {
        return x * 1e308;
    }
    if x < -745.1332191019412 {
        return 0.0;
    }
    let k = round(x * 1.4426950408889634);
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor series of exp on |r| <= ln2 / 2, in Horner form (the 14th term is below 1e-17).
    var p: f64 = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // Two steps, so that 2^k below the normal range still scales correctly.
    let k1 = i32(k) / 2;
    return ldexp(ldexp(p, k1), i32(k) - k1);
}

fn log_c(x: f64) -> f64 {
    if !(x > 0.0) {
        if x == 0.0 {
            // -inf, computed at run time (a constant would overflow at compile time).
            return -1.0 / abs(x);
        }
        return (x - x) / (x - x);
    }
    if x > 1.7976931348623157e308 {
        return x;
    }
    // x = f · 2^e with f in [√½, √2). Steps of 2^±64 (exact) bring x within f32's range, whose
    // log2 then estimates the rest (naga has neither frexp nor bitcast on f64 without int64).
    var v = x;
    var e = 0;
    while v >= 18446744073709551616.0 {
        v = v * 5.421010862427522e-20;
        e += 64;
    }
    while v < 5.421010862427522e-20 {
        v = v * 18446744073709551616.0;
        e -= 64;
    }
    let k = i32(floor(log2(f32(v))));
    var f = ldexp(v, -k);
    e += k;
    while f >= 1.4142135623730951 {
        f = f * 0.5;
        e += 1;
    }
    while f < 0.7071067811865476 {
        f = f * 2.0;
        e -= 1;
    }
    // log f = 2 atanh(s), s = (f - 1) / (f + 1), |s| < 0.172: the odd series to s^23.
    let s = (f - 1.0) / (f + 1.0);
    let s2 = s * s;
    var q: f64 = 1.0 / 23.0;
    q = q * s2 + 1.0 / 21.0;
    q = q * s2 + 1.0 / 19.0;
    q = q * s2 + 1.0 / 17.0;
    q = q * s2 + 1.0 / 15.0;
    q = q * s2 + 1.0 / 13.0;
    q = q * s2 + 1.0 / 11.0;
    q = q * s2 + 1.0 / 9.0;
    q = q * s2 + 1.0 / 7.0;
    q = q * s2 + 1.0 / 5.0;
    q = q * s2 + 1.0 / 3.0;
    q = q * s2 + 1.0;
    let ef = f64(e);
    return ef * LN2_HI + (ef * LN2_LO + 2.0 * s * q);
}

// eˣ - 1 without the cancellation of exp(x) - 1 near 0: the Taylor series where |x| < 0.35 (to
// the 17th term, below 1e-17 of x).
fn expm1_c(x: f64) -> f64 {
    if abs(x) >= 0.35 {
        return exp_c(x) - 1.0;
    }
    var p: f64 = 1.0 / 6402373705728000.0;
    p = p * x + 1.0 / 355687428096000.0;
    p = p * x + 1.0 / 20922789888000.0;
    p = p * x + 1.0 / 1307674368000.0;
    p = p * x + 1.0 / 87178291200.0;
    p = p * x + 1.0 / 6227020800.0;
    p = p * x + 1.0 / 479001600.0;
    p = p * x + 1.0 / 39916800.0;
    p = p * x + 1.0 / 3628800.0;
    p = p * x + 1.0 / 362880.0;
    p = p * x + 1.0 / 40320.0;
    p = p * x + 1.0 / 5040.0;
    p = p * x + 1.0 / 720.0;
    p = p * x + 1.0 / 120.0;
    p = p * x + 1.0 / 24.0;
    p = p * x + 1.0 / 6.0;
    p = p * x + 0.5;
    return x + x * x * p;
}

// NaN by its bits (see math_f32.wgsl), through f32: the conversion keeps NaN a NaN and takes any
// other value to a number or an infinity (naga has no bitcast of f64).
fn is_nan_c(x: C) -> bool {
    return (bitcast<u32>(f32(x)) & 0x7fffffffu) > 0x7f800000u;
}
