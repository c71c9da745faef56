//! `config.json` of a Hugging Face Bark checkpoint (transformers' BarkConfig), typed.
//!
//! A field the file leaves out takes transformers' library default, exactly as
//! `BarkConfig.from_pretrained` does (save_pretrained writes every field, so a real file names them
//! all), and so does a sub-config left out or `null` (transformers builds it from `{}`). Keys this
//! reader does not use (`torch_dtype` or `dtype`, `transformers_version`, the generation keys
//! transformers 4.x writes into every sub-config, ...) are ignored, as they change no weight. A
//! value of the wrong type and a value no model can have (zero sizes, a hidden size the heads do
//! not divide, ...) are errors naming the file and the field.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// Bound on every size, so that products of sizes (tensor shapes) cannot overflow.
const MAX_SIZE: usize = 1 << 24;

// What a GPT of Bark may claim, checked before anything is allocated. Each is far above bark
// large (hidden 1024, 24 layers, 16 heads, block 1024, vocabularies 129600, 10048, 12096 and
// 1056), yet low enough that a buffer sized from them cannot overflow or ask for terabytes.
const MAX_HIDDEN: usize = 16_384;
const MAX_LAYERS: usize = 256;
const MAX_HEADS: usize = 256;
const MAX_BLOCK: usize = 16_384;
const MAX_VOCAB: usize = 1 << 20;
/// Weights in one embedding or head table (bark large's largest: 129600 x 1024, about 2^27).
const MAX_TABLE: u64 = 1 << 30;
/// Codebooks the fine model may have: EnCodec 24 kHz has 32 quantizers (Bark uses 8).
const MAX_CODEBOOKS: usize = 32;
// The codec: EnCodec 24 kHz has hidden 128, 32 filters, 2 LSTM layers, 1 residual layer, kernels
// of 7 and 3, 1024 codes per book, 1 channel at 24000 Hz; 48 kHz has 2 channels.
const MAX_CODEC_HIDDEN: usize = 4096;
const MAX_FILTERS: usize = 1024;
const MAX_CODEC_LAYERS: usize = 16;
const MAX_KERNEL: usize = 64;
const MAX_CODEBOOK_SIZE: usize = 1 << 16;
const MAX_SAMPLING_RATE: usize = 384_000;
const MAX_CHANNELS: usize = 8;
const MAX_QUANTIZERS: usize = 1024;

/// `v` within 1..=`max`, else an error naming `field` and the limit.
fn in_range(field: &str, v: usize, max: usize) -> std::result::Result<(), String> {
    if v == 0 || v > max {
        return Err(format!("{field} is {v} (want 1..={max})"));
    }
    Ok(())
}

/// A causal (semantic, coarse) or non-causal (fine) GPT of Bark.
#[derive(Clone, Debug, PartialEq)]
pub struct SubModelConfig {
    pub block_size: usize,
    pub input_vocab_size: usize,
    pub output_vocab_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub hidden_size: usize,
    /// Linear layers (and, in the causal models, layer norms) have biases.
    pub bias: bool,
}

impl Default for SubModelConfig {
    /// transformers' BarkSubModelConfig() defaults (not a published checkpoint).
    fn default() -> Self {
        SubModelConfig {
            block_size: 1024,
            input_vocab_size: 10_048,
            output_vocab_size: 10_048,
            num_layers: 12,
            num_heads: 12,
            hidden_size: 768,
            bias: true,
        }
    }
}

impl SubModelConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads.max(1)
    }
    fn validate(&self) -> std::result::Result<(), String> {
        for (field, v, max) in [
            ("block_size", self.block_size, MAX_BLOCK),
            ("input_vocab_size", self.input_vocab_size, MAX_VOCAB),
            ("output_vocab_size", self.output_vocab_size, MAX_VOCAB),
            ("num_layers", self.num_layers, MAX_LAYERS),
            ("num_heads", self.num_heads, MAX_HEADS),
            ("hidden_size", self.hidden_size, MAX_HIDDEN),
        ] {
            in_range(field, v, max)?;
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(format!("hidden_size {} is not divisible by num_heads {}", self.hidden_size, self.num_heads));
        }
        let vocab = self.input_vocab_size.max(self.output_vocab_size);
        if vocab as u64 * self.hidden_size as u64 > MAX_TABLE {
            return Err(format!(
                "a vocabulary of {vocab} by hidden_size {} is over {MAX_TABLE} weights in one table",
                self.hidden_size
            ));
        }
        Ok(())
    }
}

/// The fine acoustics model: a non-causal GPT with one embedding per codebook and one head per
/// predicted codebook.
#[derive(Clone, Debug, PartialEq)]
pub struct FineConfig {
    pub model: SubModelConfig,
    /// Codebooks in total (embeddings), 8 for Bark.
    pub n_codes_total: usize,
    /// Codebooks given to it (the heads predict the rest), 1 for Bark.
    pub n_codes_given: usize,
}

