//! Embedding gathers (`shaders/embedding.wgsl`) from tables kept as a [`RowSplit`], since
//! Bark's 129,600-row text embedding is larger than one storage binding on many adapters.
//!
//! Every op records one dispatch per part of the table and adds into an f32 output
//! `[tokens, H]`: a new output when `out` is `None` (the first part assigns every row, zero
//! where the id lies in another part), else the given one. Bark's uses compose from these:
//! - semantic prompt: `embed(text)`, `embed(history)` into the same output, then
//!   `embed_range(positions 0..)`;
//! - fine model: `embed_column(ids, c, tables[c])` for `c in 0..=idx`, then `embed_range`;
//! - a batched decode step: `embed(tokens)`, then `embed(positions, pos_table)` where
//!   `positions` is a per-row u32 tensor the caller rewrites each step (no new graph needed).
//!
//! An id with no row (`id >= rows`, e.g. [`NO_ROW`]) adds zero: the shader never reads outside
//! a part. Ids that come from a user should be checked with [`check_ids`] first.

use super::params;
use crate::error::{shape_err, Error};
use crate::gpu::{Access::*, Contract, DType, Family, Kernel, RowSplit, Tensor};
use crate::graph::{groups_1d, Graph, Val};
use crate::Result;

/// An id that is no row of any table: it adds zero (Bark's semantic prompt leaves the history
/// embedding out of its last position this way).
pub const NO_ROW: u32 = u32::MAX;

uniform_struct! {
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
}

const GATHER: Contract = Contract {
    family: Family::Embedding,
    params: Some(Params::LAYOUT),
    binds: &[("ids", Read), ("part", Read), ("out", ReadWrite)],
};
const GATHER_RANGE: Contract =
    Contract { family: Family::Embedding, params: Some(Params::LAYOUT), binds: &[("part", Read), ("out", ReadWrite)] };

/// Where each token's id comes from.
#[derive(Clone, Copy)]
enum Source {
    /// `ids[t * stride + offset]`.
    Ids { ids: Val, stride: u32, offset: u32 },
    /// `start + t`.
    Range { start: u32 },
}

/// The gather of ids from a buffer, or of a range of ids (`range`), from a table of `dtype`.
fn kernel(range: bool, dtype: DType) -> Kernel {
    Kernel::new("embedding", "gather")
        .contract(if range { &GATHER_RANGE } else { &GATHER })
        .with_bool("TABLE_F16", dtype == DType::F16)
        .with_bool("RANGE", range)
}

/// Fails with [`Error::Invalid`] naming the first id that is not a row of a `rows`-row table.
/// For ids that come from a user (prompts, voice presets, codes on the command line).
pub fn check_ids(ids: &[u32], rows: usize) -> Result<()> {
    match ids.iter().position(|&id| id as usize >= rows) {
        Some(i) => Err(Error::Invalid(format!("id {} at position {i} is not below the table's {rows} rows", ids[i]))),
        None => Ok(()),
    }
}

/// A table that fits one binding, as a one-part [`RowSplit`] (e.g. the position embeddings).
pub fn as_row_split(t: &Tensor) -> Result<RowSplit> {
    match *t.shape() {
        [rows, cols] => Ok(RowSplit { parts: vec![(0, t.clone())], rows, cols, dtype: t.dtype() }),
        _ => Err(shape_err("embedding", format!("a table must be [rows, cols], not {:?}", t.shape()))),
    }
}

/// Checks that the parts of `table` tile its rows in order, each `[n, cols]` of its dtype
/// (F32 or F16) and within the binding limit, so the kernel's guards match the buffers.
pub fn check_table(g: &Graph, table: &RowSplit) -> Result<()> {
    const OP: &str = "embedding";
    if !matches!(table.dtype, DType::F32 | DType::F16) {
        return Err(Error::Dtype { op: OP, message: format!("tables are f32 or f16, not {:?}", table.dtype) });
    }
    if table.parts.is_empty() || table.cols == 0 {
        return Err(shape_err(OP, format!("empty table [{}, {}]", table.rows, table.cols)));
    }
    if table.rows > NO_ROW as usize {
        return Err(shape_err(OP, format!("{} rows cannot all be named by u32 ids", table.rows)));
    }
    let mut next = 0;
    for (first, t) in &table.parts {
        let n = t.shape().first().copied().unwrap_or(0);
        if *first != next || n == 0 || t.shape() != [n, table.cols] || t.dtype() != table.dtype {
            return Err(shape_err(
                OP,
                format!(
                    "part at row {first} is {t:?}; expected [n >= 1, {}] {:?} from row {next}",
                    table.cols, table.dtype
                ),
            ));
        }
        let bytes = t.dtype().bytes(t.shape());
        if bytes > g.ctx().max_binding_bytes() {
            return Err(shape_err(
                OP,
                format!(
                    "part at row {first} is {bytes} bytes, over the {} byte binding limit",
                    g.ctx().max_binding_bytes()
                ),
            ));
        }
        next += n;
    }
    if next != table.rows {
        return Err(shape_err(OP, format!("parts hold {next} rows, the table says {}", table.rows)));
    }
    Ok(())
}

