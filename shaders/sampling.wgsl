// Token choice at the end of a decode step, one workgroup (WG threads) per logit row, so a step
// reads back a token id and an end flag per sequence instead of a logit row.
//
// Each row has SETTINGS_WORDS u32 words of settings that the host rewrites between steps (the
// layout and the exact rules are documented in src/ops/sampling.rs, `RowSettings`):
//   candidates C = [lo, hi) plus one optional extra id; every other logit is ignored (-inf).
//   EOS prioritiser: p = softmax over C of the raw logits at temperature 1, at eos;
//                    p > min_eos_p (transformers) or p >= (original Bark, greedy only) -> eos.
//   greedy (temperature <= 0): argmax over C, ties -> lowest index (torch.argmax).
//   sampling: s = x / T. top-k and top-p thresholds are taken on s (transformers order) or on
//             the raw x (original order); the kept set is every candidate whose filter value is
//             >= both thresholds. Original EOS rule: p = softmax over kept of s, at eos,
//             p >= min_eos_p -> eos. Then inverse CDF in index order with the row's uniform u.
//
// Floats are compared as u32 keys (a monotone bit flip), so a threshold is an exact key found by
// a search over the key space with workgroup reductions: no sort, any vocabulary size. Each
// search pass measures six probes at once and narrows to the keys actually present, stopping
// when one is left (about 3 passes for 40 ids, 7 for 10,048 with random logits; see
// search_key). top-k is the same search counting tokens instead of summing probability. Each
// pass re-reads the row from memory (at most 48 values per thread for Bark's 12,096).
// Reductions go WG -> SPLIT partials -> every thread, 3 barriers each.

