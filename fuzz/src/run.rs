//! One function per fuzz target: the public entry point a user's bytes reach, stopping at the
//! host-side checks (no GPU device is opened). `run` returns the entry point's error as text; a
//! panic is the finding. Shared by the fuzz targets and the stable replay test, so it uses only
//! the library and its own dependencies (serde_json, zip).

use std::io::{Cursor, Write};
use std::path::Path;

use bark_wgpu::audio::decode_audio;
use bark_wgpu::generate::check_recording;
use bark_wgpu::model::quantizer::Quantizer;
use bark_wgpu::model::{inference_tensors, BarkConfig};
use bark_wgpu::serve::{check_speech_body, parse_voice_map};
use bark_wgpu::text::TextTokenizer;
use bark_wgpu::voice::npy::parse_npy;
use bark_wgpu::voice::VoicePrompt;
use bark_wgpu::weights::{WeightSource, Weights};

/// Every target, by the name of its folder under `fuzz/regressions/`.
pub const TARGETS: [&str; 11] = [
    "checkpoint",
    "safetensors_table",
    "torch_pickle",
    "config",
    "voice_npz",
    "npy",
    "quantizer",
    "audio",
    "tokenizer",
    "speech_body",
    "voice_map",
];

/// Tensors larger than this are not converted (the loaders accept them; converting them only
/// slows the fuzzer down).
const MAX_CONVERT: usize = 1 << 20;

/// Runs `target` on `data`: Ok, or the entry point's error as text.
pub fn run(target: &str, data: &[u8]) -> Result<(), String> {
    match target {
        "checkpoint" => checkpoint(data.to_vec()),
        "safetensors_table" => checkpoint(safetensors_from(data)),
        "torch_pickle" => checkpoint(torch_zip_from(data)),
        "config" => config(data),
        "voice_npz" => VoicePrompt::from_npz_bytes("voice.npz", data).map(drop).map_err(text),
        "npy" => parse_npy(data).map(drop),
        "quantizer" => quantizer(data.to_vec()),
        "audio" => audio(data),
        "tokenizer" => tokenizer(data),
        "speech_body" => check_speech_body(data, 4096),
        "voice_map" => parse_voice_map(&String::from_utf8_lossy(data)).map(drop),
        other => panic!("no fuzz target `{other}`"),
    }
}

fn text(e: bark_wgpu::Error) -> String {
    e.to_string()
}

/// A checkpoint's tensor table, its Bark view (weight norm, tied heads), and every small
/// tensor converted to f32 as the upload would.
fn checkpoint(bytes: Vec<u8>) -> Result<(), String> {
    let weights =
        Weights::from_source(WeightSource::from_bytes("model.safetensors", bytes).map_err(text)?).map_err(text)?;
    let names: Vec<String> = weights.names().map(str::to_string).collect();
    let mut first_err = None;
    for name in &names {
        let info = weights.info(name).map_err(text)?;
        if info.numel() <= MAX_CONVERT {
            if let Err(e) = weights.to_f32(name) {
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn config(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let config = BarkConfig::from_json(text, Path::new("config.json")).map_err(self::text)?;
    // The tensor list a checkpoint is checked against follows from the config's sizes.
    let _ = inference_tensors(&config);
    Ok(())
}

fn quantizer(bytes: Vec<u8>) -> Result<(), String> {
    let weights =
        Weights::from_source(WeightSource::from_bytes("quantizer.pth", bytes).map_err(text)?).map_err(text)?;
    Quantizer::check_weights(&weights).map(drop).map_err(text)
}

/// The first byte picks the extension hint (none, wav, flac, mp3, ogg, m4a); the rest is the file.
fn audio(data: &[u8]) -> Result<(), String> {
    let [hint, file @ ..] = data else { return Err("empty input".into()) };
    let ext = [None, Some("wav"), Some("flac"), Some("mp3"), Some("ogg"), Some("m4a")][*hint as usize % 6];
    let audio = decode_audio(file.to_vec(), ext)?;
    check_recording(&audio.mono(), audio.sample_rate).map_err(text)
}

fn tokenizer(data: &[u8]) -> Result<(), String> {
    let tok = TextTokenizer::from_bytes("tokenizer.json", data).map_err(text)?;
    tok.encode("Hello, my name is Suno. [laughs] And, uh — I like pizza ♪").map(drop).map_err(text)
}

/// Draws values from the front of the fuzzer's bytes (zeros once they run out).
struct Draw<'a>(&'a [u8]);

impl Draw<'_> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (self.u32() as u64) | ((self.u32() as u64) << 32)
    }
    /// A dimension: mostly small, sometimes 0 or huge.
    fn dim(&mut self) -> u64 {
        match self.u8() {
            250 => self.u64(),
            251 => self.u32() as u64,
            b => (b % 9) as u64,
        }
    }
    fn rest(&mut self) -> &[u8] {
        std::mem::take(&mut self.0)
    }
}

/// Names the Bark view treats specially (weight norm pairs, tied heads, masks), and any other.
const NAMES: [&str; 10] = [
    "codec_model.decoder.layers.0.conv.weight_g",
    "codec_model.decoder.layers.0.conv.weight_v",
    "hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original0",
    "hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    "fine_acoustics.lm_heads.0.weight",
    "fine_acoustics.input_embeds_layers.1.weight",
    "semantic.layers.0.attn.bias",
    "lstm.weight_ih_l0",
    "fc.weight",
    "__metadata__",
];
const DTYPES: [&str; 14] =
    ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "U32", "F8_E4M3", "C64", "Q4"];

