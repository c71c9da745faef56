//! The paged KV cache: per layer one K pool and one V pool of fixed-size pages, a host
//! allocator handing pages to sequences, and a GPU page table the kernels read.
//!
//! Layout: for layer `l`, `k_pool(l)` and `v_pool(l)` are `[n_pages, page_size, H]` with
//! `H = n_heads * head_dim`, so position `p` of a sequence lives in row `p % page_size` of page
//! `page_table[slot][p / page_size]`, heads contiguous inside the row exactly as in the QKV
//! projection. The pools store f32, or f16 ([`KvCacheConfig::dtype`]): half the memory and half
//! the bytes attention reads per key, at f16's rounding of K and V. One tensor per layer rather than one for all layers: Bark-large holds 96 KiB per
//! position per pool, so a few sequences of 1024 positions over 24 layers pass the storage
//! binding limit of many adapters (128 MiB to 2 GiB), while one layer's pool stays far below.
//!
//! GPU tables, all u32 and preallocated: `page_table [max_seqs, max_pages_per_seq]` and
//! `seq_lens [max_seqs]`, rewritten in place (a few words) when `reserve`/`reset`/`free` change
//! them. Each step's queries carry `(slot, position)` in a [`StepRows`] tensor, written by the
//! host before each run of a compiled plan, so one plan serves every decode step.
//!
//! Typical use: `reserve(seq, n)` for the step's new tokens, `rows.set(...)` with their
//! positions, then per layer `ops::kv_cache::append` followed by `ops::attention::paged`.

mod alloc;

use std::ops::Range;

use alloc::PageAllocator;
pub use alloc::SeqId;

use crate::gpu::{Context, DType, Tensor};
use crate::graph::{Graph, Val};
use crate::{Error, Result};

/// The size of a cache. `max_seq_len` is rounded up to whole pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvCacheConfig {
    pub layers: usize,
    pub n_heads: usize,
    pub head_dim: usize,
    /// Positions per page (16 or 32 are good choices).
    pub page_size: usize,
    /// Pages in each pool, shared by all sequences.
    pub n_pages: usize,
    /// Sequences that may be live at once (rows of the page table).
    pub max_seqs: usize,
    /// Positions one sequence may hold (Bark's context is 1024).
    pub max_seq_len: usize,
    /// How K and V are stored: `DType::F32` or `DType::F16` (pairs of halves per word; needs an
    /// even `n_heads * head_dim`).
    pub dtype: DType,
}

/// The numbers the kernels need, fixed for the life of a cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvGeometry {
    pub n_heads: u32,
    pub head_dim: u32,
    pub page_size: u32,
    pub n_pages: u32,
    pub max_seqs: u32,
    pub max_pages_per_seq: u32,
    /// F32 or F16 pools.
    pub kv_dtype: DType,
}

impl KvGeometry {
    /// Width of one position's K (or V) row: `n_heads * head_dim`.
    pub fn hidden(&self) -> u32 {
        self.n_heads * self.head_dim
    }
}

/// The K/V pools, the page allocator and the GPU page table.
pub struct PagedKvCache {
    ctx: Context,
    geometry: KvGeometry,
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    page_table: Tensor,
    seq_lens: Tensor,
    alloc: PageAllocator,
}

/// Marks a [`StepRows`] row that belongs to no sequence: the append kernel skips it and the
/// attention kernels write zeros for it.
const INACTIVE: u32 = u32::MAX;

fn u32_of(what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Invalid(format!("KV cache {what} {n} does not fit in u32")))
}

