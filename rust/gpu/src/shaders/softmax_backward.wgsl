// The backward of softmax (LOG: log_softmax) along one axis, rows laid out as in softmax.wgsl,
// from grad_out g and the forward's output y: dx = y·(g − Σ g·y), or g − exp(y)·Σ g.

@group(0) @binding(0) var<storage, read_write> g: array<S>;
@group(0) @binding(1) var<storage, read_write> y: array<S>;
@group(0) @binding(2) var<storage, read_write> dx: array<S>;
@group(0) @binding(3) var<uniform> p: Params;

override LOG: bool = false;

// p.n: rows (outer * inner), n, workgroups; p.m.x: inner.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, l: Lanes) {
    lanes = l;
    let grp = group_index(wid, nwg);
    if grp >= p.n.z {
        return;
    }
    let n = p.n.y;
    let inner = p.m.x;
    let row = grp * (WG / T) + l.lid / T;
    let lane = l.lid % T;
    let live = row < p.n.x;
    let base = (row / inner) * n * inner + row % inner;
    var s = C(0);
    if live {
        for (var j = lane; j < n; j += T) {
            let i = base + j * inner;
            if LOG {
                s += C(g[i]);
            } else {
                s += C(g[i]) * C(y[i]);
            }
        }
    }
    // Every thread of the row has read its elements before any writes dx (which may be g or y).
    let total = row_reduce(vec2<C>(s, C(0)), SUM).x;
    if !live {
        return;
    }
    for (var j = lane; j < n; j += T) {
        let i = base + j * inner;
        let gv = C(g[i]);
        let yv = C(y[i]);
        if LOG {
            dx[i] = S(gv - exp_c(yv) * total);
        } else {
            dx[i] = S(yv * (gv - total));
        }
    }
}
