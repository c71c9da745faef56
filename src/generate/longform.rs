//! Long-form text: splitting text that does not fit the semantic model's 256-token window into
//! pieces that do, and generating them one after another with one voice
//! ([`Bark::generate_long`]).
//!
//! # Splitting
//!
//! The text is whitespace-normalised, cut into sentences (after `.`, `!` or `?` followed by
//! whitespace or the end; after the full-width `。`, `！`, `？` anywhere, since CJK text puts no
//! space after them), and consecutive sentences are packed greedily into pieces while a piece
//! stays within the token budget. A sentence over the budget is cut at clause marks (`,` `;`
//! followed by whitespace or the end, `，` `；` `、` anywhere), a clause over the budget at
//! whitespace, and a single word over the budget, as the last resort, at the longest prefix of
//! characters that fits. Nothing is dropped: every piece is a slice of the normalised text and
//! only whitespace lies between consecutive pieces. Punctuation stays with its sentence.

use std::ops::Range;

use super::bark::{check_voice, Audio, Bark, Generation};
use super::options::GenerateOptions;
use crate::text::{normalize_whitespace, MAX_TEXT_TOKENS};
use crate::voice::VoicePrompt;
use crate::{Error, Result};

/// Silence between pieces, in seconds (6000 samples at 24 kHz).
pub const PIECE_GAP_SECONDS: f32 = 0.25;

/// Where a cut may follow a character: `Some(true)` always, `Some(false)` only before
/// whitespace or the end, `None` never.
type CutRule = fn(char) -> Option<bool>;

fn sentence_end(c: char) -> Option<bool> {
    match c {
        '。' | '！' | '？' => Some(true),
        '.' | '!' | '?' => Some(false),
        _ => None,
    }
}

fn clause_end(c: char) -> Option<bool> {
    match c {
        '，' | '；' | '、' => Some(true),
        ',' | ';' => Some(false),
        _ => None,
    }
}

/// Cuts `text[range]` after every character `rule` allows, trimming whitespace off each part.
fn cut(text: &str, range: Range<usize>, rule: CutRule) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut start = range.start;
    let mut chars = text[range.clone()].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next_ok = chars.peek().is_none_or(|&(_, n)| n.is_whitespace());
        if rule(c).is_some_and(|always| always || next_ok) {
            let end = range.start + i + c.len_utf8();
            push_trimmed(text, start..end, &mut parts);
            start = end;
        }
    }
    push_trimmed(text, start..range.end, &mut parts);
    parts
}

/// Cuts at whitespace.
fn words(text: &str, range: Range<usize>) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut start = range.start;
    for (i, c) in text[range.clone()].char_indices() {
        if c.is_whitespace() {
            push_trimmed(text, start..range.start + i, &mut parts);
            start = range.start + i + c.len_utf8();
        }
    }
    push_trimmed(text, start..range.end, &mut parts);
    parts
}

fn push_trimmed(text: &str, r: Range<usize>, out: &mut Vec<Range<usize>>) {
    let s = &text[r.clone()];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if lead < s.len() {
        out.push(r.start + lead..r.end - trail);
    }
}

struct Splitter<'a, F> {
    text: &'a str,
    max: usize,
    count: F,
}

