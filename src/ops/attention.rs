//! Fused attention with an online softmax (`shaders/attention.wgsl`): over the paged KV cache
//! for the causal GPTs, and over a dense `[batch * T, 3H]` QKV matrix for the fine model. On
//! CPU adapters (the CPU kernel set, [`choose`]) both run the rows kernel instead
//! ([`super::cpu::attention_rows`]: no shared tiles or barriers; see [`AttnOptions::rows_kernel`]).
//!
//! Both take the fused projection output `qkv` (`[rows, 3H]`, `[Q | K | V]`, heads contiguous
//! in each) and return `[rows, H]` (heads concatenated, ready for the output projection).
//! Scores are `q.k / sqrt(head_dim)`, softmax and sums in f32.
//!
//! The head dimension is any multiple of 4 from 4 to [`MAX_HEAD_DIM`] (see
//! [`supports_head_dim`]); each has its own kernel specialisation. Bark's models use 64, the
//! layout the kernels are tuned for; other sizes (small test configs, other GPTs) reuse it.

use super::cpu::attention_rows::{self, rows_per_thread, rows_within, shares_loads, words_split};
use super::kv_cache::{self, check_qkv};
use super::params;
use crate::error::{shape_err, Error};
use crate::gpu::{Access::*, Contract, DType, Family, Kernel, KernelPolicy};
use crate::graph::{Graph, Val};
use crate::kv::KvVals;
use crate::Result;

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
    /// Run `shaders/cpu/attention_rows.wgsl` (each thread walks the keys of [`rows_per_thread`]
    /// query rows, or of one row in a decode step, itself; no barriers, no split) instead of the
    /// tiled kernel. The default in the CPU kernel set (CPU adapters, where barriers
    /// cost more than the tiles save, in a prefill and a decode step alike: BENCHMARKS.md);
    /// `block_rows` and `split` do not apply to it.
    pub rows_kernel: Option<bool>,
}

