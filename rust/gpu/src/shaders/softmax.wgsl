// softmax and log_softmax along one axis of an array seen as (outer, n, inner): row r is
// (r / inner, ·, r % inner), its elements `inner` apart. One pass keeps a running maximum m and
// Σexp(x - m) per thread (`softmax_add`), a second writes the outputs.

@group(0) @binding(0) var<storage, read_write> x: array<S>;
@group(0) @binding(1) var<storage, read_write> y: array<S>;
@group(0) @binding(2) var<uniform> p: Params;

override LOG: bool = false;

// p.n: rows (outer * inner), n, workgroups; p.m.x: inner.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, l: Lanes) {
    lanes = l;
    let g = group_index(wid, nwg);
    if g >= p.n.z {
        return;
    }
    let n = p.n.y;
    let inner = p.m.x;
    let row = g * (WG / T) + l.lid / T;
    let lane = l.lid % T;
    let live = row < p.n.x;
    let base = (row / inner) * n * inner + row % inner;
    var ms = vec2<C>(LOWEST, C(0));
    if live {
        for (var j = lane; j < n; j += T) {
            ms = softmax_add(ms, C(x[base + j * inner]));
        }
    }
    let r = row_reduce(ms, SOFTMAX);
    if !live {
        return;
    }
    let log_s = log_c(r.y);
    for (var j = lane; j < n; j += T) {
        let i = base + j * inner;
        let d = C(x[i]) - r.x;
        if LOG {
            y[i] = S(d - log_s);
        } else {
            y[i] = S(exp_c(d) / r.y);
        }
    }
}
