// Reductions over the T threads of a row, in workgroup memory. Pairs reduce in one sweep: the
// row kernels need (Σd, Σd²) or a softmax's (max, Σexp) together.

const SUM: u32 = 0u;
// (m, s) pairs of a running maximum and a sum of exp(x - m), merged without overflow.
const SOFTMAX: u32 = 1u;

var<workgroup> red: array<vec2<C>, WG>;

fn combine(a: vec2<C>, b: vec2<C>, op: u32) -> vec2<C> {
    if op == SUM {
        return a + b;
    }
    let m = max(a.x, b.x);
    return vec2<C>(m, a.y * exp_c(a.x - m) + b.y * exp_c(b.x - m));
}

// A running (max, Σexp(x − max)) pair with one more value, the sum rescaled when the maximum grows:
// the pairs `combine` merges as SOFTMAX. Start from (LOWEST, 0), not -inf: exp(-inf − -inf) would be
// NaN for a leading -inf.
fn softmax_add(ms: vec2<C>, v: C) -> vec2<C> {
    if v > ms.x {
        return vec2<C>(v, ms.y * exp_c(ms.x - v) + C(1));
    }
    return vec2<C>(ms.x, ms.y + exp_c(v - ms.x));
}

fn tree_reduce(v: vec2<C>, op: u32) -> vec2<C> {
    let lid = lanes.lid;
    let lane = lid % T;
    red[lid] = v;
    workgroupBarrier();
    for (var s = T / 2u; s > 0u; s = s / 2u) {
        if lane < s {
            red[lid] = combine(red[lid], red[lid + s], op);
        }
        workgroupBarrier();
    }
    let total = red[lid - lane];
    // The next reduction writes red again.
    workgroupBarrier();
    return total;
}
