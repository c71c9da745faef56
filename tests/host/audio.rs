//! WAV writing/reading (files of other layouts are written by hound directly) and resampling.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use bark_wgpu::audio::{decode_audio, read_wav, resample, wav_bytes, write_wav, WavFormat};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bark-wgpu-audio-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A deterministic spread of samples in [-1, 1], with both ends included.
fn test_signal(n: usize) -> Vec<f32> {
    let mut s: Vec<f32> = (0..n).map(|i| ((i as f64 * 0.7345).sin() * (i as f64 * 0.013).cos()) as f32).collect();
    s.extend([1.0, -1.0, 0.0, 1e-6]);
    s
}

fn sine(n: usize, freq: f64, rate: f64, amplitude: f64) -> Vec<f32> {
    (0..n).map(|i| (amplitude * (2.0 * PI * freq * i as f64 / rate).sin()) as f32).collect()
}

fn write_with_hound(path: &Path, spec: hound::WavSpec, samples: &[i32]) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn int_spec(channels: u16, bits: u16) -> hound::WavSpec {
    hound::WavSpec { channels, sample_rate: 22_050, bits_per_sample: bits, sample_format: hound::SampleFormat::Int }
}

#[test]
fn float32_round_trip_is_exact() {
    let dir = temp_dir("float");
    let path = dir.join("out.wav");
    let mut samples = test_signal(1000);
    samples.push(1.5); // Float WAVs keep values beyond full scale.
    write_wav(&path, &samples, 24_000, WavFormat::default()).unwrap();
    let spec = hound::WavReader::open(&path).unwrap().spec();
    assert_eq!((spec.sample_format, spec.bits_per_sample, spec.channels), (hound::SampleFormat::Float, 32, 1));
    assert_eq!(read_wav(&path).unwrap(), (samples, 24_000));
}

#[test]
fn wav_bytes_in_memory_are_the_file_write_wav_writes() {
    let dir = temp_dir("bytes");
    let samples = test_signal(777);
    for format in [WavFormat::Float32, WavFormat::Pcm16] {
        let path = dir.join(format!("{format:?}.wav"));
        write_wav(&path, &samples, 24_000, format).unwrap();
        let bytes = wav_bytes(&samples, 24_000, format).unwrap();
        assert_eq!(bytes, std::fs::read(&path).unwrap(), "{format:?}");
        assert_eq!(decode_audio(bytes, Some("wav")).unwrap().frames(), samples.len());
    }
    assert!(wav_bytes(&[0.0, f32::NAN], 24_000, WavFormat::Float32).is_err(), "NaN is refused");
    assert!(wav_bytes(&samples, 0, WavFormat::Float32).is_err(), "rate 0 is refused");
}

#[test]
fn pcm16_round_trip_within_one_step() {
    let dir = temp_dir("pcm16");
    let path = dir.join("out.wav");
    let mut samples = test_signal(1000);
    samples.extend([1.5, -2.0]);
    write_wav(&path, &samples, 16_000, WavFormat::Pcm16).unwrap();
    let (got, rate) = read_wav(&path).unwrap();
    assert_eq!((rate, got.len()), (16_000, samples.len()));
    for (i, (&g, &s)) in got.iter().zip(&samples).enumerate() {
        // Rounding to the 1/32768 grid costs half a step; clamping +1.0 to 32767 costs one step.
        let want = s.clamp(-1.0, 1.0);
        assert!((g - want).abs() <= 1.0 / 32767.0, "sample {i}: wrote {s}, read {g}");
    }
}

