//! Token choice on the GPU (`shaders/sampling.wgsl`): a decode step ends with [`sample`], which
//! turns each logit row into a token id and an end-of-sequence flag, so the host reads back two
//! words per sequence instead of a logit row.
//!
//! # What a row computes
//!
//! Each row `r` of `logits` (`[rows, V]`, f32) has its own [`SampleSettings`] and one uniform
//! number `u[r]` in `[0, 1)` from the host's seeded RNG. Let `x` be the row's logits.
//!
//! 1. **Candidates.** `C = [lo, hi) ∪ {extra}` (`allowed`, `extra_allowed`); every other logit is
//!    treated as -inf. Semantic (transformers): `allowed = (0, 10001)` (suppresses 10001..10047);
//!    original Bark semantic: `allowed = (0, 10000)`, `extra_allowed = Some(10000)` (the EOS);
//!    coarse: `(10000, 11024)` / `(11024, 12048)` by step parity; fine: `(0, 1024)`.
//! 2. **EOS prioritiser** (`min_eos_p: Some(m)`, `eos: Some(e)`, `e` a candidate):
//!    * [`EosRule::Transformers`]: `p = softmax_C(x)[e]` (temperature 1); `p > m` gives `e`.
//!    * [`EosRule::Original`]: `p` = the final sampling probability of `e` (after top-k/top-p
//!      and temperature, 0 if `e` was filtered out); `p >= m` gives `e`. When greedy there is no
//!      temperature and no filter, so `p = softmax_C(x)[e]` and the test is `p >= m`.
//! 3. **Greedy** (`temperature <= 0`): argmax of `x` over `C`, ties to the lowest index (as
//!    `torch.argmax`). top-k/top-p are ignored, as transformers does with `do_sample=False`.
//! 4. **Sampling** (`temperature = t > 0`), `s = x / t`. The thresholds look at the *filter
//!    value*: `s` in [`SamplingOrder::Transformers`], the raw `x` in [`SamplingOrder::Original`].
//!    * top-k: keep filter values `>=` the k-th largest over `C` (ties kept, TopKLogitsWarper).
//!    * top-p: with `q` = softmax of the filter values over the tokens still in play, keep a
//!      token iff the `q`-mass of tokens with a strictly larger value is `< top_p`
//!      (transformers' TopPLogitsWarper) or `<= top_p` (original Bark). The largest value is
//!      always kept. Transformers order: top-k first, top-p over what top-k kept. Original
//!      order: both on all candidates, the kept set is the intersection (what Bark's top-p then
//!      top-k on the raw logits amounts to).
//!    * Tokens tied at a threshold are kept or dropped together (a sort would keep an arbitrary
//!      part of the tie); with continuous logits this never matters.
//!    * The choice: with `P` = softmax of `s` over the kept tokens, the smallest kept index `i`
//!      (in index order) whose cumulative `P` exceeds `u`. Tokens whose f32 weight underflows to
//!      0 are never chosen.
//! 5. **Flag**: 1 when the chosen id equals `eos`, else 0.
//!
//! A row whose candidates are all -inf yields the lowest candidate. NaN or +inf logits give an
//! unspecified token, but always a candidate: nothing the host writes makes the GPU read out of
//! bounds (the shader clamps every id it reads).
//!
//! # Use in a decode step
//!
//! ```text
//! let inputs = SamplerInputs::new(ctx, rows, vocab)?;          // once
//! let (settings, uniforms) = (g.input(inputs.settings()), g.input(inputs.uniforms()));
//! let s = sample(&mut g, logits, settings, uniforms)?;
//! g.readback(s.ids); g.readback(s.eos);
//! let plan = g.compile()?;
//! // each step: inputs.set_settings(ctx, &per_row)?  (coarse alternates its range)
//! //            inputs.set_uniforms(ctx, &rng_draws)?; plan.run()?; plan.read_words(s.ids)?
//! ```
//! The settings and uniforms are ordinary tensors the host rewrites before `Plan::run`, so a
//! plan never needs recompiling. The fine stage samples `B * T` rows of width 1056 at once with
//! [`SampleSettings::fine`] (one workgroup per row; grids beyond 65,535 rows fold into 2-D).

use bytemuck::{Pod, Zeroable};

use super::params;
use crate::error::{shape_err, Error};
use crate::gpu::{Access::*, Context, Contract, DType, Family, Kernel, Tensor};
use crate::graph::{groups_1d, Graph, Val};
use crate::Result;

/// Words of [`RowSettings`], the row stride of the settings tensor.
pub const SETTINGS_WORDS: usize = 9;

