// The parameter gradients of the row norms, dweight[j] = Σ_r grad[r, j]·x̂[r, j] and dbias[j] =
// Σ_r grad[r, j], summed in a fixed order whatever the scheduling: stage 0 sums blocks of rows of a
// column (one thread per column, reads coalesced along the row), stage 1 each column's blocks in
// order. The host sizes the blocks so stage 0 has enough workgroups and stage 1 few blocks to add.

@group(0) @binding(0) var<storage, read_write> grad: array<S>;
@group(0) @binding(1) var<storage, read_write> x: array<S>;
@group(0) @binding(2) var<storage, read_write> mean: array<C>;
@group(0) @binding(3) var<storage, read_write> rstd: array<C>;
@group(0) @binding(4) var<storage, read_write> partials: array<C>;
@group(0) @binding(5) var<storage, read_write> dweight: array<S>;
@group(0) @binding(6) var<storage, read_write> dbias: array<S>;
@group(0) @binding(7) var<uniform> p: Params;

override STAGE: u32 = 0u;
override CENTERED: bool = true;

// Stage 0, p.n: rows in this dispatch, cols, workgroups, workgroups per row of columns; p.m: the
// dispatch's first block, rows per block.
// Stage 1, p.n: -, cols, workgroups; p.m.z: blocks.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    if g >= p.n.z {
        return;
    }
    let cols = p.n.y;
    if STAGE == 0u {
        let j = (g % p.n.w) * WG + lid;
        let block = g / p.n.w;
        if j >= cols {
            return;
        }
        let start = block * p.m.y;
        let end = min(start + p.m.y, p.n.x);
        var sw = C(0);
        var sb = C(0);
        for (var row = start; row < end; row++) {
            var mu = C(0);
            if CENTERED {
                mu = mean[row];
            }
            let go = C(grad[row * cols + j]);
            sw += go * ((C(x[row * cols + j]) - mu) * rstd[row]);
            sb += go;
        }
        let at = ((p.m.x + block) * cols + j) * 2u;
        partials[at] = sw;
        partials[at + 1u] = sb;
    } else {
        let j = g * WG + lid;
        if j >= cols {
            return;
        }
        var sw = C(0);
        var sb = C(0);
        for (var block = 0u; block < p.m.z; block++) {
            let at = (block * cols + j) * 2u;
            sw += partials[at];
            sb += partials[at + 1u];
        }
        dweight[j] = S(sw);
        dbias[j] = S(sb);
    }
}
