//! The host side of a kernel's interface, written once in Rust: its uniform's layout and its
//! storage bindings by name. `tests/host/contract.rs` reflects every specialisation's WGSL with naga
//! and checks it against this, and [`crate::graph::Graph::dispatch`] checks the operands by name.

/// How a kernel declares a storage buffer (`var<storage, read>` or `read_write`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
}

/// What a kernel computes, by op family (one per module of `src/ops/`, the linear layers'
/// GEMM, GEMV and direct GEMM together, the attention with its merge): how tests count a
/// plan's dispatches without naming shader files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Linear,
    LayerNorm,
    GroupNorm,
    Attention,
    /// The KV cache append (`kv_cache.wgsl`).
    KvAppend,
    Embedding,
    Sampling,
    Elementwise,
    Conv1d,
    ConvTranspose1d,
    Lstm,
    Rvq,
    /// Swapping a tensor's last two dimensions (`transpose.wgsl`).
    Transpose,
}

/// A `#[repr(C)]` uniform struct's Rust layout (made by `uniform_struct!` in `ops`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamsLayout {
    pub size: usize,
    /// `(field name, byte offset)` in declaration order.
    pub fields: &'static [(&'static str, usize)],
}

/// What a kernel binds, all at `@group(0)`: the uniform at binding 0 when `params` is set, then
/// the storage buffers in order (from 1, or 0 without a uniform), as `Graph::dispatch` lays
/// them out. A buffer's name is the WGSL variable's, less a trailing alias tag of digits
/// (`x4`, `out_3`: one operand declared as another type or at another binding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Contract {
    /// What the kernels of this contract compute.
    pub family: Family,
    pub params: Option<ParamsLayout>,
    pub binds: &'static [(&'static str, Access)],
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.binds.iter().map(|b| b.0).collect();
        match self.params {
            Some(p) => write!(f, "a {}-byte uniform, then {names:?}", p.size),
            None => write!(f, "no uniform, then {names:?}"),
        }
    }
}

impl Contract {
    /// Whether a dispatch with `params_len` bytes of parameters and operands of these names,
    /// in this order, fits.
    pub fn fits<'a>(&self, params_len: usize, names: impl ExactSizeIterator<Item = &'a str>) -> bool {
        params_len == self.params.map_or(0, |p| p.size)
            && names.len() == self.binds.len()
            && names.zip(self.binds).all(|(name, (want, _))| name == *want)
    }
}
