//! Recordings in: the one decoder (symphonia) for WAV, FLAC, MP3, Ogg/Vorbis and M4A/AAC, on the
//! clone fixtures (scripts/make_clone_fixtures.py, scripts/make_lossy_fixtures.py), and its errors.

use std::path::{Path, PathBuf};

use bark_wgpu::audio::{decode_audio, read_audio, Audio, FORMATS};

const CLONE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clone");

fn fixture(name: &str) -> PathBuf {
    Path::new(CLONE).join(name)
}

/// The fixture WAV's int16 samples, read by hand: 44-byte header, interleaved little-endian.
fn wav_by_hand() -> Vec<Vec<f32>> {
    let bytes = std::fs::read(fixture("recording.wav")).unwrap();
    assert_eq!(&bytes[36..40], b"data");
    let pcm: Vec<i16> = bytes[44..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    (0..2).map(|c| pcm.iter().skip(c).step_by(2).map(|&v| v as f32 / 32768.0).collect()).collect()
}

#[test]
fn wav_and_flac_of_the_same_samples_decode_alike_and_exactly() {
    let wav = read_audio(fixture("recording.wav")).unwrap();
    assert_eq!((wav.sample_rate, wav.channels.len(), wav.frames()), (22_050, 2, 44_100));
    assert_eq!(wav.channels, wav_by_hand());
    assert_eq!(read_audio(fixture("recording.flac")).unwrap(), wav);
    // Bytes without a name: the format is found from the bytes alone.
    assert_eq!(decode_audio(std::fs::read(fixture("recording.flac")).unwrap(), None).unwrap(), wav);
}

#[test]
fn mono_is_the_mean_of_the_channels() {
    let a = Audio { channels: vec![vec![1.0, 0.5, -1.0], vec![0.0, 0.25, 1.0]], sample_rate: 8000 };
    assert_eq!(a.mono(), vec![0.5, 0.375, 0.0]);
    let one = Audio { channels: vec![vec![0.1, 0.2]], sample_rate: 8000 };
    assert_eq!(one.mono(), vec![0.1, 0.2]);
}

#[test]
fn unreadable_cut_or_missing_files_name_the_file_and_what_is_read() {
    let dir = std::env::temp_dir().join(format!("bark-wgpu-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("notes.mp3");
    std::fs::write(&text, "ID3 but not really an mp3").unwrap();
    let err = read_audio(&text).unwrap_err().to_string();
    assert!(err.contains("notes.mp3") && err.contains(FORMATS), "{err}");
    // A FLAC cut in the middle of a frame promises more samples than it holds.
    let flac = std::fs::read(fixture("recording.flac")).unwrap();
    let cut = dir.join("cut.flac");
    std::fs::write(&cut, &flac[..flac.len() / 2]).unwrap();
    let err = read_audio(&cut).unwrap_err().to_string();
    assert!(err.contains("cut.flac") && err.contains("cut short"), "{err}");
    let err = read_audio(dir.join("absent.ogg")).unwrap_err().to_string();
    assert!(err.contains("absent.ogg"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mp3_and_ogg_vorbis_decode_as_another_decoder_reads_them() {
    // scripts/make_lossy_fixtures.py: the recording encoded by libsndfile, and libsndfile's own
    // decoding of it (mpg123, libvorbis), [channel, frame].
    let reference = bark_wgpu::weights::WeightSource::open(fixture("lossy_reference.safetensors")).unwrap();
    for ext in ["mp3", "ogg"] {
        let ours = read_audio(fixture(&format!("recording.{ext}"))).unwrap();
        let theirs = reference.to_f32(ext).unwrap();
        let frames = theirs.len() / 2;
        assert_eq!((ours.sample_rate, ours.channels.len()), (22_050, 2), "{ext}");
        // Gapless: the encoder's delay and padding are cut, as libsndfile cuts them.
        assert_eq!(ours.frames(), frames, "{ext}: frames");
        let worst = (0..2)
            .flat_map(|c| {
                ours.channels[c].iter().zip(&theirs[c * frames..(c + 1) * frames]).map(|(a, b)| (a - b).abs())
            })
            .fold(0.0f32, f32::max);
        // Two float decoders of one bitstream differ by their rounding only (the synthesis
        // filter bank's, the inverse MDCT's), a few ulps of samples below 1 (BENCHMARKS.md).
        assert!(worst < 1e-5, "{ext}: differs from libsndfile's decoding by up to {worst}");
    }
}

#[test]
fn m4a_aac_decodes_as_ffmpeg_reads_it() {
    // scripts/make_lossy_fixtures.py: a phone-like M4A (AAC-LC, 44.1 kHz mono, 1 s) made by
    // ffmpeg, ffmpeg's own decoding of it, and the track length ffprobe reports.
    let reference = bark_wgpu::weights::WeightSource::open(fixture("m4a_reference.safetensors")).unwrap();
    let theirs = reference.to_f32("m4a").unwrap();
    let ours = read_audio(fixture("recording.m4a")).unwrap();
    assert_eq!((ours.sample_rate, ours.channels.len()), (44_100, 1));
    // Gapless: the edit list's 1024 priming samples are cut (ffmpeg cuts them too) and the
    // track ends where the edit list says, 44100 samples (ffprobe's duration_ts). ffmpeg 5.1
    // decodes the last frame whole, so its reading runs 956 samples of encoder padding longer.
    assert_eq!(ours.frames(), 44_100);
    assert_eq!(theirs.len(), 45_056);
    let worst = ours.channels[0].iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    // Two float decoders of one bitstream differ by their rounding only (the inverse MDCT's,
    // the windowing's), as for MP3 and Vorbis above.
    assert!(worst < 1e-5, "differs from ffmpeg's decoding by up to {worst}");
}

#[test]
fn opus_and_webm_say_how_to_convert() {
    // Opus has no decoder here (no well-kept pure-Rust one yet), WebM no demuxer: each file
    // (scripts/make_lossy_fixtures.py, made by ffmpeg with libopus) gets one sentence naming
    // what it is and the ffmpeg command that makes a WAV of it.
    for (name, what) in [("recording.opus", "Opus"), ("recording.webm", "WebM")] {
        let err = read_audio(fixture(name)).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(what) && err.contains(&format!("ffmpeg -i {name} ")), "{err}");
        assert!(!err.trim_end_matches('`').contains(". "), "one sentence: {err}");
    }
}

#[test]
fn a_cut_or_damaged_m4a_is_an_error_or_audio_never_a_panic() {
    let m4a = std::fs::read(fixture("recording.m4a")).unwrap();
    // ffmpeg writes the index (moov) last: a file cut anywhere has lost part of it.
    for cut in [8, 40, m4a.len() / 3, m4a.len() - 200, m4a.len() - 1] {
        let err = decode_audio(m4a[..cut].to_vec(), Some("m4a")).unwrap_err();
        assert!(!err.is_empty(), "cut at {cut}");
    }
    // Every byte of the index flipped in turn, the edit list's boxes among them: the result may
    // be audio or an error (some bytes are free to change), never a panic or a hang.
    let moov = m4a.windows(4).position(|w| w == b"moov").unwrap() - 4;
    let mut decoded = 0;
    for at in moov..m4a.len() {
        let mut bad = m4a.clone();
        bad[at] ^= 0xff;
        decoded += usize::from(decode_audio(bad, Some("m4a")).is_ok());
    }
    assert!(decoded < m4a.len() - moov, "some damage must be noticed");
}