impl FineConfig {
    /// Heads, one per predicted codebook (`lm_heads.0` predicts codebook `n_codes_given`).
    pub fn n_heads(&self) -> usize {
        self.n_codes_total - self.n_codes_given
    }
    fn validate(&self) -> std::result::Result<(), String> {
        self.model.validate()?;
        in_range("n_codes_total", self.n_codes_total, MAX_CODEBOOKS)?;
        if self.n_codes_given == 0 || self.n_codes_given >= self.n_codes_total {
            return Err(format!(
                "n_codes_given {} must be at least 1 and below n_codes_total {}",
                self.n_codes_given, self.n_codes_total
            ));
        }
        Ok(())
    }
}

/// transformers' EncodecConfig: the fields that decide the codec's layers and its bit rates.
#[derive(Clone, Debug, PartialEq)]
pub struct CodecConfig {
    pub target_bandwidths: Vec<f64>,
    pub sampling_rate: usize,
    pub audio_channels: usize,
    pub normalize: bool,
    pub chunk_length_s: Option<f64>,
    pub overlap: Option<f64>,
    /// Channels of the latent (and of each codebook entry when codebook_dim is None).
    pub hidden_size: usize,
    pub num_filters: usize,
    pub num_residual_layers: usize,
    pub upsampling_ratios: Vec<usize>,
    pub norm_type: String,
    pub kernel_size: usize,
    pub last_kernel_size: usize,
    pub residual_kernel_size: usize,
    pub dilation_growth_rate: usize,
    pub use_causal_conv: bool,
    pub pad_mode: String,
    pub compress: usize,
    pub num_lstm_layers: usize,
    pub trim_right_ratio: f64,
    pub codebook_size: usize,
    pub codebook_dim: Option<usize>,
    pub use_conv_shortcut: bool,
}

impl Default for CodecConfig {
    /// transformers' EncodecConfig() defaults, which are EnCodec 24 kHz (facebook/encodec_24khz).
    fn default() -> Self {
        CodecConfig {
            target_bandwidths: vec![1.5, 3.0, 6.0, 12.0, 24.0],
            sampling_rate: 24_000,
            audio_channels: 1,
            normalize: false,
            chunk_length_s: None,
            overlap: None,
            hidden_size: 128,
            num_filters: 32,
            num_residual_layers: 1,
            upsampling_ratios: vec![8, 5, 4, 2],
            norm_type: "weight_norm".into(),
            kernel_size: 7,
            last_kernel_size: 7,
            residual_kernel_size: 3,
            dilation_growth_rate: 2,
            use_causal_conv: true,
            pad_mode: "reflect".into(),
            compress: 2,
            num_lstm_layers: 2,
            trim_right_ratio: 1.0,
            codebook_size: 1024,
            codebook_dim: None,
            use_conv_shortcut: true,
        }
    }
}

impl CodecConfig {
    /// Audio samples per code frame (the product of the upsampling ratios; 320 at 24 kHz).
    pub fn hop_length(&self) -> usize {
        self.upsampling_ratios.iter().product()
    }
    /// Code frames per second, rounded up as transformers does (75 at 24 kHz).
    pub fn frame_rate(&self) -> usize {
        self.sampling_rate.div_ceil(self.hop_length())
    }
    pub fn codebook_dim(&self) -> usize {
        self.codebook_dim.unwrap_or(self.hidden_size)
    }
    /// Bits per code: ceil(log2(codebook_size)).
    pub fn codebook_nbits(&self) -> usize {
        self.codebook_size.next_power_of_two().trailing_zeros() as usize
    }
    /// Quantizers the checkpoint has (for the largest target bandwidth; 32 for EnCodec 24 kHz).
    pub fn num_quantizers(&self) -> usize {
        let max_bw = self.target_bandwidths.iter().copied().fold(0.0, f64::max);
        self.quantizers_for_bandwidth(max_bw)
    }
    /// Quantizers used at `kbps` (8 at 6 kbps, the rate Bark decodes at).
    pub fn quantizers_for_bandwidth(&self, kbps: f64) -> usize {
        let per_quantizer = (self.frame_rate() * self.codebook_nbits()) as f64;
        if per_quantizer <= 0.0 {
            return 0;
        }
        ((1000.0 * kbps) / per_quantizer).floor().max(0.0) as usize
    }
    /// The decoder's channel count after its first convolution (num_filters * 2^len(ratios)).
    pub fn decoder_channels(&self) -> usize {
        self.num_filters << self.upsampling_ratios.len()
    }

