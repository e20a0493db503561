// c = op(a) · op(b) (+ bias per column) of 2-D arrays, op a transpose where TRANS_A / TRANS_B
// say: the linear layers of a training loop on the device. One workgroup a 16 × 16 tile of c, one
// thread an element, k in tiles of 16 through workgroup memory, summed in the compute type in
// increasing k (the same bits on every run).

@group(0) @binding(0) var<storage, read_write> a: array<S>;
@group(0) @binding(1) var<storage, read_write> b: array<S>;
@group(0) @binding(2) var<storage, read_write> bias: array<S>;
@group(0) @binding(3) var<storage, read_write> c: array<S>;
@group(0) @binding(4) var<uniform> p: Params;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override BIAS: bool = false;

const TILE: u32 = 16u;

var<workgroup> tile_a: array<array<C, 16>, 16>;
var<workgroup> tile_b: array<array<C, 16>, 16>;

// Element (i, k) of op(a), 0 outside it; p.n: M, N, K.
fn at_a(i: u32, k: u32) -> C {
    if i >= p.n.x || k >= p.n.z {
        return C(0);
    }
    if TRANS_A {
        return C(a[k * p.n.x + i]);
    }
    return C(a[i * p.n.z + k]);
}

// Element (k, j) of op(b), 0 outside it.
fn at_b(k: u32, j: u32) -> C {
    if k >= p.n.z || j >= p.n.y {
        return C(0);
    }
    if TRANS_B {
        return C(b[j * p.n.z + k]);
    }
    return C(b[k * p.n.y + j]);
}

// p.m.x: workgroups (tiles of c), p.m.y: tiles along N.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    if g >= p.m.x {
        return;
    }
    let ly = lid / TILE;
    let lx = lid % TILE;
    let i = (g / p.m.y) * TILE + ly;
    let j = (g % p.m.y) * TILE + lx;
    var acc = C(0);
    for (var k0 = 0u; k0 < p.n.z; k0 += TILE) {
        tile_a[ly][lx] = at_a(i, k0 + lx);
        tile_b[ly][lx] = at_b(k0 + ly, j);
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            acc += tile_a[ly][kk] * tile_b[kk][lx];
        }
        workgroupBarrier();
    }
    if i < p.n.x && j < p.n.y {
        if BIAS {
            acc += C(bias[j]);
        }
        c[i * p.n.y + j] = S(acc);
    }
}
