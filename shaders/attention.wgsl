// Fused multi-head attention with an online softmax: one pass over the keys, no score matrix in
// memory, all arithmetic in f32.
//
// A workgroup (WG = 64 threads) takes BQ consecutive query rows and one head (and, when
// p.n_split > 1, only every n_split-th chunk of the keys: flash-decoding, see `combine`). It
// walks the keys in chunks of BK = WG = 64, whatever the head dimension D. Per chunk: the
// scores of the chunk's keys against the block's rows (register tiles, see CG below), the
// running max and rescale factor per row, the probabilities (unnormalised) into shared memory,
// then each thread's tile of the output is rescaled and accumulated over the chunk's values.
// The 1/sum normalisation is applied once at the end.
//
//   paged:  queries are rows of qkv [n_rows, 3H]; row i belongs to sequence slot rows[i].x at
//           position rows[i].y; its keys/values are read from the K/V pools of one layer
//           [n_pages, page_size, H] through page_table [max_seqs, max_pages_per_seq].
//           Causal: keys 0..=position; full: keys 0..seq_lens[slot]. The pools hold f32 bits,
//           or (KV_F16) two f16 halves per word, widened to f32 as they are read.
//   dense:  qkv [batch * T, 3H] holds queries, keys and values (bound three times, at 1, 2, 3);
//           row i is position i % T of batch item i / T and sees the keys of its own item.
//
// APPEND (paged decode, BQ = 1, split): the step's own K and V are not in the cache yet. Each
// row reads its newest key and value from qkv (rounded as the cache would store them), and
// `combine_append`, which runs after every split workgroup is done, writes them to the cache: the
// append costs no dispatch of its own, and no workgroup reads a cache slot another one writes.
//
// Rows of one block may belong to different sequences (a prefill batch of several sequences,
// or T not a multiple of BQ): the block makes one pass over the keys per distinct sequence,
// rows of other sequences masked out. Output (per head, columns h*D..h*D+D of each row) is
// sum_k softmax(q.k * scale)_k v_k; rows with nothing to attend to (inactive) get zeros.
//
// Performance notes (D = 64, Bark's size). Prefill (BQ = 16) loads each key and value once per
// 16 query rows, and each thread does 16 multiply-adds per 2 vec4 loads in both products (4 rows
// x 4 keys, then 4 rows x 4 columns). Decode (BQ = 1) at batch 1 has only n_heads (block,
// head) pairs, so the host splits the keys over n_split workgroups, each writing a partial
// (o, m, l) that `combine` merges: a 1000-position context then runs on up to 16 * n_heads
// workgroups instead of n_heads long serial loops. Per chunk there are 4 barriers (plus one
// after the key offsets); the cross-thread max and sum are a short serial loop by one thread per
// row quad (CG = 16 terms for BQ = 16, 64 for BQ = 1): a subgroup reduction could replace it
// where subgroups exist.

// #include attention_params

// Head dimension: a multiple of 4 up to 128 (the host specialises it; Bark's is 64). 128 keeps
// the workgroup memory (about 14 KiB at BQ = 16) under WebGPU's guaranteed 16 KiB.
const D: u32 = 64u;
const D4: u32 = D / 4u;
// Threads of a workgroup, and the keys of a chunk (one per thread and row quad, see CG).
const WG: u32 = 64u;
const BK: u32 = WG;
// Query rows per workgroup: 1, 4 or 16 (so that NV below is 1 or 4). Rows are handled
// 4 at a time as vec4s ("row quads"; NV of them, RB rows with padding).
const BQ: u32 = 16u;
const NV: u32 = (BQ + 3u) / 4u;
const RB: u32 = NV * 4u;
// Register tiling: thread t = (row quad i = t / CG, column group cg = t % CG). For the scores it
// takes keys cg, cg + CG, ... (NV of them) against the 4 rows of its quad. For the output a
// head row is DC column vectors of NV consecutive columns; the thread owns vectors cg,
// cg + CG, ... (OC of them) of its quad's 4 rows. At D = 64, DC = CG: one vector each, as many
// threads as columns. Smaller D leaves column groups idle in the output product (tiny test
// models only), larger D gives each thread two vectors. ALL_COLS: every thread's vectors are
// real, so the bound check below folds away at compile time.
const CG: u32 = WG / NV;
const DC: u32 = D / NV;
const OC: u32 = (DC + CG - 1u) / CG;
const ALL_COLS: bool = DC % CG == 0u;
// Rows of a quad that can be real: the padding rows of BQ = 1 are skipped at compile time.
const QROWS: u32 = min(BQ, 4u);
// A masked score. Finite (WGSL has no infinity literal); any real score is far above NEG_VALID.
const NEG: f32 = -3.0e38;
const NEG_VALID: f32 = -1.0e38;
// paged: the pools hold two f16 halves per word (true) or f32 bits (false). dense reads f32.
const KV_F16: bool = false;
// paged with BQ = 1: the rows' own keys come from qkv and combine appends them (see above).
const APPEND: bool = false;
const NEW_KEY: u32 = 0xffffffffu;

