// Reduction strategy without subgroups: a tree in workgroup memory.

struct Lanes {
    @builtin(local_invocation_index) lid: u32,
}

var<private> lanes: Lanes;

fn row_reduce(v: vec2<C>, op: u32) -> vec2<C> {
    return tree_reduce(v, op);
}
