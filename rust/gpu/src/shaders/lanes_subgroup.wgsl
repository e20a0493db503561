// Reduction strategy with subgroups, for rows that fill the workgroup (T == WG): each subgroup
// reduces in registers, then every thread merges the subgroups' results from workgroup memory.
// Correct for any subgroup size and count, and for subgroups of any lanes of the workgroup.
// Rows shorter than the workgroup use the tree: a subgroup could span two rows.

struct Lanes {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
}

var<private> lanes: Lanes;

fn row_reduce(v: vec2<C>, op: u32) -> vec2<C> {
    if T != WG {
        return tree_reduce(v, op);
    }
    var part: vec2<C>;
    if op == SUM {
        part = subgroupAdd(v);
    } else {
        let m = subgroupMax(v.x);
        part = vec2<C>(m, subgroupAdd(v.y * exp_c(v.x - m)));
    }
    if lanes.sg_lane == 0u {
        red[lanes.sg_id] = part;
    }
    workgroupBarrier();
    var total = red[0];
    for (var i = 1u; i < lanes.sg_count; i++) {
        total = combine(total, red[i], op);
    }
    workgroupBarrier();
    return total;
}