@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
// Keys and values as words (see KV_F16), read through key4 and values: a thread reads whole
// keys (vec4 loads) but only NV columns of a value, so V is read in words of NV f32 (VWord: u32
// for BQ = 1 or 4, vec4<u32> for BQ = 16; VCol the same as f32; the host sets both with BQ).
alias VWord = vec4<u32>;
alias VCol = vec4<f32>;
@group(0) @binding(2) var<storage, read> kbuf: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> vbuf: array<VWord>;
// The output [n_rows, H], or the partials [n_rows, n_heads, n_split, D + 2] when split.
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// paged only: the step's rows and the page table.
@group(0) @binding(5) var<storage, read> rows: array<vec2<u32>>;
@group(0) @binding(6) var<storage, read> page_table: array<u32>;
@group(0) @binding(7) var<storage, read> seq_lens: array<u32>;
// combine: partials in at 1, output at 2; combine_append also qkv at 3 and the K and V pools at
// 4 and 8 (rows, page_table and seq_lens as above).
@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> combine_out: array<f32>;
@group(0) @binding(3) var<storage, read> new_qkv: array<f32>;
@group(0) @binding(4) var<storage, read_write> k_pool: array<u32>;
@group(0) @binding(8) var<storage, read_write> v_pool: array<u32>;

// #include kv_place

// The block's queries, already scaled: [RB][D4] (padding rows zero).
var<workgroup> q_s: array<vec4<f32>, RB * D4>;
// Probabilities of the current chunk: [BK][NV], element i of key k holding rows 4i..4i+3.
var<workgroup> p_s: array<vec4<f32>, BK * NV>;
// Each thread's partial max, then partial sum, over its keys: [NV][CG].
var<workgroup> red_s: array<vec4<f32>, WG>;
// Where key k of the chunk starts, for this head: K as a vec4 index, V as an f32 index.
var<workgroup> kb_s: array<u32, BK>;
var<workgroup> vb_s: array<u32, BK>;
// Per row: how many keys it sees (0: inactive, always for padding rows) and its sequence slot
// or batch item.
var<workgroup> nk_s: array<u32, RB>;
var<workgroup> grp_s: array<u32, RB>;
// Per row quad: running max, running sum of exp, and this chunk's rescale factor.
var<workgroup> m_s: array<vec4<f32>, NV>;
var<workgroup> l_s: array<vec4<f32>, NV>;
var<workgroup> alpha_s: array<vec4<f32>, NV>;
// The distinct sequences of the block and the most keys any of their rows sees.
var<workgroup> n_pass_s: u32;
var<workgroup> pass_grp_s: array<u32, BQ>;
var<workgroup> pass_nk_s: array<u32, BQ>;

// APPEND: where the block's row keeps its K (a vec4 index) and V (an f32 index) for this head
// in qkv.
var<private> new_k4: u32;
var<private> new_v: u32;

// This thread's output tile, unnormalised: o[(c * OC + j) * NV + e] = row 4i + c, column e of
// its column vector cg + j * CG.
var<private> o: array<f32, 4u * OC * NV>;

// Keys 4i .. 4i + 3 of the K words, as f32.
fn key4(i: u32) -> vec4<f32> {
    if KV_F16 {
        let w = kbuf[i / 2u];
        let h = select(w.xy, w.zw, (i & 1u) == 1u);
        return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
    }
    return bitcast<vec4<f32>>(kbuf[i]);
}

// Values idx .. idx + NV - 1 (idx a multiple of NV) in the first NV lanes. vec4 of a scalar is a
// splat, so each line below reads the same for both VWord types.
fn values(idx: u32) -> vec4<f32> {
    if KV_F16 {
        // The VWord holding the values: NV = 1, the word of 2 halves; NV = 4, 8 halves.
        let w = vec4<u32>(vbuf[idx / (2u * NV)]);
        if NV == 1u {
            return vec4<f32>(unpack2x16float(w.x)[idx & 1u]);
        }
        let h = select(w.xy, w.zw, (idx & 4u) != 0u);
        return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
    }
    return vec4<f32>(bitcast<VCol>(vbuf[idx / NV]));
}