    fn validate(&self) -> std::result::Result<(), String> {
        for (field, v, max) in [
            ("sampling_rate", self.sampling_rate, MAX_SAMPLING_RATE),
            ("audio_channels", self.audio_channels, MAX_CHANNELS),
            ("hidden_size", self.hidden_size, MAX_CODEC_HIDDEN),
            ("num_filters", self.num_filters, MAX_FILTERS),
            ("kernel_size", self.kernel_size, MAX_KERNEL),
            ("last_kernel_size", self.last_kernel_size, MAX_KERNEL),
            ("residual_kernel_size", self.residual_kernel_size, MAX_KERNEL),
            ("dilation_growth_rate", self.dilation_growth_rate, MAX_KERNEL),
            ("compress", self.compress, MAX_KERNEL),
            ("codebook_size", self.codebook_size, MAX_CODEBOOK_SIZE),
            ("codebook_dim", self.codebook_dim(), MAX_CODEC_HIDDEN),
        ] {
            in_range(field, v, max)?;
        }
        for (field, v) in [("num_residual_layers", self.num_residual_layers), ("num_lstm_layers", self.num_lstm_layers)]
        {
            if v > MAX_CODEC_LAYERS {
                return Err(format!("{field} is {v} (want at most {MAX_CODEC_LAYERS})"));
            }
        }

        let ratios = &self.upsampling_ratios;
        if ratios.is_empty() || ratios.len() > 8 || ratios.iter().any(|&r| r == 0 || r > 1024) {
            return Err(format!("upsampling_ratios {ratios:?} must be 1 to 8 values in 1..=1024"));
        }
        // The hop (their product) is samples per code frame: 320 at 24 kHz.
        if ratios.iter().try_fold(1usize, |p, &r| p.checked_mul(r)).is_none_or(|hop| hop > MAX_SAMPLING_RATE) {
            return Err(format!("upsampling_ratios {ratios:?} multiply to over {MAX_SAMPLING_RATE} samples per frame"));
        }
        if self.num_filters << ratios.len() > MAX_SIZE {
            return Err(format!("num_filters {} gives too many decoder channels", self.num_filters));
        }
        if self.codebook_dim() != self.hidden_size {
            return Err(format!(
                "codebook_dim {} differs from hidden_size {} (the decoder takes the codebook vectors as is)",
                self.codebook_dim(),
                self.hidden_size
            ));
        }
        if self.norm_type != "weight_norm" {
            return Err(format!("norm_type `{}` is not supported (only weight_norm)", self.norm_type));
        }
        if self.target_bandwidths.is_empty() {
            return Err("target_bandwidths is empty".into());
        }
        if self.target_bandwidths.iter().any(|b| !b.is_finite() || *b <= 0.0) {
            return Err(format!("target_bandwidths {:?} must be positive kbps", self.target_bandwidths));
        }
        if self.num_quantizers() > MAX_QUANTIZERS {
            return Err(format!(
                "target_bandwidths {:?} give {} quantizers (want at most {MAX_QUANTIZERS})",
                self.target_bandwidths,
                self.num_quantizers()
            ));
        }
        Ok(())
    }
}

/// The whole checkpoint's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct BarkConfig {
    pub semantic_config: SubModelConfig,
    pub coarse_acoustics_config: SubModelConfig,
    pub fine_acoustics_config: FineConfig,
    pub codec_config: CodecConfig,
}

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::File { path: path.to_path_buf(), message: message.into() }
}

/// One sub-config object of the file; reads fields one by one so an error can name the field.
struct Section<'a> {
    path: &'a Path,
    key: &'a str,
    obj: &'a Map<String, Value>,
}

