// Embedding gather from one part of a row-split table: for each token t,
//   out[t, :] = row      (assign mode)   or   out[t, :] += row   (accumulate mode)
// where row = part[id - first_row, :] if first_row <= id < first_row + part_rows, and zero
// otherwise. A table too large for one binding is several parts, one dispatch each: the first
// assigns (so every output row is written, zero where the id lies in another part) and the rest
// accumulate only the rows they hold. An id in no part (>= the table's rows) thus adds zero,
// and the table is never read outside the part.
//
// One entry point, `gather`, whose ids come from one of two places (RANGE, set by the host):
//   default  ids, part, out   id = ids[t * ids_stride + ids_offset]
//   RANGE    part, out        id = start + t (position embeddings of consecutive positions)
// The part is bound as words: f32 bit patterns, or two packed halves per word (TABLE_F16) with
// each row padded to an even length. One workgroup per token; the grid may be 2-D.

struct Params {
    tokens: u32,
    cols: u32,
    first_row: u32,
    part_rows: u32,
    ids_stride: u32,
    ids_offset: u32,
    start: u32,
    accumulate: u32,
}

const WG: u32 = 128u;
const TABLE_F16: bool = false;
const RANGE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
// #if RANGE
@group(0) @binding(1) var<storage, read> part: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn id_of(t: u32) -> u32 {
    // The host keeps start + tokens within u32.
    return p.start + t;
}
// #else
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> part: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn id_of(t: u32) -> u32 {
    return ids[t * p.ids_stride + p.ids_offset];
}
// #endif

fn token_of(wid: vec3u, nwg: vec3u) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Index of the word holding column c of row `local` of the part.
fn word_index(local: u32, c: u32) -> u32 {
    if TABLE_F16 {
        return local * ((p.cols + 1u) / 2u) + c / 2u;
    }
    return local * p.cols + c;
}

// Column c's value out of the word that holds it.
fn element(word: u32, c: u32) -> f32 {
    if TABLE_F16 {
        let pair = unpack2x16float(word);
        return select(pair.x, pair.y, (c & 1u) == 1u);
    }
    return bitcast<f32>(word);
}

// Is `id` a row of this part? (`id - first_row` wraps to a huge value below the part.)
fn in_part(id: u32) -> bool {
    return id >= p.first_row && id - p.first_row < p.part_rows;
}

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let t = token_of(wid, nwg);
    if t >= p.tokens {
        return;
    }
    let id = id_of(t);
    let hit = in_part(id);
    if !hit && p.accumulate != 0u {
        return;
    }
    let local = id - p.first_row;
    let o = t * p.cols;
    for (var c = lid; c < p.cols; c += WG) {
        var v = 0.0;
        if hit {
            v = element(part[word_index(local, c)], c);
        }
        if p.accumulate != 0u {
            out[o + c] += v;
        } else {
            out[o + c] = v;
        }
    }
}