// A key or value as the cache stores it: rounded through f16 for an f16 cache.
fn as_stored(v: vec4<f32>) -> vec4<f32> {
    if KV_F16 {
        return vec4<f32>(unpack2x16float(pack2x16float(v.xy)), unpack2x16float(pack2x16float(v.zw)));
    }
    return v;
}

// key4 and values for a chunk's key whose offset is `at`; NEW_KEY is the row's own (APPEND).
fn key_at(at: u32, d4: u32) -> vec4<f32> {
    if APPEND && at == NEW_KEY {
        return as_stored(qkv[new_k4 + d4]);
    }
    return key4(at + d4);
}
fn values_at(at: u32, col: u32) -> vec4<f32> {
    if APPEND && at == NEW_KEY {
        // BQ = 1: one value, splatted as values() does.
        let i = new_v + col;
        return vec4<f32>(as_stored(qkv[i / 4u])[i % 4u]);
    }
    return values(at + col);
}

// After nk_s/grp_s are set (and a barrier): state reset, the pass list, the scaled queries.
fn start_block(t: u32, block: u32, head: u32) {
    if t < NV {
        m_s[t] = vec4<f32>(NEG);
        l_s[t] = vec4<f32>(0.0);
    }
    for (var c = 0u; c < 4u * OC * NV; c++) {
        o[c] = 0.0;
    }
    if t == 0u {
        var n = 0u;
        for (var r = 0u; r < BQ; r++) {
            let nk = nk_s[r];
            if nk == 0u {
                continue;
            }
            var found = false;
            for (var i = 0u; i < n; i++) {
                if pass_grp_s[i] == grp_s[r] {
                    pass_nk_s[i] = max(pass_nk_s[i], nk);
                    found = true;
                    break;
                }
            }
            if !found {
                pass_grp_s[n] = grp_s[r];
                pass_nk_s[n] = nk;
                n++;
            }
        }
        n_pass_s = n;
    }
    for (var i = t; i < RB * D4; i += WG) {
        let r = i / D4;
        var q = vec4<f32>(0.0);
        if nk_s[r] > 0u {
            let row = block * BQ + r;
            q = qkv[(row * 3u * p.hidden + head * D) / 4u + i % D4] * p.scale;
        }
        q_s[i] = q;
    }
}

// One chunk of keys c0 .. c0 + kmax for the rows of sequence g; kb_s/vb_s are set. Rows of
// other sequences see only masked scores: their max stays, their rescale is 1, they add 0.
fn chunk(t: u32, c0: u32, kmax: u32, g: u32) {
    let i = t / CG;
    let cg = t % CG;
    // Keys row 4i + c may see in this pass: its length if it is in sequence g, else none.
    var lim = vec4<u32>(0u);
    for (var c = 0u; c < 4u; c++) {
        let r = 4u * i + c;
        lim[c] = select(0u, nk_s[r], grp_s[r] == g);
    }
    // Scores of keys cg + m * CG (m < NV) against the quad's rows, in registers.
    var kb: array<u32, NV>;
    for (var m = 0u; m < NV; m++) {
        kb[m] = kb_s[min(cg + m * CG, kmax - 1u)];
    }
    var sc = array<vec4<f32>, NV>();
    for (var d4 = 0u; d4 < D4; d4++) {
        var q: array<vec4<f32>, 4>;
        for (var c = 0u; c < QROWS; c++) {
            q[c] = q_s[(4u * i + c) * D4 + d4];
        }
        for (var m = 0u; m < NV; m++) {
            let k = key_at(kb[m], d4);
            for (var c = 0u; c < QROWS; c++) {
                sc[m][c] += dot(q[c], k);
            }
        }
    }
    var mx = vec4<f32>(NEG);
    for (var m = 0u; m < NV; m++) {
        let key = cg + m * CG;
        let valid = (vec4<u32>(c0 + key) < lim) & vec4<bool>(key < kmax);
        sc[m] = select(vec4<f32>(NEG), sc[m], valid);
        mx = max(mx, sc[m]);
    }
    red_s[t] = mx;
    workgroupBarrier();
    // Running max and rescale factor, one row quad per thread.
    if t < NV {
        var chunk_max = vec4<f32>(NEG);
        for (var k = 0u; k < CG; k++) {
            chunk_max = max(chunk_max, red_s[t * CG + k]);
        }
        let m_new = max(m_s[t], chunk_max);
        alpha_s[t] = exp(m_s[t] - m_new);
        m_s[t] = m_new;
    }
    workgroupBarrier();
    // Probabilities (unnormalised) of this thread's keys, and their partial sum.
    let m_row = m_s[i];
    var sum = vec4<f32>(0.0);
    for (var m = 0u; m < NV; m++) {
        let pr = select(vec4<f32>(0.0), exp(sc[m] - m_row), sc[m] > vec4<f32>(NEG_VALID));
        p_s[(cg + m * CG) * NV + i] = pr;
        sum += pr;
    }
    red_s[t] = sum;
    workgroupBarrier();
    // The output tile, and (one thread per quad) the running sums.
    let alpha = alpha_s[i];
    for (var c = 0u; c < QROWS; c++) {
        for (var j = 0u; j < OC * NV; j++) {
            o[c * OC * NV + j] *= alpha[c];
        }
    }
    for (var k = 0u; k < kmax; k++) {
        let pr = p_s[k * NV + i];
        for (var j = 0u; j < OC; j++) {
            let cv = cg + j * CG;
            if ALL_COLS | (cv < DC) {
                let v = values_at(vb_s[k], cv * NV);
                for (var c = 0u; c < QROWS; c++) {
                    for (var e = 0u; e < NV; e++) {
                        o[(c * OC + j) * NV + e] += pr[c] * v[e];
                    }
                }
            }
        }
    }
    if t < NV {
        var total = vec4<f32>(0.0);
        for (var k = 0u; k < CG; k++) {
            total += red_s[t * CG + k];
        }
        l_s[t] = l_s[t] * alpha_s[t] + total;
    }
    workgroupBarrier();
}

