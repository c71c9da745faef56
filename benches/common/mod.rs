//! What the benches share: the model sizes of `benches/configs.json` (also read by
//! `scripts/bench_transformers.py`, so both sides bench the same models) and a random checkpoint
//! of those sizes written to a temporary directory (no download).
#![allow(dead_code)] // each bench uses a different part

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// `benches/configs.json`: one source of truth for the sizes.
const CONFIGS: &str = include_str!("../configs.json");
/// The fixture's tokenizer (Bark's BERT vocabulary).
const TOKENIZER: &[u8] = include_bytes!("../../tests/fixtures/tiny/tokenizer.json");

/// One configuration of `configs.json`.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    pub name: String,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    /// transformers' `codec_config` (`{}`: EnCodec 24 kHz).
    pub codec: Value,
    /// Default semantic-token budget.
    pub semantic_tokens: usize,
    /// `vocab` of configs.json (shared by every configuration).
    pub vocab: Value,
}

impl ModelSpec {
    /// `tiny`, `small` or `large`; `None` for an unknown name.
    pub fn named(name: &str) -> Option<ModelSpec> {
        let all: Value = serde_json::from_str(CONFIGS).expect("benches/configs.json is valid JSON");
        let m = all["models"].get(name)?;
        let size = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("configs.json: models.{name}.{k}")) as usize;
        Some(ModelSpec {
            name: name.to_string(),
            hidden: size("hidden_size"),
            layers: size("num_layers"),
            heads: size("num_heads"),
            codec: m["codec"].clone(),
            semantic_tokens: size("semantic_tokens"),
            vocab: all["vocab"].clone(),
        })
    }

    pub fn vocab(&self, key: &str) -> usize {
        self.vocab[key].as_u64().unwrap_or_else(|| panic!("configs.json: vocab.{key}")) as usize
    }

    /// A transformers-style Bark `config.json` of these sizes (no biases, as Bark's checkpoints).
    pub fn config_json(&self) -> String {
        let sub = |vin: usize, vout: usize| {
            json!({
                "hidden_size": self.hidden, "num_layers": self.layers, "num_heads": self.heads,
                "block_size": self.vocab("block_size"), "input_vocab_size": vin,
                "output_vocab_size": vout, "bias": false
            })
        };
        let mut fine = sub(self.vocab("fine"), self.vocab("fine"));
        fine["n_codes_total"] = json!(self.vocab("n_codes_total"));
        fine["n_codes_given"] = json!(self.vocab("n_codes_given"));
        json!({
            "semantic_config": sub(self.vocab("semantic_input"), self.vocab("semantic_output")),
            "coarse_acoustics_config": sub(self.vocab("coarse"), self.vocab("coarse")),
            "fine_acoustics_config": fine,
            "codec_config": self.codec,
        })
        .to_string()
    }
}

/// A temporary model directory, removed on drop.
pub struct TempModelDir {
    pub path: PathBuf,
    /// Bytes of the written `model.safetensors`.
    pub checkpoint_bytes: u64,
    pub tensors: usize,
}

impl Drop for TempModelDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.path).ok();
    }
}

/// Writes `config.json`, a random f32 `model.safetensors` of every tensor inference reads and
/// (`with_tokenizer`) the test fixture's `tokenizer.json` to a fresh temporary directory.
pub fn random_model_dir(spec: &ModelSpec, tag: &str, with_tokenizer: bool) -> std::io::Result<TempModelDir> {
    let path = std::env::temp_dir().join(format!("bark-wgpu-{tag}-{}-{}", spec.name, std::process::id()));
    std::fs::create_dir_all(&path)?;
    let mut dir = TempModelDir { path, checkpoint_bytes: 0, tensors: 0 };
    std::fs::write(dir.path.join("config.json"), spec.config_json())?;
    let cfg = bark_wgpu::model::BarkConfig::load(dir.path.join("config.json"))
        .map_err(|e| std::io::Error::other(format!("config.json: {e}")))?;
    let tensors = bark_wgpu::model::inference_tensors(&cfg);
    dir.tensors = tensors.len();
    dir.checkpoint_bytes = write_checkpoint(&dir.path.join("model.safetensors"), &tensors)?;
    if with_tokenizer {
        // Embedded, so a bench binary carried to another machine (a GPU box) needs no checkout.
        std::fs::write(dir.path.join("tokenizer.json"), TOKENIZER)?;
    }
    Ok(dir)
}

/// The JSON header of a safetensors file of f32 `tensors` in order (padded to 8 bytes), and
/// the bytes of data that follow it.
pub fn safetensors_header(tensors: &[(String, Vec<usize>)]) -> (String, u64) {
    let mut header = String::from("{");
    let mut offset = 0u64;
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let bytes = shape.iter().product::<usize>() as u64 * 4;
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header += &format!(
            "{}\"{name}\": {{\"dtype\": \"F32\", \"shape\": [{}], \"data_offsets\": [{offset}, {}]}}",
            if i > 0 { ", " } else { "" },
            dims.join(", "),
            offset + bytes
        );
        offset += bytes;
    }
    header += "}";
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    (header, offset)
}