impl<F: FnMut(&str) -> Result<usize>> Splitter<'_, F> {
    fn fits(&mut self, r: &Range<usize>) -> Result<bool> {
        Ok((self.count)(&self.text[r.clone()])? <= self.max)
    }

    /// Joins consecutive parts (each within the budget) while the joined slice stays within it.
    fn pack(&mut self, parts: Vec<Range<usize>>) -> Result<Vec<Range<usize>>> {
        let mut out: Vec<Range<usize>> = Vec::new();
        for p in parts {
            if let Some(last) = out.last_mut() {
                let joined = last.start..p.end;
                if self.fits(&joined)? {
                    *last = joined;
                    continue;
                }
            }
            out.push(p);
        }
        Ok(out)
    }

    /// `r` as parts within the budget: whole if it fits, else cut at the finer `levels` in turn.
    fn fit(&mut self, r: Range<usize>, levels: &[Option<CutRule>]) -> Result<Vec<Range<usize>>> {
        if self.fits(&r)? {
            return Ok(vec![r]);
        }
        let Some((level, finer)) = levels.split_first() else {
            return self.by_chars(r);
        };
        let parts = match level {
            Some(rule) => cut(self.text, r.clone(), *rule),
            None => words(self.text, r.clone()),
        };
        if parts.len() <= 1 {
            return self.fit(r, finer);
        }
        let mut fitted = Vec::new();
        for p in parts {
            fitted.extend(self.fit(p, finer)?);
        }
        self.pack(fitted)
    }

    /// The last resort for one word over the budget: the longest prefixes of whole characters
    /// that fit, one after another.
    fn by_chars(&mut self, r: Range<usize>) -> Result<Vec<Range<usize>>> {
        let mut out = Vec::new();
        let mut start = r.start;
        while start < r.end {
            // Character end offsets of the rest; the prefix of `k + 1` characters ends at ends[k].
            let ends: Vec<usize> =
                self.text[start..r.end].char_indices().map(|(i, c)| start + i + c.len_utf8()).collect();
            if !self.fits(&(start..ends[0]))? {
                return Err(Error::Invalid(format!(
                    "the character {:?} alone is over the {} token budget",
                    &self.text[start..ends[0]],
                    self.max
                )));
            }
            // Invariant: the prefix ending at ends[lo] fits.
            let (mut lo, mut hi) = (0, ends.len() - 1);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if self.fits(&(start..ends[mid]))? {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            out.push(start..ends[lo]);
            start = ends[lo];
        }
        Ok(out)
    }
}

/// The sentences of `text` (whitespace-normalised), each with its closing punctuation.
pub fn sentences(text: &str) -> Vec<String> {
    let text = normalize_whitespace(text);
    cut(&text, 0..text.len(), sentence_end).into_iter().map(|r| text[r].to_string()).collect()
}

/// Splits `text` into pieces of at most `max_tokens` tokens as `count` counts them (see the
/// module docs). Each piece is a slice of the whitespace-normalised text, and joining the
/// pieces with single spaces gives that text back, except where a word had to be cut (then
/// the two parts of the word join without a space). Empty text is an error.
pub fn split_text<F>(text: &str, max_tokens: usize, count: F) -> Result<Vec<String>>
where
    F: FnMut(&str) -> Result<usize>,
{
    let text = normalize_whitespace(text);
    if text.is_empty() {
        return Err(Error::Invalid("the text is empty".into()));
    }
    if max_tokens == 0 {
        return Err(Error::Invalid("a token budget of 0".into()));
    }
    let mut s = Splitter { text: &text, max: max_tokens, count };
    let levels: [Option<CutRule>; 2] = [Some(clause_end), None];
    let mut fitted = Vec::new();
    for sentence in cut(&text, 0..text.len(), sentence_end) {
        fitted.extend(s.fit(sentence, &levels)?);
    }
    Ok(s.pack(fitted)?.into_iter().map(|r| text[r].to_string()).collect())
}

/// The sampling seed of piece `index`: piece 0 keeps `seed` (so one-piece text generates
/// exactly as [`Bark::generate`]); later pieces get distinct seeds derived from both.
pub fn piece_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// A long-form generation: the pieces the text was split into, each piece's generation, and
/// the joined audio.
#[derive(Clone, Debug, PartialEq)]
pub struct LongGeneration {
    pub pieces: Vec<String>,
    pub generations: Vec<Generation>,
    /// The pieces' audio in order with [`PIECE_GAP_SECONDS`] of silence (exact zeros) between.
    pub audio: Audio,
}