// Writes this thread's part of the results of the block's rows: its NV output columns
// (normalised when n_split is 1, else the unnormalised partial followed by the row's max and
// sum, written by the first column group).
fn finish_block(t: u32, block: u32, head: u32, split: u32) {
    let i = t / CG;
    let cg = t % CG;
    for (var c = 0u; c < QROWS; c++) {
        let r = 4u * i + c;
        let row = block * BQ + r;
        if r >= BQ || row >= p.n_rows {
            continue;
        }
        let l = l_s[i][c];
        for (var j = 0u; j < OC; j++) {
            let cv = cg + j * CG;
            if !(ALL_COLS | (cv < DC)) {
                continue;
            }
            for (var e = 0u; e < NV; e++) {
                let col = cv * NV + e;
                var value = o[(c * OC + j) * NV + e];
                if p.n_split == 1u {
                    value = select(0.0, value / l, l > 0.0);
                }
                out[out_index(row, head, split, col)] = value;
            }
        }
        if p.n_split > 1u && cg == 0u {
            out[out_index(row, head, split, D)] = m_s[i][c];
            out[out_index(row, head, split, D + 1u)] = l;
        }
    }
}

// Where column `col` of a row's result goes: the output (n_split 1) or its partial.
fn out_index(row: u32, head: u32, split: u32, col: u32) -> u32 {
    if p.n_split == 1u {
        return row * p.hidden + head * D + col;
    }
    return ((row * p.n_heads + head) * p.n_split + split) * (D + 2u) + col;
}

@compute @workgroup_size(WG)
fn paged(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
    let block = wid.x;
    let head = wid.y;
    let split = wid.z;
    let max_len = p.max_pages_per_seq * p.page_size;
    if t < RB {
        let row = block * BQ + t;
        var nk = 0u;
        var grp = 0u;
        if t < BQ && row < p.n_rows {
            let slot = rows[row].x;
            let pos = rows[row].y;
            if slot < p.max_seqs {
                let len = min(seq_lens[slot], max_len);
                if pos < len {
                    nk = select(len, pos + 1u, p.causal == 1u);
                    grp = slot;
                }
            }
        }
        nk_s[t] = nk;
        grp_s[t] = grp;
    }
    workgroupBarrier();
    start_block(t, block, head);
    if APPEND {
        let at = block * 3u * p.hidden + p.hidden + head * D;
        new_k4 = at / 4u;
        new_v = at + p.hidden;
    }
    let n_pass = workgroupUniformLoad(&n_pass_s);
    for (var i = 0u; i < n_pass; i++) {
        let g = workgroupUniformLoad(&pass_grp_s[i]);
        let nk = workgroupUniformLoad(&pass_nk_s[i]);
        let n_chunks = (nk + BK - 1u) / BK;
        for (var c = split; c < n_chunks; c += p.n_split) {
            let c0 = c * BK;
            let kmax = min(BK, nk - c0);
            // With APPEND the block is one row, causal: its newest key is position nk - 1.
            if APPEND && t < kmax && c0 + t + 1u == nk {
                kb_s[t] = NEW_KEY;
                vb_s[t] = NEW_KEY;
            } else if t < kmax {
                let j = c0 + t;
                // g < max_seqs and j < nk <= max_len, so this index is in the table; a page
                // the host never mapped (u32::MAX) is clamped to page 0 rather than read OOB.
                var page = page_table[g * p.max_pages_per_seq + j / p.page_size];
                page = select(0u, page, page < p.n_pages);
                let at = (page * p.page_size + j % p.page_size) * p.hidden + head * D;
                kb_s[t] = at / 4u;
                vb_s[t] = at;
            }
            workgroupBarrier();
            chunk(t, c0, kmax, g);
        }
    }
    workgroupBarrier();
    finish_block(t, block, head, split);
}

