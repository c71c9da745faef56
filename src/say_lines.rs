//! `say --input FILE --out-dir DIR`: one WAV per non-blank line of a text file, the lines that
//! fit one text window generated as one batch ([`Bark::generate_batch`]), longer ones one by
//! one through the long-form path afterwards. Every WAV is written only once all lines have
//! been generated, so a failure leaves no files behind.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use bark_wgpu::audio::{write_wav, WavFormat};
use bark_wgpu::generate::{Audio, Bark, GenerateOptions, VoicePrompt};
use bark_wgpu::text::MAX_TEXT_TOKENS;

/// The non-blank lines of the input (1-based line number, text) and the output directory.
pub struct Lines {
    lines: Vec<(usize, String)>,
    out_dir: OutDir,
}

/// The output directory; removed again on drop if this run created it and it stayed empty.
struct OutDir {
    path: PathBuf,
    created: bool,
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if self.created {
            // Fails, as it should, once the directory holds anything.
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// The WAV of line `n` (1-based): `line-0007.wav`.
fn wav_name(n: usize) -> String {
    format!("line-{n:04}.wav")
}

/// Reads `input` and prepares `out_dir` (created if missing, checked writable) before any
/// model is loaded, so bad input fails at once.
pub fn read_lines(input: &Path, out_dir: &Path) -> Result<Lines> {
    let text = std::fs::read_to_string(input).with_context(|| format!("cannot read {}", input.display()))?;
    let lines: Vec<(usize, String)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .collect();
    if lines.is_empty() {
        bail!("{} has no text to say: every line is blank", input.display());
    }
    if out_dir.exists() && !out_dir.is_dir() {
        bail!("the output directory {} is a file", out_dir.display());
    }
    let created = !out_dir.exists();
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create the output directory {}", out_dir.display()))?;
    let out_dir = OutDir { path: out_dir.to_path_buf(), created };
    let probe = out_dir.path.join(format!(".bark-wgpu-write-test-{}", std::process::id()));
    std::fs::File::create(&probe)
        .with_context(|| format!("cannot write to the output directory {}", out_dir.path.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(Lines { lines, out_dir })
}

/// Generates every line and writes `DIR/line-NNNN.wav` for each.
pub fn say_lines(
    bark: &Bark,
    lines: Lines,
    opts: &GenerateOptions,
    voice: Option<&VoicePrompt>,
    max_batch: usize,
    format: WavFormat,
    note: &dyn Fn(&str),
) -> Result<()> {
    let mut short = Vec::new();
    let mut long = Vec::new();
    for (n, text) in &lines.lines {
        let tokens = bark.count_tokens(text).with_context(|| format!("line {n}"))?;
        if tokens <= MAX_TEXT_TOKENS {
            short.push((*n, text.as_str()));
        } else {
            long.push((*n, text.as_str()));
        }
    }
    note(&format!("generating {} line(s) in batches of up to {max_batch}", short.len()));
    let texts: Vec<&str> = short.iter().map(|&(_, t)| t).collect();
    let generations = bark.generate_batch(&texts, opts, voice, max_batch)?;
    let mut audio: Vec<(usize, Audio)> =
        short.iter().map(|&(n, _)| n).zip(generations.into_iter().map(|g| g.audio)).collect();
    for (n, text) in long {
        note(&format!("line {n} is over one text window: generating it in pieces"));
        let out = bark.generate_long(text, opts, voice).with_context(|| format!("line {n}"))?;
        audio.push((n, out.audio));
    }
    audio.sort_by_key(|&(n, _)| n);
    let mut written = Vec::with_capacity(audio.len());
    for (n, a) in &audio {
        let path = lines.out_dir.path.join(wav_name(*n));
        if let Err(e) = write_wav(&path, &a.samples, a.sample_rate, format) {
            // All or nothing: take back this run's files.
            for p in &written {
                let _ = std::fs::remove_file(p);
            }
            return Err(e.into());
        }
        written.push(path);
    }
    note(&format!("wrote {} WAV file(s) to {}", written.len(), lines.out_dir.path.display()));
    Ok(())
}
