// The backward of the channel norms (BatchNorm, InstanceNorm, GroupNorm) on x seen as (outer,
// channels, inner): the slice (o, c) is a row of `inner` values sharing statistic s(o, c) (BatchNorm
// c, InstanceNorm o·C + c, GroupNorm o·G + c / (C / G)) and channel c's weight. Three stages, as the
// CPU's channel backward:
//   0. each row's Σ go and Σ go·x̂ (T threads a row);
//   1. each channel's dbias = Σ_o Σ go and dweight = Σ_o Σ go·x̂, and each statistic's Σ w·go and
//      Σ w·go·x̂ over its rows, summed in order (one thread each);
//   2. dx = rstd·(w·go − mean(w·go) − x̂·mean(w·go·x̂)), the means over the statistic's values
//      (training), or without the terms the forward's constants do not have.

@group(0) @binding(0) var<storage, read_write> grad: array<S>;
@group(0) @binding(1) var<storage, read_write> x: array<S>;
@group(0) @binding(2) var<storage, read_write> mean: array<C>;
@group(0) @binding(3) var<storage, read_write> rstd: array<C>;
@group(0) @binding(4) var<storage, read_write> weight: array<C>;
@group(0) @binding(5) var<storage, read_write> row_sums: array<C>;
@group(0) @binding(6) var<storage, read_write> stat_sums: array<C>;
@group(0) @binding(7) var<storage, read_write> dweight: array<C>;
@group(0) @binding(8) var<storage, read_write> dbias: array<C>;
@group(0) @binding(9) var<storage, read_write> dx: array<S>;
@group(0) @binding(10) var<uniform> p: Params;

override STAGE: u32 = 0u;
override HAS_W: bool = false;
// 0: the batch's mean and variance (dx through both); 1: the batch's mean only (mean-only
// BatchNorm); 2: constants (running statistics in evaluation).
override USE: u32 = 0u;
// rstd taken as 1 (mean-only BatchNorm does not scale).
override UNIT: bool = false;
// 0: BatchNorm, 1: InstanceNorm, 2: GroupNorm.
override KIND: u32 = 0u;

// p.n: rows (outer·C), inner, workgroups, channels C; p.m: outer, groups G, statistics, -.
fn stat_of(row: u32) -> u32 {
    let c = row % p.n.w;
    if KIND == 0u {
        return c;
    }
    if KIND == 1u {
        return row;
    }
    return (row / p.n.w) * p.m.y + c / (p.n.w / p.m.y);
}

fn w_of(c: u32) -> C {
    if HAS_W {
        return weight[c];
    }
    return C(1);
}

fn rstd_of(s: u32) -> C {
    if UNIT {
        return C(1);
    }
    return rstd[s];
}

fn x_hat(i: u32, s: u32) -> C {
    return (C(x[i]) - mean[s]) * rstd_of(s);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, l: Lanes) {
    lanes = l;
    let g = group_index(wid, nwg);
    if g >= p.n.z {
        return;
    }
    let inner = p.n.y;
    let channels = p.n.w;
    if STAGE == 0u {
        let row = g * (WG / T) + l.lid / T;
        let lane = l.lid % T;
        let live = row < p.n.x;
        var sg = C(0);
        var sgx = C(0);
        if live {
            let s = stat_of(row);
            for (var j = lane; j < inner; j += T) {
                let i = row * inner + j;
                let go = C(grad[i]);
                sg += go;
                sgx += go * x_hat(i, s);
            }
        }
        let r = row_reduce(vec2<C>(sg, sgx), SUM);
        if live && lane == 0u {
            row_sums[row * 2u] = r.x;
            row_sums[row * 2u + 1u] = r.y;
        }
    } else if STAGE == 1u {
        let k = g * WG + l.lid;
        let outer = p.m.x;
        // Threads 0..C: a channel's parameter gradients; C..C + stats: a statistic's sums.
        if k < channels {
            var a = C(0);
            var b = C(0);
            for (var o = 0u; o < outer; o++) {
                a += row_sums[(o * channels + k) * 2u];
                b += row_sums[(o * channels + k) * 2u + 1u];
            }
            dbias[k] = a;
            dweight[k] = b;
        } else if k < channels + p.m.z {
            let s = k - channels;
            var a = C(0);
            var b = C(0);
            if KIND == 0u {
                for (var o = 0u; o < outer; o++) {
                    a += row_sums[(o * channels + s) * 2u];
                    b += row_sums[(o * channels + s) * 2u + 1u];
                }
                a *= w_of(s);
                b *= w_of(s);
            } else {
                let per = select(p.n.w / p.m.y, 1u, KIND == 1u);
                let first = select((s / p.m.y) * channels + (s % p.m.y) * per, s, KIND == 1u);
                for (var j = 0u; j < per; j++) {
                    let row = first + j;
                    let w = w_of(row % channels);
                    a += w * row_sums[row * 2u];
                    b += w * row_sums[row * 2u + 1u];
                }
            }
            stat_sums[s * 2u] = a;
            stat_sums[s * 2u + 1u] = b;
        }
    } else {
        let i = g * WG + l.lid;
        let total = p.n.x * inner;
        if i >= total {
            return;
        }
        let row = i / inner;
        let c = row % channels;
        let s = stat_of(row);
        let w = w_of(c);
        let r = rstd_of(s);
        let go = C(grad[i]) * w;
        var ma = C(0);
        var mb = C(0);
        if USE != 2u {
            // p.f.x: the values of each statistic.
            ma = stat_sums[s * 2u] / p.f.x;
            if USE == 0u {
                mb = stat_sums[s * 2u + 1u] / p.f.x;
            }
        }
        let xh = (C(x[i]) - mean[s]) * r;
        dx[i] = S((go - ma - xh * mb) * r);
    }
}
