//! Voice prompts in Suno's format: the semantic, coarse and fine codes of a short recording that
//! Bark continues from. On disk they are an `.npz` (a zip of `.npy` files) with the keys
//! `semantic_prompt` (N,), `coarse_prompt` (2, M) and `fine_prompt` (8, M), or, for the presets
//! of a Hugging Face checkout, three separate `.npy` files (see [`resolve_voice`]).

pub mod npy;
mod presets;

use std::io::{Read, Write};
use std::path::Path;

pub use presets::{list_voices, preset_files, resolve_voice, PRESET_INDEX};

use crate::atomic_file::write_atomically;
use crate::vocab::{CODEBOOK_SIZE, N_COARSE_CODEBOOKS, N_FINE_CODEBOOKS, SEMANTIC_VOCAB};
use crate::{Error, Result};
use npy::{parse_npy, shape_to_string, IntArray};

/// The three arrays of a prompt, by their `.npz` key.
pub const KEYS: [&str; 3] = ["semantic_prompt", "coarse_prompt", "fine_prompt"];

/// Prompt files are a few KB; anything this large is not one, and is refused before allocating.
const MAX_ARRAY_BYTES: u64 = 64 << 20;

/// A voice prompt, validated: every code in range and the coarse and fine prompts equally long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoicePrompt {
    /// (N,) semantic codes, each < [`SEMANTIC_VOCAB`].
    pub semantic: Vec<u32>,
    /// 2 rows (codebooks) of M coarse codes, each < [`CODEBOOK_SIZE`].
    pub coarse: Vec<Vec<u32>>,
    /// 8 rows of M fine codes, each < [`CODEBOOK_SIZE`].
    pub fine: Vec<Vec<u32>>,
}

fn rows(flat: Vec<u32>, m: usize) -> Vec<Vec<u32>> {
    flat.chunks(m.max(1)).map(<[u32]>::to_vec).collect()
}

impl VoicePrompt {
    /// M, the frames of the coarse and fine prompts.
    pub fn frames(&self) -> usize {
        self.coarse.first().map_or(0, Vec::len)
    }

    /// Reads a voice prompt `.npz` as written by `np.savez`, `np.savez_compressed` or Bark's
    /// `save_as_prompt`.
    pub fn load_npz(path: impl AsRef<Path>) -> Result<VoicePrompt> {
        let path = path.as_ref();
        let file = std::fs::File::open(path)
            .map_err(|e| Error::File { path: path.into(), message: format!("cannot open the voice prompt: {e}") })?;
        Self::read_npz(path, std::io::BufReader::new(file))
    }

    /// A voice prompt `.npz` already in memory (a browser's fetch); `name` stands for its path
    /// in messages.
    pub fn from_npz_bytes(name: impl AsRef<Path>, bytes: &[u8]) -> Result<VoicePrompt> {
        Self::read_npz(name.as_ref(), std::io::Cursor::new(bytes))
    }

    fn read_npz(path: &Path, mut reader: impl Read + std::io::Seek) -> Result<VoicePrompt> {
        let fail = |message: String| Error::File { path: path.into(), message };
        let kind = not_a_zip_hint(&mut reader);
        let mut zip =
            zip::ZipArchive::new(reader).map_err(|e| fail(format!("not a valid .npz (zip) file{kind}: {e}")))?;
        let mut load = |key: &str| -> Result<IntArray> {
            let entry_name = [format!("{key}.npy"), key.to_string()]
                .into_iter()
                .find(|n| zip.index_for_name(n).is_some())
                .ok_or_else(|| fail(format!("the key `{key}` is missing")))?;
            let bytes = read_entry(&mut zip, &entry_name).map_err(|m| fail(format!("`{key}`: {m}")))?;
            parse_npy(&bytes).map_err(|m| fail(format!("`{key}`: {m}")))
        };
        let (semantic, coarse, fine) = (load(KEYS[0])?, load(KEYS[1])?, load(KEYS[2])?);
        VoicePrompt::from_arrays(semantic, coarse, fine).map_err(fail)
    }

    /// Writes the prompt as an `.npz` with the three keys as int64 arrays in stored (uncompressed)
    /// zip entries, as `np.savez` does. The file appears complete or not at all.
    pub fn save_npz(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.validate().map_err(|m| Error::File { path: path.into(), message: format!("cannot save: {m}") })?;
        let m = self.frames();
        let entries = [
            (KEYS[0], vec![self.semantic.len()], self.semantic.clone()),
            (KEYS[1], vec![N_COARSE_CODEBOOKS, m], self.coarse.concat()),
            (KEYS[2], vec![N_FINE_CODEBOOKS, m], self.fine.concat()),
        ];
        write_atomically(path, |out| {
            let mut zip = zip::ZipWriter::new(out);
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(false);
            for (key, shape, codes) in entries {
                let values: Vec<i64> = codes.iter().map(|&c| c as i64).collect();
                let bytes = npy::write_npy_i64(&shape, &values)?;
                zip.start_file(format!("{key}.npy"), options).map_err(|e| e.to_string())?;
                zip.write_all(&bytes).map_err(|e| e.to_string())?;
            }
            zip.finish().map_err(|e| e.to_string())?;
            Ok(())
        })
    }

