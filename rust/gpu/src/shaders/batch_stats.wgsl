// Per-channel statistics of a batch seen as (outer, channels, inner), channel c's values at
// (k / inner) * channels * inner + c * inner + k % inner for k < outer * inner. Three stages:
//   0. each channel's pivot, its first value: every sum below is of x - pivot, which stays small
//      for data far from zero (1e4 + noise in f32 keeps its noise);
//   1. each block of BLOCK values of a channel: count, mean and M2 by a corrected two-pass sum
//      (the block is read twice, the second time from cache);
//   2. each channel's blocks merged in a fixed order (Chan et al.'s pairwise formula), so the bits
//      do not depend on scheduling; then the mean kept in two parts (pivot, mean of x - pivot) for
//      the normalization, the biased variance, rstd and M2 / (n - correction) for the running
//      variance.

@group(0) @binding(0) var<storage, read_write> x: array<S>;
@group(0) @binding(1) var<storage, read_write> pivot: array<C>;
@group(0) @binding(2) var<storage, read_write> partials: array<C>;
@group(0) @binding(3) var<storage, read_write> dev_mean: array<C>;
@group(0) @binding(4) var<storage, read_write> var_out: array<C>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<C>;
@group(0) @binding(6) var<storage, read_write> rstd_out: array<C>;
@group(0) @binding(7) var<storage, read_write> corrected_out: array<C>;
@group(0) @binding(8) var<uniform> p: Params;

override STAGE: u32 = 0u;
// Values per block: 16 per thread.
const BLOCK: u32 = 4096u;

struct Stat {
    n: C,
    mean: C,
    m2: C,
}

fn merge(a: Stat, b: Stat) -> Stat {
    if b.n == C(0) {
        return a;
    }
    if a.n == C(0) {
        return b;
    }
    let n = a.n + b.n;
    let d = b.mean - a.mean;
    let wb = b.n / n;
    return Stat(n, a.mean + d * wb, a.m2 + b.m2 + d * d * a.n * wb);
}

var<workgroup> wn: array<C, WG>;
var<workgroup> wmean: array<C, WG>;
var<workgroup> wm2: array<C, WG>;

// p.n: values per channel in this dispatch, inner, workgroups, channels.
fn at(k: u32, c: u32) -> u32 {
    let inner = p.n.y;
    return (k / inner) * p.n.w * inner + c * inner + k % inner;
}

// p.m: blocks per channel in this dispatch, the dispatch's first block, blocks per channel in all.
fn block_stats(g: u32, lid: u32) {
    let blocks = p.m.x;
    let c = g / blocks;
    let b = g % blocks;
    let start = b * BLOCK;
    let end = min(start + BLOCK, p.n.x);
    let k0 = pivot[c];
    var a = C(0);
    for (var k = start + lid; k < end; k += WG) {
        a += C(x[at(k, c)]) - k0;
    }
    let n = C(end - start);
    let m = row_reduce(vec2<C>(a, C(0)), SUM).x / n;
    var s1 = C(0);
    var s2 = C(0);
    for (var k = start + lid; k < end; k += WG) {
        let d = (C(x[at(k, c)]) - k0) - m;
        s1 += d;
        s2 += d * d;
    }
    let r = row_reduce(vec2<C>(s1, s2), SUM);
    if lid == 0u {
        let j = (c * p.m.z + p.m.y + b) * 3u;
        partials[j] = n;
        partials[j + 1u] = m + r.x / n;
        partials[j + 2u] = r.y - r.x * r.x / n;
    }
}

// p.m.z: blocks per channel; p.f: eps, the running variance's correction.
fn channel_stats(c: u32, lid: u32) {
    let blocks = p.m.z;
    var s = Stat(C(0), C(0), C(0));
    for (var j = lid; j < blocks; j += WG) {
        let i = (c * blocks + j) * 3u;
        s = merge(s, Stat(partials[i], partials[i + 1u], partials[i + 2u]));
    }
    wn[lid] = s.n;
    wmean[lid] = s.mean;
    wm2[lid] = s.m2;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if lid < h {
            let t = merge(Stat(wn[lid], wmean[lid], wm2[lid]),
                          Stat(wn[lid + h], wmean[lid + h], wm2[lid + h]));
            wn[lid] = t.n;
            wmean[lid] = t.mean;
            wm2[lid] = t.m2;
        }
        workgroupBarrier();
    }
    if lid != 0u {
        return;
    }
    let n = wn[0];
    let m2 = wm2[0];
    // Empty: no pivot was read (0/0 below gives the NaN variance the CPU gives).
    let mean = wmean[0];
    var base = C(0);
    if n > C(0) {
        base = pivot[c];
    }
    let v = m2 / n;
    // Rounding can leave a constant channel's variance slightly below 0; NaN stays NaN.
    let var_ = select(v, C(0), v < C(0) && !is_nan_c(v));
    dev_mean[c] = mean;
    pivot[c] = base;
    var_out[c] = var_;
    mean_out[c] = base + mean;
    rstd_out[c] = inverseSqrt(var_ + p.f.x);
    corrected_out[c] = m2 / (n - p.f.y);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, l: Lanes) {
    lanes = l;
    let g = group_index(wid, nwg);
    if g >= p.n.z {
        return;
    }
    if STAGE == 0u {
        let c = g * WG + l.lid;
        if c < p.n.w && p.n.x > 0u {
            pivot[c] = C(x[c * p.n.y]);
        }
    } else if STAGE == 1u {
        block_stats(g, l.lid);
    } else {
        channel_stats(g, l.lid);
    }
}
