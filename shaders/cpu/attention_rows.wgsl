// Attention for CPU adapters (lavapipe): the same operation as attention.wgsl's `paged` and
// `dense` entry points (without the split and the append), with no barriers and no workgroup
// memory. Each
// thread owns RQ consecutive query rows of one head and walks their keys itself with an online
// softmax; a key and its value, once loaded, serve all RQ rows. On a CPU the keys already sit
// in caches, and a barrier switches between every group of SIMD lanes, so attention.wgsl's
// shared tiles cost more than they save there; on a GPU the threads' uncoalesced reads would
// be the slow part, so GPUs keep attention.wgsl.
//
// A workgroup's threads take consecutive rows of one head, so they mostly walk the same keys:
// where subgroups hold a workgroup, its SHARE lanes walk them together (a pass per sequence
// any of them has rows of, as far as the furthest row) and split each chunk's key and value
// loads, shuffling the words to each other (`share`): lavapipe pays per load, and a shuffle
// there is a few register moves. That is the SUBGROUPS twin, for several rows per thread where
// subgroups are exactly a workgroup and a head's words split evenly over the lanes (the host
// checks); a module that names subgroup builtins fails validation on devices without them, so
// its code is in `// #if SUBGROUPS` sections, absent from the default text (src/gpu/shaders.rs).
// (No `enable subgroups;`: naga 30 rejects it and gates subgroups by feature.)
//
// Bindings, uniform and results are attention.wgsl's (see there): qkv [n_rows, 3H] at 1, the K
// and V words at 2 and 3 (the pools, or qkv itself for `dense`), the output [n_rows, H] at 4, and
// for `paged` the step's rows, the page table and the sequence lengths at 5..7. A module holds
// one entry point, `paged` or `dense` (PAGED, set by the host), so `dense` names no cache table.

// #include attention_params

// Head dimension, a multiple of 4 (the host specialises it).
const D: u32 = 64u;
const D4: u32 = D / 4u;
// Query rows per thread (the host's rows_per_thread: 8 at D = 64), and threads per workgroup.
const RQ: u32 = 8u;
const WG: u32 = 8u;
// With one row per thread (a decode step: one row per sequence) the threads of a workgroup
// take consecutive heads of a row instead of consecutive rows of a head: a step has a few rows
// but 12-16 heads, and a CPU runs a workgroup's threads as SIMD lanes, which rows alone would
// leave idle. All lanes then walk the same keys.
const HEAD_LANES: bool = RQ == 1u;
// Keys scored before the running max is updated: one rescale of the outputs per CH keys.
// With the rows written out, CH = 8 ran no faster than 4 on lavapipe.
const CH: u32 = 4u;
// The pools hold two f16 halves per word (paged only; dense reads f32).
const KV_F16: bool = false;
// Chunks of 4 elements per 16-byte word of K and V the walks use (the host sets it): 2 with f16
// halves and D a multiple of 8, where every key and value starts a word, so chunks d and d + 1
// (d even) come from one word: the walks load it at d and take its upper half at d + 1
// (lavapipe pays per load, not per byte). Otherwise 1: f32, or f16 chunks that may straddle
// words, each loading its own.
const CPW: u32 = 1u;
const PAIRED: bool = CPW == 2u;
// Words of K (or V) per key and head.
const WK: u32 = D4 / CPW;
const NEG: f32 = -3.0e38;
// No sequence: above every slot and batch item.
const NO_SEQ: u32 = 0xffffffffu;
const NEG_VALID: f32 = -1.0e38;
// The lanes walk the keys together and share their loads (the host sets it).
const SUBGROUPS: bool = false;
// The entry point: `paged` over the KV cache, or `dense` over qkv (the host sets it).
const PAGED: bool = true;

// #if SUBGROUPS
// Lanes sharing the loads, and the chunk's words of K each one loads.
const SHARE: u32 = WG;
const SHARED_WORDS: u32 = CH * WK / WG;

