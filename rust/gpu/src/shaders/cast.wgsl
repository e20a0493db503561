// Element type conversion (parameters arrive in any float dtype and are rounded through the
// input's, as on the CPU), and tiling, one element per thread.

@group(0) @binding(0) var<storage, read_write> x: array<S>;
@group(0) @binding(1) var<storage, read_write> y: array<D>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    let i = g * WG + lid;
    if g >= p.n.z || i >= p.n.x {
        return;
    }
    // p.m.x == 0: a conversion, x split into dispatches as y is; else a tiling of x (bound whole)
    // with period p.m.x, from the dispatch's first element p.m.z.
    var src = i;
    if p.m.x > 0u {
        src = (p.m.z + i) % p.m.x;
    }
    y[i] = D(x[src]);
}
