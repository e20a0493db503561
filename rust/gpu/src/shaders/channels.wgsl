// Per-channel normalization with given statistics (BatchNorm in eval mode, InstanceNorm with its
// running statistics, and both with batch statistics from batch_stats.wgsl):
// y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c], the array seen as (outer, channels,
// inner). One element per thread.

@group(0) @binding(0) var<storage, read_write> x: array<S>;
@group(0) @binding(1) var<storage, read_write> mean: array<C>;
@group(0) @binding(2) var<storage, read_write> var_: array<C>;
@group(0) @binding(3) var<storage, read_write> weight: array<S>;
@group(0) @binding(4) var<storage, read_write> bias: array<S>;
@group(0) @binding(5) var<storage, read_write> y: array<S>;
@group(0) @binding(6) var<storage, read_write> rstd_out: array<C>;
@group(0) @binding(7) var<storage, read_write> pivot: array<C>;
@group(0) @binding(8) var<uniform> p: Params;

// Without a variance, the statistics' rstd is that of a variance of 1 (as the CPU's).
override HAS_VAR: bool = true;
// Scale by rstd; mean-only BatchNorm only subtracts the mean.
override SCALE: bool = true;
// The mean in two parts, pivot[c] + mean[c] (batch statistics): x - pivot is exact far from zero.
override HAS_PIVOT: bool = false;
override HAS_W: bool = false;
override HAS_B: bool = false;
// Also write each channel's 1/sqrt(var + eps) (threads of the first chunk's first channels).
override STATS: bool = false;

fn rstd(c: u32) -> C {
    if HAS_VAR {
        return inverseSqrt(var_[c] + p.f.x);
    }
    return inverseSqrt(C(1) + p.f.x);
}

// p.n: elements in this dispatch, channels, workgroups; p.m: inner size, channels per parameter
// period (InstanceNorm's N·C instances share C parameters), the dispatch's first element; p.f.x:
// eps.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    let i = g * WG + lid;
    if g >= p.n.z {
        return;
    }
    let at = p.m.z + i;
    if STATS && at < p.n.y {
        rstd_out[at] = rstd(at);
    }
    if i >= p.n.x {
        return;
    }
    let c = (at / p.m.x) % p.n.y;
    let k = c % p.m.y;
    var scale = C(1);
    if SCALE {
        scale = rstd(c);
    }
    if HAS_W {
        scale *= C(weight[k]);
    }
    var d = C(x[i]);
    if HAS_PIVOT {
        d -= pivot[c];
    }
    var v = (d - mean[c]) * scale;
    if HAS_B {
        v += C(bias[k]);
    }
    y[i] = S(v);
}
