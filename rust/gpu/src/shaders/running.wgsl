// A running statistic updated in place, PyTorch's rule: running = (1 - f)·running + f·batch, where
// the batch value is the average of J entries (InstanceNorm: the channel's N instances), summed in
// order as the CPU sums them. D: the running array's dtype.

@group(0) @binding(0) var<storage, read_write> batch: array<C>;
@group(0) @binding(1) var<storage, read_write> running: array<D>;
@group(0) @binding(2) var<uniform> p: Params;

// p.n: running entries R, -, workgroups; p.m.x: J, the batch entries of each (at j * R + r);
// p.f.x: the batch's weight f.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    let r = g * WG + lid;
    if g >= p.n.z || r >= p.n.x {
        return;
    }
    let count = p.m.x;
    var acc = C(0);
    for (var j = 0u; j < count; j++) {
        acc += batch[j * p.n.x + r] / C(count);
    }
    running[r] = D((C(1) - p.f.x) * C(running[r]) + p.f.x * acc);
}
