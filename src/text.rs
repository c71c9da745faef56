//! Text to the semantic model's input: the BERT WordPiece tokenizer (cased, multilingual) of
//! the checkpoint's `tokenizer.json` (or, in older repos, `vocab.txt` with
//! `tokenizer_config.json`), then Bark's offset and padding to the 256-token window.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{decoders, AddedToken};

use crate::vocab::{TEXT_ENCODING_OFFSET, TEXT_PAD};
use crate::{Error, Result};

/// The text window of the semantic model.
pub const MAX_TEXT_TOKENS: usize = 256;

/// A loaded `tokenizer.json`, or the WordPiece tokenizer transformers builds from `vocab.txt`.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

impl TextTokenizer {
    /// Loads a Hugging Face `tokenizer.json`, a `vocab.txt` (its options from the
    /// `tokenizer_config.json` beside it), or a directory holding either (see [`Self::load_dir`]).
    pub fn load(path: impl AsRef<Path>) -> Result<TextTokenizer> {
        let path = path.as_ref();
        if path.is_dir() {
            return TextTokenizer::load_dir(path);
        }
        if path.extension().is_some_and(|e| e == "txt") && path.is_file() {
            return TextTokenizer::load_vocab_file(path);
        }
        if !path.is_file() {
            return Err(Error::File { path: path.into(), message: "no such tokenizer file".into() });
        }
        let bytes =
            std::fs::read(path).map_err(|e| Error::File { path: path.into(), message: format!("cannot read: {e}") })?;
        TextTokenizer::from_bytes(path, &bytes)
    }

