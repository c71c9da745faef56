//! Fused attention with an online softmax (`shaders/attention.wgsl`): over the paged KV cache
//! for the causal GPTs, and over a dense `[batch * T, 3H]` QKV matrix for the fine model. On
//! CPU adapters (`Context::cpu_kernels`) both run `shaders/attention_rows.wgsl` instead, the same
//! operation without shared tiles or barriers (see [`AttnOptions::rows_kernel`]), or its twin
//! `shaders/attention_rows_subgroup.wgsl`, whose lanes share the key and value loads (see
//! [`shares_loads`]).
//!
//! Both take the fused projection output `qkv` (`[rows, 3H]`, `[Q | K | V]`, heads contiguous
//! in each) and return `[rows, H]` (heads concatenated, ready for the output projection).
//! Scores are `q.k / sqrt(head_dim)`, softmax and sums in f32.
//!
//! The head dimension is any multiple of 4 from 4 to [`MAX_HEAD_DIM`] (see
//! [`supports_head_dim`]); each has its own kernel specialisation. Bark's models use 64, the
//! layout the kernels are tuned for; other sizes (small test configs, other GPTs) reuse it.

use super::kv_cache::{self, check_qkv};
use super::params;
use crate::error::{shape_err, Error};
use crate::gpu::{Access::*, Contract, DType, Kernel};
use crate::graph::{Graph, Val};
use crate::kv::KvVals;
use crate::{Context, Result};

/// The largest head dimension the kernels are built for: the block's queries then fill about
/// 8 KiB of the 16 KiB of workgroup memory WebGPU guarantees.
pub const MAX_HEAD_DIM: u32 = 128;
/// Keys per chunk of the kernels' walk (also their workgroup size), whatever the head size.
const KEYS_PER_CHUNK: u32 = 64;
/// Query rows per workgroup the kernels are built for.
pub const BLOCK_ROWS: [u32; 2] = [1, 16];
/// The most workgroups that may share one (block, head) along the keys.
pub const MAX_SPLIT: u32 = 16;
/// Workgroups the automatic split aims for: enough to keep a large GPU busy when a decode
/// step has only `n_heads` (block, head) pairs.
const TARGET_WORKGROUPS: u32 = 256;

/// Which keys a query row sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Key positions up to and including the row's own (semantic and coarse models).
    Causal,
    /// Every key of the row's sequence (or batch item): the fine model.
    Full,
}

/// Kernel choices; `None` lets the op pick. Results do not depend on them beyond f32 rounding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttnOptions {
    /// Query rows per workgroup, one of [`BLOCK_ROWS`]. 16 shares each key load among 16 rows
    /// (prefill); 1 suits steps whose rows are all in different sequences (decode).
    pub block_rows: Option<u32>,
    /// Workgroups sharing the keys of one (block, head), 1..=[`MAX_SPLIT`]; above 1 a second
    /// dispatch merges their partial results.
    pub split: Option<u32>,
    /// Run `attention_rows.wgsl` (each thread walks the keys of [`rows_per_thread`] query rows,
    /// or of one row in a decode step, itself; no barriers, no split) instead of the tiled
    /// kernel. The default where [`crate::Context::cpu_kernels`] (CPU adapters, where barriers
    /// cost more than the tiles save, in a prefill and a decode step alike: BENCHMARKS.md);
    /// `block_rows` and `split` do not apply to it.
    pub rows_kernel: Option<bool>,
}

/// Query rows each thread of `attention_rows.wgsl` takes (RQ) in a prefill or dense attention
/// over heads of `head_dim` on `ctx` (a decode step's rows, one per sequence, take a thread per
/// head, and a workgroup spans heads). More rows share each loaded key and value, but the
/// kernel is written out per row and column, and a compiler's time and memory can grow much
/// faster than its size: up to 8 rows and rows x head_dim 512 where a workgroup is one subgroup
/// (the lanes then also share their loads; lavapipe), else up to 4 rows and 256, which every
/// driver tried compiles (BENCHMARKS.md, "Driver matrix").
pub fn rows_per_thread(ctx: &Context, head_dim: u32) -> u32 {
    rows_within(ctx.subgroups_are(ROWS_WG), head_dim)
}

/// [`rows_per_thread`] for devices whose workgroup is one subgroup (`one_subgroup`) or not.
fn rows_within(one_subgroup: bool, head_dim: u32) -> u32 {
    let (most_rows, most_elements) = if one_subgroup { (8, 512) } else { (4, 256) };
    (most_elements / head_dim.max(1)).clamp(1, most_rows)
}