    /// Checks shapes and code ranges of arrays read from a file; the error names the key.
    pub fn from_arrays(semantic: IntArray, coarse: IntArray, fine: IntArray) -> Result<VoicePrompt, String> {
        let semantic_codes = codes(&semantic, KEYS[0], &[None], SEMANTIC_VOCAB)?;
        let coarse_codes = codes(&coarse, KEYS[1], &[Some(N_COARSE_CODEBOOKS), None], CODEBOOK_SIZE)?;
        let fine_codes = codes(&fine, KEYS[2], &[Some(N_FINE_CODEBOOKS), None], CODEBOOK_SIZE)?;
        if coarse.shape[1] != fine.shape[1] {
            return Err(format!(
                "`coarse_prompt` has {} frames but `fine_prompt` has {}; they must be equal",
                coarse.shape[1], fine.shape[1]
            ));
        }
        let m = coarse.shape[1];
        let prompt = VoicePrompt { semantic: semantic_codes, coarse: rows(coarse_codes, m), fine: rows(fine_codes, m) };
        prompt.validate()?;
        Ok(prompt)
    }

    /// Checks the invariants of the fields (row counts and lengths, code ranges).
    pub fn validate(&self) -> Result<(), String> {
        let m = self.frames();
        if self.semantic.is_empty() || m == 0 {
            return Err("a voice prompt needs at least one semantic code and one coarse/fine frame".into());
        }
        if let Some(bad) = self.semantic.iter().find(|&&c| c >= SEMANTIC_VOCAB) {
            return Err(format!("`{}` holds the code {bad}, outside 0..{SEMANTIC_VOCAB}", KEYS[0]));
        }
        for (key, rows, n_rows) in
            [(KEYS[1], &self.coarse, N_COARSE_CODEBOOKS), (KEYS[2], &self.fine, N_FINE_CODEBOOKS)]
        {
            if rows.len() != n_rows || rows.iter().any(|r| r.len() != m) {
                let lens: Vec<usize> = rows.iter().map(Vec::len).collect();
                return Err(format!("`{key}` has rows of lengths {lens:?}, not {n_rows} x {m}"));
            }
            if let Some(bad) = rows.iter().flatten().find(|&&c| c >= CODEBOOK_SIZE) {
                return Err(format!("`{key}` holds the code {bad}, outside 0..{CODEBOOK_SIZE}"));
            }
        }
        Ok(())
    }
}

/// What a file that fails as a zip is instead, when its first bytes say: a lone `.npy` array or a
/// pickle (`np.save` / `pickle.dump` of a dict), which is never unpickled. Empty when unknown.
fn not_a_zip_hint(reader: &mut (impl Read + std::io::Seek)) -> &'static str {
    let mut head = [0u8; 6];
    let read = reader.read_exact(&mut head).is_ok();
    if reader.rewind().is_err() || !read {
        return "";
    }
    match head {
        [0x93, b'N', b'U', b'M', b'P', b'Y'] => " (it is a single .npy array; a voice prompt is an .npz of three)",
        // Pickle protocols 2 and later begin with the PROTO opcode.
        [0x80, 2..=5, ..] => " (it is a Python pickle, which bark-wgpu never unpickles; save the voice with np.savez)",
        _ => "",
    }
}

/// Reads one zip entry whole, refusing sizes no prompt has.
fn read_entry<R: Read + std::io::Seek>(zip: &mut zip::ZipArchive<R>, name: &str) -> Result<Vec<u8>, String> {
    let entry = zip.by_name(name).map_err(|e| match e {
        zip::result::ZipError::UnsupportedArchive(m) => format!("{m} (re-save it with np.savez)"),
        e => e.to_string(),
    })?;
    if entry.size() > MAX_ARRAY_BYTES {
        return Err(format!("the entry is {} bytes, more than a voice prompt can be", entry.size()));
    }
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.take(MAX_ARRAY_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read the entry: {e}"))?;
    if bytes.len() as u64 > MAX_ARRAY_BYTES {
        return Err("the entry is larger than a voice prompt can be".into());
    }
    Ok(bytes)
}

/// Reads a whole `.npy` file, refusing sizes no prompt has.
pub(crate) fn read_npy_file(path: &Path) -> Result<IntArray> {
    let fail = |message: String| Error::File { path: path.into(), message };
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_ARRAY_BYTES + 1).read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_ARRAY_BYTES {
        return Err(fail("larger than a voice prompt can be".into()));
    }
    parse_npy(&bytes).map_err(fail)
}

/// The codes of `array` if its shape matches `expected` (None = any length) and every value is in
/// 0..limit.
fn codes(array: &IntArray, key: &str, expected: &[Option<usize>], limit: u32) -> Result<Vec<u32>, String> {
    let shape_ok =
        array.shape.len() == expected.len() && array.shape.iter().zip(expected).all(|(&d, e)| e.is_none_or(|e| e == d));
    if !shape_ok {
        let want = match expected {
            [None] => "(N,)".to_string(),
            [Some(rows), None] => format!("({rows}, M)"),
            _ => "?".to_string(),
        };
        return Err(format!("`{key}` has shape {}, expected {want}", shape_to_string(&array.shape)));
    }
    array
        .values
        .iter()
        .map(|&v| {
            u32::try_from(v)
                .ok()
                .filter(|&c| c < limit)
                .ok_or_else(|| format!("`{key}` holds the code {v}, outside 0..{limit}"))
        })
        .collect()
}
