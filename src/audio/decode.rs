//! Recordings in: WAV, FLAC, MP3, Ogg/Vorbis and M4A/AAC decoded by `symphonia` (pure Rust) to
//! one f32 vector per channel, integers scaled so that full scale is 1.0 (as `torchaudio.load`
//! does). Codecs with no decoder here (Opus, ALAC, ...) get a sentence saying how to convert.

use std::io::Cursor;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{self, CodecType, DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as Decode;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::mp4;
use crate::{Error, Result};

/// What the decoder reads, for error messages.
pub const FORMATS: &str = "WAV, FLAC, MP3, Ogg/Vorbis and M4A/AAC (AAC-LC)";

/// How to make a file this decoder reads, for the formats and codecs it does not; `ext` is the
/// file's own (when known) so that the command can be pasted.
fn convert(ext: Option<&str>) -> String {
    let ext = ext.filter(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric())).unwrap_or("opus");
    format!("convert it to WAV first, for example with `ffmpeg -i recording.{ext} recording.wav`")
}

/// A decoded recording: `channels[c][i]` is sample i of channel c.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    pub channels: Vec<Vec<f32>>,
    pub sample_rate: u32,
}

impl Audio {
    /// The mean of the channels, sample by sample (the reference's `wav.mean(0)`).
    pub fn mono(&self) -> Vec<f32> {
        let Some((first, rest)) = self.channels.split_first() else { return Vec::new() };
        if rest.is_empty() {
            return first.clone();
        }
        let n = self.channels.len() as f32;
        (0..first.len()).map(|i| self.channels.iter().map(|c| c[i]).sum::<f32>() / n).collect()
    }

    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
}

/// Reads and decodes the recording at `path` (the format is found from its bytes; the extension
/// is only a hint).
pub fn read_audio(path: impl AsRef<Path>) -> Result<Audio> {
    let path = path.as_ref();
    let fail = |message: String| Error::File { path: path.into(), message };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    let ext = path.extension().and_then(|e| e.to_str());
    decode_audio(bytes, ext).map_err(fail)
}

/// Decodes a recording held in memory (`extension`, e.g. "flac", is a hint). The error is a
/// sentence without the file's name.
pub fn decode_audio(bytes: Vec<u8>, extension: Option<&str>) -> Result<Audio, String> {
    // symphonia 0.5's MP4 reader unwraps on some damaged boxes (esds): a damaged file, which
    // is the user's error to hear about, not a crash.
    std::panic::catch_unwind(AssertUnwindSafe(|| decode(bytes, extension)))
        .unwrap_or_else(|_| Err(format!("cannot be decoded (it is damaged); the formats read are {FORMATS}")))
}

fn decode(bytes: Vec<u8>, extension: Option<&str>) -> Result<Audio, String> {
    let unreadable = |e: Decode| format!("cannot be decoded ({e}); the formats read are {FORMATS}");
    // Browsers' recorders write WebM (Matroska), which symphonia is not built to read here.
    if bytes.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        let convert = convert(extension.or(Some("webm")));
        return Err(format!("is a WebM/Matroska file, which is not read ({FORMATS} are); {convert}"));
    }
    mp4::check_index(&bytes)?;
    let edit = mp4::sound_edit(&bytes);
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes)), MediaSourceStreamOptions::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        // Gapless: the decoders cut the encoder's delay and padding (MP3's LAME header, Ogg's
        // granule positions), as other decoders do, so a file gives the samples encoded.
        .format(
            &hint,
            source,
            &FormatOptions { enable_gapless: true, ..Default::default() },
            &MetadataOptions::default(),
        )
        .map_err(unreadable)?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| format!("holds no audio track ({FORMATS} are read)"))?;
    let (track_id, declared) = (track.id, track.codec_params.n_frames);
    let registry = symphonia::default::get_codecs();
    if registry.get_codec(track.codec_params.codec).is_none() {
        let (codec, convert) = (codec_name(track.codec_params.codec), convert(extension));
        return Err(format!("holds {codec} audio, which has no decoder here ({FORMATS} are read); {convert}"));
    }
    let mut decoder = registry.make(&track.codec_params, &DecoderOptions::default()).map_err(unreadable)?;
    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut sample_rate = track.codec_params.sample_rate.unwrap_or(0);
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(Decode::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(unreadable(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = decoder.decode(&packet).map_err(unreadable)?;
        let spec = *decoded.spec();
        sample_rate = spec.rate;
        let n = spec.channels.count();
        if channels.is_empty() {
            channels = vec![Vec::new(); n];
        } else if channels.len() != n {
            return Err(format!("changes from {} to {n} channels mid-stream", channels.len()));
        }
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        for frame in buf.samples().chunks_exact(n) {
            for (c, &s) in channels.iter_mut().zip(frame) {
                c.push(s);
            }
        }
    }
    let got = channels.first().map_or(0, Vec::len) as u64;
    // A cut file ends early without an error from the demuxer: the header's length tells.
    if let Some(want) = declared.filter(|&want| got < want) {
        return Err(format!("is cut short: its header promises {want} samples per channel, it holds {got}"));
    }
    // Gapless for MP4: the edit list cuts the AAC encoder's priming and padding.
    if let Some((skip, keep)) = edit.map(|e| e.in_samples(sample_rate)) {
        for c in &mut channels {
            c.drain(..skip.min(c.len()));
            c.truncate(keep);
        }
    }
    let got = channels.first().map_or(0, Vec::len) as u64;
    if got == 0 || sample_rate == 0 {
        return Err("holds no audio samples".into());
    }
    Ok(Audio { channels, sample_rate })
}

/// A codec's name for messages, for those symphonia knows of but this build cannot decode.
fn codec_name(codec: CodecType) -> String {
    let name = match codec {
        codecs::CODEC_TYPE_OPUS => "Opus",
        codecs::CODEC_TYPE_ALAC => "ALAC (Apple Lossless)",
        codecs::CODEC_TYPE_SPEEX => "Speex",
        codecs::CODEC_TYPE_EAC3 => "E-AC-3",
        codecs::CODEC_TYPE_AC4 => "AC-4",
        codecs::CODEC_TYPE_WMA => "WMA",
        codecs::CODEC_TYPE_WAVPACK => "WavPack",
        codecs::CODEC_TYPE_MP1 => "MPEG Layer I",
        codecs::CODEC_TYPE_MP2 => "MPEG Layer II",
        _ => return format!("codec {codec}"),
    };
    name.into()
}