/// What a sub-config left out or `null` reads as: every field at its default.
static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'a> Section<'a> {
    fn new(path: &'a Path, root: &'a Map<String, Value>, key: &'a str) -> Result<Section<'a>> {
        let obj = match root.get(key) {
            None | Some(Value::Null) => &*EMPTY,
            Some(value) => value.as_object().ok_or_else(|| err(path, format!("`{key}` is not an object")))?,
        };
        Ok(Section { path, key, obj })
    }
    /// `field` (or the first of `aliases` present, transformers' attribute_map names), else `default`.
    fn get<T: DeserializeOwned>(&self, field: &str, aliases: &[&str], default: T) -> Result<T> {
        let found = std::iter::once(&field).chain(aliases).find_map(|k| self.obj.get(*k).map(|v| (*k, v)));
        match found {
            None => Ok(default),
            Some((k, v)) => {
                T::deserialize(v).map_err(|e| err(self.path, format!("`{}.{k}`: {e} (found {v})", self.key)))
            }
        }
    }

    fn sub_model(&self) -> Result<SubModelConfig> {
        let d = SubModelConfig::default();
        Ok(SubModelConfig {
            block_size: self.get("block_size", &["window_size"], d.block_size)?,
            input_vocab_size: self.get("input_vocab_size", &["vocab_size"], d.input_vocab_size)?,
            output_vocab_size: self.get("output_vocab_size", &[], d.output_vocab_size)?,
            num_layers: self.get("num_layers", &["num_hidden_layers"], d.num_layers)?,
            num_heads: self.get("num_heads", &["num_attention_heads"], d.num_heads)?,
            hidden_size: self.get("hidden_size", &[], d.hidden_size)?,
            bias: self.get("bias", &[], d.bias)?,
        })
    }

    fn fine(&self) -> Result<FineConfig> {
        Ok(FineConfig {
            model: self.sub_model()?,
            n_codes_total: self.get("n_codes_total", &[], 8)?,
            n_codes_given: self.get("n_codes_given", &[], 1)?,
        })
    }

    fn codec(&self) -> Result<CodecConfig> {
        let d = CodecConfig::default();
        Ok(CodecConfig {
            target_bandwidths: self.get("target_bandwidths", &[], d.target_bandwidths)?,
            sampling_rate: self.get("sampling_rate", &[], d.sampling_rate)?,
            audio_channels: self.get("audio_channels", &[], d.audio_channels)?,
            normalize: self.get("normalize", &[], d.normalize)?,
            chunk_length_s: self.get("chunk_length_s", &[], d.chunk_length_s)?,
            overlap: self.get("overlap", &[], d.overlap)?,
            hidden_size: self.get("hidden_size", &[], d.hidden_size)?,
            num_filters: self.get("num_filters", &[], d.num_filters)?,
            num_residual_layers: self.get("num_residual_layers", &[], d.num_residual_layers)?,
            upsampling_ratios: self.get("upsampling_ratios", &[], d.upsampling_ratios)?,
            norm_type: self.get("norm_type", &[], d.norm_type)?,
            kernel_size: self.get("kernel_size", &[], d.kernel_size)?,
            last_kernel_size: self.get("last_kernel_size", &[], d.last_kernel_size)?,
            residual_kernel_size: self.get("residual_kernel_size", &[], d.residual_kernel_size)?,
            dilation_growth_rate: self.get("dilation_growth_rate", &[], d.dilation_growth_rate)?,
            use_causal_conv: self.get("use_causal_conv", &[], d.use_causal_conv)?,
            pad_mode: self.get("pad_mode", &[], d.pad_mode)?,
            compress: self.get("compress", &[], d.compress)?,
            num_lstm_layers: self.get("num_lstm_layers", &[], d.num_lstm_layers)?,
            trim_right_ratio: self.get("trim_right_ratio", &[], d.trim_right_ratio)?,
            codebook_size: self.get("codebook_size", &[], d.codebook_size)?,
            codebook_dim: self.get("codebook_dim", &[], d.codebook_dim)?,
            use_conv_shortcut: self.get("use_conv_shortcut", &[], d.use_conv_shortcut)?,
        })
    }
}

impl BarkConfig {
    /// Reads `config.json` (a file, or a directory holding one).
    pub fn load(path: impl AsRef<Path>) -> Result<BarkConfig> {
        let path = path.as_ref();
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file).map_err(|e| err(&file, format!("cannot read: {e}")))?;
        Self::from_json(&text, &file)
    }

    /// Parses the JSON text of a config file; `path` only names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<BarkConfig> {
        let root: Value = serde_json::from_str(text).map_err(|e| err(path, format!("invalid JSON: {e}")))?;
        let root = root.as_object().ok_or_else(|| err(path, "the top level is not an object"))?;
        if let Some(t) = root.get("model_type").and_then(|v| v.as_str()) {
            if t != "bark" {
                return Err(err(path, format!("model_type is `{t}`, not `bark`")));
            }
        }
        let config = BarkConfig {
            semantic_config: Section::new(path, root, "semantic_config")?.sub_model()?,
            coarse_acoustics_config: Section::new(path, root, "coarse_acoustics_config")?.sub_model()?,
            fine_acoustics_config: Section::new(path, root, "fine_acoustics_config")?.fine()?,
            codec_config: Section::new(path, root, "codec_config")?.codec()?,
        };
        let checks = [
            ("semantic_config", config.semantic_config.validate()),
            ("coarse_acoustics_config", config.coarse_acoustics_config.validate()),
            ("fine_acoustics_config", config.fine_acoustics_config.validate()),
            ("codec_config", config.codec_config.validate()),
        ];
        for (key, check) in checks {
            check.map_err(|m| err(path, format!("`{key}`: {m}")))?;
        }
        let (fine, codec) = (&config.fine_acoustics_config, &config.codec_config);
        if codec.num_quantizers() < fine.n_codes_total {
            return Err(err(
                path,
                format!(
                    "`codec_config` has {} quantizers but the fine model predicts {} codebooks",
                    codec.num_quantizers(),
                    fine.n_codes_total
                ),
            ));
        }
        Ok(config)
    }
}