/// Threads per workgroup of `attention_rows.wgsl` (WG).
const ROWS_WG: u32 = 8;

/// Chunks of 4 elements per 16-byte word the rows kernel walks (its CPW): 2 where f16 keys
/// start every word (head dims that are multiples of 8), else 1.
fn chunks_per_word(head_dim: u32, kv_f16: bool) -> u32 {
    if kv_f16 && head_dim.is_multiple_of(8) {
        2
    } else {
        1
    }
}

/// Whether the rows kernel, where it takes several rows per thread (prefill, dense), runs
/// attention_rows_subgroup.wgsl on `ctx` for heads of `head_dim` over f16 (`kv_f16`) or f32
/// keys: its lanes walk the keys together and share their loads. It needs subgroups that are
/// exactly a workgroup, and a head's 16-byte words of K splitting evenly over the lanes (f32: a
/// multiple of 32; f16: of 64, as in Bark).
pub fn shares_loads(ctx: &Context, head_dim: u32, kv_f16: bool) -> bool {
    ctx.subgroups_are(ROWS_WG) && words_split(head_dim, kv_f16)
}

/// Whether a head's words of K split evenly over a workgroup's lanes (f16 keys only where
/// they start every word).
fn words_split(head_dim: u32, kv_f16: bool) -> bool {
    let cpw = chunks_per_word(head_dim, kv_f16);
    (!kv_f16 || cpw == 2) && head_dim.is_multiple_of(4) && (head_dim / 4 / cpw).is_multiple_of(ROWS_WG)
}

uniform_struct! {
    struct Params {
        n_rows: u32,
        n_heads: u32,
        hidden: u32,
        causal: u32,
        n_split: u32,
        page_size: u32,
        n_pages: u32,
        max_seqs: u32,
        max_pages_per_seq: u32,
        seq_len: u32,
        scale: f32,
        _pad: u32,
    }
}

/// What the tiled and rows kernels' `dense` entry binds (qkv as the queries, keys and values).
const DENSE: &[(&str, crate::gpu::Access)] = &[("qkv", Read), ("kbuf", Read), ("vbuf", Read), ("out", ReadWrite)];
const TILED_DENSE: Contract = Contract { params: Some(Params::LAYOUT), binds: DENSE };
const TILED_PAGED: Contract = Contract {
    params: Some(Params::LAYOUT),
    binds: &[
        ("qkv", Read),
        ("kbuf", Read),
        ("vbuf", Read),
        ("out", ReadWrite),
        ("rows", Read),
        ("page_table", Read),
        ("seq_lens", Read),
    ],
};
/// The rows kernels take the page table before the rows, and a dense walk names it too.
const ROWS_DENSE: Contract = Contract {
    params: Some(Params::LAYOUT),
    binds: &[("qkv", Read), ("kbuf", Read), ("vbuf", Read), ("out", ReadWrite), ("page_table", Read)],
};
const ROWS_PAGED: Contract = Contract {
    params: Some(Params::LAYOUT),
    binds: &[
        ("qkv", Read),
        ("kbuf", Read),
        ("vbuf", Read),
        ("out", ReadWrite),
        ("page_table", Read),
        ("rows", Read),
        ("seq_lens", Read),
    ],
};
const COMBINE: Contract =
    Contract { params: Some(Params::LAYOUT), binds: &[("parts", Read), ("combine_out", ReadWrite)] };
/// The merge that appends: [`AppendBinds`] after the partials and the output.
const COMBINE_APPEND: Contract = Contract {
    params: Some(Params::LAYOUT),
    binds: &[
        ("parts", Read),
        ("combine_out", ReadWrite),
        ("new_qkv", Read),
        ("k_pool", ReadWrite),
        ("rows", Read),
        ("page_table", Read),
        ("seq_lens", Read),
        ("v_pool", ReadWrite),
    ],
};

/// Whether the kernels handle heads of `head_dim` values: a multiple of 4 (rows are read as
/// vec4s) from 4 to [`MAX_HEAD_DIM`].
pub fn supports_head_dim(head_dim: u32) -> bool {
    head_dim.is_multiple_of(4) && (4..=MAX_HEAD_DIM).contains(&head_dim)
}

/// Every head dimension [`supports_head_dim`] accepts.
fn head_dims() -> impl Iterator<Item = u32> {
    (4..=MAX_HEAD_DIM).step_by(4)
}