    /// A model directory's tokenizer: `tokenizer.json` when there is one, else `vocab.txt` with
    /// `tokenizer_config.json` and `special_tokens_map.json` when present (the files of the slow
    /// `BertTokenizer`, in older repos).
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<TextTokenizer> {
        let dir = dir.as_ref();
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return TextTokenizer::load(json);
        }
        let vocab = dir.join("vocab.txt");
        if vocab.is_file() {
            return TextTokenizer::load_vocab_file(&vocab);
        }
        Err(Error::File {
            path: dir.into(),
            message: "holds no tokenizer (neither tokenizer.json nor vocab.txt)".into(),
        })
    }

    fn load_vocab_file(vocab: &Path) -> Result<TextTokenizer> {
        let dir = vocab.parent().unwrap_or(Path::new("."));
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| Error::File { path: path.into(), message: format!("cannot read it: {e}") })
        };
        let optional = |name: &str| {
            let path = dir.join(name);
            path.is_file().then(|| read(&path).map(|bytes| (path, bytes))).transpose()
        };
        let config = optional("tokenizer_config.json")?;
        let specials = optional("special_tokens_map.json")?;
        fn as_named(f: &Option<(PathBuf, Vec<u8>)>) -> Option<(&Path, &[u8])> {
            f.as_ref().map(|(p, b)| (p.as_path(), b.as_slice()))
        }
        bert_from_files(vocab, &read(vocab)?, as_named(&config), as_named(&specials))
    }

    /// The slow `BertTokenizer`'s files already in memory: `vocab.txt`'s bytes, and those of
    /// `tokenizer_config.json` and `special_tokens_map.json` when the repo has them; `name`
    /// stands for the vocabulary's path in messages.
    pub fn from_vocab_bytes(
        name: impl AsRef<Path>,
        vocab: &[u8],
        config: Option<&[u8]>,
        special_tokens_map: Option<&[u8]>,
    ) -> Result<TextTokenizer> {
        let name = name.as_ref();
        let dir = name.parent().unwrap_or(Path::new(""));
        let (config_name, map_name) = (dir.join("tokenizer_config.json"), dir.join("special_tokens_map.json"));
        bert_from_files(
            name,
            vocab,
            config.map(|b| (config_name.as_path(), b)),
            special_tokens_map.map(|b| (map_name.as_path(), b)),
        )
    }

    /// A `tokenizer.json` already in memory (a browser's fetch); `name` stands for its path in
    /// messages.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: &[u8]) -> Result<TextTokenizer> {
        check_tokenizer_json(bytes).map_err(|message| Error::File { path: name.as_ref().into(), message })?;
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

    /// The ids with `[CLS]`/`[SEP]` around them, as transformers' tokenizer gives them by default.
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>> {
        let enc =
            self.inner.encode(text, true).map_err(|e| Error::Invalid(format!("cannot tokenize the text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }
}

/// The options of transformers' `BertTokenizer` that change its ids, with its defaults (a
/// config that says nothing lowercases, strips accents and splits CJK characters).
struct BertOptions {
    do_lower_case: bool,
    strip_accents: Option<bool>,
    tokenize_chinese_chars: bool,
    unk: String,
    cls: String,
    sep: String,
    specials: Vec<String>,
}

impl BertOptions {
    /// Reads `tokenizer_config.json`, then `special_tokens_map.json` whose tokens take
    /// precedence, as transformers' `from_pretrained` does.
    fn read(config: Option<(&Path, &[u8])>, specials: Option<(&Path, &[u8])>) -> Result<BertOptions> {
        let parse = |(path, bytes): (&Path, &[u8])| -> Result<serde_json::Map<String, Value>> {
            match serde_json::from_slice(bytes) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => Err(Error::File { path: path.into(), message: "is not a JSON object".into() }),
                Err(e) => Err(Error::File { path: path.into(), message: format!("is not valid JSON: {e}") }),
            }
        };
        let (config_path, config) = match config {
            Some(file) => (Some(file.0), parse(file)?),
            None => (None, Default::default()),
        };
        let map = specials.map(parse).transpose()?.unwrap_or_default();
        let wrong = |key: &str, want: &str| Error::File {
            path: config_path.or(specials.map(|s| s.0)).unwrap_or(Path::new("tokenizer_config.json")).into(),
            message: format!("`{key}` should be {want}"),
        };
        let flag = |key: &str, default: bool| match config.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| wrong(key, "true or false")),
        };
        if !flag("do_basic_tokenize", true)? {
            return Err(wrong(
                "do_basic_tokenize",
                "true (a tokenizer without BERT's basic splitting is not supported)",
            ));
        }
        // A special token is a string or an AddedToken's {"content": ...}.
        let token = |key: &str, default: &str| {
            let value = map.get(key).filter(|v| !v.is_null()).or(config.get(key).filter(|v| !v.is_null()));
            match value {
                None => Ok(default.to_string()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(v) => v["content"].as_str().map(str::to_string).ok_or_else(|| wrong(key, "a token")),
            }
        };
        let [unk, sep, pad, cls, mask] = [
            ("unk_token", "[UNK]"),
            ("sep_token", "[SEP]"),
            ("pad_token", "[PAD]"),
            ("cls_token", "[CLS]"),
            ("mask_token", "[MASK]"),
        ]
        .map(|(key, default)| token(key, default));
        let (unk, sep, pad, cls, mask) = (unk?, sep?, pad?, cls?, mask?);
        let strip_accents = match config.get("strip_accents") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_bool().ok_or_else(|| wrong("strip_accents", "true, false or null"))?),
        };
        Ok(BertOptions {
            do_lower_case: flag("do_lower_case", true)?,
            strip_accents,
            tokenize_chinese_chars: flag("tokenize_chinese_chars", true)?,
            specials: vec![pad, unk.clone(), cls.clone(), sep.clone(), mask],
            unk,
            cls,
            sep,
        })
    }
}