/// Records one dispatch per part of `table`, adding the rows of `tokens` ids into `out` (or a
/// new `out_shape` output). Returns the output.
fn gather(
    g: &mut Graph,
    op: &'static str,
    src: Source,
    tokens: usize,
    out_shape: Vec<usize>,
    table: &RowSplit,
    out: Option<Val>,
) -> Result<Val> {
    check_table(g, table)?;
    let cols = table.cols;
    let n = tokens.checked_mul(cols).filter(|&n| n <= u32::MAX as usize);
    let n = n.ok_or_else(|| shape_err(op, format!("{tokens} x {cols} outputs is more than a dispatch can index")))?;
    let (out, mut accumulate) = match out {
        Some(o) => {
            if g.dtype(o) != DType::F32 {
                return Err(Error::Dtype { op, message: format!("output is {:?}, not f32", g.dtype(o)) });
            }
            let shape = g.shape(o);
            if shape.last() != Some(&cols) || shape.iter().product::<usize>() != n {
                return Err(shape_err(op, format!("output {shape:?} for {tokens} tokens of {cols}")));
            }
            (o, true)
        }
        None => (g.tensor(&out_shape, DType::F32), false),
    };
    for (first, part) in &table.parts {
        let p = Params {
            tokens: tokens as u32,
            cols: cols as u32,
            first_row: *first as u32,
            part_rows: part.rows() as u32,
            ids_stride: 0,
            ids_offset: 0,
            start: 0,
            accumulate: accumulate as u32,
        };
        let part = g.input(part);
        let groups = groups_1d(tokens as u32);
        match src {
            Source::Ids { ids, stride, offset } => {
                let p = Params { ids_stride: stride, ids_offset: offset, ..p };
                g.dispatch(
                    kernel(false, table.dtype),
                    &params(&p),
                    &[("ids", ids), ("part", part), ("out", out)],
                    groups,
                )
            }
            Source::Range { start } => {
                let p = Params { start, ..p };
                g.dispatch(kernel(true, table.dtype), &params(&p), &[("part", part), ("out", out)], groups)
            }
        };
        accumulate = true;
    }
    Ok(out)
}

fn u32_ids(g: &Graph, op: &'static str, ids: Val) -> Result<()> {
    if g.dtype(ids) != DType::U32 {
        return Err(Error::Dtype { op, message: format!("ids are {:?}, not u32", g.dtype(ids)) });
    }
    let n: usize = g.shape(ids).iter().product();
    if n > u32::MAX as usize {
        return Err(shape_err(op, format!("{n} ids is more than a dispatch can index")));
    }
    Ok(())
}

/// `out[..., :] += table[ids[...], :]` for u32 `ids` of any shape; the output is f32
/// `[ids.shape..., H]` (new when `out` is `None`, else `out`, of that many elements with last
/// dimension H). An id `>= rows` adds zero.
pub fn embed(g: &mut Graph, ids: Val, table: &RowSplit, out: Option<Val>) -> Result<Val> {
    u32_ids(g, "embed", ids)?;
    let tokens = g.shape(ids).iter().product();
    let mut shape = g.shape(ids).to_vec();
    shape.push(table.cols);
    gather(g, "embed", Source::Ids { ids, stride: 1, offset: 0 }, tokens, shape, table, out)
}

/// As [`embed`] with the ids of column `column` of u32 `ids [..., C]` (the fine model's
/// `ids[:, :, c]`); the output is `[..., H]`.
pub fn embed_column(g: &mut Graph, ids: Val, column: usize, table: &RowSplit, out: Option<Val>) -> Result<Val> {
    u32_ids(g, "embed_column", ids)?;
    let shape = g.shape(ids).to_vec();
    let c = match shape.last() {
        Some(&c) if column < c => c,
        _ => return Err(shape_err("embed_column", format!("column {column} of ids {shape:?}"))),
    };
    let tokens = shape.iter().product::<usize>() / c;
    let mut out_shape = shape[..shape.len() - 1].to_vec();
    out_shape.push(table.cols);
    let src = Source::Ids { ids, stride: c as u32, offset: column as u32 };
    gather(g, "embed_column", src, tokens, out_shape, table, out)
}

/// Rows `start .. start + tokens` of `table` into `[tokens, H]` (position embeddings of
/// consecutive positions). Rows past the table add zero.
pub fn embed_range(g: &mut Graph, tokens: usize, start: u32, table: &RowSplit, out: Option<Val>) -> Result<Val> {
    if start as u64 + tokens as u64 > u32::MAX as u64 {
        return Err(shape_err("embed_range", format!("positions {start} + {tokens} overflow u32")));
    }
    gather(g, "embed_range", Source::Range { start }, tokens, vec![tokens, table.cols], table, out)
}

/// Every specialisation this module dispatches.
pub fn kernels() -> Vec<Kernel> {
    let mut out = Vec::new();
    for range in [false, true] {
        for dtype in [DType::F32, DType::F16] {
            out.push(kernel(range, dtype));
        }
    }
    out
}