/// "No id" in the `extra` and `eos` words.
const NONE: u32 = u32::MAX;
/// Flag bits, as in the shader.
const ORIGINAL_ORDER: u32 = 1;
const ORIGINAL_EOS: u32 = 2;

/// In which order temperature and the top-k/top-p filters apply (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SamplingOrder {
    /// transformers: temperature, then top-k, then top-p (strict `<`).
    #[default]
    Transformers,
    /// Original Bark: top-p (`<=`) and top-k on the raw logits, then temperature.
    Original,
}

/// How `min_eos_p` decides that a sequence ends (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EosRule {
    /// transformers' BarkEosPrioritizerLogitsProcessor: softmax at temperature 1, `p > m`.
    #[default]
    Transformers,
    /// Original Bark: the final sampling probability, `p >= m`.
    Original,
}

/// How one row picks its token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleSettings {
    /// `<= 0`: greedy argmax. Otherwise the softmax temperature (at least [`MIN_TEMPERATURE`]).
    pub temperature: f32,
    /// Keep the `k` largest (ties kept); `k >= 1`.
    pub top_k: Option<u32>,
    /// Nucleus mass in `[0, 1]`; `Some(1.0)` is the same as `None`.
    pub top_p: Option<f32>,
    /// EOS prioritiser threshold in `[0, 1]`; needs `eos`. transformers treats 0.0 as "off":
    /// callers mirroring that should pass `None`.
    pub min_eos_p: Option<f32>,
    /// The end-of-sequence id: the flag output is 1 when the chosen id equals it.
    pub eos: Option<u32>,
    /// Candidate ids `[lo, hi)`.
    pub allowed: (u32, u32),
    /// One more candidate id outside `allowed` (original Bark's EOS next to `[0, 10000)`).
    pub extra_allowed: Option<u32>,
    pub order: SamplingOrder,
    pub eos_rule: EosRule,
}

/// The smallest positive temperature accepted: below it `x / t` could overflow f32 for large
/// logits, and such a temperature is greedy decoding in all but name.
pub const MIN_TEMPERATURE: f32 = 1e-4;

/// A temperature named `name`: `<= 0` (greedy) or a finite value of at least [`MIN_TEMPERATURE`].
pub fn check_temperature(name: &str, t: f32) -> std::result::Result<(), String> {
    if t.is_nan() || t.is_infinite() || (t > 0.0 && t < MIN_TEMPERATURE) {
        return Err(format!(
            "{name} {t} is not usable (use <= 0 for greedy, or a finite value of at least {MIN_TEMPERATURE})"
        ));
    }
    Ok(())
}

/// `top_k`, when given, keeps at least one candidate.
pub fn check_top_k(top_k: Option<u32>) -> std::result::Result<(), String> {
    match top_k {
        Some(0) => Err("top_k 0 is not allowed; it must be at least 1".into()),
        _ => Ok(()),
    }
}

/// A probability named `name` (`top_p`, `min_eos_p`), when given, lies in `[0, 1]`.
pub fn check_unit(name: &str, p: Option<f32>) -> std::result::Result<(), String> {
    match p {
        Some(p) if !(0.0..=1.0).contains(&p) => Err(format!("{name} {p} is not in [0, 1]")),
        _ => Ok(()),
    }
}

impl SampleSettings {
    /// Greedy argmax over `allowed`, no EOS rule.
    pub fn greedy(allowed: (u32, u32)) -> SampleSettings {
        SampleSettings {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            min_eos_p: None,
            eos: None,
            allowed,
            extra_allowed: None,
            order: SamplingOrder::Transformers,
            eos_rule: EosRule::Transformers,
        }
    }

    /// Plain sampling at `temperature` over `allowed`, no filters, no EOS rule.
    pub fn sampled(allowed: (u32, u32), temperature: f32) -> SampleSettings {
        SampleSettings { temperature, ..SampleSettings::greedy(allowed) }
    }

    /// The fine stage: codes `0..1024` of each 1056-wide row; temperature `None` or `1.0` is
    /// argmax (as both transformers and the original do), anything else samples softmax(x / t).
    pub fn fine(temperature: Option<f32>) -> SampleSettings {
        match temperature {
            None | Some(1.0) => SampleSettings::greedy((0, 1024)),
            Some(t) => SampleSettings::sampled((0, 1024), t),
        }
    }

