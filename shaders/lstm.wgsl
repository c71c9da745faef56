// One time step of one LSTM layer (PyTorch nn.LSTM semantics, gate order i, f, g, o):
//   pre = (W_ih x_t + b_ih) + W_hh h_{t-1} + b_hh
//   c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g);   h_t = sigmoid(o) * tanh(c_t)
// The bracketed term is precomputed for every t by one 1x1 convolution (a GEMM). WGSL has no
// grid-wide barrier, so the recurrence is one dispatch per step, all in one compute pass (the
// runtime orders the dispatches). h is double-buffered (every workgroup reads all of h_prev
// while h_next is written); c is updated in place (each cell by one invocation).
//
// Layout: gx [B, 4H, T] (channels first, as the conv writes it), w_hh [4H, H], b_hh [4H],
// h_prev / h_next / c [B, H], y [B, H, T] (h_t stored at column t).
//
// Each workgroup owns UNITS hidden units of one batch item (grid: x = unit groups, y = batch).
// Invocation (unit u, lane l) accumulates the unit's four gate rows of W_hh h over the columns
// l, l + LANES, ... (neighbouring lanes read neighbouring columns, so loads coalesce), the lanes
// are summed in workgroup memory, and one invocation per unit applies the cell update.
// Two entry points: lstm_step for any H, lstm_step4 reading vec4s when H is a multiple of 4.

struct Params {
    hidden: u32,
    t_len: u32,
    t: u32,
    // 1 at t = 0: h_{-1} = c_{-1} = 0 (nothing is read from h_prev or c).
    first: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gx: array<f32>;
@group(0) @binding(2) var<storage, read> w_hh: array<f32>;
@group(0) @binding(3) var<storage, read> b_hh: array<f32>;
@group(0) @binding(4) var<storage, read> h_prev: array<f32>;
@group(0) @binding(5) var<storage, read_write> h_next: array<f32>;
@group(0) @binding(6) var<storage, read_write> c: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
// lstm_step4's views of the same buffers.
@group(0) @binding(2) var<storage, read> w_hh4: array<vec4f>;
@group(0) @binding(4) var<storage, read> h_prev4: array<vec4f>;

const LANES: u32 = 64u;
const UNITS: u32 = 4u;
const WG: u32 = LANES * UNITS;

// The four gate partial sums (i, f, g, o) of each invocation.
var<workgroup> partial: array<vec4f, WG>;

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

// tanh from exp(-2|v|), which never overflows (a native tanh may, for large |v|, on some
// back ends return NaN).
fn tanh_safe(v: f32) -> f32 {
    let e = exp(-2.0 * abs(v));
    let r = (1.0 - e) / (1.0 + e);
    return select(r, -r, v < 0.0);
}

// Sums the lanes' partial W_hh h products and applies the cell update for this workgroup's
// units. Called from uniform control flow (it has barriers).
fn finish(acc: vec4f, lid: u32, unit0: u32, b: u32) {
    let hid = p.hidden;
    let lane = lid % LANES;
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if lane < s {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if lid < UNITS {
        let u = unit0 + lid;
        if u < hid {
            var pre = partial[lid * LANES];
            for (var g = 0u; g < 4u; g++) {
                let r = g * hid + u;
                pre[g] += gx[(b * 4u * hid + r) * p.t_len + p.t] + b_hh[r];
            }
            var c_prev = 0.0;
            if p.first == 0u {
                c_prev = c[b * hid + u];
            }
            let c_new = sigmoid(pre[1]) * c_prev + sigmoid(pre[0]) * tanh_safe(pre[2]);
            let h = sigmoid(pre[3]) * tanh_safe(c_new);
            c[b * hid + u] = c_new;
            h_next[b * hid + u] = h;
            y[(b * hid + u) * p.t_len + p.t] = h;
        }
    }
}

@compute @workgroup_size(WG)
fn lstm_step(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
    let hid = p.hidden;
    let b = wid.y;
    let j = wid.x * UNITS + lid / LANES;
    var acc = vec4f(0.0);
    if p.first == 0u && j < hid {
        for (var k = lid % LANES; k < hid; k += LANES) {
            let hv = h_prev[b * hid + k];
            acc += hv * vec4f(w_hh[j * hid + k], w_hh[(hid + j) * hid + k], w_hh[(2u * hid + j) * hid + k],
                w_hh[(3u * hid + j) * hid + k]);
        }
    }
    finish(acc, lid, wid.x * UNITS, b);
}

@compute @workgroup_size(WG)
fn lstm_step4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
    let hid = p.hidden;
    let h4 = hid / 4u;
    let b = wid.y;
    let j = wid.x * UNITS + lid / LANES;
    var acc = vec4f(0.0);
    if p.first == 0u && j < hid {
        for (var k = lid % LANES; k < h4; k += LANES) {
            let hv = h_prev4[b * h4 + k];
            acc += vec4f(dot(w_hh4[j * h4 + k], hv), dot(w_hh4[(hid + j) * h4 + k], hv),
                dot(w_hh4[(2u * hid + j) * h4 + k], hv), dot(w_hh4[(3u * hid + j) * h4 + k], hv));
        }
    }
    finish(acc, lid, wid.x * UNITS, b);
}