#[test]
fn reads_other_layouts_written_by_hound() {
    let dir = temp_dir("layouts");
    // 24-bit mono: full-scale steps of 2^-23.
    let values = [0, 1, -1, 8_388_607, -8_388_608, 123_456];
    let path = dir.join("24.wav");
    write_with_hound(&path, int_spec(1, 24), &values);
    let want: Vec<f32> = values.iter().map(|&v| v as f32 / 8_388_608.0).collect();
    assert_eq!(read_wav(&path).unwrap(), (want, 22_050));

    // 16-bit stereo: channels averaged.
    let path = dir.join("stereo.wav");
    write_with_hound(&path, int_spec(2, 16), &[1000, 3000, -32768, 32767, 0, -2]);
    let want = vec![2000.0 / 32768.0, -0.5 / 32768.0, -1.0 / 32768.0];
    assert_eq!(read_wav(&path).unwrap().0, want);

    // 8-bit and 32-bit integers.
    let path = dir.join("8.wav");
    write_with_hound(&path, int_spec(1, 8), &[-128, 0, 64, 127]);
    assert_eq!(read_wav(&path).unwrap().0, vec![-1.0, 0.0, 0.5, 127.0 / 128.0]);
    let path = dir.join("32.wav");
    write_with_hound(&path, int_spec(1, 32), &[i32::MIN, 1 << 30]);
    assert_eq!(read_wav(&path).unwrap().0, vec![-1.0, 0.5]);

    // 32-bit float, three channels.
    let path = dir.join("float3.wav");
    let spec = hound::WavSpec {
        channels: 3,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for s in [0.3f32, 0.6, 0.9, -1.0, 0.0, 1.0] {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    let (got, rate) = read_wav(&path).unwrap();
    assert_eq!(rate, 48_000);
    assert_eq!(got, vec![(0.3f32 + 0.6 + 0.9) / 3.0, 0.0]);
}

#[test]
fn bad_wav_inputs_and_outputs_give_errors_naming_the_file() {
    let dir = temp_dir("bad");
    let nowhere = dir.join("no_such_dir").join("out.wav");
    let err = write_wav(&nowhere, &[0.0; 4], 24_000, WavFormat::Float32).unwrap_err().to_string();
    assert!(err.contains("out.wav"), "{err}");
    assert!(!nowhere.exists());
    let err = write_wav(&dir, &[0.0; 4], 24_000, WavFormat::Float32).unwrap_err().to_string();
    assert!(err.contains("directory"), "{err}");

    // Refused samples leave an existing file as it was and no temporary file.
    let path = dir.join("keep.wav");
    write_wav(&path, &[0.25; 8], 24_000, WavFormat::Pcm16).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = write_wav(&path, &[0.0, f32::NAN], 24_000, WavFormat::Pcm16).unwrap_err().to_string();
    assert!(err.contains("keep.wav") && err.contains("NaN"), "{err}");
    assert!(write_wav(&path, &[f32::INFINITY], 24_000, WavFormat::Float32).is_err());
    assert!(write_wav(&path, &[0.0], 0, WavFormat::Float32).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let text = dir.join("text.wav");
    std::fs::write(&text, "RIFF but not really").unwrap();
    assert!(read_wav(&text).unwrap_err().to_string().contains("text.wav"));
    assert!(read_wav(dir.join("missing.wav")).unwrap_err().to_string().contains("missing.wav"));
    let cut = dir.join("cut.wav");
    std::fs::write(&cut, &before[..before.len() - 3]).unwrap();
    assert!(read_wav(&cut).unwrap_err().to_string().contains("cut.wav"));
}

/// Least-squares fit of `got` to a*sin + b*cos at `freq`: returns (amplitude, correlation with the fit).
fn fit_sine(got: &[f32], freq: f64, rate: f64, start: usize) -> (f64, f64) {
    let (mut ss, mut sc, mut cc, mut ys, mut yc, mut yy) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &y) in got.iter().enumerate() {
        let w = 2.0 * PI * freq * (start + i) as f64 / rate;
        let (s, c, y) = (w.sin(), w.cos(), y as f64);
        ss += s * s;
        sc += s * c;
        cc += c * c;
        ys += y * s;
        yc += y * c;
        yy += y * y;
    }
    let det = ss * cc - sc * sc;
    let a = (ys * cc - yc * sc) / det;
    let b = (yc * ss - ys * sc) / det;
    let fit_energy = a * ys + b * yc;
    ((a * a + b * b).sqrt(), (fit_energy / yy).sqrt())
}

#[test]
fn resampled_sine_keeps_frequency_and_amplitude() {
    // Downsampling 44.1k -> 24k and upsampling 16k -> 24k, 0.5 s of a 1 kHz sine at amplitude 0.8.
    for (from, n) in [(44_100u32, 22_050usize), (16_000, 8_000)] {
        let out = resample(&sine(n, 1000.0, from as f64, 0.8), from, 24_000).unwrap();
        assert_eq!(out.len(), 12_000);
        // Skip 100 output samples at each end, where the filter (6 zero crossings: under 20
        // output samples per side) overlaps the silence beyond the input.
        let (amplitude, correlation) = fit_sine(&out[100..out.len() - 100], 1000.0, 24_000.0, 100);
        // The Hann-windowed sinc's gain at 1 kHz is within about 5e-4 of 1 (as at DC, below).
        assert!((amplitude / 0.8 - 1.0).abs() < 1e-3, "{from}: amplitude {amplitude}");
        assert!(correlation > 0.999, "{from}: correlation {correlation}");
        // The phase is right too: compare against the ideal 24 kHz sine sample by sample.
        let ideal = sine(12_000, 1000.0, 24_000.0, 0.8);
        let worst = out[100..11_900].iter().zip(&ideal[100..11_900]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 2e-3, "{from}: worst sample error {worst}");
    }
}

#[test]
fn tone_above_the_new_nyquist_is_removed() {
    let input = sine(48_000, 15_000.0, 48_000.0, 1.0);
    let out = resample(&input, 48_000, 24_000).unwrap();
    let rms = |s: &[f32]| (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
    let attenuation_db = 20.0 * (rms(&out[100..out.len() - 100]) / rms(&input)).log10();
    // 40 dB is the requirement (15 kHz is 3 kHz past torchaudio's cut-off of 11.9 kHz).
    assert!(attenuation_db < -40.0, "only {attenuation_db:.1} dB");
}

#[test]
fn resampling_equals_torchaudio() {
    // scripts/make_resample_fixtures.py: torchaudio.functional.resample at its defaults, the
    // resampler of the voice-cloning references, on sines, a chirp and noise (peak about 0.8),
    // run in f32 (as the references run it) and in f64.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resample/torchaudio.safetensors");
    let f = bark_wgpu::weights::WeightSource::open(path).unwrap();
    let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let mut pairs = 0;
    for name in f.names().filter(|n| n.starts_with("output.")) {
        let rates: Vec<u32> = name.split('.').skip(1).map(|r| r.parse().unwrap()).collect();
        let input = f.to_f32(&format!("input.{}", rates[0])).unwrap();
        let got = resample(&input, rates[0], rates[1]).unwrap();
        let (f32_ref, f64_ref) = (f.to_f32(name).unwrap(), f.to_f32(&name.replace("output", "output64")).unwrap());
        assert_eq!((got.len(), got.len()), (f32_ref.len(), f64_ref.len()), "{name}: length");
        // We compute in f64 too: equal to its f64 run up to rounding the output to f32 (3e-7
        // is a few ulps at 0.8) ...
        let d64 = worst(&got, &f64_ref);
        assert!(d64 < 3e-7, "{name}: differs from torchaudio's f64 run by up to {d64}");
        // ... and within 1e-5 of its f32 run, whose kernel phases reach hundreds of units for
        // rates like 22,050 -> 16,000 (441 -> 320 after the gcd) and round at ~1e-5 there.
        let d32 = worst(&got, &f32_ref);
        assert!(d32 < 1e-5, "{name}: differs from torchaudio's f32 run by up to {d32}");
        pairs += 1;
    }
    assert_eq!(pairs, 8);
}

#[test]
fn resample_lengths_identity_and_bad_rates() {
    for (from, to) in [(44_100u32, 24_000u32), (48_000, 24_000), (16_000, 24_000), (22_050, 24_000), (24_001, 24_000)] {
        for n in [0usize, 1, 2, 3, 147, 1001] {
            // torchaudio's length: every output whose time falls within the input.
            let want = (n as f64 * to as f64 / from as f64).ceil() as usize;
            assert_eq!(resample(&vec![0.5; n], from, to).unwrap().len(), want, "{n} samples {from} -> {to}");
        }
    }
    // A constant stays constant away from the edges, to the filter's DC gain: torchaudio's
    // phases are not normalised, and their sums stay within 1e-3 of 1.
    let out = resample(&[0.5; 4410], 44_100, 24_000).unwrap();
    assert!(out[100..out.len() - 100].iter().all(|&v| (v - 0.5).abs() < 0.5e-3));
    let signal = test_signal(500);
    assert_eq!(resample(&signal, 24_000, 24_000).unwrap(), signal);
    assert!(resample(&signal, 0, 24_000).is_err());
    assert!(resample(&signal, 24_000, 0).is_err());
}