@compute @workgroup_size(WG)
fn dense(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
    let block = wid.x;
    let head = wid.y;
    let split = wid.z;
    if t < RB {
        let row = block * BQ + t;
        var nk = 0u;
        var grp = 0u;
        if t < BQ && row < p.n_rows {
            nk = select(p.seq_len, row % p.seq_len + 1u, p.causal == 1u);
            grp = row / p.seq_len;
        }
        nk_s[t] = nk;
        grp_s[t] = grp;
    }
    workgroupBarrier();
    start_block(t, block, head);
    let n_pass = workgroupUniformLoad(&n_pass_s);
    for (var i = 0u; i < n_pass; i++) {
        let g = workgroupUniformLoad(&pass_grp_s[i]);
        let nk = workgroupUniformLoad(&pass_nk_s[i]);
        let n_chunks = (nk + BK - 1u) / BK;
        for (var c = split; c < n_chunks; c += p.n_split) {
            let c0 = c * BK;
            let kmax = min(BK, nk - c0);
            if t < kmax {
                let at = (g * p.seq_len + c0 + t) * 3u * p.hidden + p.hidden + head * D;
                kb_s[t] = at / 4u;
                vb_s[t] = at + p.hidden;
            }
            workgroupBarrier();
            chunk(t, c0, kmax, g);
        }
    }
    workgroupBarrier();
    finish_block(t, block, head, split);
}

// Merges the n_split partials (o[D], m, l) of each (row, head) into the output [n_rows, H]:
// out = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M) with M = max_s m_s. One thread per column.
fn merge(row: u32, head: u32, t: u32) {
    let base = (row * p.n_heads + head) * p.n_split * (D + 2u);
    var m = NEG;
    for (var s = 0u; s < p.n_split; s++) {
        m = max(m, parts[base + s * (D + 2u) + D]);
    }
    var num = 0.0;
    var den = 0.0;
    for (var s = 0u; s < p.n_split; s++) {
        let at = base + s * (D + 2u);
        let w = exp(parts[at + D] - m);
        num += parts[at + t] * w;
        den += parts[at + D + 1u] * w;
    }
    combine_out[row * p.hidden + head * D + t] = select(0.0, num / den, den > 0.0);
}

@compute @workgroup_size(D)
fn combine(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
    if wid.x < p.n_rows {
        merge(wid.x, wid.y, t);
    }
}

// The merge of an APPEND decode step, which then appends the row's K and V for this head (its
// own entry point: only it binds qkv and the pools).
@compute @workgroup_size(D)
fn combine_append(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
    if wid.x < p.n_rows {
        merge(wid.x, wid.y, t);
        append_column(wid.x, wid.y * D + t);
    }
}

// Writes column `col` of row `row`'s K and V (from qkv) into the cache; with an f16 cache the
// even columns write the pair they start.
fn append_column(row: u32, col: u32) {
    let at = kv_place(rows[row].x, rows[row].y);
    if at == NO_PLACE {
        return;
    }
    let src = row * 3u * p.hidden + p.hidden + col;
    if KV_F16 {
        if col % 2u == 0u {
            let dst = (at * p.hidden + col) / 2u;
            k_pool[dst] = pack2x16float(vec2<f32>(new_qkv[src], new_qkv[src + 1u]));
            v_pool[dst] = pack2x16float(vec2<f32>(new_qkv[src + p.hidden], new_qkv[src + p.hidden + 1u]));
        }
    } else {
        k_pool[at * p.hidden + col] = bitcast<u32>(new_qkv[src]);
        v_pool[at * p.hidden + col] = bitcast<u32>(new_qkv[src + p.hidden]);
    }
}