// Word v of lane `lane` (a constant once the loops are written out).
fn share(v: vec4<u32>, lane: u32) -> vec4<u32> {
    return subgroupShuffle(v, lane);
}
fn group_min(v: u32) -> u32 {
    return subgroupMin(v);
}
fn group_max(v: u32) -> u32 {
    return subgroupMax(v);
}

// #if PAGED
@compute @workgroup_size(WG)
fn paged(@builtin(global_invocation_id) id: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
    paged_rows(id, lane);
}
// #else
@compute @workgroup_size(WG)
fn dense(@builtin(global_invocation_id) id: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
    dense_rows(id, lane);
}
// #endif
// #else
// Each thread walks and loads alone.
const SHARE: u32 = 1u;
const SHARED_WORDS: u32 = 1u;

// The thread's own word and values: no lanes to share with.
fn share(v: vec4<u32>, lane: u32) -> vec4<u32> {
    return v;
}
fn group_min(v: u32) -> u32 {
    return v;
}
fn group_max(v: u32) -> u32 {
    return v;
}

// #if PAGED
@compute @workgroup_size(WG)
fn paged(@builtin(global_invocation_id) id: vec3u) {
    paged_rows(id, 0u);
}
// #else
@compute @workgroup_size(WG)
fn dense(@builtin(global_invocation_id) id: vec3u) {
    dense_rows(id, 0u);
}
// #endif
// #endif

@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
// K and V in 16-byte words: 4 f32, or 8 f16 halves.
@group(0) @binding(2) var<storage, read> kbuf: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> vbuf: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
// #if PAGED
@group(0) @binding(5) var<storage, read> rows: array<vec2<u32>>;
@group(0) @binding(6) var<storage, read> page_table: array<u32>;
@group(0) @binding(7) var<storage, read> seq_lens: array<u32>;
// #endif

// The thread's rows: how many keys each sees (0: none, also for rows past n_rows) and its
// sequence slot or batch item.
var<private> nk: array<u32, RQ>;
var<private> grp: array<u32, RQ>;

// Elements e .. e + 3 (e a multiple of 4) of K or V, from the word w that holds them.
fn four(w: vec4<u32>, e: u32) -> vec4<f32> {
    if KV_F16 {
        let h = select(w.xy, w.zw, (e & 4u) != 0u);
        return vec4(unpack2x16float(h.x), unpack2x16float(h.y));
    }
    return bitcast<vec4<f32>>(w);
}
fn word(e: u32) -> u32 {
    return select(e / 4u, e / 8u, KV_F16);
}

// The slot of a chunk's word w in the shared loads (see attend). The clamp only keeps the
// unused shared branch of a SHARE = 1 module within its 1-word arrays, which naga checks.
fn slot(w: u32) -> u32 {
    return min(w / SHARE, SHARED_WORDS - 1u);
}

// Where key j of sequence (or batch item) g starts for this head, as an element index of K;
// its value starts `v_shift` elements later in V.
fn key_start(g: u32, j: u32, head: u32) -> u32 {
// #if PAGED
    // g < max_seqs and j < the sequence's length <= the table's width (the entry point checks
    // both); a page the host never mapped is clamped to page 0 rather than read OOB.
    var page = page_table[g * p.max_pages_per_seq + j / p.page_size];
    page = select(0u, page, page < p.n_pages);
    return (page * p.page_size + j % p.page_size) * p.hidden + head * D;
// #else
    // qkv rows hold [Q | K | V].
    return (g * p.seq_len + j) * 3u * p.hidden + p.hidden + head * D;
// #endif
}

