//! Loading checkpoint weights: [`WeightSource`] reads one file (safetensors or a torch.save zip)
//! as named tensors; [`Weights`] is the Bark view of it (or of a sharded checkpoint's files), with every naming convention of the
//! published files resolved (weight norm folded, tied fine heads, mask buffers dropped) and
//! uploads straight from the memory map to the GPU.

mod convert;
mod pickle;
mod shards;
mod source;
mod upload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use shards::shard_files;
pub use source::WeightSource;

use source::file_err;

use crate::Result;

/// Element types a checkpoint may store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoredDType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StoredDType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StoredDType::F64 | StoredDType::I64 => 8,
            StoredDType::F32 | StoredDType::I32 => 4,
            StoredDType::F16 | StoredDType::BF16 | StoredDType::I16 => 2,
            StoredDType::I8 | StoredDType::U8 | StoredDType::Bool => 1,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, StoredDType::F32 | StoredDType::F16 | StoredDType::BF16 | StoredDType::F64)
    }
    fn from_safetensors(d: safetensors::Dtype) -> Option<StoredDType> {
        use safetensors::Dtype as D;
        Some(match d {
            D::F32 => StoredDType::F32,
            D::F16 => StoredDType::F16,
            D::BF16 => StoredDType::BF16,
            D::F64 => StoredDType::F64,
            D::I64 => StoredDType::I64,
            D::I32 => StoredDType::I32,
            D::I16 => StoredDType::I16,
            D::I8 => StoredDType::I8,
            D::U8 => StoredDType::U8,
            D::BOOL => StoredDType::Bool,
            _ => return None,
        })
    }
}

/// A tensor's element type and shape as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: StoredDType,
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Elements (saturating: the loaders reject shapes whose product overflows anyway).
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }
}

/// How a Bark tensor name maps onto the file's tensors.
#[derive(Clone, Debug)]
enum Entry {
    /// Stored as is under this file name (tied fine heads point at the embedding).
    Stored(String),
    /// `weight = g * v / ||v||`, the norm over every dimension but the first, for each index of
    /// the first dimension (torch's weight_norm with dim=0, for Conv1d and ConvTranspose1d alike),
    /// or with `last` over every dimension but the last (dim=2: HuBERT's positional conv).
    WeightNorm { g: String, v: String, last: bool },
}

/// A Bark checkpoint's tensors under the names transformers' BarkModel uses after loading:
/// `*.conv.weight` for weight-normed convolutions (from `weight_g`/`weight_v` or
/// `parametrizations.weight.original0/1`), `fine_acoustics.lm_heads.{j}.weight` and
/// `input_embeds_layers.{j+1}.weight` both present when the file stores either (they are tied),
/// and no `*.attn.bias` masks. One file, or the shards of a sharded checkpoint.
#[derive(Debug)]
pub struct Weights {
    /// The file, or the index of a sharded checkpoint: what whole-checkpoint errors name.
    path: PathBuf,
    sources: Vec<WeightSource>,
    /// Each file tensor name and the source holding it.
    located: BTreeMap<String, usize>,
    entries: BTreeMap<String, Entry>,
}

const WEIGHT_NORM_SUFFIXES: [(&str, &str); 2] =
    [(".weight_g", ".weight_v"), (".parametrizations.weight.original0", ".parametrizations.weight.original1")];

/// A directory's checkpoint files in the order transformers' `from_pretrained` looks for them.
pub const CHECKPOINT_FILES: [&str; 4] =
    ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"];

/// The checkpoint `dir` holds: the first of [`CHECKPOINT_FILES`] present.
pub fn checkpoint_in(dir: &Path) -> Option<PathBuf> {
    CHECKPOINT_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file())
}

/// Buffers of the causal attention (its tril mask) that hold no weights.
fn is_mask_buffer(name: &str) -> bool {
    name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias")
}

/// The fine model's tied pairs: `lm_heads.{j}` is `input_embeds_layers.{j+1}`. Returns the other
/// name of the pair `name` belongs to.
fn tied_partner(name: &str) -> Option<String> {
    let (prefix, rest) = name.rsplit_once("fine_acoustics.").map(|(p, r)| (format!("{p}fine_acoustics."), r))?;
    let k = |s: &str| s.strip_suffix(".weight").and_then(|k| k.parse::<usize>().ok());
    if let Some(k) = rest.strip_prefix("input_embeds_layers.").and_then(k) {
        return (k >= 1).then(|| format!("{prefix}lm_heads.{}.weight", k - 1));
    }
    let j = rest.strip_prefix("lm_heads.").and_then(k)?;
    Some(format!("{prefix}input_embeds_layers.{}.weight", j + 1))
}