/// A safetensors file whose table is drawn from `data`: up to 7 tensors with names, dtypes and
/// shapes drawn, offsets that tile the data unless a flag skews them, and a header length that
/// a flag may also skew.
pub fn safetensors_from(data: &[u8]) -> Vec<u8> {
    let mut d = Draw(data);
    let count = d.u8() % 8;
    let mut table = serde_json::Map::new();
    let mut offset = 0u64;
    for i in 0..count {
        let pick = d.u8() as usize;
        let name = if pick < NAMES.len() * 20 { NAMES[pick % NAMES.len()].to_string() } else { format!("t{i}") };
        let dtype = DTYPES[d.u8() as usize % DTYPES.len()];
        let rank = d.u8() % 5;
        let shape: Vec<u64> = (0..rank).map(|_| d.dim()).collect();
        let size = match dtype {
            "F64" | "I64" | "C64" => 8u64,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" => 2,
            _ => 1,
        };
        let bytes = shape.iter().try_fold(size, |a, &s| a.checked_mul(s)).unwrap_or(u64::MAX);
        let (begin, end) = match d.u8() {
            0 => (d.u64(), d.u64()),
            1 => (offset, offset.wrapping_add(bytes).wrapping_add(1)),
            _ => (offset, offset.saturating_add(bytes)),
        };
        offset = end;
        table.insert(name, serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [begin, end] }));
    }
    let header = serde_json::Value::Object(table).to_string().into_bytes();
    let header_len = match d.u8() {
        0 => d.u64(),
        _ => header.len() as u64,
    };
    let data_len = (offset as usize).min(1 << 16);
    let mut file = header_len.to_le_bytes().to_vec();
    file.extend_from_slice(&header);
    let rest = d.rest();
    file.extend((0..data_len).map(|i| rest.get(i).copied().unwrap_or(0)));
    file
}

/// A torch.save zip (stored entries) around a drawn pickle: `[n][(key u8, len u32 LE) x n]
/// [byteorder: 0 none, 1 little, 2+ big][data.pkl ...]`; storage `key` is `len` zero bytes
/// (at most 1 MiB).
pub fn torch_zip_from(data: &[u8]) -> Vec<u8> {
    let mut d = Draw(data);
    let storages: Vec<(u8, u32)> = (0..d.u8() % 16).map(|_| (d.u8(), d.u32().min(1 << 20))).collect();
    let byteorder = d.u8();
    let pickle = d.rest();
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut entry = |name: &str, bytes: &[u8]| {
        zip.start_file(name, stored).and_then(|_| zip.write_all(bytes).map_err(Into::into)).is_ok()
    };
    let _ = entry("archive/data.pkl", pickle);
    if byteorder > 0 {
        let _ = entry("archive/byteorder", if byteorder == 1 { b"little" } else { b"big" });
    }
    for (key, len) in storages {
        let _ = entry(&format!("archive/data/{key}"), &vec![0u8; len as usize]);
    }
    zip.finish().map(Cursor::into_inner).unwrap_or_default()
}