    /// Checks the settings against a vocabulary of `vocab` ids and packs them for the shader.
    pub fn encode(&self, vocab: usize) -> Result<RowSettings> {
        let invalid = |m: String| Error::Invalid(format!("sampling settings: {m}"));
        let bad = |m: String| Err(invalid(m));
        let v = vocab as u64;
        if vocab == 0 || v > u32::MAX as u64 {
            return bad(format!("vocabulary size {vocab}"));
        }
        let (lo, hi) = self.allowed;
        if lo > hi || hi as u64 > v {
            return bad(format!("allowed range [{lo}, {hi}) is not within [0, {vocab})"));
        }
        if let Some(e) = self.extra_allowed.filter(|&e| e as u64 >= v) {
            return bad(format!("extra allowed id {e} is not below {vocab}"));
        }
        if lo == hi && self.extra_allowed.is_none() {
            return bad("no candidate id (empty allowed range and no extra id)".into());
        }
        if let Some(e) = self.eos.filter(|&e| e as u64 >= v) {
            return bad(format!("eos id {e} is not below {vocab}"));
        }
        let t = self.temperature;
        check_temperature("temperature", t).map_err(invalid)?;
        check_top_k(self.top_k).map_err(invalid)?;
        check_unit("top_p", self.top_p).map_err(invalid)?;
        check_unit("min_eos_p", self.min_eos_p).map_err(invalid)?;
        if self.min_eos_p.is_some() && self.eos.is_none() {
            return bad("min_eos_p needs an eos id".into());
        }
        let mut flags = 0;
        if self.order == SamplingOrder::Original {
            flags |= ORIGINAL_ORDER;
        }
        if self.eos_rule == EosRule::Original {
            flags |= ORIGINAL_EOS;
        }
        Ok(RowSettings {
            lo,
            hi,
            extra: self.extra_allowed.unwrap_or(NONE),
            eos: self.eos.unwrap_or(NONE),
            temperature: if t > 0.0 { t } else { 0.0 },
            top_k: self.top_k.unwrap_or(0),
            // 2.0 (anything >= 1) switches top-p off; -1.0 switches the EOS rule off.
            top_p: self.top_p.unwrap_or(2.0),
            min_eos_p: self.min_eos_p.unwrap_or(-1.0),
            flags,
        })
    }
}

/// One row's settings as the shader reads them (`SETTINGS_WORDS` words). Build it with
/// [`SampleSettings::encode`], which validates.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct RowSettings {
    pub lo: u32,
    pub hi: u32,
    /// `u32::MAX`: none.
    pub extra: u32,
    /// `u32::MAX`: none.
    pub eos: u32,
    /// `0.0`: greedy.
    pub temperature: f32,
    /// `0`: off.
    pub top_k: u32,
    /// `>= 1.0`: off.
    pub top_p: f32,
    /// `< 0.0`: off.
    pub min_eos_p: f32,
    /// Bit 0: original order; bit 1: original EOS rule.
    pub flags: u32,
}

/// Encodes settings for `rows` rows: one entry is repeated for every row, otherwise one entry
/// per row.
pub fn encode_settings(settings: &[SampleSettings], rows: usize, vocab: usize) -> Result<Vec<u32>> {
    if settings.len() != 1 && settings.len() != rows {
        return Err(Error::Invalid(format!("{} sampling settings for {rows} rows", settings.len())));
    }
    let encoded = settings.iter().map(|s| s.encode(vocab)).collect::<Result<Vec<_>>>()?;
    let mut words = Vec::with_capacity(rows * SETTINGS_WORDS);
    for r in 0..rows {
        words.extend_from_slice(bytemuck::cast_slice(&[encoded[r % encoded.len()]]));
    }
    Ok(words)
}

/// The two small per-step inputs of [`sample`]: settings `[rows, SETTINGS_WORDS]` u32 and
/// uniforms `[rows]` f32, rewritten by the host before each `Plan::run`.
pub struct SamplerInputs {
    settings: Tensor,
    uniforms: Tensor,
    vocab: usize,
}

impl SamplerInputs {
    /// Buffers for `rows` rows of a `vocab`-wide logit tensor (every row greedy over all ids
    /// until [`SamplerInputs::set_settings`]).
    pub fn new(ctx: &Context, rows: usize, vocab: usize) -> Result<SamplerInputs> {
        if rows == 0 {
            return Err(Error::Invalid("sampling needs at least one row".into()));
        }
        let init = SampleSettings::greedy((0, u32::try_from(vocab).unwrap_or(u32::MAX)));
        let words = encode_settings(&[init], rows, vocab)?;
        let settings = Tensor::from_u32(ctx, &words, &[rows, SETTINGS_WORDS])?;
        let uniforms = Tensor::from_f32(ctx, &vec![0.0; rows], &[rows], DType::F32)?;
        Ok(SamplerInputs { settings, uniforms, vocab })
    }

    /// One setting for all rows, or one per row.
    pub fn set_settings(&self, ctx: &Context, settings: &[SampleSettings]) -> Result<()> {
        self.settings.write_words(ctx, &encode_settings(settings, self.rows(), self.vocab)?)
    }

