// Cross-entropy of softmax(x) (classes along one axis, rows laid out as in softmax.wgsl) against
// class indices or probabilities, smoothed by ε and weighted per class, as
// torch.nn.functional.cross_entropy; and its gradient. Every row first finds its maximum m and
// Σ exp(x − m) = s (lse = m + log s), then sums terms in m − x ≥ 0, so offset logits lose nothing
// to cancellation.
//   STAGE 0: each row's loss into `loss` (0 for an ignored row).
//   STAGE 1: one workgroup sums `loss` in a fixed order, times p.f.y, into `total`.
//   STAGE 2: each row's gradient into `dx`, scaled by scale[row · p.m.z] · p.f.y.

@group(0) @binding(0) var<storage, read_write> x: array<S>;
// Probabilities, laid out as x (INDEX: unused).
@group(0) @binding(1) var<storage, read_write> t: array<S>;
// One class index per row (INDEX).
@group(0) @binding(2) var<storage, read_write> cls: array<i32>;
// Class weights (WEIGHTED).
@group(0) @binding(3) var<storage, read_write> w: array<C>;
// The loss's gradient (STAGE 2): one value, or one per row.
@group(0) @binding(4) var<storage, read_write> scale: array<C>;
@group(0) @binding(5) var<storage, read_write> dx: array<S>;
@group(0) @binding(6) var<storage, read_write> loss: array<C>;
@group(0) @binding(7) var<storage, read_write> total: array<C>;
@group(0) @binding(8) var<uniform> p: Params;

override STAGE: u32 = 0u;
override INDEX: bool = true;
override WEIGHTED: bool = false;

fn weight(c: u32) -> C {
    if WEIGHTED {
        return w[c];
    }
    return C(1);
}

// p.n: rows (outer * inner), classes, workgroups; p.m: inner,
// ignore_index (as i32 bits), scale stride (0 or 1); p.f: ε, the gradient's factor, Σ weights.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, l: Lanes) {
    lanes = l;
    let grp = group_index(wid, nwg);
    if grp >= p.n.z {
        return;
    }
    if STAGE == 1u {
        var acc = C(0);
        for (var i = l.lid; i < p.n.x; i += WG) {
            acc += loss[i];
        }
        let sum = tree_reduce(vec2<C>(acc, C(0)), SUM).x;
        if l.lid == 0u {
            total[0] = sum * p.f.y;
        }
        return;
    }
    let n = p.n.y;
    let inner = p.m.x;
    let eps = p.f.x;
    let smooth_c = eps / C(n);
    let row = grp * (WG / T) + l.lid / T;
    let lane = l.lid % T;
    let live = row < p.n.x;
    let base = (row / inner) * n * inner + row % inner;
    var tc = 0u;
    var ignored = false;
    if INDEX && live {
        let c = cls[row];
        ignored = c == bitcast<i32>(p.m.y);
        // An ignore_index may be any integer; other indices are classes (checked on the host).
        tc = select(u32(c), 0u, ignored);
    }
    var part = vec2<C>(LOWEST, C(0));
    if live {
        for (var j = lane; j < n; j += T) {
            part = softmax_add(part, C(x[base + j * inner]));
        }
    }
    let ms = row_reduce(part, SOFTMAX);
    let m = ms.x;
    let log_s = log_c(ms.y);
    // Probabilities: Σ w·q·(m − x) and Σ w·q, q = (1 − ε)·t + ε/C. Indices: Σ w·(m − x).
    var acc = vec2<C>(C(0), C(0));
    if live && (!INDEX || (STAGE == 0u && eps != C(0))) {
        for (var j = lane; j < n; j += T) {
            let i = base + j * inner;
            var q = C(1);
            if !INDEX {
                q = (C(1) - eps) * C(t[i]) + smooth_c;
            }
            let wq = weight(j) * q;
            acc += vec2<C>(wq * (m - C(x[i])), wq);
        }
    }
    let sums = row_reduce(acc, SUM);
    if !live {
        return;
    }
    if STAGE == 0u {
        if lane != 0u {
            return;
        }
        if ignored {
            loss[row] = C(0);
        } else if INDEX {
            let picked = weight(tc) * ((m - C(x[base + tc * inner])) + log_s);
            let spread = sums.x + p.f.z * log_s;
            loss[row] = (C(1) - eps) * picked + smooth_c * spread;
        } else {
            loss[row] = sums.x + sums.y * log_s;
        }
        return;
    }
    let k = scale[row * p.m.z] * p.f.y;
    var a: C;
    if INDEX {
        a = k * ((C(1) - eps) * weight(tc) + smooth_c * p.f.z) / ms.y;
    } else {
        a = k * sums.y / ms.y;
    }
    for (var j = lane; j < n; j += T) {
        let i = base + j * inner;
        if ignored {
            dx[i] = S(0);
            continue;
        }
        var b: C;
        if INDEX {
            b = smooth_c * weight(j);
            if j == tc {
                b += (C(1) - eps) * weight(tc);
            }
        } else {
            b = weight(j) * ((C(1) - eps) * C(t[i]) + smooth_c);
        }
        dx[i] = S(exp_c(C(x[i]) - m) * a - k * b);
    }
}