/// The attention kernel for heads of `head_dim`, `block_rows` rows per workgroup and keys and
/// values stored as f16 pairs (`kv_f16`, paged only) or f32. A thread's value columns come in
/// vectors of `ceil(block_rows / 4)`, so the word type it reads them in goes with it.
/// With `append` (paged, one row per block, split) each row reads its own new key and value
/// from qkv, and the merge appends them to the cache.
fn kernel(entry: &'static str, head_dim: u32, block_rows: u32, kv_f16: bool, append: bool) -> Kernel {
    let (word, col) = if block_rows > 4 { ("vec4<u32>", "vec4<f32>") } else { ("u32", "f32") };
    let contract = if entry == "paged" { &TILED_PAGED } else { &TILED_DENSE };
    Kernel::new("attention", entry)
        .contract(contract)
        .with("D", format!("{head_dim}u"))
        .with("BQ", format!("{block_rows}u"))
        .with("KV_F16", kv_f16)
        .with("APPEND", append)
        .with("VWord", word)
        .with("VCol", col)
}

/// attention_rows.wgsl's `entry` for heads of `head_dim` over f16 (`kv_f16`) or f32 keys, or
/// with `shared_loads` attention_rows_subgroup.wgsl's (see [`shares_loads`]).
fn rows_kernel(entry: &'static str, head_dim: u32, kv_f16: bool, rows_per_thread: u32, shared_loads: bool) -> Kernel {
    let shader = if shared_loads { "attention_rows_subgroup" } else { "attention_rows" };
    let contract = if entry == "paged" { &ROWS_PAGED } else { &ROWS_DENSE };
    Kernel::new(shader, entry)
        .contract(contract)
        .with("CPW", format!("{}u", chunks_per_word(head_dim, kv_f16)))
        .with("D", format!("{head_dim}u"))
        .with("RQ", format!("{rows_per_thread}u"))
        .with("WG", format!("{ROWS_WG}u"))
        .with("KV_F16", kv_f16)
}

/// The merge of split partials for heads of `head_dim`; with `append`, the merge that then
/// appends the rows' K and V to a cache of f16 pairs (`kv_f16`) or f32.
fn combine_kernel(head_dim: u32, append: Option<bool>) -> Kernel {
    match append {
        None => Kernel::new("attention", "combine").contract(&COMBINE).with("D", format!("{head_dim}u")),
        Some(kv_f16) => Kernel::new("attention", "combine_append")
            .contract(&COMBINE_APPEND)
            .with("D", format!("{head_dim}u"))
            .with("KV_F16", kv_f16),
    }
}

/// How a checked attention runs: the tiled kernel with `block_rows` rows per workgroup over
/// `blocks` blocks and `split` workgroups per (block, head), or (`rows`) attention_rows.wgsl
/// with `block_rows` rows per thread.
#[derive(Clone, Copy)]
struct Launch {
    rows: bool,
    block_rows: u32,
    blocks: u32,
    split: u32,
}

/// Checks the options and fills in the defaults: the rows kernel where `rows_default` says so
/// (unless the caller asks for tiles), with one row per thread where `default_rows` is 1 (a
/// decode step), else `block_rows` from `default_rows` and the split from how many (block,
/// head) workgroups there are and how many key chunks a row may have.
fn resolve(
    ctx: &Context,
    op: &'static str,
    opts: AttnOptions,
    (n_rows, n_heads, head_dim): (u32, u32, u32),
    (default_rows, rows_default): (u32, bool),
    max_keys: u32,
) -> Result<Launch> {
    let tiles_asked = opts.block_rows.is_some() || opts.split.is_some();
    if opts.rows_kernel.unwrap_or(rows_default && !tiles_asked) {
        if tiles_asked {
            return Err(Error::Invalid(format!("{op}: block_rows and split do not apply to the rows kernel")));
        }
        let per_thread = if default_rows == 1 { 1 } else { rows_per_thread(ctx, head_dim) };
        let threads = n_rows.div_ceil(per_thread);
        if threads.div_ceil(ROWS_WG) > 65_535 || n_heads > 65_535 || (per_thread == 1 && n_rows > 65_535) {
            return Err(shape_err(
                op,
                format!("{n_rows} rows x {n_heads} heads is more workgroups than a dispatch allows"),
            ));
        }
        let blocks = threads.div_ceil(ROWS_WG);
        return Ok(Launch { rows: true, block_rows: per_thread, blocks, split: 1 });
    }
    let block_rows = opts.block_rows.unwrap_or(default_rows);
    if !BLOCK_ROWS.contains(&block_rows) {
        return Err(Error::Invalid(format!("{op}: block_rows {block_rows} is not one of {BLOCK_ROWS:?}")));
    }
    let blocks = n_rows.div_ceil(block_rows);
    if blocks > 65_535 || n_heads > 65_535 {
        return Err(shape_err(
            op,
            format!("{n_rows} rows x {n_heads} heads is more workgroups than a dispatch allows"),
        ));
    }
    let max_chunks = max_keys.div_ceil(KEYS_PER_CHUNK).max(1);
    let auto = TARGET_WORKGROUPS.div_ceil(blocks * n_heads).clamp(1, MAX_SPLIT.min(max_chunks));
    let split = opts.split.unwrap_or(auto);
    if !(1..=MAX_SPLIT).contains(&split) {
        return Err(Error::Invalid(format!("{op}: split {split} is not in 1..={MAX_SPLIT}")));
    }
    Ok(Launch { rows: false, block_rows, blocks, split })
}

