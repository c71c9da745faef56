//! Audio on the host: WAV files in and out, and resampling to Bark's 24 kHz.

mod resample;
mod wav;

pub use resample::resample;
pub use wav::{pcm16, pcm16_le_bytes, read_wav, write_wav, WavFormat};

/// The sample rate of Bark's codec.
pub const SAMPLE_RATE: u32 = 24_000;