impl Weights {
    /// Opens a checkpoint file (safetensors or torch zip, told apart by content), or a sharded
    /// checkpoint by its index (`*.index.json`).
    pub fn open(path: impl AsRef<Path>) -> Result<Weights> {
        let path = path.as_ref();
        if path.to_string_lossy().ends_with(".index.json") {
            let (sources, located) = shards::open_sharded(path)?;
            return Weights::build(path, sources, located);
        }
        Weights::from_source(WeightSource::open(path)?)
    }

    /// Opens the first of [`CHECKPOINT_FILES`] that `dir` holds.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Weights> {
        let dir = dir.as_ref();
        match checkpoint_in(dir) {
            Some(p) => Weights::open(p),
            None => Err(file_err(
                dir,
                "holds no checkpoint (model.safetensors, pytorch_model.bin, or the index of a sharded one)",
            )),
        }
    }

    pub fn from_source(source: WeightSource) -> Result<Weights> {
        let located = source.names().map(|n| (n.to_string(), 0)).collect();
        let path = source.path().to_path_buf();
        Weights::build(&path, vec![source], located)
    }

    fn build(path: &Path, sources: Vec<WeightSource>, located: BTreeMap<String, usize>) -> Result<Weights> {
        let mut w = Weights { path: path.to_path_buf(), sources, located, entries: BTreeMap::new() };
        let mut entries = BTreeMap::new();
        let mut insert = |name: String, e: Entry, from: &str| {
            if entries.insert(name.clone(), e).is_some() {
                return Err(file_err(path, format!("`{name}` is given twice (again by `{from}`)")));
            }
            Ok(())
        };
        'names: for name in w.located.keys() {
            if is_mask_buffer(name) {
                continue;
            }
            for (g_suffix, v_suffix) in WEIGHT_NORM_SUFFIXES {
                if let Some(base) = name.strip_suffix(v_suffix) {
                    if !w.located.contains_key(&format!("{base}{g_suffix}")) {
                        return Err(file_err(path, format!("`{name}` has no `{base}{g_suffix}`")));
                    }
                    continue 'names;
                }
                if let Some(base) = name.strip_suffix(g_suffix) {
                    let v = format!("{base}{v_suffix}");
                    let last = w.check_weight_norm(name, &v)?;
                    insert(format!("{base}.weight"), Entry::WeightNorm { g: name.to_string(), v, last }, name)?;
                    continue 'names;
                }
            }
            insert(name.to_string(), Entry::Stored(name.to_string()), name)?;
        }
        // Tied fine heads: whichever of the pair the file stores stands for both (transformers
        // fills the missing one from it); where both are stored each keeps its own values, as
        // transformers does when they differ.
        let tied: Vec<(String, Entry)> = entries
            .iter()
            .filter_map(|(name, e)| tied_partner(name).map(|other| (other, e.clone())))
            .filter(|(other, _)| !entries.contains_key(other))
            .collect();
        entries.extend(tied);
        w.entries = entries;
        Ok(w)
    }

    /// The source holding file tensor `name`.
    fn src(&self, name: &str) -> Result<&WeightSource> {
        self.located
            .get(name)
            .and_then(|&i| self.sources.get(i))
            .ok_or_else(|| file_err(&self.path, format!("missing tensor `{name}`")))
    }

    /// The (first) file; a sharded checkpoint has several: [`Weights::sources`].
    pub fn source(&self) -> &WeightSource {
        &self.sources[0]
    }
    pub fn sources(&self) -> &[WeightSource] {
        &self.sources
    }
    /// The file, or a sharded checkpoint's index.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Bark tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries.get(name).ok_or_else(|| file_err(self.path(), format!("missing tensor `{name}`")))
    }

    /// Dtype and shape (a folded weight has v's shape and dtype).
    pub fn info(&self, name: &str) -> Result<TensorInfo> {
        let file_name = match self.entry(name)? {
            Entry::Stored(n) => n,
            Entry::WeightNorm { v, .. } => v,
        };
        Ok(self.src(file_name)?.raw(file_name)?.info.clone())
    }

    /// The tensor's info if it exists as a floating-point tensor of exactly `shape`, else an error
    /// naming the file, the tensor and both shapes.
    pub fn expect(&self, name: &str, shape: &[usize]) -> Result<TensorInfo> {
        let info = self.info(name)?;
        if info.shape != shape {
            return Err(file_err(
                self.path(),
                format!("tensor `{name}` has shape {:?}, expected {shape:?}", info.shape),
            ));
        }
        if !info.dtype.is_float() {
            return Err(file_err(self.path(), format!("tensor `{name}` is {:?}, not floating point", info.dtype)));
        }
        Ok(info)
    }

    /// The values as f32, folding weight norm.
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>> {
        match self.entry(name)? {
            Entry::Stored(n) => self.src(n)?.to_f32(n),
            Entry::WeightNorm { g, v, last } => {
                let (gs, mut vs) = (self.src(g)?.to_f32(g)?, self.src(v)?.to_f32(v)?);
                if *last {
                    fold_weight_norm_last(&gs, &mut vs);
                } else {
                    fold_weight_norm(&gs, &mut vs);
                }
                Ok(vs)
            }
        }
    }

    /// Checks that every `(name, shape)` is present as a float tensor of that shape; the error
    /// lists every missing or mis-shaped tensor (e.g. `model::inference_tensors(&config)`).
    pub fn check(&self, expected: &[(String, Vec<usize>)]) -> Result<()> {
        let problems: Vec<String> = expected
            .iter()
            .filter_map(|(name, shape)| self.expect(name, shape).err())
            .map(|e| match e {
                crate::Error::File { message, .. } => message,
                other => other.to_string(),
            })
            .collect();
        match problems.as_slice() {
            [] => Ok(()),
            [one] => Err(file_err(self.path(), one.clone())),
            many => Err(file_err(
                self.path(),
                format!("{} tensors are wrong: {}", many.len(), many[..many.len().min(8)].join("; ")),
            )),
        }
    }
}