uniform_struct! {
    pub(crate) struct Params {
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

/// What the tiled kernel's `dense` entry binds (qkv as the queries, keys and values).
/// What `dense` binds, in the tiled kernel and the rows kernel alike: qkv as the queries, keys
/// and values.
pub(crate) const DENSE: Contract = Contract {
    family: Family::Attention,
    params: Some(Params::LAYOUT),
    binds: &[("qkv", Read), ("kbuf", Read), ("vbuf", Read), ("out", ReadWrite)],
};
/// What `paged` binds, in the tiled kernel and the rows kernel alike.
pub(crate) const PAGED: Contract = Contract {
    family: Family::Attention,
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
const COMBINE: Contract = Contract {
    family: Family::Attention,
    params: Some(Params::LAYOUT),
    binds: &[("parts", Read), ("combine_out", ReadWrite)],
};
/// The merge that appends: the partials and the output, then what the append reads and writes.
const COMBINE_APPEND: Contract = Contract {
    family: Family::Attention,
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

/// The head dimensions [`kernels`] enumerates: Bark's 64, the test models', and one of each
/// case the specialisation depends on (f16 words whole or not, a head's words splitting over
/// the lanes or not, each row budget, the largest). The debug check in
/// [`AttentionKernel::kernel`] covers whatever head size a model brings at run time.
pub const ENUMERATED_HEAD_DIMS: [u32; 8] = [4, 8, 12, 16, 32, 64, 100, 128];

/// Every attention kernel, one key per specialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttentionKernel {
    /// `shaders/attention.wgsl`'s `paged` or `dense` entry for heads of `head_dim`,
    /// `block_rows` query rows per workgroup, keys and values stored as f16 pairs (`kv_f16`,
    /// paged only) or f32; with `append` (paged, one row per block, split) each row reads its
    /// own new key and value from qkv and the merge appends them to the cache.
    Tiled { paged: bool, head_dim: u32, block_rows: u32, kv_f16: bool, append: bool },
    /// The merge of split partials; `append: Some(kv_f16)` also appends the rows' K and V.
    Merge { head_dim: u32, append: Option<bool> },
    /// The CPU set's rows kernel ([`super::cpu::attention_rows`]): `rows_per_thread` query rows
    /// per thread, with `shared_loads` its `SUBGROUPS` twin whose lanes share the loads.
    Rows { paged: bool, head_dim: u32, kv_f16: bool, rows_per_thread: u32, shared_loads: bool },
}

impl AttentionKernel {
    /// Every key [`choose`] can return for heads of `head_dim`.
    pub fn all(head_dim: u32) -> Vec<AttentionKernel> {
        use AttentionKernel::*;
        let d = head_dim;
        // (paged, kv_f16): paged over f32 and f16 pools, dense over qkv (f32).
        let entries = [(true, false), (true, true), (false, false)];
        let mut out = Vec::new();
        for block_rows in BLOCK_ROWS {
            out.extend(entries.map(|(paged, kv_f16)| Tiled { paged, head_dim: d, block_rows, kv_f16, append: false }));
        }
        // The decode step's attention that appends, and the merges.
        out.extend([false, true].map(|kv_f16| Tiled { paged: true, head_dim: d, block_rows: 1, kv_f16, append: true }));
        out.extend([None, Some(false), Some(true)].map(|append| Merge { head_dim: d, append }));
        // The rows kernel: a decode step's one row per thread, and either budget; the twins that
        // share loads only at the budget where subgroups are a workgroup, for several rows.
        let shared_budget = rows_within(true, d);
        for rows_per_thread in [1, rows_within(false, d), shared_budget] {
            for (paged, kv_f16) in entries {
                let key = |shared_loads| Rows { paged, head_dim: d, kv_f16, rows_per_thread, shared_loads };
                out.push(key(false));
                if rows_per_thread > 1 && rows_per_thread == shared_budget && words_split(d, kv_f16) {
                    out.push(key(true));
                }
            }
        }
        // Both budgets give the same rows at small head dims.
        let mut unique = Vec::with_capacity(out.len());
        for k in out {
            if !unique.contains(&k) {
                unique.push(k);
            }
        }
        unique
    }

    fn head_dim(self) -> u32 {
        match self {
            AttentionKernel::Tiled { head_dim, .. }
            | AttentionKernel::Merge { head_dim, .. }
            | AttentionKernel::Rows { head_dim, .. } => head_dim,
        }
    }

    /// The specialisation this key names.
    pub fn kernel(self) -> Kernel {
        debug_assert!(AttentionKernel::all(self.head_dim()).contains(&self), "{self:?} is not enumerated");
        let entry = |paged| if paged { "paged" } else { "dense" };
        match self {
            AttentionKernel::Tiled { paged, head_dim, block_rows, kv_f16, append } => {
                // A thread's value columns come in vectors of ceil(block_rows / 4), so the word
                // type it reads them in goes with it.
                let (word, col) = if block_rows > 4 { ("vec4<u32>", "vec4<f32>") } else { ("u32", "f32") };
                Kernel::new("attention", entry(paged))
                    .contract(if paged { &PAGED } else { &DENSE })
                    .with_u32("D", head_dim)
                    .with_u32("BQ", block_rows)
                    .with_bool("KV_F16", kv_f16)
                    .with_bool("APPEND", append)
                    .with_alias("VWord", word)
                    .with_alias("VCol", col)
            }
            AttentionKernel::Merge { head_dim, append: None } => {
                Kernel::new("attention", "combine").contract(&COMBINE).with_u32("D", head_dim)
            }
            AttentionKernel::Merge { head_dim, append: Some(kv_f16) } => Kernel::new("attention", "combine_append")
                .contract(&COMBINE_APPEND)
                .with_u32("D", head_dim)
                .with_bool("KV_F16", kv_f16),
            AttentionKernel::Rows { paged, head_dim, kv_f16, rows_per_thread, shared_loads } => {
                attention_rows::kernel(paged, head_dim, kv_f16, rows_per_thread, shared_loads)
            }
        }
    }
}

/// One attention as [`choose`] sees it: paged or dense, its rows, heads and head size, f16
/// pools, a decode step (one row per sequence) that also appends its keys (`append`), and the
/// most keys a row may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnProblem {
    pub paged: bool,
    pub n_rows: u32,
    pub n_heads: u32,
    pub head_dim: u32,
    pub kv_f16: bool,
    /// One row per sequence: one row per workgroup (tiled) or per thread (rows kernel).
    pub decode: bool,
    pub append: bool,
    pub max_keys: u32,
}

/// What [`choose`] decides: the attention kernel and its grid, the merge of split partials
/// (with its grid), and whether the cache append runs first as its own dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnChoice {
    pub main: AttentionKernel,
    pub groups: [u32; 3],
    /// Workgroups sharing the keys of one (block, head).
    pub split: u32,
    pub merge: Option<AttentionKernel>,
    pub append_first: bool,
}

/// Which kernels run one attention under `policy`: the one selection table of the attention.
/// The rows kernel where the policy has the CPU set (unless the caller asks for tiles), with one
/// row per thread in a decode step, else [`rows_per_thread`] rows; otherwise the tiled kernel
/// with `opts.block_rows` or 1 row per workgroup in a decode step and 16 otherwise, the keys
/// split over up to [`MAX_SPLIT`] workgroups to fill the GPU. A decode step that appends does
/// it in the merge where the keys are split (each row reads its own new key from qkv), else
/// first.
pub fn choose(op: &'static str, p: &AttnProblem, opts: AttnOptions, policy: &KernelPolicy) -> Result<AttnChoice> {
    let (n_rows, n_heads, d) = (p.n_rows, p.n_heads, p.head_dim);
    let too_many =
        || shape_err(op, format!("{n_rows} rows x {n_heads} heads is more workgroups than a dispatch allows"));
    let tiles_asked = opts.block_rows.is_some() || opts.split.is_some();
    if opts.rows_kernel.unwrap_or(policy.cpu_kernels && !tiles_asked) {
        if tiles_asked {
            return Err(Error::Invalid(format!("{op}: block_rows and split do not apply to the rows kernel")));
        }
        let per_thread = if p.decode { 1 } else { rows_per_thread(policy, d) };
        let groups = attention_rows::grid(n_rows, n_heads, per_thread).ok_or_else(too_many)?;
        let shared_loads = per_thread > 1 && shares_loads(policy, d, p.kv_f16);
        let main = AttentionKernel::Rows {
            paged: p.paged,
            head_dim: d,
            kv_f16: p.kv_f16,
            rows_per_thread: per_thread,
            shared_loads,
        };
        return Ok(AttnChoice { main, groups, split: 1, merge: None, append_first: p.append });
    }
    let block_rows = opts.block_rows.unwrap_or(if p.decode { 1 } else { 16 });
    if !BLOCK_ROWS.contains(&block_rows) {
        return Err(Error::Invalid(format!("{op}: block_rows {block_rows} is not one of {BLOCK_ROWS:?}")));
    }
    let blocks = n_rows.div_ceil(block_rows);
    if blocks > 65_535 || n_heads > 65_535 {
        return Err(too_many());
    }
    let max_chunks = p.max_keys.div_ceil(KEYS_PER_CHUNK).max(1);
    let auto = TARGET_WORKGROUPS.div_ceil(blocks * n_heads).clamp(1, MAX_SPLIT.min(max_chunks));
    let split = opts.split.unwrap_or(auto);
    if !(1..=MAX_SPLIT).contains(&split) {
        return Err(Error::Invalid(format!("{op}: split {split} is not in 1..={MAX_SPLIT}")));
    }
    let in_merge = p.paged && p.append && split > 1 && block_rows == 1;
    let main = AttentionKernel::Tiled { paged: p.paged, head_dim: d, block_rows, kv_f16: p.kv_f16, append: in_merge };
    let merge = (split > 1).then_some(AttentionKernel::Merge { head_dim: d, append: in_merge.then_some(p.kv_f16) });
    Ok(AttnChoice { main, groups: [blocks, n_heads, split], split, merge, append_first: p.append && !in_merge })
}

/// An attention's operands: qkv (the queries, and for `dense` the keys and values too), the
/// K and V words (the cache pools, or qkv), and for `paged` the step's rows, the page table and
/// the sequence lengths.
struct Operands {
    qkv: Val,
    k: Val,
    v: Val,
    cache: Option<[Val; 3]>,
}

/// Records the chosen attention (and the merge when split), returning the `[n_rows, H]`
/// output; a merge that appends also writes the rows' K and V to the cache.
fn record(g: &mut Graph, choice: &AttnChoice, p: Params, ops: Operands) -> Val {
    let (n_rows, n_heads, split) = (p.n_rows as usize, p.n_heads as usize, choice.split);
    let head_dim = p.hidden / p.n_heads;
    let out = g.tensor(&[n_rows, p.hidden as usize], DType::F32);
    let target =
        if split == 1 { out } else { g.tensor(&[n_rows, n_heads, split as usize, head_dim as usize + 2], DType::F32) };
    let mut binds = vec![("qkv", ops.qkv), ("kbuf", ops.k), ("vbuf", ops.v), ("out", target)];
    if let Some([rows, page_table, seq_lens]) = ops.cache {
        binds.extend([("rows", rows), ("page_table", page_table), ("seq_lens", seq_lens)]);
    }
    g.dispatch(choice.main.kernel(), &params(&p), &binds, choice.groups);
    if let Some(merge) = choice.merge {
        let mut binds = vec![("parts", target), ("combine_out", out)];
        if let (AttentionKernel::Merge { append: Some(_), .. }, Some([rows, page_table, seq_lens])) = (merge, ops.cache)
        {
            binds.extend([
                ("new_qkv", ops.qkv),
                ("k_pool", ops.k),
                ("rows", rows),
                ("page_table", page_table),
                ("seq_lens", seq_lens),
                ("v_pool", ops.v),
            ]);
        }
        g.dispatch(merge.kernel(), &params(&p), &binds, [p.n_rows, p.n_heads, 1]);
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
    let (p, choice) = paged_params(g, "attention::paged", kv, qkv, (mask, false), opts)?;
    record_paged(g, kv, layer, qkv, p, &choice)
}

/// A decode step's attention and cache append in one: every row is the next position of a
/// different sequence (or idle). Appends each row's K and V to layer `layer` of the cache and
/// attends causally, bit for bit as [`super::kv_cache::append`] followed by [`paged`]. Where
/// [`choose`] splits the keys over workgroups (long caches) each row reads its own newest key
/// from `qkv` and the merge appends, which saves a dispatch; otherwise the append runs first.
pub fn paged_append(g: &mut Graph, kv: &KvVals, layer: usize, qkv: Val) -> Result<Val> {
    const OP: &str = "attention::paged_append";
    if kv.n_rows > kv.geometry.max_seqs as usize {
        return Err(Error::Invalid(format!(
            "{OP}: {} rows for a cache of {} sequences (a decode step has one row per sequence)",
            kv.n_rows, kv.geometry.max_seqs
        )));
    }
    let (p, choice) = paged_params(g, OP, kv, qkv, (Mask::Causal, true), AttnOptions::default())?;
    if choice.append_first {
        kv_cache::append(g, kv, layer, qkv)?;
    }
    record_paged(g, kv, layer, qkv, p, &choice)
}

/// Records a checked paged attention over layer `layer`.
fn record_paged(g: &mut Graph, kv: &KvVals, layer: usize, qkv: Val, p: Params, choice: &AttnChoice) -> Result<Val> {
    let (k, v) = kv.layer(layer)?;
    let ops = Operands { qkv, k, v, cache: Some([kv.rows, kv.page_table, kv.seq_lens]) };
    Ok(record(g, choice, p, ops))
}

/// The checked parameters of a paged attention (`append`: a decode step that appends its keys)
/// and the kernels it runs.
fn paged_params(
    g: &Graph,
    op: &'static str,
    kv: &KvVals,
    qkv: Val,
    (mask, append): (Mask, bool),
    opts: AttnOptions,
) -> Result<(Params, AttnChoice)> {
    let geo = kv.geometry;
    check_head_dim(op, geo.head_dim)?;
    let n_rows = check_qkv(g, op, qkv, geo.hidden(), kv.n_rows)?;
    let problem = AttnProblem {
        paged: true,
        n_rows,
        n_heads: geo.n_heads,
        head_dim: geo.head_dim,
        kv_f16: geo.kv_dtype == DType::F16,
        // More rows than sequences: some sequence has several (a prefill).
        decode: n_rows <= geo.max_seqs,
        append,
        max_keys: geo.max_pages_per_seq * geo.page_size,
    };
    let choice = choose(op, &problem, opts, g.ctx().policy())?;
    let p = Params {
        n_rows,
        n_heads: geo.n_heads,
        hidden: geo.hidden(),
        causal: u32::from(mask == Mask::Causal),
        n_split: choice.split,
        page_size: geo.page_size,
        n_pages: geo.n_pages,
        max_seqs: geo.max_seqs,
        max_pages_per_seq: geo.max_pages_per_seq,
        seq_len: 0,
        scale: 1.0 / (geo.head_dim as f32).sqrt(),
        _pad: 0,
    };
    Ok((p, choice))
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
    let problem = AttnProblem {
        paged: false,
        n_rows,
        n_heads: n_heads32,
        head_dim,
        kv_f16: false,
        decode: false,
        append: false,
        max_keys: seq_len,
    };
    let choice = choose(OP, &problem, opts, g.ctx().policy())?;
    let p = Params {
        n_rows,
        n_heads: n_heads32,
        hidden,
        causal: u32::from(mask == Mask::Causal),
        n_split: choice.split,
        page_size: 0,
        n_pages: 0,
        max_seqs: 0,
        max_pages_per_seq: 0,
        seq_len,
        scale: 1.0 / (head_dim as f32).sqrt(),
        _pad: 0,
    };
    // qkv is bound as the queries, the keys and the values.
    Ok(record(g, &choice, p, Operands { qkv, k: qkv, v: qkv, cache: None }))
}

/// The specialisations this module dispatches for the [`ENUMERATED_HEAD_DIMS`], from
/// [`AttentionKernel::all`].
pub fn kernels() -> Vec<Kernel> {
    ENUMERATED_HEAD_DIMS.into_iter().flat_map(AttentionKernel::all).map(AttentionKernel::kernel).collect()
}