// Attends the thread's rows row0 .. row0 + RQ for `head` (nk and grp set) and writes them.
// The rows' queries and unnormalised outputs live in private arrays indexed only by constants:
// the loops over rows, keys of a chunk and columns are written out (`// #unroll`), since
// lavapipe would otherwise keep those arrays in memory and walk a branch tree over their
// elements at every access (and took seconds to compile such a shader). Per chunk of CH keys a
// thread loads CH keys and values once and uses each for its RQ rows.
fn attend(row0: u32, head: u32, v_shift: u32, lane: u32) {
    var m: array<f32, RQ>;
    var l = array<f32, RQ>();
    var passed: array<bool, RQ>;
    var q: array<vec4<f32>, RQ * D4>;
    var o = array<vec4<f32>, RQ * D4>();
    for (var r = 0u; r < RQ; r++) { // #unroll
        m[r] = NEG;
        passed[r] = nk[r] == 0u;
        // Rows past n_rows reuse the last row's query and are never written.
        let qa = (min(row0 + r, p.n_rows - 1u) * 3u * p.hidden + head * D) / 4u;
        for (var d = 0u; d < D4; d++) { // #unroll
            q[r * D4 + d] = qkv[qa + d];
        }
    }
    // One pass over the keys per distinct sequence among the rows (of all lanes that share
    // loads: they walk together, the smallest sequence first, as far as the furthest row);
    // rows of other sequences, or past their own keys, see only masked scores in it (their max
    // stays, their rescale is 1, they add nothing), so the order of the passes changes nothing.
    loop {
        var mine = NO_SEQ;
        for (var r = 0u; r < RQ; r++) { // #unroll
            if !passed[r] {
                mine = min(mine, grp[r]);
            }
        }
        let g = group_min(mine);
        if g == NO_SEQ {
            break;
        }
        var kmax = 0u;
        for (var r = 0u; r < RQ; r++) { // #unroll
            // `&`, not `&&`, here and in the masks below: see there.
            if !passed[r] & (grp[r] == g) {
                kmax = max(kmax, nk[r]);
                passed[r] = true;
            }
        }
        kmax = group_max(kmax);
        for (var j0 = 0u; j0 < kmax; j0 += CH) {
            // The chunk's keys (past kmax: the last key again, masked).
            var at: array<u32, CH>;
            for (var c = 0u; c < CH; c++) { // #unroll
                at[c] = key_start(g, min(j0 + c, kmax - 1u), head);
            }
            // Zeroed by an explicit initializer, as every accumulator in shaders/: Chromium's
            // WebGPU (Tint, then SwiftShader) kept the last chunk's values in a loop-body `var`
            // declared without one, where WGSL zeroes it on every pass.
            var s = array<f32, RQ * CH>();
            // Shared loads: word w of the chunk's K (key w / WK, its word w % WK) is lane
            // w % SHARE's slot w / SHARE (WK a multiple of SHARE, so a slot's key is constant).
            var kl: array<vec4<u32>, SHARED_WORDS>;
            if SHARE > 1u {
                for (var t = 0u; t < SHARED_WORDS; t++) { // #unroll
                    kl[t] = kbuf[word(at[t * SHARE / WK] + 4u * CPW * (t * SHARE % WK + lane))];
                }
            }
            var kw: array<vec4<u32>, CH>;
            for (var d = 0u; d < D4; d++) { // #unroll
                for (var c = 0u; c < CH; c++) { // #unroll
                    if SHARE > 1u {
                        kw[c] = share(kl[slot(c * WK + d / CPW)], (c * WK + d / CPW) % SHARE);
                    } else if d % CPW == 0u {
                        kw[c] = kbuf[word(at[c] + 4u * d)];
                    }
                    let k = four(kw[c], at[c] + 4u * d);
                    for (var r = 0u; r < RQ; r++) { // #unroll
                        s[r * CH + c] += dot(q[r * D4 + d], k);
                    }
                }
            }
            // Masks, the running max and sum, probabilities in place of the scores. The mask is
            // `&`, not the short-circuit `&&`: compilers write each `&&` as a branch, and
            // SwiftShader's (Chrome's WebGPU fallback, Subzero build) compile time and memory
            // double with each such branch in a loop body: the RQ * CH = 32 of RQ = 8 never
            // finished compiling there (the GPU process died at ~12 GB and the device was lost).
            var alpha: array<f32, RQ>;
            for (var r = 0u; r < RQ; r++) { // #unroll
                var m_new = m[r];
                for (var c = 0u; c < CH; c++) { // #unroll
                    let sc = select(NEG, s[r * CH + c] * p.scale, (grp[r] == g) & (j0 + c < nk[r]));
                    s[r * CH + c] = sc;
                    m_new = max(m_new, sc);
                }
                alpha[r] = exp(m[r] - m_new);
                m[r] = m_new;
                var sum = 0.0;
                for (var c = 0u; c < CH; c++) { // #unroll
                    let pr = select(0.0, exp(s[r * CH + c] - m_new), s[r * CH + c] > NEG_VALID);
                    s[r * CH + c] = pr;
                    sum += pr;
                }
                l[r] = l[r] * alpha[r] + sum;
            }
            // Outputs, four columns of D at a time, rescaled and accumulated.
            var vl: array<vec4<u32>, SHARED_WORDS>;
            if SHARE > 1u {
                for (var t = 0u; t < SHARED_WORDS; t++) { // #unroll
                    vl[t] = vbuf[word(at[t * SHARE / WK] + v_shift + 4u * CPW * (t * SHARE % WK + lane))];
                }
            }
            var vw: array<vec4<u32>, CH>;
            for (var d = 0u; d < D4; d++) { // #unroll
                var v: array<vec4<f32>, CH>;
                for (var c = 0u; c < CH; c++) { // #unroll
                    if SHARE > 1u {
                        vw[c] = share(vl[slot(c * WK + d / CPW)], (c * WK + d / CPW) % SHARE);
                    } else if d % CPW == 0u {
                        vw[c] = vbuf[word(at[c] + v_shift + 4u * d)];
                    }
                    v[c] = four(vw[c], at[c] + v_shift + 4u * d);
                }
                for (var r = 0u; r < RQ; r++) { // #unroll
                    var od = o[r * D4 + d] * alpha[r];
                    for (var c = 0u; c < CH; c++) { // #unroll
                        od += s[r * CH + c] * v[c];
                    }
                    o[r * D4 + d] = od;
                }
            }
        }
    }
    for (var r = 0u; r < RQ; r++) { // #unroll
        let row = row0 + r;
        if row < p.n_rows {
            let inv = select(0.0, 1.0 / l[r], l[r] > 0.0);
            for (var d = 0u; d < D4; d++) { // #unroll
                out[(row * p.hidden + head * D) / 4u + d] = o[r * D4 + d] * inv;
            }
        }
    }
}

