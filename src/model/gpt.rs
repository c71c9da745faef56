//! Bark's GPTs on the ops: the causal model (semantic, coarse) with its paged KV cache, and the
//! non-causal fine model. Pre-LN blocks, as transformers' `BarkBlock`:
//! `h = x + out_proj(attn(LN1(x)))`, `x = h + mlp_out(GELU(mlp_in(LN2(h))))`, then a final LN.
//! Each LN goes into the linear layer that reads it ([`norm_linear`]): in a decode step the
//! GEMV normalises its input itself, so a layer costs two dispatches fewer.

use super::{FineConfig, SubModelConfig};
use crate::gpu::{Context, DType, RowSplit, Tensor};
use crate::graph::{Graph, Val};
use crate::kv::KvVals;
use crate::ops::attention::{self, Mask};
use crate::ops::embedding::{embed, embed_column};
use crate::ops::kv_cache;
use crate::ops::layernorm::EPS;
use crate::ops::matmul::{linear, norm_linear, Epilogue, InputNorm, Linear};
use crate::weights::Weights;
use crate::{Error, Result};

/// A weight (F32 or F16 as asked) and its optional f32 bias.
struct Affine {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Affine {
    /// `{name}.weight` of `shape` in `dtype`, and `{name}.bias` `[shape[0]]` when `bias`.
    fn load(ctx: &Context, w: &Weights, name: &str, shape: &[usize], dtype: DType, bias: bool) -> Result<Affine> {
        Ok(Affine {
            weight: w.upload(ctx, &format!("{name}.weight"), shape, dtype)?,
            bias: if bias { Some(w.upload(ctx, &format!("{name}.bias"), &shape[..1], DType::F32)?) } else { None },
        })
    }
    fn vals(&self, g: &mut Graph) -> (Val, Option<Val>) {
        (g.input(&self.weight), self.bias.as_ref().map(|b| g.input(b)))
    }
    fn linear(&self, g: &mut Graph, x: Val, act: Epilogue, residual: Option<Val>) -> Result<Val> {
        let (w, b) = self.vals(g);
        linear(g, x, w, b, act, residual)
    }
    /// `linear(norm(x))`, with `norm` a LayerNorm's affine.
    fn norm_linear(&self, g: &mut Graph, norm: &Affine, x: Val, act: Epilogue, residual: Option<Val>) -> Result<Val> {
        let (weight, bias) = norm.vals(g);
        let norm = InputNorm { weight, bias, eps: EPS };
        let (weight, bias) = self.vals(g);
        norm_linear(g, x, norm, Linear { weight, bias }, act, residual)
    }
}

struct Block {
    ln1: Affine,
    att_proj: Affine,
    out_proj: Affine,
    ln2: Affine,
    mlp_in: Affine,
    mlp_out: Affine,
}

/// What both GPTs share: position embeddings, the blocks, the final layer norm.
struct Trunk {
    cfg: SubModelConfig,
    positions: RowSplit,
    blocks: Vec<Block>,
    ln_final: Affine,
}

impl Trunk {
    fn load(ctx: &Context, w: &Weights, p: &str, cfg: &SubModelConfig, dtype: DType, ln_bias: bool) -> Result<Trunk> {
        let h = cfg.hidden_size;
        let f32 = DType::F32;
        let positions = w.upload_rows(ctx, &format!("{p}.position_embeds_layer.weight"), cfg.block_size, h, dtype)?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let l = format!("{p}.layers.{i}");
            let lin =
                |name: &str, shape: &[usize]| Affine::load(ctx, w, &format!("{l}.{name}"), shape, dtype, cfg.bias);
            blocks.push(Block {
                ln1: Affine::load(ctx, w, &format!("{l}.layernorm_1"), &[h], f32, ln_bias)?,
                att_proj: lin("attn.att_proj", &[3 * h, h])?,
                out_proj: lin("attn.out_proj", &[h, h])?,
                ln2: Affine::load(ctx, w, &format!("{l}.layernorm_2"), &[h], f32, ln_bias)?,
                mlp_in: lin("mlp.in_proj", &[4 * h, h])?,
                mlp_out: lin("mlp.out_proj", &[h, 4 * h])?,
            });
        }
        let ln_final = Affine::load(ctx, w, &format!("{p}.layernorm_final"), &[h], f32, ln_bias)?;
        Ok(Trunk { cfg: cfg.clone(), positions, blocks, ln_final })
    }

