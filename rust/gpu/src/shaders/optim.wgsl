// One optimizer step of many tensors in one dispatch, in place, with torch.optim's rules and
// order of operations (see rust/core/src/optim: the same formulas). One element per thread. The
// step-dependent scalars come from the host, computed in f64, one row of 16 per tensor; the rules
// are constants of the pipeline.
//
// A dispatch updates up to SLOTS tensors (or parts of tensors longer than a binding), like
// PyTorch's multi-tensor kernels: optim.rs puts before this file each slot's bindings (its
// parameter, gradient and STATES states) and `load`/`store`, which pick the slot's arrays by a
// switch on the slot, the same for a whole workgroup. Bindings 0-2:
//   plan: per slot of every dispatch of the step, 4 u32: its first workgroup in the dispatch, its
//         elements, its row of `scalars`, 0;
//   scalars: the table of rows;
//   norm: the global gradient norm (clip_grad_norm fused into the step), from sumsq.wgsl.

override SLOTS: u32 = 1u;
override STATES: u32 = 0u;

// One element of a slot: parameter, gradient and states (in Algorithm::state_names order; the
// ones the rules lack stay 0 and are not stored).
struct Elem {
    x: C,
    g: C,
    s0: C,
    s1: C,
    s2: C,
}

const SGD: u32 = 0u;
const ADAGRAD: u32 = 1u;
const ADADELTA: u32 = 2u;
const RMSPROP: u32 = 3u;
const ADAM: u32 = 4u;

override ALG: u32 = SGD;
override MOMENTUM: bool = false;
override NESTEROV: bool = false;
override DECAY: bool = false;
override DECOUPLED: bool = false;
override AMSGRAD: bool = false;
override CENTERED: bool = false;
override MAXIMIZE: bool = false;
// Gradients scaled by min(1, max_norm / (norm + 1e-6)) as they are read.
override CLIP: bool = false;

// Row k of the table: lr (Adam: lr / (1 - β₁ᵗ); Adagrad: the decayed lr), weight decay, momentum,
// 1 - dampening, fresh momentum buffer (0/1), max_norm, √(1 - β₂ᵗ), 1 - lr·wd, 1 - β₁, the
// second-moment decay (β₂, alpha, rho), 1 - it, eps.
fn sc(row: u32, i: u32) -> C {
    return scalars[row * 16u + i];
}

// p.n: -, slots used, workgroups; p.m: the dispatch's first row of `plan`.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let gi = group_index(wid, nwg);
    if gi >= p.n.z {
        return;
    }
    // The slot of this workgroup: the last whose first workgroup is at or before it.
    var lo = 0u;
    var hi = p.n.y;
    while hi - lo > 1u {
        let mid = (lo + hi) / 2u;
        if gi >= plan[(p.m.x + mid) * 4u] {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let entry = (p.m.x + lo) * 4u;
    let i = (gi - plan[entry]) * WG + lid;
    if i >= plan[entry + 1u] {
        return;
    }
    var e = load(lo, i);
    update(&e, plan[entry + 2u]);
    store(lo, i, e);
}

// The step of one element, in place.
fn update(e: ptr<function, Elem>, row: u32) {
    var x = (*e).x;
    var g = (*e).g;
    if CLIP {
        // torch.nn.utils.clip_grad_norm_: the coefficient capped at 1.
        g *= min(C(1), sc(row, 5u) / (norm[0] + C(1e-6)));
    }
    if MAXIMIZE {
        g = -g;
    }
    let lr = sc(row, 0u);
    let wd = sc(row, 1u);
    let b = sc(row, 9u);
    let one_minus_b = sc(row, 10u);
    let eps = sc(row, 11u);
    if DECAY {
        if DECOUPLED {
            x *= sc(row, 7u);
        } else {
            g += wd * x;
        }
    }
    if ALG == SGD {
        var d = g;
        if MOMENTUM {
            let mom = sc(row, 2u);
            var buf = (*e).s0;
            if sc(row, 4u) != C(0) {
                buf = g;
            } else {
                buf = mom * buf + sc(row, 3u) * g;
            }
            (*e).s0 = buf;
            d = buf;
            if NESTEROV {
                d = g + mom * buf;
            }
        }
        x -= lr * d;
    } else if ALG == ADAGRAD {
        let sum = (*e).s0 + g * g;
        (*e).s0 = sum;
        x -= lr * (g / (sqrt(sum) + eps));
    } else if ALG == ADADELTA {
        let sq = (*e).s0 * b + one_minus_b * g * g;
        let acc = (*e).s1;
        let delta = sqrt(acc + eps) / sqrt(sq + eps) * g;
        (*e).s0 = sq;
        (*e).s1 = acc * b + one_minus_b * delta * delta;
        x -= lr * delta;
    } else if ALG == RMSPROP {
        let sq = (*e).s0 * b + one_minus_b * g * g;
        (*e).s0 = sq;
        var avg = sqrt(sq) + eps;
        if CENTERED {
            // grad_avg is the last state: s2 with a momentum buffer, else s1.
            var ga: C;
            if MOMENTUM {
                ga = (*e).s2;
            } else {
                ga = (*e).s1;
            }
            ga += one_minus_b * (g - ga);
            if MOMENTUM {
                (*e).s2 = ga;
            } else {
                (*e).s1 = ga;
            }
            avg = sqrt(sq - ga * ga) + eps;
        }
        if MOMENTUM {
            let buf = (*e).s1 * sc(row, 2u) + g / avg;
            (*e).s1 = buf;
            x -= lr * buf;
        } else {
            x -= lr * (g / avg);
        }
    } else {
        let m = (*e).s0 + sc(row, 8u) * (g - (*e).s0);
        let v = (*e).s1 * b + one_minus_b * g * g;
        (*e).s0 = m;
        (*e).s1 = v;
        var second = v;
        if AMSGRAD {
            // torch.maximum: NaN in either propagates.
            let old = (*e).s2;
            second = select(old, v, v > old || is_nan_c(v));
            (*e).s2 = second;
        }
        x -= lr * (m / (sqrt(second) / sc(row, 6u) + eps));
    }
    (*e).x = x;
}