/// The tokenizer transformers' `BertTokenizer` builds from `vocab.txt`: BERT's normalizer and
/// pre-tokenizer, WordPiece over the vocabulary (words over 100 characters are unknown), the
/// special tokens matched in the raw text, and the `[CLS] text [SEP]` template.
fn bert_from_files(
    vocab_path: &Path,
    vocab: &[u8],
    config: Option<(&Path, &[u8])>,
    specials: Option<(&Path, &[u8])>,
) -> Result<TextTokenizer> {
    let fail = |message: String| Error::File { path: vocab_path.into(), message };
    let text = std::str::from_utf8(vocab).map_err(|e| fail(format!("is not UTF-8 text: {e}")))?;
    // One token a line, its id the line's index; a repeated token keeps its last line, and
    // trailing spaces stay, as in transformers' load_vocab (tokenizers' reader trims them). The
    // empty read only gives the map type WordPiece takes.
    let mut ids = WordPiece::read_bytes(&[]).map_err(|e| fail(e.to_string()))?;
    for (token, id) in text.lines().zip(0u32..) {
        ids.insert(token.to_string(), id);
    }
    let opts = BertOptions::read(config, specials)?;
    let id_of = |token: &str| {
        ids.get(token).copied().ok_or_else(|| fail(format!("has no line for the special token {token:?}")))
    };
    let (cls, sep) = (id_of(&opts.cls)?, id_of(&opts.sep)?);
    id_of(&opts.unk)?;
    let model = WordPiece::builder()
        .vocab(ids)
        .unk_token(opts.unk.clone())
        .continuing_subword_prefix("##".into())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|e| fail(format!("cannot make a WordPiece model of it: {e}")))?;
    let template = TemplateProcessing::builder()
        .try_single(format!("{}:0 $A:0 {}:0", opts.cls, opts.sep))
        .and_then(|b| b.try_pair(format!("{0}:0 $A:0 {1}:0 $B:1 {1}:1", opts.cls, opts.sep)))
        .map_err(|e| fail(format!("cannot make the [CLS]/[SEP] template: {e}")))?
        .special_tokens(vec![(opts.cls.clone(), cls), (opts.sep.clone(), sep)])
        .build()
        .map_err(|e| fail(format!("cannot make the [CLS]/[SEP] template: {e}")))?;
    let mut inner = tokenizers::Tokenizer::new(model);
    inner
        .with_normalizer(Some(BertNormalizer::new(
            true,
            opts.tokenize_chinese_chars,
            opts.strip_accents,
            opts.do_lower_case,
        )))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(template))
        .with_decoder(Some(decoders::wordpiece::WordPiece::default()));
    let added: Vec<AddedToken> = opts.specials.iter().map(|t| AddedToken::from(t.as_str(), true)).collect();
    inner.add_special_tokens(&added);
    Ok(TextTokenizer { inner })
}

/// tokenizers 0.22 panics instead of returning an error on three kinds of bad file (see
/// FUZZING.md): a JSON syntax error inside `decoder` (found by fuzzing), a `Precompiled`
/// normalizer with wrong fields (huggingface/tokenizers#1645), and a template for one text that
/// names the second one (found by fuzzing: it indexes a second encoding that one text lacks).
/// All are refused here, first.
fn check_tokenizer_json(bytes: &[u8]) -> std::result::Result<(), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not a valid tokenizer.json: {e}"))?;
    fn precompiled(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.get("type").is_some_and(|t| t == "Precompiled") || m.values().any(precompiled),
            Value::Array(items) => items.iter().any(precompiled),
            _ => false,
        }
    }
    if value.get("normalizer").is_some_and(precompiled) {
        return Err("not a BERT tokenizer.json: its normalizer is `Precompiled` (SentencePiece's)".into());
    }
    if value.get("post_processor").is_some_and(single_names_b) {
        return Err(
            "not a usable tokenizer.json: its post-processor's template for one text names a second text ($B)".into()
        );
    }
    Ok(())
}

/// Whether a `TemplateProcessing` in `v` (or in a `Sequence` of processors) has a `single`
/// template with a piece of sequence B, written `{"Sequence": {"id": "B", ..}}` or `"$B[:n]"`.
fn single_names_b(v: &Value) -> bool {
    let names_b = |piece: &Value| match piece {
        Value::Object(m) => m.get("Sequence").and_then(|s| s.get("id")).is_some_and(|id| id == "B"),
        Value::String(s) => s.strip_prefix('$').is_some_and(|rest| matches!(rest.split(':').next(), Some("B" | "b"))),
        _ => false,
    };
    match v {
        Value::Object(m) => {
            let template = m.get("type").is_some_and(|t| t == "TemplateProcessing");
            let single = m.get("single").and_then(Value::as_array);
            (template && single.is_some_and(|pieces| pieces.iter().any(names_b))) || m.values().any(single_names_b)
        }
        Value::Array(items) => items.iter().any(single_names_b),
        _ => false,
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