    /// The blocks on `x [rows, H]`, up to the final norm (which [`Trunk::head`] applies);
    /// `attend(g, layer, qkv)` is the attention.
    fn record(
        &self,
        g: &mut Graph,
        mut x: Val,
        attend: &mut dyn FnMut(&mut Graph, usize, Val) -> Result<Val>,
    ) -> Result<Val> {
        for (i, b) in self.blocks.iter().enumerate() {
            let qkv = b.att_proj.norm_linear(g, &b.ln1, x, Epilogue::None, None)?;
            let a = attend(g, i, qkv)?;
            x = b.out_proj.linear(g, a, Epilogue::None, Some(x))?;
            let m = b.mlp_in.norm_linear(g, &b.ln2, x, Epilogue::Gelu, None)?;
            x = b.mlp_out.linear(g, m, Epilogue::None, Some(x))?;
        }
        Ok(x)
    }

    /// `head(LN_final(x))` for the output `x` of [`Trunk::record`].
    fn head(&self, g: &mut Graph, x: Val, head: &Affine) -> Result<Val> {
        head.norm_linear(g, &self.ln_final, x, Epilogue::None, None)
    }
}

/// Semantic or coarse model: token embeddings, causal blocks over a paged KV cache, LM head.
pub struct CausalGpt {
    tokens: RowSplit,
    trunk: Trunk,
    lm_head: Affine,
    dtype: DType,
}

impl CausalGpt {
    /// Loads `{prefix}.*` (`semantic` or `coarse_acoustics`); large matrices in `dtype`.
    pub fn load(ctx: &Context, w: &Weights, prefix: &str, cfg: &SubModelConfig, dtype: DType) -> Result<CausalGpt> {
        let (h, vin, vout) = (cfg.hidden_size, cfg.input_vocab_size, cfg.output_vocab_size);
        Ok(CausalGpt {
            tokens: w.upload_rows(ctx, &format!("{prefix}.input_embeds_layer.weight"), vin, h, dtype)?,
            trunk: Trunk::load(ctx, w, prefix, cfg, dtype, cfg.bias)?,
            lm_head: Affine::load(ctx, w, &format!("{prefix}.lm_head"), &[vout, h], dtype, false)?,
            dtype,
        })
    }

    pub fn config(&self) -> &SubModelConfig {
        &self.trunk.cfg
    }
    /// How the large matrices are stored (F32 or F16); the KV cache follows it.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// The token embedding table (the semantic prompt sums two lookups of it).
    pub fn token_table(&self) -> &RowSplit {
        &self.tokens
    }
    pub fn position_table(&self) -> &RowSplit {
        &self.trunk.positions
    }

    /// `E(ids) + P(positions)` for u32 `ids` and `positions` of the same shape `[rows]`.
    pub fn embed(&self, g: &mut Graph, ids: Val, positions: Val) -> Result<Val> {
        if g.shape(ids) != g.shape(positions) {
            return Err(crate::error::shape_err("embed", "ids and positions differ in shape"));
        }
        let x = embed(g, ids, &self.tokens, None)?;
        embed(g, positions, &self.trunk.positions, Some(x))
    }

    /// The blocks on embeddings `x [rows, H]` whose rows `kv` places in their sequences: each
    /// layer appends its K, V to the cache and attends causally. Returns the last block's
    /// output, before the final norm (which [`CausalGpt::logits`] applies).
    pub fn record(&self, g: &mut Graph, x: Val, kv: &KvVals) -> Result<Val> {
        self.record_with(g, x, kv, false)
    }

    /// [`CausalGpt::record`] for a decode step, whose rows are each the next position of a
    /// different sequence: the cache append rides in the attention's merge where it can
    /// ([`attention::paged_append`]).
    pub fn record_decode(&self, g: &mut Graph, x: Val, kv: &KvVals) -> Result<Val> {
        self.record_with(g, x, kv, true)
    }

