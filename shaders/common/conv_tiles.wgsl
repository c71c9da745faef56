// What conv1d.wgsl and conv_transpose1d.wgsl share. Both are implicit GEMMs, Y = A * B per batch
// item (A from the weights, B gathered from the input): a workgroup computes a BM x BN tile of Y,
// staging BK-deep slices of A and B in workgroup memory, and each invocation accumulates a
// TM x TN block in registers, reading the slices as vec4s (4 rows or 4 columns per load).
// `accumulate` runs that reduction and `store_block` writes the block; each file says how an
// element of A and B is found (the hooks listed at `accumulate`) and where an output column lands.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// Invocations along output channels and along time; TM x TN outputs each (multiples of 4);
// BK reduction depth per stage. Specialised per C_out (src/ops/conv1d.rs, conv_transpose1d.rs).
const WG_M: u32 = 16u;
const WG_N: u32 = 16u;
const TM: u32 = 4u;
const TN: u32 = 4u;
const BK: u32 = 16u;

const WG: u32 = WG_M * WG_N;
const BM: u32 = WG_M * TM;
const BN: u32 = WG_N * TN;
const TM4: u32 = TM / 4u;
const TN4: u32 = TN / 4u;
const BM4: u32 = BM / 4u;
const BN4: u32 = BN / 4u;
const NONE: u32 = 0xffffffffu;

// One past the last output channel a workgroup may write (its group's end in a grouped conv);
// each entry point sets it before store_block.
var<private> m_end: u32;

// a_tile[kk * BM4 + i] = rows 4i..4i+3 of A at depth kk; b_tile[kk * BN4 + j] = columns
// 4j..4j+3 of B at depth kk.
var<workgroup> a_tile: array<vec4f, BK * BM4>;
var<workgroup> b_tile: array<vec4f, BK * BN4>;

// Accumulates invocation `lid`'s block of the tile at rows m0.., columns n0.. over the whole
// reduction (kdim rows of B). Per BK-deep stage every invocation stages part of the A and B
// slices, then multiplies its block. The index data of a stage's reduction rows (which input
// row, which tap) are worked out once per row, not once per element, by BK invocations, into
// one of two slots: the next stage's slot is filled while this one's tiles are multiplied.
//
// The including file defines the hooks. Its per-row index data live in arrays of 2 * BK
// entries, two slots of BK; entry i = slot * BK + kk holds stage row kk of that slot.
//   struct Item: what else fixes a workgroup's GEMM (the batch item; the phase);
//   fill_row(item, i, kk): writes entry i's data for reduction row kk (kk may be past the end);
//   a_at(i, kk, m) -> f32: A[m, kk] for reduction row kk (its data in entry i), zero past C_out
//     or the end;
//   b_at(i, n) -> f32: B[kk, n] for the reduction row kk whose data entry i holds, zero outside
//     the input or past the end.
fn accumulate(item: Item, kdim: u32, m0: u32, n0: u32, lid: u32, acc: ptr<function, array<vec4f, TM * TN4>>) {
    fill_rows(item, 0u, 0u, lid);
    workgroupBarrier();
    for (var k0 = 0u; k0 < kdim; k0 += BK) {
        let slot = (k0 / BK) % 2u;
        for (var e = lid; e < BM * BK; e += WG) {
            let mm = e / BK;
            let kk = e % BK;
            a_tile[kk * BM4 + mm / 4u][mm % 4u] = a_at(slot * BK + kk, k0 + kk, m0 + mm);
        }
        for (var e = lid; e < BK * BN; e += WG) {
            let kk = e / BN;
            let nn = e % BN;
            b_tile[kk * BN4 + nn / 4u][nn % 4u] = b_at(slot * BK + kk, n0 + nn);
        }
        workgroupBarrier();
        // The next stage's rows go to the other slot; they are read only after the barrier below.
        fill_rows(item, 1u - slot, k0 + BK, lid);
        multiply_tiles(lid / WG_N, lid % WG_N, acc);
        workgroupBarrier();
    }
}

// Index data of reduction rows k0 .. k0 + BK - 1 into `slot`, one row per invocation lid < BK.
fn fill_rows(item: Item, slot: u32, k0: u32, lid: u32) {
    if lid < BK {
        fill_row(item, slot * BK + lid, k0 + lid);
    }
}

// Adds the staged tiles' product to invocation (tm, tn)'s block: acc[r * TN4 + j] holds row
// tm*TM + r, columns tn*TN + 4j .. 4j+3 of the tile.
fn multiply_tiles(tm: u32, tn: u32, acc: ptr<function, array<vec4f, TM * TN4>>) {
    for (var kk = 0u; kk < BK; kk++) {
        var bv: array<vec4f, TN4>;
        for (var j = 0u; j < TN4; j++) {
            bv[j] = b_tile[kk * BN4 + tn * TN4 + j];
        }
        for (var i = 0u; i < TM4; i++) {
            let av = a_tile[kk * BM4 + tm * TM4 + i];
            for (var j = 0u; j < TN4; j++) {
                (*acc)[(4u * i) * TN4 + j] += av.x * bv[j];
                (*acc)[(4u * i + 1u) * TN4 + j] += av.y * bv[j];
                (*acc)[(4u * i + 2u) * TN4 + j] += av.z * bv[j];
                (*acc)[(4u * i + 3u) * TN4 + j] += av.w * bv[j];
            }
        }
    }
}

// Writes invocation `lid`'s block, (tm, tn) = (lid / WG_N, lid % WG_N), plus bias for batch
// item b: row m0 + tm*TM + r is output channel co, and tile column n = n0 + tn*TN + .. goes to
// time n * step + phase (past t_out: not written).
fn store_block(acc: ptr<function, array<vec4f, TM * TN4>>, b: u32, m0: u32, n0: u32, step: u32, phase: u32, lid: u32) {
    let tm = lid / WG_N;
    let tn = lid % WG_N;
    for (var r = 0u; r < TM; r++) {
        let co = m0 + tm * TM + r;
        if co >= m_end {
            continue;
        }
        let row = (b * p.c_out + co) * p.t_out;
        for (var j = 0u; j < TN4; j++) {
            let v = (*acc)[r * TN4 + j] + bias[co];
            for (var c = 0u; c < 4u; c++) {
                let t = (n0 + tn * TN + 4u * j + c) * step + phase;
                if t < p.t_out {
                    y[row + t] = v[c];
                }
            }
        }
    }
}