impl PagedKvCache {
    pub fn new(ctx: &Context, cfg: &KvCacheConfig) -> Result<PagedKvCache> {
        let KvCacheConfig { layers, n_heads, head_dim, page_size, n_pages, max_seqs, max_seq_len, dtype } = *cfg;
        if [layers, n_heads, head_dim, page_size, n_pages, max_seqs, max_seq_len].contains(&0) {
            return Err(Error::Invalid(format!("every KV cache size must be positive: {cfg:?}")));
        }
        match dtype {
            DType::F32 => {}
            DType::F16 if (n_heads * head_dim).is_multiple_of(2) => {}
            DType::F16 => {
                return Err(Error::Invalid(format!(
                    "an f16 KV cache packs pairs of values, so n_heads * head_dim must be even: {cfg:?}"
                )))
            }
            d => return Err(Error::Invalid(format!("a KV cache stores f32 or f16, not {d:?}"))),
        }
        let max_pages_per_seq = max_seq_len.div_ceil(page_size);
        let geometry = KvGeometry {
            n_heads: u32_of("n_heads", n_heads)?,
            head_dim: u32_of("head_dim", head_dim)?,
            page_size: u32_of("page_size", page_size)?,
            n_pages: u32_of("n_pages", n_pages)?,
            max_seqs: u32_of("max_seqs", max_seqs)?,
            max_pages_per_seq: u32_of("max_pages_per_seq", max_pages_per_seq)?,
            kv_dtype: dtype,
        };
        // Every word offset the kernels compute must fit in u32.
        let pool_words = n_pages as u64 * page_size as u64 * n_heads as u64 * head_dim as u64;
        let table_words = max_seqs as u64 * max_pages_per_seq as u64;
        if pool_words > u32::MAX as u64 || table_words > u32::MAX as u64 {
            return Err(Error::Invalid(format!("KV cache {cfg:?} is too large to index with u32")));
        }
        let pool_shape = [n_pages, page_size, n_heads * head_dim];
        let pool_bytes = dtype.bytes(&pool_shape);
        if pool_bytes > ctx.max_binding_bytes() {
            return Err(Error::Invalid(format!(
                "one layer's KV pool of {pool_bytes} bytes is larger than this adapter's binding limit of {} bytes; \
                 use fewer pages",
                ctx.max_binding_bytes()
            )));
        }
        let mut k = Vec::with_capacity(layers);
        let mut v = Vec::with_capacity(layers);
        for _ in 0..layers {
            k.push(Tensor::empty(ctx, &pool_shape, dtype)?);
            v.push(Tensor::empty(ctx, &pool_shape, dtype)?);
        }
        let page_table =
            Tensor::from_u32(ctx, &vec![INACTIVE; max_seqs * max_pages_per_seq], &[max_seqs, max_pages_per_seq])?;
        let seq_lens = Tensor::from_u32(ctx, &vec![0; max_seqs], &[max_seqs])?;
        let alloc = PageAllocator::new(page_size, n_pages, max_seqs, max_pages_per_seq);
        Ok(PagedKvCache { ctx: ctx.clone(), geometry, k, v, page_table, seq_lens, alloc })
    }

    pub fn geometry(&self) -> KvGeometry {
        self.geometry
    }
    pub fn layers(&self) -> usize {
        self.k.len()
    }
    /// The most positions one sequence can hold (`max_seq_len` rounded up to whole pages).
    pub fn max_seq_len(&self) -> usize {
        self.alloc.max_len()
    }
    pub fn free_pages(&self) -> usize {
        self.alloc.free_pages()
    }
    /// Positions reserved by `seq`.
    pub fn len(&self, seq: SeqId) -> Result<usize> {
        self.alloc.len(seq)
    }
    /// The pool pages of `seq`, in position order.
    pub fn pages(&self, seq: SeqId) -> Result<&[u32]> {
        self.alloc.pages(seq)
    }
    /// Layer `layer`'s K pool `[n_pages, page_size, H]`.
    pub fn k_pool(&self, layer: usize) -> Result<&Tensor> {
        self.k.get(layer).ok_or_else(|| self.no_layer(layer))
    }
    pub fn v_pool(&self, layer: usize) -> Result<&Tensor> {
        self.v.get(layer).ok_or_else(|| self.no_layer(layer))
    }
    /// The GPU page table `[max_seqs, max_pages_per_seq]` (u32 page ids; entries past a
    /// sequence's pages are stale or `u32::MAX` and never read).
    pub fn page_table(&self) -> &Tensor {
        &self.page_table
    }
    /// The GPU sequence lengths `[max_seqs]` (u32; 0 for free slots).
    pub fn seq_lens(&self) -> &Tensor {
        &self.seq_lens
    }
    fn no_layer(&self, layer: usize) -> Error {
        Error::Invalid(format!("layer {layer} is out of range: the KV cache has {} layers", self.k.len()))
    }

    /// A new, empty sequence.
    pub fn add_sequence(&mut self) -> Result<SeqId> {
        let id = self.alloc.add_sequence()?;
        self.write_len(id, 0);
        Ok(id)
    }

    /// Reserves `n` more positions for `seq` (pages are taken as needed) and returns them.
    /// Fails, changing nothing, when the pool is exhausted or the sequence would pass
    /// `max_seq_len`.
    pub fn reserve(&mut self, seq: SeqId, n: usize) -> Result<Range<usize>> {
        let r = self.alloc.reserve(seq, n)?;
        let pages = self.alloc.pages(seq)?;
        if r.first_new_page < pages.len() {
            let row = seq.slot() as u64 * self.geometry.max_pages_per_seq as u64;
            let offset = (row + r.first_new_page as u64) * 4;
            let words = &pages[r.first_new_page..];
            self.ctx.queue().write_buffer(self.page_table.buffer(), offset, bytemuck::cast_slice(words));
        }
        self.write_len(seq, r.positions.end);
        Ok(r.positions)
    }

