//! The `flac` response format: the whole 16-bit PCM (the samples `pcm` sends) encoded at once,
//! since a FLAC stream's header carries facts about all of it.

use flacenc::component::BitRepr;
use flacenc::error::Verify;

/// `samples` (16-bit PCM, mono) at `rate` Hz as a FLAC file.
pub fn encode(samples: &[i16], rate: u32) -> Result<Vec<u8>, String> {
    let config =
        flacenc::config::Encoder::default().into_verified().map_err(|(_, e)| format!("FLAC settings: {e:?}"))?;
    let wide: Vec<i32> = samples.iter().map(|&s| i32::from(s)).collect();
    let source = flacenc::source::MemSource::from_samples(&wide, 1, 16, rate as usize);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| format!("FLAC encoding failed: {e:?}"))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).map_err(|e| format!("FLAC encoding failed: {e:?}"))?;
    Ok(sink.as_slice().to_vec())
}
