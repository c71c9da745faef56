//! Appends a step's K and V to the paged KV cache (`shaders/kv_cache.wgsl`).

use super::params;
use crate::error::{shape_err, Error};
use crate::gpu::{Access::*, Contract, DType, Family, Kernel};
use crate::graph::{groups_1d, Graph, Val};
use crate::kv::KvVals;
use crate::Result;

const WG: u32 = 256;

uniform_struct! {
    struct Params {
        n_rows: u32,
        hidden: u32,
        page_size: u32,
        n_pages: u32,
        max_seqs: u32,
        max_pages_per_seq: u32,
    }
}

const APPEND: Contract = Contract {
    family: Family::KvAppend,
    params: Some(Params::LAYOUT),
    binds: &[
        ("qkv", Read),
        ("k_pool", ReadWrite),
        ("v_pool", ReadWrite),
        ("rows", Read),
        ("page_table", Read),
        ("seq_lens", Read),
    ],
};

/// Checks that `qkv` is an f32 `[n_rows, 3H]` matrix matching the step's rows; returns n_rows.
pub(crate) fn check_qkv(g: &Graph, op: &'static str, qkv: Val, hidden: u32, n_rows: usize) -> Result<u32> {
    if g.dtype(qkv) != DType::F32 {
        return Err(Error::Dtype { op, message: format!("qkv must be f32, got {:?}", g.dtype(qkv)) });
    }
    let shape = g.shape(qkv);
    let want = [n_rows, 3 * hidden as usize];
    if shape != want {
        return Err(shape_err(op, format!("qkv is {shape:?}, expected {want:?} ([rows, 3 * n_heads * head_dim])")));
    }
    let words = n_rows as u64 * 3 * hidden as u64;
    if words > u32::MAX as u64 {
        return Err(shape_err(op, format!("qkv of {words} values is more than the kernels can index")));
    }
    Ok(n_rows as u32)
}

/// Writes the K and V parts of `qkv` (`[n_rows, 3H]`, rows as described by the step's
/// [`crate::kv::StepRows`]) into layer `layer` of the cache, rounded to f16 when the cache
/// stores f16. Inactive rows are skipped. (A decode step appends through
/// [`super::attention::paged_append`], in the attention's merge where the keys are split.)
pub fn append(g: &mut Graph, kv: &KvVals, layer: usize, qkv: Val) -> Result<()> {
    let geo = kv.geometry;
    let (k, v) = kv.layer(layer)?;
    let n_rows = check_qkv(g, "kv_cache::append", qkv, geo.hidden(), kv.n_rows)?;
    let p = Params {
        n_rows,
        hidden: geo.hidden(),
        page_size: geo.page_size,
        n_pages: geo.n_pages,
        max_seqs: geo.max_seqs,
        max_pages_per_seq: geo.max_pages_per_seq,
    };
    let f16 = geo.kv_dtype == DType::F16;
    let words = n_rows * geo.hidden() / if f16 { 2 } else { 1 };
    let groups = groups_1d(words.div_ceil(WG));
    g.dispatch(
        kernel(f16),
        &params(&p),
        &[
            ("qkv", qkv),
            ("k_pool", k),
            ("v_pool", v),
            ("rows", kv.rows),
            ("page_table", kv.page_table),
            ("seq_lens", kv.seq_lens),
        ],
        groups,
    );
    Ok(())
}

/// The append kernel for pools of f16 pairs (`f16`) or f32.
fn kernel(f16: bool) -> Kernel {
    Kernel::new("kv_cache", "append").contract(&APPEND).with_bool("KV_F16", f16)
}

/// Every specialisation this module dispatches.
pub fn kernels() -> Vec<Kernel> {
    vec![kernel(false), kernel(true)]
}