// The thread's first row and its head (see HEAD_LANES), or n_rows when it has no work.
fn place(id: vec3u) -> vec2u {
    let at = select(vec2(id.x * RQ, id.y), vec2(id.y * RQ, id.x), HEAD_LANES);
    return select(at, vec2(p.n_rows, 0u), at.y >= p.n_heads);
}

// #if PAGED
// The thread's rows of a step over the paged cache (the entry point `paged`).
fn paged_rows(id: vec3u, lane: u32) {
    let row0 = place(id).x;
    let head = place(id).y;
    // Threads without rows walk nothing but stay: lanes that share loads shuffle together.
    if p.n_rows == 0u {
        return;
    }
    let max_len = p.max_pages_per_seq * p.page_size;
    for (var r = 0u; r < RQ; r++) { // #unroll
        let row = row0 + r;
        nk[r] = 0u;
        grp[r] = 0u;
        if row < p.n_rows {
            let slot = rows[row].x;
            let pos = rows[row].y;
            if slot < p.max_seqs {
                let len = min(seq_lens[slot], max_len);
                if pos < len {
                    nk[r] = select(len, pos + 1u, p.causal == 1u);
                    grp[r] = slot;
                }
            }
        }
    }
    attend(row0, head, 0u, lane);
}

// #else
// The thread's rows of `dense` (the entry point `dense`).
fn dense_rows(id: vec3u, lane: u32) {
    let row0 = place(id).x;
    let head = place(id).y;
    // Threads without rows walk nothing but stay: lanes that share loads shuffle together.
    if p.n_rows == 0u {
        return;
    }
    for (var r = 0u; r < RQ; r++) { // #unroll
        let row = row0 + r;
        nk[r] = 0u;
        grp[r] = 0u;
        if row < p.n_rows {
            nk[r] = select(p.seq_len, row % p.seq_len + 1u, p.causal == 1u);
            grp[r] = row / p.seq_len;
        }
    }
    attend(row0, head, p.hidden, lane);
}
// #endif
