// SELU (or ReLU), one element per thread: λx for x > 0, λα(eˣ - 1) otherwise; and its backward,
// dx = go·λ for x > 0, go·λα·eˣ otherwise (eˣ itself, not expm1 + 1, as the CPU).

@group(0) @binding(0) var<storage, read_write> x: array<S>;
// The backward's grad_out (unused by the forward, which binds x here too).
@group(0) @binding(1) var<storage, read_write> grad: array<S>;
@group(0) @binding(2) var<storage, read_write> y: array<S>;
@group(0) @binding(3) var<uniform> p: Params;

const LAMBDA = 1.0507009873554804934193349852946;
const ALPHA = 1.6732632423543772848170429916717;

override BACKWARD: bool = false;
// ReLU instead: max(x, 0) keeping NaN, and its backward go·[x > 0] (torch's threshold_backward).
override RELU: bool = false;

// p.n: elements, -, workgroups.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    let i = g * WG + lid;
    if g >= p.n.z || i >= p.n.x {
        return;
    }
    let v = C(x[i]);
    if RELU {
        if BACKWARD {
            y[i] = S(select(C(0), C(grad[i]), v > C(0)));
        } else {
            y[i] = S(select(C(0), v, v > C(0) || is_nan_c(v)));
        }
        return;
    }
    if BACKWARD {
        let go = C(grad[i]);
        if v > C(0) {
            y[i] = S(go * C(LAMBDA));
        } else {
            y[i] = S(go * C(LAMBDA * ALPHA) * exp_c(v));
        }
    } else if v > C(0) {
        y[i] = S(C(LAMBDA) * v);
    } else {
        y[i] = S(C(LAMBDA * ALPHA) * expm1_c(v));
    }
}
