// The direct GEMM for CPU adapters such as lavapipe: the product of matmul.wgsl (read its
// header for y, W's layout and the epilogue) with no workgroup memory and no barriers. Each
// thread reads its operands straight from the buffers and keeps a block of DM rows x 4 DC
// columns of y: rows m0 .. m0 + DM, columns n0 .. n0 + 4 DC; DWG threads side by side take
// consecutive column blocks, so all of a workgroup's threads need the same DM rows of x. The
// host sets DM to the smallest of 1, 2, 4, 8, 16 that covers M, and DC to 4 (1 where DM = 1: a
// decode row reads each weight once whatever the block, and narrower blocks give its few rows
// more threads).
//
// Why: on a CPU the buffers already sit in caches, and a workgroup barrier costs a switch
// between every group of SIMD lanes, so matmul.wgsl's tiles cost more than they save there.
// lavapipe runs a workgroup's 8 threads as the SIMD lanes of one CPU core, and runs every load
// from a storage buffer one lane at a time (a loop over the lanes with a bounds check per
// element; a 16-byte load costs about what a 4-byte one does), so a thread's cost is its count
// of loads, and the larger its block, the more multiply-adds each load serves: hence 16 x 16
// rather than the 8 x 4 block of before. All lanes need the same rows of x, so with SUBGROUPS
// they split those loads and hand the words to each other with `x_from` (a subgroup shuffle,
// which lavapipe runs as register moves): by rows (XR) in blocks of 8 and 16 rows, and by steps
// of K (XS) in smaller blocks (a decode step's single row). That twin is for devices whose
// subgroups are exactly a workgroup (the host checks); a module that names subgroup builtins
// fails validation on devices without them, so its code is in `// #if SUBGROUPS` sections,
// absent from the default text (src/gpu/shaders.rs).
// (No `enable subgroups;`: naga 30 rejects that directive and gates subgroups by feature.)
// The loops over the block are written out (`// #unroll`, see src/gpu/shaders.rs): rolled,
// lavapipe kept the accumulators in memory, which is slower. (Figures: BENCHMARKS.md.)
//
// Each output is the same sequential sum over K whatever DM, DC, XR, XS and SUBGROUPS, so a row
// comes out bit-identical at any M, with or without shared loads.

// #include linear_epilogue

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
// The same buffers in 16-byte words, for direct_vec4 (rows of x and W start on 16 bytes).
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<u32>>;

// The lanes share the x loads through subgroup shuffles (the host sets it with XR and XS).
const SUBGROUPS: bool = false;
const W_F16: bool = false;
const DM: u32 = 16u;
const DC: u32 = 4u;
const DWG: u32 = 8u;
// How a workgroup's lanes split the loads of x (with SUBGROUPS, where the host sets
// XR x XS = DWG; else 1 x 1): XR lanes take different rows of the block and XS lanes different
// steps of K, so each lane loads XL = DM / XR rows of one step in XS.
const XR: u32 = 1u;
const XS: u32 = 1u;
const XL: u32 = DM / XR;

// The first row and column of the thread's block.
fn origin(wid: vec3u, t: u32) -> vec2u {
    return vec2(wid.y * DM, (wid.x * DWG + t) * 4u * DC);
}

// Writes the block: acc[i * DC + c] holds row m0 + i, columns n0 + 4c .. n0 + 4c + 3.
fn store(o: vec2u, acc: ptr<function, array<vec4<f32>, DM * DC>>) {
    for (var i = 0u; i < DM; i++) { // #unroll
        for (var c = 0u; c < DC; c++) { // #unroll
            for (var k = 0u; k < 4u; k++) { // #unroll
                let m = o.x + i;
                let n = o.y + 4u * c + k;
                if m < p.m && n < p.n {
                    y[m * p.n + n] = finish((*acc)[i * DC + c][k], m, n);
                }
            }
        }
    }
}

// #if SUBGROUPS
// Word v of lane `lane`. (subgroupBroadcast would need a constant lane; after inlining the
// unrolled loops this shuffle's lane is one, and it ran as fast on lavapipe.)
fn x_from(v: vec4<f32>, lane: u32) -> vec4<f32> {
    return subgroupShuffle(v, lane);
}

@compute @workgroup_size(DWG)
fn gemm_direct_vec4(
    @builtin(workgroup_id) wid: vec3u,
    @builtin(local_invocation_index) t: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    direct_vec4(origin(wid, t), lane);
}
// #else
// The thread's own word.
fn x_from(v: vec4<f32>, lane: u32) -> vec4<f32> {
    return v;
}

@compute @workgroup_size(DWG)
fn gemm_direct_vec4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
    direct_vec4(origin(wid, t), 0u);
}
// #endif