impl Weights {
    /// Checks g's shape is (v.shape[0], 1, 1, ...) (dim=0), or (1, ..., 1, v.shape[-1]) (the last
    /// dim; returns true) when building the table, so folding cannot fail.
    fn check_weight_norm(&self, g: &str, v: &str) -> Result<bool> {
        let path = self.path.as_path();
        let gi = self.src(g)?.info(g).ok_or_else(|| file_err(path, format!("missing tensor `{g}`")))?;
        let vi =
            self.src(v).ok().and_then(|s| s.info(v)).ok_or_else(|| file_err(path, format!("`{g}` has no `{v}`")))?;
        let ok = gi.dtype.is_float()
            && vi.dtype.is_float()
            && !vi.shape.is_empty()
            && !vi.shape.is_empty()
            && vi.numel() > 0
            && gi.shape.len() == vi.shape.len();
        let n = vi.shape.len();
        let first = ok && gi.shape[0] == vi.shape[0] && gi.shape[1..].iter().all(|&d| d == 1);
        let last = ok && n > 1 && gi.shape[n - 1] == vi.shape[n - 1] && gi.shape[..n - 1].iter().all(|&d| d == 1);
        if !first && !last {
            return Err(file_err(
                path,
                format!(
                    "weight norm `{g}` {:?} {:?} does not fit `{v}` {:?} {:?} \
                 (want g of shape (v.shape[0], 1, ...) or (1, ..., v.shape[-1]))",
                    gi.dtype, gi.shape, vi.dtype, vi.shape
                ),
            ));
        }
        Ok(!first)
    }
}

/// `v[i, ...] *= g[i] / ||v[i, ...]||` as torch's `_weight_norm(v, g, dim=0)` computes it
/// (`v * (g / norm)`); the norm is accumulated in f64 and rounded once.
fn fold_weight_norm(g: &[f32], v: &mut [f32]) {
    let per = v.len() / g.len().max(1);
    for (row, &gi) in v.chunks_mut(per.max(1)).zip(g) {
        let norm = row.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt() as f32;
        let scale = gi / norm;
        row.iter_mut().for_each(|x| *x *= scale);
    }
}

/// `v[..., k] *= g[k] / ||v[..., k]||`: torch's `_weight_norm(v, g, dim=-1)` (HuBERT's positional
/// conv uses dim=2 of a 3-D weight); the norms are accumulated in f64 and rounded once.
fn fold_weight_norm_last(g: &[f32], v: &mut [f32]) {
    let k = g.len().max(1);
    let mut sums = vec![0.0f64; k];
    for (i, &x) in v.iter().enumerate() {
        sums[i % k] += (x as f64) * (x as f64);
    }
    let scale: Vec<f32> = g.iter().zip(&sums).map(|(&gi, &s)| gi / s.sqrt() as f32).collect();
    for (i, x) in v.iter_mut().enumerate() {
        *x *= scale[i % k];
    }
}
