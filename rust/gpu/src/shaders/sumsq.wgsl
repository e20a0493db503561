// Gradient clipping. The global L2 norm of many arrays, summed in a fixed order: stage 0 sums the
// squares of each block of BLOCK elements of one array into its slot of the partial sums, stage 1
// sums all the slots in order (one workgroup) and writes the norm. Stage 2 scales an array in
// place by min(1, max_norm / (norm + 1e-6)), one element per thread.

@group(0) @binding(0) var<storage, read_write> x: array<S>;
@group(0) @binding(1) var<storage, read_write> partials: array<C>;
@group(0) @binding(2) var<storage, read_write> norm: array<C>;
@group(0) @binding(3) var<uniform> p: Params;

override STAGE: u32 = 0u;
const BLOCK: u32 = 4096u;

// Stage 0 and 2, p.n: elements, -, workgroups; stage 0, p.m.x: the array's first slot; stage 1,
// p.m.y: slots; stage 2, p.f.x: max_norm.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, l: Lanes) {
    lanes = l;
    let g = group_index(wid, nwg);
    if g >= p.n.z {
        return;
    }
    if STAGE == 2u {
        let i = g * WG + l.lid;
        if i < p.n.x {
            x[i] = S(C(x[i]) * min(C(1), p.f.x / (norm[0] + C(1e-6))));
        }
        return;
    }
    var s = C(0);
    if STAGE == 0u {
        let end = min(g * BLOCK + BLOCK, p.n.x);
        for (var i = g * BLOCK + l.lid; i < end; i += WG) {
            let v = C(x[i]);
            s += v * v;
        }
    } else {
        for (var i = l.lid; i < p.m.y; i += WG) {
            s += partials[i];
        }
    }
    let total = row_reduce(vec2<C>(s, C(0)), SUM).x;
    if l.lid == 0u {
        if STAGE == 0u {
            partials[p.m.x + g] = total;
        } else {
            norm[0] = sqrt(total);
        }
    }
}
