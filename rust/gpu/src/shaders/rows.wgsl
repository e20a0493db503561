// The row normalizations: LayerNorm, RMSNorm and L2 normalization of each row, with the fused
// residual add. T threads share a row; the statistics are corrected two-pass sums
// (m0 = Σx/n, d = x - m0, c = Σd/n, mean = m0 + c, var = Σd²/n - c²), exact for rows far from zero.

@group(0) @binding(0) var<storage, read_write> x: array<S>;
@group(0) @binding(1) var<storage, read_write> residual: array<S>;
@group(0) @binding(2) var<storage, read_write> weight: array<S>;
@group(0) @binding(3) var<storage, read_write> bias: array<S>;
@group(0) @binding(4) var<storage, read_write> y: array<S>;
@group(0) @binding(5) var<storage, read_write> sum_out: array<S>;
@group(0) @binding(6) var<storage, read_write> mean_out: array<C>;
@group(0) @binding(7) var<storage, read_write> rstd_out: array<C>;
@group(0) @binding(8) var<uniform> p: Params;

const LAYER: u32 = 0u;
const RMS: u32 = 1u;
const L2: u32 = 2u;

override MODE: u32 = LAYER;
// x + residual first, rounded to S and written to sum_out; the normalized row is that sum's.
override ADD: bool = false;
override HAS_W: bool = false;
override HAS_B: bool = false;
override STATS: bool = false;
// Parameters per channel instead of per element (GroupNorm, InstanceNorm): element j of row r
// takes parameter (r % p.m.x) * p.m.y + j / p.m.z.
override PER_CHANNEL: bool = false;

fn param_index(row: u32, j: u32) -> u32 {
    if PER_CHANNEL {
        return (row % p.m.x) * p.m.y + j / p.m.z;
    }
    return j;
}

fn load(i: u32) -> C {
    if ADD {
        return C(sum_out[i]);
    }
    return C(x[i]);
}

// p.n: rows, cols, workgroups; p.m: groups, channels per group, elements per channel; p.f.x: eps.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, l: Lanes) {
    lanes = l;
    let g = group_index(wid, nwg);
    if g >= p.n.z {
        return;
    }
    let cols = p.n.y;
    let row = g * (WG / T) + l.lid / T;
    let lane = l.lid % T;
    let live = row < p.n.x;
    let base = row * cols;
    let n = C(cols);
    if ADD && live {
        for (var j = lane; j < cols; j += T) {
            sum_out[base + j] = S(C(x[base + j]) + C(residual[base + j]));
        }
    }
    var m0 = C(0);
    if MODE == LAYER {
        var a = C(0);
        if live {
            for (var j = lane; j < cols; j += T) {
                a += load(base + j);
            }
        }
        m0 = row_reduce(vec2<C>(a, C(0)), SUM).x / n;
    }
    var s1 = C(0);
    var s2 = C(0);
    if live {
        for (var j = lane; j < cols; j += T) {
            let d = load(base + j) - m0;
            s1 += d;
            s2 += d * d;
        }
    }
    let r = row_reduce(vec2<C>(s1, s2), SUM);
    // The mean stays in two parts: m0 + c rounded to C would lose the low bits of a row far
    // from zero (1e4 + noise in f32: 5e-4), while x - m0 is exact and c small.
    var c = C(0);
    var scale: C;
    if MODE == LAYER {
        c = r.x / n;
        // Rounding can leave a constant row's variance slightly below 0; NaN stays NaN.
        let var_ = r.y / n - c * c;
        scale = inverseSqrt(select(var_, C(0), var_ < C(0) && !is_nan_c(var_)) + p.f.x);
    } else if MODE == RMS {
        scale = inverseSqrt(r.y / n + p.f.x);
    } else {
        let norm = sqrt(r.y);
        scale = C(1) / select(norm, p.f.x, norm < p.f.x && !is_nan_c(norm));
    }
    if !live {
        return;
    }
    if STATS && lane == 0u {
        mean_out[row] = m0 + c;
        rstd_out[row] = scale;
    }
    for (var j = lane; j < cols; j += T) {
        var v = ((load(base + j) - m0) - c) * scale;
        if HAS_W {
            v *= C(weight[param_index(row, j)]);
        }
        if HAS_B {
            v += C(bias[param_index(row, j)]);
        }
        y[base + j] = S(v);
    }
}