/// Streams a safetensors file of f32 tensors with small pseudo-random values.
pub fn write_checkpoint(path: &Path, tensors: &[(String, Vec<usize>)]) -> std::io::Result<u64> {
    let (header, offset) = safetensors_header(tensors);
    let mut f = std::io::BufWriter::with_capacity(1 << 22, std::fs::File::create(path)?);
    f.write_all(&(header.len() as u64).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for (_, shape) in tensors {
        let mut chunk = Vec::with_capacity(1 << 20);
        for _ in 0..shape.iter().product::<usize>() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04;
            chunk.extend_from_slice(&v.to_le_bytes());
            if chunk.len() >= 1 << 20 {
                f.write_all(&chunk)?;
                chunk.clear();
            }
        }
        f.write_all(&chunk)?;
    }
    f.flush()?;
    Ok(8 + header.len() as u64 + offset)
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// Where a bench writes its JSON: `$BENCH_JSON`, else `$CARGO_TARGET_DIR/<file>` (default `target/`).
pub fn json_path(file: &str) -> PathBuf {
    if let Ok(p) = std::env::var("BENCH_JSON") {
        return PathBuf::from(p);
    }
    PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into())).join(file)
}

/// How a tensor of a random checkpoint is drawn (tests/gpu/hubert_sizes.rs draws by it; the
/// benches draw every tensor alike).
#[derive(Clone, Copy)]
pub enum Init {
    /// Normal with std 1 / sqrt(fan-in), fan-in = the product of all dimensions but the first.
    Fan,
    /// 1 + 0.2 * normal: norm weights.
    One,
    /// 0.1 * normal: biases.
    Bias,
    /// 0.5 + uniform [0, 1): weight-norm magnitudes.
    Gain,
    /// 4 / sqrt(fan-in) * normal: the quantizer head, wide logits so the best class leads clearly.
    Head,
}

/// hubert-base-ls960's tensors up to encoder layer `layers` (transformers' HubertModel names;
/// the positional conv weight-normed as `parametrizations.weight.original0/1`).
pub fn hubert_base_tensors(layers: usize) -> Vec<(String, Vec<usize>, Init)> {
    use Init::*;
    let (h, ff, c) = (768, 3072, 512);
    let kernels = [10, 3, 3, 3, 3, 2, 2];
    let mut t: Vec<(String, Vec<usize>, Init)> = Vec::new();
    let mut add = |name: String, shape: &[usize], init| t.push((name, shape.to_vec(), init));
    for (i, k) in kernels.into_iter().enumerate() {
        add(format!("feature_extractor.conv_layers.{i}.conv.weight"), &[c, if i == 0 { 1 } else { c }, k], Fan);
    }
    add("feature_extractor.conv_layers.0.layer_norm.weight".into(), &[c], One);
    add("feature_extractor.conv_layers.0.layer_norm.bias".into(), &[c], Bias);
    add("feature_projection.layer_norm.weight".into(), &[c], One);
    add("feature_projection.layer_norm.bias".into(), &[c], Bias);
    add("feature_projection.projection.weight".into(), &[h, c], Fan);
    add("feature_projection.projection.bias".into(), &[h], Bias);
    add("encoder.pos_conv_embed.conv.parametrizations.weight.original0".into(), &[1, 1, 128], Gain);
    add("encoder.pos_conv_embed.conv.parametrizations.weight.original1".into(), &[h, h / 16, 128], Fan);
    add("encoder.pos_conv_embed.conv.bias".into(), &[h], Bias);
    add("encoder.layer_norm.weight".into(), &[h], One);
    add("encoder.layer_norm.bias".into(), &[h], Bias);
    for l in 0..layers {
        let p = format!("encoder.layers.{l}");
        for (name, shape) in [
            ("attention.q_proj", [h, h]),
            ("attention.k_proj", [h, h]),
            ("attention.v_proj", [h, h]),
            ("attention.out_proj", [h, h]),
            ("feed_forward.intermediate_dense", [ff, h]),
            ("feed_forward.output_dense", [h, ff]),
        ] {
            add(format!("{p}.{name}.weight"), &shape, Fan);
            add(format!("{p}.{name}.bias"), &shape[..1], Bias);
        }
        for norm in ["layer_norm", "final_layer_norm"] {
            add(format!("{p}.{norm}.weight"), &[h], One);
            add(format!("{p}.{norm}.bias"), &[h], Bias);
        }
    }
    t
}

/// GitMylo's quantizer (version 0): a 2-layer LSTM of `hidden` over features of `input`, and
/// a head to `classes`, under its state-dict names.
pub fn quantizer_tensors(input: usize, hidden: usize, classes: usize) -> Vec<(String, Vec<usize>, Init)> {
    let mut t = Vec::new();
    for l in 0..2 {
        let width = if l == 0 { input } else { hidden };
        t.push((format!("lstm.weight_ih_l{l}"), vec![4 * hidden, width], Init::Fan));
        t.push((format!("lstm.weight_hh_l{l}"), vec![4 * hidden, hidden], Init::Fan));
        t.push((format!("lstm.bias_ih_l{l}"), vec![4 * hidden], Init::Bias));
        t.push((format!("lstm.bias_hh_l{l}"), vec![4 * hidden], Init::Bias));
    }
    t.push(("fc.weight".into(), vec![classes, hidden], Init::Head));
    t.push(("fc.bias".into(), vec![classes], Init::Bias));
    t
}

/// Names and shapes of `tensors` (what a checkpoint writer takes).
pub fn shapes(tensors: &[(String, Vec<usize>, Init)]) -> Vec<(String, Vec<usize>)> {
    tensors.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect()
}