impl LongGeneration {
    /// The last piece as a voice prompt (what continuing the speech would use).
    pub fn voice_prompt(&self) -> Result<VoicePrompt> {
        match self.generations.last() {
            Some(g) => g.voice_prompt(),
            None => Err(Error::Invalid("a long generation without pieces".into())),
        }
    }
}

impl Bark {
    /// The number of BERT tokens of `text` (whitespace-normalised) as the semantic window
    /// counts them.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.tokenizer.encode(&normalize_whitespace(text))?.len())
    }

    /// `text` split into pieces that each fit the 256-token text window.
    pub fn split_text(&self, text: &str) -> Result<Vec<String>> {
        split_text(text, MAX_TEXT_TOKENS, |t| self.count_tokens(t))
    }

    /// Generates text of any length: [`Bark::split_text`], then [`Bark::generate`] per piece
    /// with the seed [`piece_seed`], joined with [`PIECE_GAP_SECONDS`] of silence.
    ///
    /// The voice: with `voice` given, every piece uses it (as the community long-form notebooks
    /// do: the same prompt keeps the speaker from drifting piece by piece). Without one, the
    /// first piece has no prompt and each later piece continues from the previous piece's
    /// output ([`Generation::voice_prompt`]), so the whole text keeps the voice the model
    /// picked first; a previous piece too short to be a prompt (under 2 semantic tokens or 2
    /// frames) leaves the prompt as it was.
    pub fn generate_long(
        &self,
        text: &str,
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
    ) -> Result<LongGeneration> {
        self.generate_stream(text, opts, voice, |_| Ok(()))
    }

    /// [`Bark::generate_long`], handing the audio to `on_audio` piece by piece as each is
    /// decoded, in order: the first piece's samples, then for every later piece the silence
    /// before it and its samples. The chunks joined are the returned audio sample for sample, so
    /// playback can start after the first piece rather than the whole text. An error from
    /// `on_audio` (a closed pipe, a listener gone) stops the generation before the next piece
    /// and is returned.
    pub fn generate_stream(
        &self,
        text: &str,
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
        mut on_audio: impl FnMut(&[f32]) -> Result<()>,
    ) -> Result<LongGeneration> {
        let pieces = self.split_text(text)?;
        let mut generations: Vec<Generation> = Vec::with_capacity(pieces.len());
        let mut samples = Vec::new();
        let mut carried: Option<VoicePrompt> = None;
        for (i, piece) in pieces.iter().enumerate() {
            let prompt = voice.or(carried.as_ref());
            let g = self.generate(piece, &piece_options(opts, i), prompt)?;
            if voice.is_none() {
                carried = next_prompt(&g).or(carried);
            }
            let chunk = self.piece_chunk(i, &g.audio.samples);
            on_audio(&chunk)?;
            samples.extend(chunk);
            generations.push(g);
        }
        let sample_rate = self.config.codec_config.sampling_rate as u32;
        Ok(LongGeneration { pieces, generations, audio: Audio { samples, sample_rate } })
    }

    /// Piece `index`'s audio as streamed: the silence before every piece but the first, then
    /// its samples.
    pub(super) fn piece_chunk(&self, index: usize, samples: &[f32]) -> Vec<f32> {
        let gap = if index == 0 {
            0
        } else {
            (self.config.codec_config.sampling_rate as f32 * PIECE_GAP_SECONDS).round() as usize
        };
        let mut chunk = vec![0.0; gap];
        chunk.extend_from_slice(samples);
        chunk
    }
}

/// Piece `index`'s options: `opts` with the piece's seed ([`piece_seed`]).
pub(super) fn piece_options(opts: &GenerateOptions, index: usize) -> GenerateOptions {
    GenerateOptions { seed: piece_seed(opts.seed, index), ..opts.clone() }
}

/// The prompt the next piece continues from after `g` when no voice was given: `g` itself, or
/// `None` (keep the last one) when it is too short to be a prompt.
pub(super) fn next_prompt(g: &Generation) -> Option<VoicePrompt> {
    g.voice_prompt().ok().filter(|p| check_voice(p).is_ok())
}
