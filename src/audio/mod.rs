//! Audio on the host: recordings in (WAV, FLAC, MP3, Ogg/Vorbis, M4A/AAC), WAV out, and resampling.

mod decode;
mod mp4;
mod resample;
mod wav;

pub use decode::{decode_audio, read_audio, Audio, FORMATS};
pub use resample::resample;
pub use wav::{pcm16, pcm16_le_bytes, read_wav, wav_bytes, write_wav, WavFormat};

/// The sample rate of Bark's codec.
pub const SAMPLE_RATE: u32 = 24_000;
