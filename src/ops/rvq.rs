//! EnCodec's residual vector quantiser (`shaders/rvq.wgsl`): codes to embeddings (decode) and
//! embeddings to codes (encode), as transformers' `EncodecResidualVectorQuantizer` computes them.
//!
//! Layout: codebooks `[n_books, N, D]` f32 (the `quantizer.layers.{q}.codebook.embed` matrices
//! stacked; EnCodec 24 kHz has 32 books of 1024 x 128), codes `[n_q, B, T]` u32 with
//! `n_q <= n_books` (stage q uses book q; Bark uses the first 8), embeddings `[B, D, T]` f32.

use super::conv1d::{f32_shape, u32_of, u32_prod};
use super::params;
use crate::error::{shape_err, Error};
use crate::gpu::{Access::*, Context, Contract, DType, Family, Kernel, Tensor};
use crate::graph::{groups_1d, Graph, Val};
use crate::Result;

const WG: usize = 256;
/// Positions per encode workgroup and the largest codebook dimension encode supports (the
/// shader's P and MAX_D).
const P: usize = 8;
pub const MAX_ENCODE_DIM: usize = 256;

uniform_struct! {
    struct Params {
        n_q: u32,
        batch: u32,
        t_len: u32,
        dim: u32,
        n_codes: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

const DECODE: Contract = Contract {
    family: Family::Rvq,
    params: Some(Params::LAYOUT),
    binds: &[("codes_in", Read), ("cb", Read), ("emb_out", ReadWrite)],
};
const ENCODE: Contract = Contract {
    family: Family::Rvq,
    params: Some(Params::LAYOUT),
    binds: &[("x_in", Read), ("cb", Read), ("codes_out", ReadWrite)],
};

impl Params {
    /// `n_q` stages over `[batch, t]` positions of `dim`-wide codewords, `n_codes` per book.
    fn new(n_q: usize, [batch, t]: [usize; 2], dim: usize, n_codes: usize) -> Params {
        let (n_q, batch, t_len, dim, n_codes) = (n_q as u32, batch as u32, t as u32, dim as u32, n_codes as u32);
        Params { n_q, batch, t_len, dim, n_codes, _pad0: 0, _pad1: 0, _pad2: 0 }
    }
}

fn decode_kernel() -> Kernel {
    Kernel::new("rvq", "rvq_decode").contract(&DECODE)
}

fn encode_kernel() -> Kernel {
    Kernel::new("rvq", "rvq_encode").contract(&ENCODE)
}

/// Uploads codes `[n_q, B, T]` after checking every value is below `codebook_size`. Codes
/// reach [`rvq_decode`] through here (or straight from [`rvq_encode`]): the decode kernel
/// clamps out-of-range values only to stay in bounds, which would silently give wrong audio.
pub fn upload_codes(ctx: &Context, codes: &[u32], shape: [usize; 3], codebook_size: usize) -> Result<Tensor> {
    if let Some((i, &c)) = codes.iter().enumerate().find(|(_, &c)| c as usize >= codebook_size) {
        return Err(Error::Invalid(format!("code {c} at index {i} is not below the codebook size {codebook_size}")));
    }
    Tensor::from_u32(ctx, codes, &shape)
}

/// Checks the codebooks and returns `(n_books, N, D)`.
fn books(g: &Graph, op: &'static str, codebooks: Val) -> Result<(usize, usize, usize)> {
    let [n_books, n_codes, dim] = f32_shape(g, op, "codebooks", codebooks, 3)?[..] else { unreachable!() };
    u32_prod(op, "codebook elements", &[n_books, n_codes, dim])?;
    Ok((n_books, n_codes, dim))
}

/// Records `emb[b, :, t] = sum_q codebooks[q, codes[q, b, t], :]`; returns `[B, D, T]`.
pub fn rvq_decode(g: &mut Graph, codes: Val, codebooks: Val) -> Result<Val> {
    const OP: &str = "rvq_decode";
    let (n_books, n_codes, dim) = books(g, OP, codebooks)?;
    if g.dtype(codes) != DType::U32 {
        return Err(Error::Dtype { op: OP, message: format!("codes must be u32, got {:?}", g.dtype(codes)) });
    }
    let [n_q, b, t] = g.shape(codes).to_vec()[..] else {
        return Err(shape_err(OP, format!("codes must be [n_q, B, T], got {:?}", g.shape(codes))));
    };
    if n_q == 0 || n_q > n_books || b == 0 || t == 0 {
        return Err(shape_err(OP, format!("codes {:?} need 1..={n_books} stages and a non-empty [B, T]", [n_q, b, t])));
    }
    let n = u32_prod(OP, "output elements", &[b, dim, t])?;
    let p = Params::new(n_q, [b, t], dim, n_codes);
    let y = g.tensor(&[b, dim, t], DType::F32);
    g.dispatch(
        decode_kernel(),
        &params(&p),
        &[("codes_in", codes), ("cb", codebooks), ("emb_out", y)],
        groups_1d(n.div_ceil(WG as u32)),
    );
    Ok(y)
}

/// Records the quantisation of `x` `[B, D, T]` with the first `n_q` codebooks (nearest
/// codeword by euclidean distance, lowest index on ties, residual passed on); returns the codes
/// `[n_q, B, T]` u32. Needs `D % 4 == 0` and `D <= MAX_ENCODE_DIM`.
pub fn rvq_encode(g: &mut Graph, x: Val, codebooks: Val, n_q: usize) -> Result<Val> {
    const OP: &str = "rvq_encode";
    let (n_books, n_codes, dim) = books(g, OP, codebooks)?;
    let [b, x_dim, t] = f32_shape(g, OP, "input", x, 3)?[..] else { unreachable!() };
    if x_dim != dim {
        return Err(shape_err(OP, format!("input has {x_dim} channels, the codebooks {dim}")));
    }
    if !dim.is_multiple_of(4) || dim > MAX_ENCODE_DIM {
        return Err(shape_err(
            OP,
            format!("codebook dimension {dim} must be a multiple of 4, at most {MAX_ENCODE_DIM}"),
        ));
    }
    if n_q == 0 || n_q > n_books {
        return Err(shape_err(OP, format!("{n_q} stages requested from {n_books} codebooks")));
    }
    u32_prod(OP, "input elements", &[b, dim, t])?;
    u32_prod(OP, "code elements", &[n_q, b, t])?;
    let groups = u32_of(OP, "position groups", (b * t).div_ceil(P))?;
    let p = Params::new(n_q, [b, t], dim, n_codes);
    let codes = g.tensor(&[n_q, b, t], DType::U32);
    g.dispatch(
        encode_kernel(),
        &params(&p),
        &[("x_in", x), ("cb", codebooks), ("codes_out", codes)],
        groups_1d(groups),
    );
    Ok(codes)
}

/// Every specialisation this module dispatches.
pub fn kernels() -> Vec<Kernel> {
    vec![decode_kernel(), encode_kernel()]
}