    /// Empties `seq` and returns its pages; the handle stays valid (Bark's coarse stage restarts
    /// its cache every window this way). Old contents are never read again: the kernels only
    /// read positions below the sequence's length.
    pub fn reset(&mut self, seq: SeqId) -> Result<()> {
        self.alloc.reset(seq)?;
        self.write_len(seq, 0);
        Ok(())
    }

    /// Ends `seq`: its pages and its slot go back for reuse, and the handle becomes invalid.
    pub fn free(&mut self, seq: SeqId) -> Result<()> {
        self.alloc.free(seq)?;
        self.write_len(seq, 0);
        Ok(())
    }

    fn write_len(&self, seq: SeqId, len: usize) {
        let offset = seq.slot() as u64 * 4;
        self.ctx.queue().write_buffer(self.seq_lens.buffer(), offset, bytemuck::bytes_of(&(len as u32)));
    }

    /// A per-row `(slot, position)` table for steps of `n_rows` query rows, all inactive.
    /// Make it once per plan shape (it is a buffer) and [`StepRows::set`] it before each run.
    pub fn step_rows(&self, n_rows: usize) -> Result<StepRows> {
        if n_rows == 0 {
            return Err(Error::Invalid("a step needs at least one row".into()));
        }
        let tensor = Tensor::from_u32(&self.ctx, &vec![INACTIVE; 2 * n_rows], &[n_rows, 2])?;
        Ok(StepRows { tensor, n_rows })
    }

    /// Adds the cache's tables, every layer's pools and `rows` to a graph, for the kernels.
    pub fn bind(&self, g: &mut Graph, rows: &StepRows) -> KvVals {
        KvVals {
            geometry: self.geometry,
            k: self.k.iter().map(|t| g.input(t)).collect(),
            v: self.v.iter().map(|t| g.input(t)).collect(),
            rows: g.input(&rows.tensor),
            page_table: g.input(&self.page_table),
            seq_lens: g.input(&self.seq_lens),
            n_rows: rows.n_rows,
        }
    }
}

/// Which sequence and position each query row of a step belongs to: a `[n_rows, 2]` u32
/// tensor of `(slot, position)`, rewritten before each run.
pub struct StepRows {
    tensor: Tensor,
    n_rows: usize,
}

impl StepRows {
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// Sets every row: `Some((seq, position))`, or `None` for a row that belongs to no
    /// sequence (skipped by the append, zeros from attention). A position must already be
    /// reserved, and no two rows may name the same position.
    pub fn set(&self, cache: &PagedKvCache, rows: &[Option<(SeqId, usize)>]) -> Result<()> {
        if rows.len() != self.n_rows {
            return Err(Error::Invalid(format!("{} rows given for a step of {} rows", rows.len(), self.n_rows)));
        }
        let mut words = Vec::with_capacity(2 * rows.len());
        let mut seen = std::collections::HashSet::new();
        for (i, row) in rows.iter().enumerate() {
            match *row {
                None => words.extend([INACTIVE, 0]),
                Some((seq, pos)) => {
                    let len = cache.len(seq)?;
                    if pos >= len {
                        return Err(Error::Invalid(format!(
                            "row {i}: position {pos} of {seq:?} is not reserved (it holds {len})"
                        )));
                    }
                    if !seen.insert((seq, pos)) {
                        return Err(Error::Invalid(format!("row {i}: position {pos} of {seq:?} appears twice")));
                    }
                    words.extend([seq.slot(), pos as u32]);
                }
            }
        }
        self.tensor.write_words(&cache.ctx, &words)
    }

    /// Prefill of one sequence: row `i` is position `start + i`.
    pub fn set_span(&self, cache: &PagedKvCache, seq: SeqId, start: usize) -> Result<()> {
        let rows: Vec<_> = (0..self.n_rows).map(|i| Some((seq, start + i))).collect();
        self.set(cache, &rows)
    }
}

/// A cache and a step's rows as graph values, for `ops::kv_cache` and `ops::attention`.
#[derive(Clone, Debug)]
pub struct KvVals {
    pub geometry: KvGeometry,
    /// Per layer, the K and V pools.
    pub k: Vec<Val>,
    pub v: Vec<Val>,
    pub rows: Val,
    pub page_table: Val,
    pub seq_lens: Val,
    pub n_rows: usize,
}

impl KvVals {
    /// Layer `layer`'s (K, V) pools.
    pub fn layer(&self, layer: usize) -> Result<(Val, Val)> {
        match (self.k.get(layer), self.v.get(layer)) {
            (Some(&k), Some(&v)) => Ok((k, v)),
            _ => {
                Err(Error::Invalid(format!("layer {layer} is out of range: the KV cache has {} layers", self.k.len())))
            }
        }
    }
}
