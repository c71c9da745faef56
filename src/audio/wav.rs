//! WAV files written through `hound`, atomically, as 32-bit float (what the original Bark README
//! writes) or 16-bit PCM; read back by the one decoder of every format (decode.rs).

use std::path::Path;

use super::decode::read_audio;
use crate::atomic_file::write_atomically;
use crate::{Error, Result};

/// The sample encoding of a written WAV.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WavFormat {
    /// IEEE float, 32 bits: lossless for the decoder's output.
    #[default]
    Float32,
    /// Signed 16-bit PCM: samples scaled by 32768, rounded and clamped to the i16 range.
    Pcm16,
}

/// One sample as signed 16-bit PCM: scaled by 32768, rounded, clamped to the i16 range.
pub fn pcm16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Samples as raw 16-bit little-endian PCM bytes (what `say --stream` writes).
pub fn pcm16_le_bytes(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|&s| pcm16(s).to_le_bytes()).collect()
}

/// Writes mono `samples` to `path`. Non-finite samples are refused (they are a bug upstream, and
/// PCM cannot hold them). The file appears complete or not at all.
pub fn write_wav(path: impl AsRef<Path>, samples: &[f32], sample_rate: u32, format: WavFormat) -> Result<()> {
    let path = path.as_ref();
    check_samples(samples, sample_rate).map_err(|message| Error::File { path: path.into(), message })?;
    write_atomically(path, |out| encode(out, samples, sample_rate, format))
}

/// [`write_wav`] into memory: a whole WAV file's bytes (what a browser offers for download).
pub fn wav_bytes(samples: &[f32], sample_rate: u32, format: WavFormat) -> Result<Vec<u8>> {
    check_samples(samples, sample_rate).map_err(Error::Invalid)?;
    let mut out = std::io::Cursor::new(Vec::new());
    encode(&mut out, samples, sample_rate, format).map_err(Error::Invalid)?;
    Ok(out.into_inner())
}

fn check_samples(samples: &[f32], sample_rate: u32) -> std::result::Result<(), String> {
    if sample_rate == 0 {
        return Err("cannot write a WAV with sample rate 0".into());
    }
    match samples.iter().position(|s| !s.is_finite()) {
        Some(i) => Err(format!("cannot write sample {i}: it is {}", samples[i])),
        None => Ok(()),
    }
}

fn encode<W: std::io::Write + std::io::Seek>(
    out: W,
    samples: &[f32],
    sample_rate: u32,
    format: WavFormat,
) -> std::result::Result<(), String> {
    let (bits_per_sample, sample_format) = match format {
        WavFormat::Float32 => (32, hound::SampleFormat::Float),
        WavFormat::Pcm16 => (16, hound::SampleFormat::Int),
    };
    let spec = hound::WavSpec { channels: 1, sample_rate, bits_per_sample, sample_format };
    let mut writer = hound::WavWriter::new(out, spec).map_err(|e| e.to_string())?;
    for &s in samples {
        match format {
            WavFormat::Float32 => writer.write_sample(s),
            WavFormat::Pcm16 => writer.write_sample(pcm16(s)),
        }
        .map_err(|e| e.to_string())?;
    }
    writer.finalize().map_err(|e| e.to_string())
}

/// Reads a WAV (or any recording [`read_audio`] decodes) as mono f32, the channels averaged,
/// and its sample rate.
pub fn read_wav(path: impl AsRef<Path>) -> Result<(Vec<f32>, u32)> {
    let audio = read_audio(path)?;
    Ok((audio.mono(), audio.sample_rate))
}
