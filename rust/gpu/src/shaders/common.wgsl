// Shared by every kernel. pipelines.rs puts before it the `enable` directives, `alias S` (the
// storage type), `alias C` (the compute type: f32 for f16 storage), `LOWEST` (C's lowest finite
// value), `exp_c`/`log_c`, and the reduction strategy (lanes_*.wgsl).

const WG: u32 = 256u;

// Threads that share one row (a power of two dividing WG): short rows put several rows in a
// workgroup.
override T: u32 = 256u;

struct Params {
    // rows (or elements), row length, workgroups of the dispatch, op-specific
    n: vec4<u32>,
    // op-specific counts
    m: vec4<u32>,
    // eps and the op's other scalars, in the compute type
    f: vec4<C>,
}

// The workgroup's linear index: dispatches beyond 65,535 workgroups are 2-D.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}