    /// One uniform number in `[0, 1)` per row.
    pub fn set_uniforms(&self, ctx: &Context, u: &[f32]) -> Result<()> {
        if let Some(bad) = u.iter().find(|v| !(0.0..1.0).contains(*v)) {
            return Err(Error::Invalid(format!("uniform random number {bad} is not in [0, 1)")));
        }
        self.uniforms.write_f32(ctx, u)
    }

    pub fn rows(&self) -> usize {
        self.uniforms.numel()
    }
    pub fn settings(&self) -> &Tensor {
        &self.settings
    }
    pub fn uniforms(&self) -> &Tensor {
        &self.uniforms
    }
}

/// The outputs of [`sample`], both u32 `[rows]`.
#[derive(Clone, Copy, Debug)]
pub struct Sampled {
    /// The chosen token id of each row.
    pub ids: Val,
    /// 1 where the chosen id is the row's eos, else 0.
    pub eos: Val,
}

uniform_struct! {
    struct Params {
        rows: u32,
        vocab: u32,
    }
}

const SAMPLE: Contract = Contract {
    family: Family::Sampling,
    params: Some(Params::LAYOUT),
    binds: &[("logits", Read), ("settings", Read), ("uniforms", Read), ("ids", ReadWrite), ("flags", ReadWrite)],
};

/// Workgroup sizes (threads per row) and their reduction split (`WG = SPLIT * SPLIT`): 64
/// threads for narrow rows such as the fine model's 1056 (many rows per call, and each barrier
/// is cheaper), 256 for semantic and coarse rows (one sequence must still fill the GPU).
const VARIANTS: [(u32, u32); 2] = [(64, 8), (256, 16)];
/// Rows up to this wide use the 64-thread variant.
const NARROW: usize = 2048;

fn kernel((wg, split): (u32, u32)) -> Kernel {
    Kernel::new("sampling", "sample").contract(&SAMPLE).with_u32("WG", wg).with_u32("SPLIT", split)
}

/// Chooses one token per row of `logits` (`[..., V]` f32; rows = all leading dimensions) with
/// `settings` (`[rows, SETTINGS_WORDS]` u32, from [`encode_settings`] / [`SamplerInputs`]) and
/// `uniforms` (`[rows]` f32 in `[0, 1)`). One workgroup per row.
pub fn sample(g: &mut Graph, logits: Val, settings: Val, uniforms: Val) -> Result<Sampled> {
    const OP: &str = "sample";
    let expect = |g: &Graph, v: Val, dtype: DType, what: &str| {
        if g.dtype(v) == dtype {
            Ok(())
        } else {
            Err(Error::Dtype { op: OP, message: format!("{what} must be {dtype:?}, got {:?}", g.dtype(v)) })
        }
    };
    expect(g, logits, DType::F32, "logits")?;
    expect(g, settings, DType::U32, "settings")?;
    expect(g, uniforms, DType::F32, "uniforms")?;
    let shape = g.shape(logits).to_vec();
    let vocab = *shape.last().ok_or_else(|| shape_err(OP, "logits must have at least one dimension"))?;
    let rows: usize = shape[..shape.len() - 1].iter().product();
    if vocab == 0 || rows == 0 {
        return Err(shape_err(OP, format!("logits {shape:?} are empty")));
    }
    if rows.checked_mul(vocab).is_none_or(|n| n > u32::MAX as usize) {
        return Err(shape_err(OP, format!("logits {shape:?} are too large to index with u32")));
    }
    if g.shape(settings) != [rows, SETTINGS_WORDS] {
        return Err(shape_err(OP, format!("settings {:?}, want [{rows}, {SETTINGS_WORDS}]", g.shape(settings))));
    }
    if g.shape(uniforms) != [rows] {
        return Err(shape_err(OP, format!("uniforms {:?}, want [{rows}]", g.shape(uniforms))));
    }
    let ids = g.tensor(&[rows], DType::U32);
    let eos = g.tensor(&[rows], DType::U32);
    let p = Params { rows: rows as u32, vocab: vocab as u32 };
    let variant = VARIANTS[usize::from(vocab > NARROW)];
    g.dispatch(
        kernel(variant),
        &params(&p),
        &[("logits", logits), ("settings", settings), ("uniforms", uniforms), ("ids", ids), ("flags", eos)],
        groups_1d(p.rows),
    );
    Ok(Sampled { ids, eos })
}

/// Every specialisation this module dispatches.
pub fn kernels() -> Vec<Kernel> {
    VARIANTS.into_iter().map(kernel).collect()
}