struct Params {
    rows: u32,
    vocab: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> settings: array<u32>;
@group(0) @binding(3) var<storage, read> uniforms: array<f32>;
@group(0) @binding(4) var<storage, read_write> ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> flags: array<u32>;

const WG: u32 = 256u;
// WG = SPLIT * SPLIT.
const SPLIT: u32 = 16u;
// A search pass splits its key interval into PARTS (6 probes; see search_key).
const PARTS: u32 = 7u;
const SETTINGS_WORDS: u32 = 9u;
const NONE: u32 = 0xffffffffu;
// Bit 0 of the flags word: original Bark's order (filters on raw logits, top-p `<=`).
const ORIGINAL_ORDER: u32 = 1u;
// Bit 1: original Bark's EOS rule (post-filter, post-temperature probability, `>=`).
const ORIGINAL_EOS: u32 = 2u;
// key(-inf): every key at or below it is -inf (or a negative NaN).
const NEG_INF_KEY: u32 = 0x007fffffu;
// The largest f32 below 1, so u * total stays below the total.
const ONE_BELOW: f32 = 0.99999994;

// One row's settings, sanitised so that nothing the host wrote can index out of bounds.
struct Row {
    base: u32,
    lo: u32,
    hi: u32,
    // NONE, or an id outside [lo, hi) that is also a candidate.
    extra: u32,
    // NONE, or the end-of-sequence id.
    eos: u32,
    // 1 when eos is a candidate (only then does it have a probability).
    eos_ok: u32,
    // eos's logit when eos_ok.
    x_eos: f32,
    // Number of candidates.
    n: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_eos_p: f32,
    flags: u32,
}

struct Best {
    key: u32,
    idx: u32,
    // Largest key of x / t.
    skey: u32,
}

// What a search pass reduces: sums in eight f32 lanes (vectors, not an indexed array: cheaper
// on CPU drivers), and the smallest and largest key seen.
struct Lanes {
    a: vec4f,
    b: vec4f,
    kmin: u32,
    kmax: u32,
}

var<workgroup> cfg: Row;
var<workgroup> red_best: array<Best, WG>;
var<workgroup> part_best: array<Best, SPLIT>;
// A Lanes per thread, as three arrays: a struct array pads each to 48 bytes, and at WG = 256
// that would take the module over WebGPU's default 16 KiB of workgroup memory.
var<workgroup> red_a: array<vec4f, WG>;
var<workgroup> red_b: array<vec4f, WG>;
var<workgroup> red_keys: array<vec2u, WG>;
var<workgroup> part_lanes: array<Lanes, SPLIT>;
// Exclusive prefix of the per-thread kept mass, for the inverse CDF.
var<workgroup> prefix: array<f32, WG>;
var<workgroup> total_mass: f32;
var<workgroup> chosen: atomic<u32>;
var<workgroup> last_kept: atomic<u32>;

// Order-preserving map of f32 onto u32: a < b (as floats) <=> key(a) < key(b). -0 is mapped
// as +0, so the two zeros tie as they do in torch.
fn key(v: f32) -> u32 {
    let b = select(bitcast<u32>(v), 0u, v == 0.0);
    return select(b ^ 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn unkey(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k ^ 0x80000000u, (k & 0x80000000u) != 0u));
}

fn is_candidate(c: Row, i: u32) -> bool {
    return (i >= c.lo && i < c.hi) || i == c.extra;
}

fn load_row(row: u32) -> Row {
    let w = row * SETTINGS_WORDS;
    var c: Row;
    c.base = row * p.vocab;
    c.hi = min(settings[w + 1u], p.vocab);
    c.lo = min(settings[w], c.hi);
    let extra = settings[w + 2u];
    let extra_ok = extra < p.vocab && !(extra >= c.lo && extra < c.hi);
    c.extra = select(NONE, extra, extra_ok);
    c.n = c.hi - c.lo + select(0u, 1u, extra_ok);
    let eos = settings[w + 3u];
    c.eos = select(NONE, eos, eos < p.vocab);
    c.eos_ok = 0u;
    c.x_eos = 0.0;
    if c.eos != NONE && is_candidate(c, c.eos) {
        c.eos_ok = 1u;
        c.x_eos = logits[c.base + c.eos];
    }
    c.temperature = bitcast<f32>(settings[w + 4u]);
    c.top_k = settings[w + 5u];
    c.top_p = bitcast<f32>(settings[w + 6u]);
    c.min_eos_p = bitcast<f32>(settings[w + 7u]);
    c.flags = settings[w + 8u];
    return c;
}

// ---- workgroup reductions (called by every thread, in uniform control flow) ----

fn better(a: Best, b: Best) -> Best {
    var m = a;
    if b.key > a.key || (b.key == a.key && b.idx < a.idx) {
        m.key = b.key;
        m.idx = b.idx;
    }
    m.skey = max(a.skey, b.skey);
    return m;
}

fn reduce_best(b: Best, lid: u32) -> Best {
    red_best[lid] = b;
    workgroupBarrier();
    if lid < SPLIT {
        var m = red_best[lid * SPLIT];
        for (var j = 1u; j < SPLIT; j++) {
            m = better(m, red_best[lid * SPLIT + j]);
        }
        part_best[lid] = m;
    }
    let parts = workgroupUniformLoad(&part_best);
    var m = parts[0];
    for (var j = 1u; j < SPLIT; j++) {
        m = better(m, parts[j]);
    }
    return m;
}

fn add_lanes(x: Lanes, y: Lanes) -> Lanes {
    return Lanes(x.a + y.a, x.b + y.b, min(x.kmin, y.kmin), max(x.kmax, y.kmax));
}

fn no_lanes() -> Lanes {
    return Lanes(vec4f(0.0), vec4f(0.0), NONE, 0u);
}

// Lane-wise sums (and key min / max) over the workgroup. Every thread combines the same
// partials in the same order, so all get the same (uniform) result.
fn reduce_lanes(v: Lanes, lid: u32) -> Lanes {
    red_a[lid] = v.a;
    red_b[lid] = v.b;
    red_keys[lid] = vec2(v.kmin, v.kmax);
    workgroupBarrier();
    if lid < SPLIT {
        var acc = no_lanes();
        for (var j = 0u; j < SPLIT; j++) {
            let i = lid * SPLIT + j;
            acc = add_lanes(acc, Lanes(red_a[i], red_b[i], red_keys[i].x, red_keys[i].y));
        }
        part_lanes[lid] = acc;
    }
    let parts = workgroupUniformLoad(&part_lanes);
    var total = no_lanes();
    for (var j = 0u; j < SPLIT; j++) {
        total = add_lanes(total, parts[j]);
    }
    return total;
}

fn reduce_add(v: f32, lid: u32) -> f32 {
    var lanes = no_lanes();
    lanes.a.x = v;
    return reduce_lanes(lanes, lid).a.x;
}

// ---- per-element values ----

// The value the top-k / top-p thresholds look at: x / t, or the raw x in the original order.
fn filter_value(c: Row, x: f32, t: f32) -> f32 {
    if (c.flags & ORIGINAL_ORDER) != 0u {
        return x;
    }
    return x / t;
}

// exp(v - shift), exactly 0 for v = -inf.
fn weight(v: f32, shift: f32) -> f32 {
    if key(v) <= NEG_INF_KEY {
        return 0.0;
    }
    return exp(v - shift);
}

// Softmax denominator over the candidates at temperature 1 (shifted by the max mx).
fn mass_t1(c: Row, mx: f32, lid: u32) -> f32 {
    var part = 0.0;
    for (var i = lid; i < p.vocab; i += WG) {
        if is_candidate(c, i) {
            part += weight(logits[c.base + i], mx);
        }
    }
    return reduce_add(part, lid);
}

// Mass exp(v - shift) of the candidates whose filter value v has a key >= floor.
fn filtered_mass(c: Row, t: f32, shift: f32, floor: u32, lid: u32) -> f32 {
    var part = 0.0;
    for (var i = lid; i < p.vocab; i += WG) {
        if is_candidate(c, i) {
            let v = filter_value(c, logits[c.base + i], t);
            if key(v) >= floor {
                part += weight(v, shift);
            }
        }
    }
    return reduce_add(part, lid);
}

// The smallest key K in [lo0, hi0] whose measure passes, M(K) < goal (or <= goal when
// inclusive), where M(K) sums over the candidates with floor <= key(v) and key(v) > K either
// 1 (count) or exp(v - shift), v the filter value; hi0 (the largest key) when none passes.
// M never grows with K (the f32 sums keep that: the same nonnegative terms in the same order),
// so a 7-way search over [lo, hi] finds K. K is lo0 or one of the keys, so each pass also
// narrows [lo, hi] to the keys it holds and stops once one distinct key is left: the passes
// needed grow with how close the values near the threshold are, not with the 32-bit range.
//   top-k: count, goal k -> the key of the k-th largest value (#{key > K} < k <= #{key >= K}).
//   top-p: mass, goal top_p * mass -> the lowest kept key.
fn search_key(c: Row, t: f32, shift: f32, floor: u32, lo0: u32, hi0: u32, goal: f32, inclusive: bool, count: bool, lid: u32) -> u32 {
    var lo = lo0;
    var hi = hi0;
    loop {
        if lo >= hi {
            break;
        }
        // Lane 1: M(lo); lanes 2..7: M at six probes splitting [lo, hi] into seven (written to
        // avoid u32 overflow); kmin / kmax: the keys in (lo, hi].
        let n = hi - lo;
        let step = vec4u(n / PARTS);
        let rest = vec4u(n % PARTS);
        let ja = vec4u(0u, 0u, 1u, 2u);
        let jb = vec4u(3u, 4u, 5u, 6u);
        let pa = lo + step * ja + (rest * ja) / PARTS;
        let pb = lo + step * jb + (rest * jb) / PARTS;
        var m = no_lanes();
        for (var i = lid; i < p.vocab; i += WG) {
            if is_candidate(c, i) {
                let v = filter_value(c, logits[c.base + i], t);
                let k = key(v);
                if k >= floor && k > lo {
                    var w = 1.0;
                    if !count {
                        w = weight(v, shift);
                    }
                    m.a += select(vec4f(0.0), vec4f(w), vec4u(k) > pa);
                    m.b += select(vec4f(0.0), vec4f(w), vec4u(k) > pb);
                    if k <= hi {
                        m.kmin = min(m.kmin, k);
                        m.kmax = max(m.kmax, k);
                    }
                }
            }
        }
        let r = reduce_lanes(m, lid);
        if r.a.y < goal || (inclusive && r.a.y <= goal) {
            hi = lo;
            break;
        }
        // lo fails, so K is a key in (lo, hi]: that key if there is only one. (None at all
        // would take NaN keys; hi is then as good an answer as any.)
        if r.kmin >= r.kmax {
            if r.kmin == r.kmax {
                hi = r.kmin;
            }
            break;
        }
        let above = array<f32, 8>(r.a.x, r.a.y, r.a.z, r.a.w, r.b.x, r.b.y, r.b.z, r.b.w);
        let probe = array<u32, 8>(pa.x, pa.y, pa.z, pa.w, pb.x, pb.y, pb.z, pb.w);
        var j = 2u;
        loop {
            if j > 7u || above[j] < goal || (inclusive && above[j] <= goal) {
                break;
            }
            j++;
        }
        // Keep (probe j-1, probe j], trimmed to the keys (none lies outside [kmin, kmax]).
        if j <= 7u {
            hi = probe[j];
        }
        lo = max(probe[j - 1u] + 1u, r.kmin);
        hi = min(hi, r.kmax);
    }
    return hi;
}

// The contiguous slice of the row a thread owns in the inverse-CDF passes.
fn chunk_range(lid: u32) -> vec2u {
    let chunk = (p.vocab + WG - 1u) / WG;
    let start = min(lid * chunk, p.vocab);
    return vec2u(start, min(start + chunk, p.vocab));
}

// Sampling weight of token i when kept: exp(x / t - ms); 0 when not kept.
fn kept_weight(c: Row, i: u32, t: f32, ms: f32, floor: u32) -> f32 {
    if !is_candidate(c, i) {
        return 0.0;
    }
    let x = logits[c.base + i];
    if key(filter_value(c, x, t)) < floor {
        return 0.0;
    }
    return weight(x / t, ms);
}

// Total kept mass; leaves each thread's exclusive prefix in `prefix` and the last index with
// a positive weight in `last_kept` (plus one).
fn kept_mass(c: Row, t: f32, ms: f32, floor: u32, lid: u32) -> f32 {
    let r = chunk_range(lid);
    var sum = 0.0;
    var last = NONE;
    for (var i = r.x; i < r.y; i++) {
        let w = kept_weight(c, i, t, ms, floor);
        if w > 0.0 {
            sum += w;
            last = i;
        }
    }
    prefix[lid] = sum;
    if last != NONE {
        // Stored + 1, so 0 means "none" (only possible with NaN logits).
        atomicMax(&last_kept, last + 1u);
    }
    workgroupBarrier();
    if lid == 0u {
        var acc = 0.0;
        for (var j = 0u; j < WG; j++) {
            let v = prefix[j];
            prefix[j] = acc;
            acc += v;
        }
        total_mass = acc;
    }
    return workgroupUniformLoad(&total_mass);
}

// The first kept index (in index order) whose cumulative weight exceeds goal, into `chosen`.
fn inverse_cdf(c: Row, t: f32, ms: f32, floor: u32, goal: f32, lid: u32) {
    let r = chunk_range(lid);
    var acc = prefix[lid];
    for (var i = r.x; i < r.y; i++) {
        let w = kept_weight(c, i, t, ms, floor);
        if w > 0.0 {
            acc += w;
            if acc > goal {
                atomicMin(&chosen, i);
                break;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn sample(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.rows {
        return;
    }
    if lid == 0u {
        cfg = load_row(row);
        atomicStore(&chosen, NONE);
        atomicStore(&last_kept, 0u);
    }
    let c = workgroupUniformLoad(&cfg);
    let greedy = !(c.temperature > 0.0);
    let t = select(c.temperature, 1.0, greedy);

    // Pass 1: argmax of the raw logits over the candidates, and the largest x / t.
    var b = Best(0u, NONE, 0u);
    for (var i = lid; i < p.vocab; i += WG) {
        if is_candidate(c, i) {
            let x = logits[c.base + i];
            let k = key(x);
            // Ascending i within a thread: a strict > keeps the lowest index of a tie.
            if k > b.key || b.idx == NONE {
                b.key = k;
                b.idx = i;
            }
            b.skey = max(b.skey, key(x / t));
        }
    }
    let best = reduce_best(b, lid);
    // No candidate with a finite logit: the lowest candidate (argmax of an all -inf row).
    var id = best.idx;

    if best.key > NEG_INF_KEY {
        let mx = unkey(best.key);
        let original_eos = (c.flags & ORIGINAL_EOS) != 0u;
        let eos_rule = c.eos_ok != 0u && c.min_eos_p >= 0.0;
        var stop = false;
        // The prioritiser on the raw softmax: transformers' rule always, the original's when
        // greedy (no temperature, no filters: the same probability, compared with >=).
        if eos_rule && (!original_eos || greedy) {
            let pe = weight(c.x_eos, mx) / mass_t1(c, mx, lid);
            stop = pe > c.min_eos_p || (original_eos && pe >= c.min_eos_p);
        }
        if stop {
            id = c.eos;
        } else if !greedy {
            let ms = unkey(best.skey);
            let original = (c.flags & ORIGINAL_ORDER) != 0u;
            // Filter values: x / t (max ms) or the raw x (max mx).
            let fshift = select(ms, mx, original);
            let fmax_key = select(best.skey, best.key, original);
            let use_k = c.top_k > 0u && c.top_k < c.n;
            let use_p = c.top_p < 1.0;
            var floor = 0u;
            var k_key = 0u;
            if use_k {
                // The k-th largest filter value over all candidates (both orders).
                k_key = search_key(c, t, fshift, 0u, 0u, fmax_key, f32(c.top_k), false, true, lid);
            }
            if original {
                // Bark's top-p then top-k on the raw logits keeps what passes both.
                if use_p {
                    let goal = c.top_p * filtered_mass(c, t, fshift, 0u, lid);
                    floor = search_key(c, t, fshift, 0u, 0u, fmax_key, goal, true, false, lid);
                }
                floor = max(floor, k_key);
            } else {
                // top-p over what top-k kept.
                floor = k_key;
                if use_p {
                    let goal = c.top_p * filtered_mass(c, t, fshift, floor, lid);
                    floor = search_key(c, t, fshift, floor, floor, fmax_key, goal, false, false, lid);
                }
            }
            let total = kept_mass(c, t, ms, floor, lid);
            var eos_kept = false;
            if eos_rule && original_eos {
                eos_kept = key(filter_value(c, c.x_eos, t)) >= floor;
            }
            if eos_kept && weight(c.x_eos / t, ms) / total >= c.min_eos_p {
                id = c.eos;
            } else {
                let u = clamp(uniforms[row], 0.0, ONE_BELOW);
                inverse_cdf(c, t, ms, floor, u * total, lid);
                workgroupBarrier();
                let hit = atomicLoad(&chosen);
                let last = atomicLoad(&last_kept);
                if hit != NONE {
                    id = hit;
                } else if last != 0u {
                    // u * total past the f32 sum of the walk: the last kept token.
                    id = last - 1u;
                }
            }
        }
    }

    if lid == 0u {
        // Only a row with no candidate at all (refused by the host) has id NONE.
        let safe = select(id, 0u, id >= p.vocab);
        ids[row] = safe;
        flags[row] = select(0u, 1u, c.eos != NONE && safe == c.eos);
    }
}