    fn record_with(&self, g: &mut Graph, x: Val, kv: &KvVals, decode: bool) -> Result<Val> {
        if kv.k.len() != self.trunk.blocks.len() {
            return Err(Error::Invalid(format!("a KV cache of {} layers for {}", kv.k.len(), self.trunk.blocks.len())));
        }
        self.trunk.record(g, x, &mut |g, layer, qkv| {
            if decode {
                return attention::paged_append(g, kv, layer, qkv);
            }
            kv_cache::append(g, kv, layer, qkv)?;
            attention::paged(g, kv, layer, qkv, Mask::Causal)
        })
    }

    /// Logits `[rows, V_out]` of [`CausalGpt::record`]'s output `[rows, H]`: the final norm and
    /// the LM head.
    pub fn logits(&self, g: &mut Graph, hidden: Val) -> Result<Val> {
        self.trunk.head(g, hidden, &self.lm_head)
    }
}

/// The fine model: the sum of codebook embeddings 0..=idx, full attention, head idx - 1.
pub struct FineGpt {
    cfg: FineConfig,
    tables: Vec<RowSplit>,
    trunk: Trunk,
    heads: Vec<Affine>,
}

impl FineGpt {
    pub fn load(ctx: &Context, w: &Weights, prefix: &str, cfg: &FineConfig, dtype: DType) -> Result<FineGpt> {
        let m = &cfg.model;
        let (h, vin, vout) = (m.hidden_size, m.input_vocab_size, m.output_vocab_size);
        let tables = (0..cfg.n_codes_total)
            .map(|j| w.upload_rows(ctx, &format!("{prefix}.input_embeds_layers.{j}.weight"), vin, h, dtype))
            .collect::<Result<Vec<_>>>()?;
        let heads = (0..cfg.n_heads())
            .map(|j| Affine::load(ctx, w, &format!("{prefix}.lm_heads.{j}"), &[vout, h], dtype, false))
            .collect::<Result<Vec<_>>>()?;
        Ok(FineGpt { cfg: cfg.clone(), tables, trunk: Trunk::load(ctx, w, prefix, m, dtype, true)?, heads })
    }

    pub fn config(&self) -> &FineConfig {
        &self.cfg
    }

    /// Logits `[B, T, V_out]` for codebook `idx` (n_codes_given..n_codes_total) from u32 codes
    /// `[B, T, n_codes_total]`, with positions 0..T.
    pub fn record(&self, g: &mut Graph, codes: Val, idx: usize) -> Result<Val> {
        let shape = g.shape(codes).to_vec();
        let [b, t, c] = shape[..] else {
            return Err(crate::error::shape_err("fine", format!("codes {shape:?}, want [B, T, codebooks]")));
        };
        if c != self.cfg.n_codes_total || idx == 0 || idx >= c {
            return Err(Error::Invalid(format!("codebook {idx} of codes {shape:?} (the model has {c} codebooks)")));
        }
        if t > self.trunk.cfg.block_size {
            return Err(Error::Invalid(format!("{t} frames exceed the block size {}", self.trunk.cfg.block_size)));
        }
        let mut x = embed_column(g, codes, 0, &self.tables[0], None)?;
        for j in 1..=idx {
            x = embed_column(g, codes, j, &self.tables[j], Some(x))?;
        }
        // Positions 0..T for every batch item: the flat rows of x are (b, t).
        let ids: Vec<u32> = (0..b * t).map(|r| (r % t) as u32).collect();
        let pos = Tensor::from_u32(g.ctx(), &ids, &[b, t])?;
        let pos = g.input(&pos);
        let x = embed(g, pos, &self.trunk.positions, Some(x))?;
        let x = g.view(x, &[b * t, self.trunk.cfg.hidden_size])?;
        let heads = self.trunk.cfg.num_heads;
        let hidden = self.trunk.record(g, x, &mut |g, _, qkv| attention::dense(g, qkv, heads, b, t, Mask::Full))?;
        let logits = self.trunk.head(g, hidden, &self.heads[idx - 1])?;
        let v = g.shape(logits)[1];
        g.view(logits, &[b, t, v])
    }
}
