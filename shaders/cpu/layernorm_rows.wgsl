// LayerNorm for CPU adapters such as lavapipe: layernorm.wgsl's operation (read its header),
// one invocation per row, no workgroup memory and no barriers. lavapipe runs a workgroup's
// invocations as SIMD lanes, 8 at a time, and a barrier switches between all those groups of
// lanes (20 barriers a row in layernorm.wgsl); there a thread that reads its row three times
// from the caches is the cheaper way. Same two passes.
//
// The grid may be 2-D when rows > 65535 (workgroups of ROWS_WG rows;
// row = gid.x + gid.y * num_workgroups.x * ROWS_WG).

// #include layernorm_params

const ROWS_WG: u32 = 8u;
// Elements summed before their partial sum joins the row's: rounding then grows with
// SUM_BLOCK + h / SUM_BLOCK terms rather than h, close to layernorm.wgsl's tree.
const SUM_BLOCK: u32 = 32u;

// Sum over the row at `base` of (x, 0) (centred = false) or of (d, d * d) with
// d = x - mean (centred = true).
fn row_sums(base: u32, mean: f32, centred: bool) -> vec2f {
    var total = vec2f(0.0);
    for (var i0 = 0u; i0 < p.h; i0 += SUM_BLOCK) {
        var part = vec2f(0.0);
        for (var i = i0; i < min(i0 + SUM_BLOCK, p.h); i++) {
            let v = x[base + i];
            if centred {
                let d = v - mean;
                part += vec2f(d, d * d);
            } else {
                part.x += v;
            }
        }
        total += part;
    }
    return total;
}

@compute @workgroup_size(ROWS_WG)
fn layernorm_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let row = gid.x + gid.y * nwg.x * ROWS_WG;
    if row >= p.rows {
        return;
    }
    let base = row * p.h;
    let n = f32(p.h);
    // The corrected two-pass statistics of layernorm.wgsl's row_stats.
    let mean = row_sums(base, 0.0, false).x / n;
    let m = row_sums(base, mean, true) / n;
    let variance = max(m.y - m.x * m.x, 0.0);
    let inv = 1.0 / sqrt(variance + p.eps);
    for (var i = 0u; i < p.h; i++) {
        var out = ((x[base + i] - mean) - m.x) * inv * w[i];
        if p.has_bias != 0u {
            out += b[i];
        }
        y[base + i] = out;
    }
}