/// The bindings a merge that appends needs: `[qkv, k pool, rows, page_table, seq_lens, v pool]`
/// (its bindings 3 to 8).
type AppendBinds = [Val; 6];

/// Records the attention dispatch (and the merge when split), returning the `[n_rows, H]`
/// output. The kernel binds `before`, then the output (or the partials), then `after`. With
/// `append` (split only) the rows' own keys come from qkv and the merge appends them.
fn record(
    g: &mut Graph,
    (entry, kv_f16): (&'static str, bool),
    p: Params,
    launch: Launch,
    (before, after): (&[Val], &[Val]),
    append: Option<AppendBinds>,
) -> Val {
    let (n_rows, n_heads, split) = (p.n_rows as usize, p.n_heads as usize, p.n_split);
    debug_assert!(append.is_none() || (split > 1 && launch.block_rows == 1 && !launch.rows));
    let head_dim = p.hidden / p.n_heads;
    let out = g.tensor(&[n_rows, p.hidden as usize], DType::F32);
    let target =
        if split == 1 { out } else { g.tensor(&[n_rows, n_heads, split as usize, head_dim as usize + 2], DType::F32) };
    let mut all = before.to_vec();
    all.push(target);
    all.extend_from_slice(after);
    let k = if launch.rows {
        let shared = launch.block_rows > 1 && shares_loads(g.ctx(), head_dim, kv_f16);
        rows_kernel(entry, head_dim, kv_f16, launch.block_rows, shared)
    } else {
        kernel(entry, head_dim, launch.block_rows, kv_f16, append.is_some())
    };
    // With one row per thread, attention_rows.wgsl's workgroups span heads (its HEAD_LANES).
    let groups = if launch.rows && launch.block_rows == 1 {
        [p.n_heads.div_ceil(ROWS_WG), p.n_rows, 1]
    } else {
        [launch.blocks, p.n_heads, split]
    };
    g.dispatch(k, &params(&p), &all, groups);
    if split > 1 {
        let mut binds = vec![target, out];
        binds.extend(append.iter().flatten());
        let k = combine_kernel(head_dim, append.map(|_| kv_f16));
        g.dispatch(k, &params(&p), &binds, [p.n_rows, p.n_heads, 1]);
    }
    out
}

fn check_head_dim(op: &'static str, head_dim: u32) -> Result<()> {
    if !supports_head_dim(head_dim) {
        return Err(shape_err(
            op,
            format!("head_dim {head_dim}: the kernels take a multiple of 4 from 4 to {MAX_HEAD_DIM}"),
        ));
    }
    Ok(())
}

/// Attention of a step's query rows over the paged cache, layer `layer`. `qkv` is
/// `[kv.n_rows, 3H]`; row `i`'s sequence and position come from the step's rows, and its keys
/// must already be in the cache (run [`super::kv_cache::append`] for this layer first).
pub fn paged(g: &mut Graph, kv: &KvVals, layer: usize, qkv: Val, mask: Mask) -> Result<Val> {
    paged_with(g, kv, layer, qkv, mask, AttnOptions::default())
}

/// [`paged`] with explicit kernel choices. By default rows go 16 to a workgroup when the step
/// has more rows than the cache has sequences (so some sequence has several: prefill), else 1.
pub fn paged_with(g: &mut Graph, kv: &KvVals, layer: usize, qkv: Val, mask: Mask, opts: AttnOptions) -> Result<Val> {
    let (p, launch) = paged_params(g, "attention::paged", kv, qkv, mask, opts)?;
    record_paged(g, kv, layer, qkv, (p, launch), false)
}

/// A decode step's attention and cache append in one: every row is the next position of a
/// different sequence (or idle). Appends each row's K and V to layer `layer` of the cache and
/// attends causally, bit for bit as [`super::kv_cache::append`] followed by [`paged`]. When the
/// keys are split over workgroups (long caches) each row reads its own newest key from `qkv`
/// and the merge appends, which saves a dispatch; otherwise (one chunk of keys, or the rows
/// kernel of [`crate::Context::cpu_kernels`]) the append runs first.
pub fn paged_append(g: &mut Graph, kv: &KvVals, layer: usize, qkv: Val) -> Result<Val> {
    const OP: &str = "attention::paged_append";
    if kv.n_rows > kv.geometry.max_seqs as usize {
        return Err(Error::Invalid(format!(
            "{OP}: {} rows for a cache of {} sequences (a decode step has one row per sequence)",
            kv.n_rows, kv.geometry.max_seqs
        )));
    }
    // One row per workgroup (tiled) or per thread (rows kernel, the CPU default).
    let (p, launch) = paged_params(g, OP, kv, qkv, Mask::Causal, AttnOptions::default())?;
    let in_merge = !launch.rows && p.n_split > 1;
    if !in_merge {
        kv_cache::append(g, kv, layer, qkv)?;
    }
    record_paged(g, kv, layer, qkv, (p, launch), in_merge)
}

/// Records a checked paged attention over layer `layer`; with `append_in_merge` (split only)
/// the merge also appends the rows' K and V.
fn record_paged(
    g: &mut Graph,
    kv: &KvVals,
    layer: usize,
    qkv: Val,
    (p, launch): (Params, Launch),
    append_in_merge: bool,
) -> Result<Val> {
    let (k, v) = kv.layer(layer)?;
    let entry = ("paged", kv.geometry.kv_dtype == DType::F16);
    // attention_rows.wgsl takes the page table before the rows (see there).
    let after = if launch.rows { [kv.page_table, kv.rows, kv.seq_lens] } else { [kv.rows, kv.page_table, kv.seq_lens] };
    let binds: (&[Val], &[Val]) = (&[qkv, k, v], &after);
    let append = append_in_merge.then_some([qkv, k, kv.rows, kv.page_table, kv.seq_lens, v]);
    Ok(record(g, entry, p, launch, binds, append))
}

/// The checked parameters of a paged attention and how it runs.
fn paged_params(
    g: &Graph,
    op: &'static str,
    kv: &KvVals,
    qkv: Val,
    mask: Mask,
    opts: AttnOptions,
) -> Result<(Params, Launch)> {
    let geo = kv.geometry;
    check_head_dim(op, geo.head_dim)?;
    let n_rows = check_qkv(g, op, qkv, geo.hidden(), kv.n_rows)?;
    // More rows than sequences: some sequence has several (a prefill).
    let prefill = n_rows > geo.max_seqs;
    let default_rows = if prefill { 16 } else { 1 };
    let max_keys = geo.max_pages_per_seq * geo.page_size;
    let rows_default = g.ctx().cpu_kernels();
    let launch =
        resolve(g.ctx(), op, opts, (n_rows, geo.n_heads, geo.head_dim), (default_rows, rows_default), max_keys)?;
    let p = Params {
        n_rows,
        n_heads: geo.n_heads,
        hidden: geo.hidden(),
        causal: u32::from(mask == Mask::Causal),
        n_split: launch.split,
        page_size: geo.page_size,
        n_pages: geo.n_pages,
        max_seqs: geo.max_seqs,
        max_pages_per_seq: geo.max_pages_per_seq,
        seq_len: 0,
        scale: 1.0 / (geo.head_dim as f32).sqrt(),
        _pad: 0,
    };
    Ok((p, launch))
}

/// Attention within each of `batch` items of `seq_len` rows, no cache: `qkv` is
/// `[batch * seq_len, 3H]` with `H = n_heads * head_dim` (the head dimension is read from its
/// width), the output `[batch * seq_len, H]`. The fine model uses [`Mask::Full`].
pub fn dense(g: &mut Graph, qkv: Val, n_heads: usize, batch: usize, seq_len: usize, mask: Mask) -> Result<Val> {
    dense_with(g, qkv, n_heads, batch, seq_len, mask, AttnOptions::default())
}

/// [`dense`] with explicit kernel choices (16 rows per workgroup by default; the rows kernel on
/// CPU adapters).
pub fn dense_with(
    g: &mut Graph,
    qkv: Val,
    n_heads: usize,
    batch: usize,
    seq_len: usize,
    mask: Mask,
    opts: AttnOptions,
) -> Result<Val> {
    const OP: &str = "attention::dense";
    if n_heads == 0 || batch == 0 || seq_len == 0 {
        return Err(shape_err(OP, format!("n_heads {n_heads}, batch {batch} and seq_len {seq_len} must be positive")));
    }
    let too_big = || shape_err(OP, format!("{batch} x {seq_len} rows x {n_heads} heads is too large"));
    let n_heads32 = u32::try_from(n_heads).map_err(|_| too_big())?;
    // The width 3H fixes the head dimension; check_qkv then checks the whole shape against it.
    let width = match g.shape(qkv) {
        [_, w] => *w as u64,
        _ => 0,
    };
    let per_head = 3 * n_heads as u64;
    if width == 0 || !width.is_multiple_of(per_head) {
        return Err(shape_err(
            OP,
            format!("qkv is {:?}: its width must be 3 * {n_heads} heads * head_dim", g.shape(qkv)),
        ));
    }
    let head_dim = u32::try_from(width / per_head).map_err(|_| too_big())?;
    check_head_dim(OP, head_dim)?;
    let hidden = n_heads32.checked_mul(head_dim).ok_or_else(too_big)?;
    let n_rows = batch.checked_mul(seq_len).ok_or_else(too_big)?;
    let n_rows = check_qkv(g, OP, qkv, hidden, n_rows)?;
    let seq_len = seq_len as u32;
    let launch = resolve(g.ctx(), OP, opts, (n_rows, n_heads32, head_dim), (16, g.ctx().cpu_kernels()), seq_len)?;
    let p = Params {
        n_rows,
        n_heads: n_heads32,
        hidden,
        causal: u32::from(mask == Mask::Causal),
        n_split: launch.split,
        page_size: 0,
        n_pages: 0,
        max_seqs: 0,
        max_pages_per_seq: 0,
        seq_len,
        scale: 1.0 / (head_dim as f32).sqrt(),
        _pad: 0,
    };
    // qkv is bound as the queries, the keys and the values (and, for attention_rows.wgsl, as
    // the page table its key walk names but a dense walk never reads).
    let after: &[Val] = if launch.rows { &[qkv] } else { &[] };
    Ok(record(g, ("dense", false), p, launch, (&[qkv, qkv, qkv], after), None))
}

/// Every specialisation this module dispatches: per head dimension, both entry points at each
/// block size (paged over f32 and f16 pools), the merges, and the rows kernel's.
pub fn kernels() -> Vec<Kernel> {
    head_dims()
        .flat_map(|d| {
            let attend = BLOCK_ROWS.iter().flat_map(move |&bq| {
                let paged = [false, true].map(|f16| kernel("paged", d, bq, f16, false));
                paged.into_iter().chain([kernel("dense", d, bq, false, false)])
            });
            // The decode step's attention that appends, and the merges.
            let append = [false, true].map(|f16| kernel("paged", d, 1, f16, true));
            let merges = [None, Some(false), Some(true)].map(|a| combine_kernel(d, a));
            // The rows kernel at either budget; the twins that share loads only where subgroups
            // are a workgroup (the larger budget), for several rows per thread where the words
            // split.
            let budgets = [false, true].map(|one_subgroup| rows_within(one_subgroup, d));
            let rows = budgets.into_iter().flat_map(move |rq| [1, rq]).flat_map(move |rq| {
                [
                    rows_kernel("paged", d, false, rq, false),
                    rows_kernel("paged", d, true, rq, false),
                    rows_kernel("dense", d, false, rq, false),
                ]
            });
            let rq = budgets[1];
            let shared = [("paged", false), ("paged", true), ("dense", false)]
                .into_iter()
                .filter(move |&(_, f16)| rq > 1 && words_split(d, f16))
                .map(move |(entry, f16)| rows_kernel(entry, d, f16, rq, true));
            attend.chain(append).chain(merges).chain(rows).chain(shared)
        })
        .fold(Vec::new(), |mut all, k| {
            // Both budgets give the same rows at small head dims.
            if !all.contains(&k) {
                all.push(k);
            }
            all
        })
}
