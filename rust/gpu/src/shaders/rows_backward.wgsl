// LayerNorm and RMSNorm backward, each row's dx: with x̂ = (x - mean)·rstd (RMSNorm: x·rstd) and
// g = grad·weight, dx = rstd·(g - mean(g) - x̂·mean(g·x̂)) (RMSNorm: no mean(g) term), plus the
// gradient that reached a fused add's sum output. T threads share a row, as in rows.wgsl.

@group(0) @binding(0) var<storage, read_write> grad: array<S>;
@group(0) @binding(1) var<storage, read_write> x: array<S>;
@group(0) @binding(2) var<storage, read_write> mean: array<C>;
@group(0) @binding(3) var<storage, read_write> rstd: array<C>;
@group(0) @binding(4) var<storage, read_write> weight: array<S>;
@group(0) @binding(5) var<storage, read_write> grad_sum: array<S>;
@group(0) @binding(6) var<storage, read_write> dx: array<S>;
@group(0) @binding(7) var<uniform> p: Params;

override CENTERED: bool = true;
override HAS_W: bool = false;
override ADD_GRAD: bool = false;

// p.n: rows, cols, workgroups.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, l: Lanes) {
    lanes = l;
    let g0 = group_index(wid, nwg);
    if g0 >= p.n.z {
        return;
    }
    let cols = p.n.y;
    let row = g0 * (WG / T) + l.lid / T;
    let lane = l.lid % T;
    let live = row < p.n.x;
    let base = row * cols;
    var mu = C(0);
    var r = C(0);
    if live {
        if CENTERED {
            mu = mean[row];
        }
        r = rstd[row];
    }
    var sg = C(0);
    var sgx = C(0);
    if live {
        for (var j = lane; j < cols; j += T) {
            var g = C(grad[base + j]);
            if HAS_W {
                g *= C(weight[j]);
            }
            sg += g;
            sgx += g * ((C(x[base + j]) - mu) * r);
        }
    }
    let s = row_reduce(vec2<C>(sg, sgx), SUM);
    if !live {
        return;
    }
    let n = C(cols);
    var a = C(0);
    if CENTERED {
        a = s.x / n;
    }
    let b = s.y / n;
    for (var j = lane; j < cols; j += T) {
        var g = C(grad[base + j]);
        if HAS_W {
            g *= C(weight[j]);
        }
        let xh = (C(x[base + j]) - mu) * r;
        var d = S((g - a - xh * b) * r);
        if ADD_GRAD {
            // Added to dx as stored, as the CPU adds it.
            d = S(C(d) + C(grad_sum[base + j]));
        }
        dx[base + j] = d;
    }
}