// K % 4 == 0 (f32) or K % 8 == 0 (f16): one 16-byte word of W is 4 (f32) or 8 (f16) weights,
// a step of K. Rows past M or columns past N re-read the last one and are not written. No
// thread leaves early: where lanes share loads, every lane takes part in every shuffle.
fn direct_vec4(o: vec2u, lane: u32) {
    let words = p.row_words / 4u;
    let x_row = p.k / 4u;
    // The lane's share of the x loads: rows XR h + my_row of step q0 + my_step.
    let my_row = lane % XR;
    let my_step = lane / XR;
    var acc = array<vec4<f32>, DM * DC>();
    for (var q0 = 0u; q0 < words; q0 += XS) {
        let qx = min(q0 + my_step, words - 1u);
        if W_F16 {
            // x[m, 8 qx .. 8 qx + 8] of the lane's rows in xs[2h], xs[2h + 1].
            var xs: array<vec4<f32>, 2u * XL>;
            for (var h = 0u; h < XL; h++) { // #unroll
                let r = min(o.x + XR * h + my_row, p.m - 1u) * x_row + 2u * qx;
                xs[2u * h] = x4[r];
                xs[2u * h + 1u] = x4[r + 1u];
            }
            for (var s = 0u; s < XS; s++) { // #unroll
                let q = q0 + s;
                if q < words {
                    // Weights 8q .. 8q + 4 of column n0 + j in lo[j], 8q + 4 .. 8q + 8 in hi[j].
                    var lo: array<vec4<f32>, 4u * DC>;
                    var hi: array<vec4<f32>, 4u * DC>;
                    for (var c = 0u; c < DC; c++) { // #unroll
                        for (var k = 0u; k < 4u; k++) { // #unroll
                            let u = w4[min(o.y + 4u * c + k, p.n - 1u) * words + q];
                            lo[4u * c + k] = vec4(unpack2x16float(u.x), unpack2x16float(u.y));
                            hi[4u * c + k] = vec4(unpack2x16float(u.z), unpack2x16float(u.w));
                        }
                    }
                    for (var i = 0u; i < DM; i++) { // #unroll
                        // Row i of step q: lane i % XR + XR s loaded it, as its word i / XR.
                        let a = x_from(xs[2u * (i / XR)], i % XR + XR * s);
                        let e = x_from(xs[2u * (i / XR) + 1u], i % XR + XR * s);
                        for (var c = 0u; c < DC; c++) { // #unroll
                            let j = 4u * c;
                            acc[i * DC + c] += vec4(
                                dot(a, lo[j]) + dot(e, hi[j]),
                                dot(a, lo[j + 1u]) + dot(e, hi[j + 1u]),
                                dot(a, lo[j + 2u]) + dot(e, hi[j + 2u]),
                                dot(a, lo[j + 3u]) + dot(e, hi[j + 3u]),
                            );
                        }
                    }
                }
            }
        } else {
            var xs: array<vec4<f32>, XL>;
            for (var h = 0u; h < XL; h++) { // #unroll
                xs[h] = x4[min(o.x + XR * h + my_row, p.m - 1u) * x_row + qx];
            }
            for (var s = 0u; s < XS; s++) { // #unroll
                let q = q0 + s;
                if q < words {
                    var wv: array<vec4<f32>, 4u * DC>;
                    for (var c = 0u; c < DC; c++) { // #unroll
                        for (var k = 0u; k < 4u; k++) { // #unroll
                            wv[4u * c + k] = bitcast<vec4<f32>>(w4[min(o.y + 4u * c + k, p.n - 1u) * words + q]);
                        }
                    }
                    for (var i = 0u; i < DM; i++) { // #unroll
                        let a = x_from(xs[i / XR], i % XR + XR * s);
                        for (var c = 0u; c < DC; c++) { // #unroll
                            let j = 4u * c;
                            acc[i * DC + c] += vec4(dot(a, wv[j]), dot(a, wv[j + 1u]), dot(a, wv[j + 2u]), dot(a, wv[j + 3u]));
                        }
                    }
                }
            }
        }
    }
    store(o, &acc);
}

// Any K, one weight at a time (each thread loads its own x).
@compute @workgroup_size(DWG)
fn gemm_direct_scalar(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
    let o = origin(wid, t);
    if o.y >= p.n {
        return;
    }
    var acc = array<vec4<f32>, DM * DC>();
    for (var k = 0u; k < p.k; k++) {
        var wv: array<vec4<f32>, DC>;
        for (var c = 0u; c < DC; c++) { // #unroll
            for (var j = 0u; j < 4u; j++) { // #unroll
                let at = min(o.y + 4u * c + j, p.n - 1u) * p.row_words;
                if W_F16 {
                    wv[c][j] = unpack2x16float(w[at + k / 2u])[k % 2u];
                } else {
                    wv[c][j] = bitcast<f32>(w[at + k]);
                }
            }
        }
        for (var i = 0u; i < DM; i++) { // #unroll
            let xv = x[min(o.x + i, p.m - 1u) * p.k + k];
            for (var c = 0u; c < DC; c++) { // #unroll
                acc[i * DC + c] += xv * wv[c];
            }
        }
    }
    store(o, &acc);
}
