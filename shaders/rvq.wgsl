// Residual vector quantisation as EnCodec uses it (transformers' EncodecResidualVectorQuantizer).
//
// Layout: codebooks [n_books, N, D] f32 (quantizer.layers.{q}.codebook.embed stacked), codes
// [n_q, B, T] u32 (n_q <= n_books; stage q uses codebook q), embeddings [B, D, T] f32 (channels
// first, what the decoder's first conv reads).
//
// rvq_decode: emb[b, :, t] = sum over q = 0..n_q-1 of codebook_q[codes[q, b, t]], summed in stage
//   order from 0.0 as transformers does. One invocation per output element.
// rvq_encode: for each stage, the nearest codeword to the residual (squared euclidean distance,
//   lowest index on ties), then residual -= that codeword. Each workgroup quantises P positions
//   (b, t) through all stages: the residuals live in workgroup memory, each invocation scans
//   every WG-th codeword against all P residuals (so a codeword is read once per P positions),
//   and a tree reduction picks the winner per position. Needs D % 4 == 0 and D <= MAX_D.
// Code values are validated on the host; the shaders still clamp them to N - 1 so that no input
// can make them read outside the codebooks.

struct Params {
    n_q: u32,
    batch: u32,
    t_len: u32,
    dim: u32,
    n_codes: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> cb: array<f32>;
// rvq_decode
@group(0) @binding(1) var<storage, read> codes_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> emb_out: array<f32>;
// rvq_encode
@group(0) @binding(1) var<storage, read> x_in: array<f32>;
@group(0) @binding(2) var<storage, read> cb4: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> codes_out: array<u32>;

const WG: u32 = 256u;
// Positions per encode workgroup, and the largest codebook dimension it holds.
const P: u32 = 8u;
const MAX_D: u32 = 256u;
const NONE: u32 = 0xffffffffu;

@compute @workgroup_size(WG)
fn rvq_decode(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    let per_batch = p.dim * p.t_len;
    if i >= p.batch * per_batch {
        return;
    }
    let b = i / per_batch;
    let d = (i / p.t_len) % p.dim;
    let t = i % p.t_len;
    var acc = 0.0;
    for (var q = 0u; q < p.n_q; q++) {
        let code = min(codes_in[(q * p.batch + b) * p.t_len + t], p.n_codes - 1u);
        acc += cb[(q * p.n_codes + code) * p.dim + d];
    }
    emb_out[i] = acc;
}

// residual[pp * MAX_D4 + d4] = dims 4*d4 .. 4*d4+3 of position pp's residual.
const MAX_D4: u32 = MAX_D / 4u;
var<workgroup> residual: array<vec4f, P * MAX_D4>;
var<workgroup> best_dist: array<f32, WG>;
var<workgroup> best_code: array<u32, WG>;
var<workgroup> chosen: array<u32, P>;

// Whether (d1, i1) beats (d0, i0): smaller distance, or equal distance and lower index.
fn better(d1: f32, i1: u32, d0: f32, i0: u32) -> bool {
    return d1 < d0 || (d1 == d0 && i1 < i0);
}

@compute @workgroup_size(WG)
fn rvq_encode(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let pos0 = (wid.x + wid.y * nwg.x) * P;
    let n_pos = p.batch * p.t_len;
    let d4n = p.dim / 4u;

    // Load the P inputs (zeros past the end), one scalar per invocation at a time.
    for (var e = lid; e < P * p.dim; e += WG) {
        let pp = e / p.dim;
        let d = e % p.dim;
        let pos = pos0 + pp;
        var v = 0.0;
        if pos < n_pos {
            v = x_in[((pos / p.t_len) * p.dim + d) * p.t_len + pos % p.t_len];
        }
        residual[pp * MAX_D4 + d / 4u][d % 4u] = v;
    }
    workgroupBarrier();

    for (var q = 0u; q < p.n_q; q++) {
        let book4 = q * p.n_codes * d4n;
        // This invocation's best codeword per position (codewords in increasing order, so a
        // strict < keeps the lowest index among equals).
        var bd: array<f32, P>;
        var bi: array<u32, P>;
        for (var pp = 0u; pp < P; pp++) {
            bd[pp] = 3.4e38;
            bi[pp] = NONE;
        }
        for (var j = lid; j < p.n_codes; j += WG) {
            var dist = array<f32, P>();
            for (var d4 = 0u; d4 < d4n; d4++) {
                let e = cb4[book4 + j * d4n + d4];
                for (var pp = 0u; pp < P; pp++) {
                    let diff = residual[pp * MAX_D4 + d4] - e;
                    dist[pp] += dot(diff, diff);
                }
            }
            for (var pp = 0u; pp < P; pp++) {
                if dist[pp] < bd[pp] {
                    bd[pp] = dist[pp];
                    bi[pp] = j;
                }
            }
        }
        // Tree reduction per position.
        for (var pp = 0u; pp < P; pp++) {
            best_dist[lid] = bd[pp];
            best_code[lid] = bi[pp];
            workgroupBarrier();
            for (var s = WG / 2u; s > 0u; s >>= 1u) {
                if lid < s && better(best_dist[lid + s], best_code[lid + s], best_dist[lid], best_code[lid]) {
                    best_dist[lid] = best_dist[lid + s];
                    best_code[lid] = best_code[lid + s];
                }
                workgroupBarrier();
            }
            if lid == 0u {
                // NONE only if every distance was NaN; any in-range code keeps reads safe.
                chosen[pp] = min(best_code[0], p.n_codes - 1u);
            }
            workgroupBarrier();
        }
        if lid < P && pos0 + lid < n_pos {
            let pos = pos0 + lid;
            codes_out[(q * p.batch + pos / p.t_len) * p.t_len + pos % p.t_len] = chosen[lid];
        }
        // residual -= codebook_q[chosen]
        for (var e = lid; e < P * d4n; e += WG) {
            let pp = e / d4n;
            let d4 = e % d4n;
            residual[pp * MAX_D4 + d4] -= cb4[book4 + chosen[pp] * d4n + d4];
        }
        workgroupBarrier();
    }
}
