// One optimizer step of one tensor, in place, with torch.optim's rules and order of operations
// (see rust/core/src/optim: the same formulas). One element per thread. The step-dependent scalars
// come from the host, computed in f64, one row of 16 per tensor; the rules are constants of the
// pipeline.

@group(0) @binding(0) var<storage, read_write> param: array<S>;
@group(0) @binding(1) var<storage, read_write> grad: array<S>;
@group(0) @binding(2) var<storage, read_write> s0: array<S>;
@group(0) @binding(3) var<storage, read_write> s1: array<S>;
@group(0) @binding(4) var<storage, read_write> s2: array<S>;
@group(0) @binding(5) var<storage, read_write> scalars: array<C>;
// The global gradient norm (clip_grad_norm fused into the step), from sumsq.wgsl.
@group(0) @binding(6) var<storage, read_write> norm: array<C>;
@group(0) @binding(7) var<uniform> p: Params;

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
fn sc(i: u32) -> C {
    return scalars[p.m.x * 16u + i];
}

// p.n: elements in this dispatch, -, workgroups; p.m: the tensor's row, -, the dispatch's first
// element.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let gi = group_index(wid, nwg);
    let i = gi * WG + lid;
    if gi >= p.n.z || i >= p.n.x {
        return;
    }
    var x = C(param[i]);
    var g = C(grad[i]);
    if CLIP {
        // torch.nn.utils.clip_grad_norm_: the coefficient capped at 1.
        g *= min(C(1), sc(5u) / (norm[0] + C(1e-6)));
    }
    if MAXIMIZE {
        g = -g;
    }
    let lr = sc(0u);
    let wd = sc(1u);
    let b = sc(9u);
    let one_minus_b = sc(10u);
    let eps = sc(11u);
    if DECAY {
        if DECOUPLED {
            x *= sc(7u);
        } else {
            g += wd * x;
        }
    }
    if ALG == SGD {
        var d = g;
        if MOMENTUM {
            let mom = sc(2u);
            var buf = C(s0[i]);
            if sc(4u) != C(0) {
                buf = g;
            } else {
                buf = mom * buf + sc(3u) * g;
            }
            s0[i] = S(buf);
            d = buf;
            if NESTEROV {
                d = g + mom * buf;
            }
        }
        x -= lr * d;
    } else if ALG == ADAGRAD {
        let sum = C(s0[i]) + g * g;
        s0[i] = S(sum);
        x -= lr * (g / (sqrt(sum) + eps));
    } else if ALG == ADADELTA {
        let sq = C(s0[i]) * b + one_minus_b * g * g;
        let acc = C(s1[i]);
        let delta = sqrt(acc + eps) / sqrt(sq + eps) * g;
        s0[i] = S(sq);
        s1[i] = S(acc * b + one_minus_b * delta * delta);
        x -= lr * delta;
    } else if ALG == RMSPROP {
        let sq = C(s0[i]) * b + one_minus_b * g * g;
        s0[i] = S(sq);
        var avg = sqrt(sq) + eps;
        if CENTERED {
            // grad_avg is the last state: s2 with a momentum buffer, else s1.
            var ga: C;
            if MOMENTUM {
                ga = C(s2[i]);
            } else {
                ga = C(s1[i]);
            }
            ga += one_minus_b * (g - ga);
            if MOMENTUM {
                s2[i] = S(ga);
            } else {
                s1[i] = S(ga);
            }
            avg = sqrt(sq - ga * ga) + eps;
        }
        if MOMENTUM {
            let buf = C(s1[i]) * sc(2u) + g / avg;
            s1[i] = S(buf);
            x -= lr * buf;
        } else {
            x -= lr * (g / avg);
        }
    } else {
        let m = C(s0[i]) + sc(8u) * (g - C(s0[i]));
        let v = C(s1[i]) * b + one_minus_b * g * g;
        s0[i] = S(m);
        s1[i] = S(v);
        var second = v;
        if AMSGRAD {
            // torch.maximum: NaN in either propagates.
            let old = C(s2[i]);
            second = select(old, v, v > old || is_nan_c(v));
            s2[i] = S(second);
        }
        x -= lr * (m / (sqrt(second) / sc(6u) + eps));
    }
    param[i] = S(x);
}
