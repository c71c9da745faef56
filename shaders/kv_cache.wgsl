// Appends a step's K and V rows to the paged KV cache of one layer.
//
// qkv is the fused projection output [n_rows, 3H] = [Q | K | V] per row; row i goes to position
// rows[i].y of the sequence in page-table slot rows[i].x. The pools hold f32 bits, or (KV_F16)
// two f16 halves per word, which halves the cache's memory and the bytes attention reads per
// key. One invocation per (row, word of H), writing the K and the V word. Rows whose slot,
// position or page is out of range (inactive rows, or anything the host did not reserve) are
// skipped (common/kv_place.wgsl), so no index here can leave its buffer. A decode step whose
// attention is split over workgroups appends in attention.wgsl's combine instead.

struct Params {
    n_rows: u32,
    // H = n_heads * head_dim
    hidden: u32,
    page_size: u32,
    n_pages: u32,
    max_seqs: u32,
    max_pages_per_seq: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> k_pool: array<u32>;
@group(0) @binding(3) var<storage, read_write> v_pool: array<u32>;
@group(0) @binding(4) var<storage, read> rows: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read> page_table: array<u32>;
@group(0) @binding(6) var<storage, read> seq_lens: array<u32>;

// #include kv_place

const WG: u32 = 256u;
// Pool words hold two f16 halves (true; H is even) or one f32 (false).
const KV_F16: bool = false;
const PER_WORD: u32 = select(1u, 2u, KV_F16);

@compute @workgroup_size(WG)
fn append(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let words = p.hidden / PER_WORD;
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.n_rows * words {
        return;
    }
    let row = i / words;
    let word = i % words;
    let at = kv_place(rows[row].x, rows[row].y);
    if at == NO_PLACE {
        return;
    }
    let dst = at * words + word;
    let src = row * 3u * p.hidden + p.hidden + word * PER_WORD;
    if KV_F16 {
        k_pool[dst] = pack2x16float(vec2<f32>(qkv[src], qkv[src + 1u]));
        v_pool[dst] = pack2x16float(vec2<f32>(qkv[src + p.hidden], qkv[src + p.hidden + 1u]));
    } else {
        k_pool[dst] = bitcast<u32>(qkv[src]);
        v_pool[dst] = bitcast<u32>(qkv[src + p.hidden]);
    }
}
