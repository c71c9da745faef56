// Appends a step's K and V rows to the paged KV cache of one layer.
//
// qkv is the fused projection output [n_rows, 3H] = [Q | K | V] per row; row i goes to position
// rows[i].y of the sequence in page-table slot rows[i].x. One invocation per (row, column of H),
// writing the K and the V word. Rows whose slot, position or page is out of range (inactive rows,
// or anything the host did not reserve) are skipped, so no index here can leave its buffer.

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
@group(0) @binding(2) var<storage, read_write> k_pool: array<f32>;
@group(0) @binding(3) var<storage, read_write> v_pool: array<f32>;
@group(0) @binding(4) var<storage, read> rows: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read> page_table: array<u32>;
@group(0) @binding(6) var<storage, read> seq_lens: array<u32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn append(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.n_rows * p.hidden {
        return;
    }
    let row = i / p.hidden;
    let col = i % p.hidden;
    let entry = rows[row];
    let slot = entry.x;
    let pos = entry.y;
    if slot >= p.max_seqs || pos >= seq_lens[slot] {
        return;
    }
    let page_idx = pos / p.page_size;
    if page_idx >= p.max_pages_per_seq {
        return;
    }
    let page = page_table[slot * p.max_pages_per_seq + page_idx];
    if page >= p.n_pages {
        return;
    }
    let dst = (page * p.page_size + pos % p.page_size) * p.hidden + col;
    let src = row * 3u * p.hidden + p.hidden + col;
    k_pool[dst] = qkv[src];
    v_pool[dst] = qkv[src + p.hidden];
}
