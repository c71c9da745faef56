//! Text to the semantic model's input: the BERT WordPiece tokenizer (cased, multilingual) of
//! the checkpoint's `tokenizer.json`, then Bark's offset and padding to the 256-token window.

use std::path::Path;

use crate::vocab::{TEXT_ENCODING_OFFSET, TEXT_PAD};
use crate::{Error, Result};

/// The text window of the semantic model.
pub const MAX_TEXT_TOKENS: usize = 256;

/// A loaded `tokenizer.json`.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

impl TextTokenizer {
    /// Loads a Hugging Face `tokenizer.json`.
    pub fn load(path: impl AsRef<Path>) -> Result<TextTokenizer> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(Error::File { path: path.into(), message: "no such tokenizer file".into() });
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::File { path: path.into(), message: format!("not a valid tokenizer.json: {e}") })?;
        Ok(TextTokenizer { inner })
    }

    /// A `tokenizer.json` already in memory (a browser's fetch); `name` stands for its path in
    /// messages.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: &[u8]) -> Result<TextTokenizer> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| Error::File {
            path: name.as_ref().into(),
            message: format!("not a valid tokenizer.json: {e}"),
        })?;
        Ok(TextTokenizer { inner })
    }

    /// The BERT ids of `text` without `[CLS]`/`[SEP]`, as transformers' BarkProcessor asks for
    /// them (`add_special_tokens=False`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc =
            self.inner.encode(text, false).map_err(|e| Error::Invalid(format!("cannot tokenize the text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }
}

/// The original Bark's clean-up before tokenizing: runs of whitespace become one space and the
/// ends are trimmed (transformers does not do this; generation follows the original).
pub fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// BERT ids to the semantic text window: each id plus [`TEXT_ENCODING_OFFSET`], then
/// [`TEXT_PAD`] up to [`MAX_TEXT_TOKENS`]. Text that does not fit is an error, never cut: the
/// caller splits long text (long-form generation) instead.
pub fn semantic_text_window(bert_ids: &[u32]) -> Result<Vec<u32>> {
    if bert_ids.is_empty() {
        return Err(Error::Invalid("the text is empty".into()));
    }
    if bert_ids.len() > MAX_TEXT_TOKENS {
        return Err(Error::Invalid(format!(
            "the text is {} tokens long; one generation takes at most {MAX_TEXT_TOKENS} (split it into sentences)",
            bert_ids.len()
        )));
    }
    let mut out: Vec<u32> = bert_ids.iter().map(|&id| id + TEXT_ENCODING_OFFSET).collect();
    out.resize(MAX_TEXT_TOKENS, TEXT_PAD);
    Ok(out)
}
