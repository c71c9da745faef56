//! One checkpoint file, memory-mapped (or, in a browser, held in memory as fetched), as a
//! table of named tensors: `model.safetensors` or a `torch.save` zip (`pytorch_model.bin`). Both reduce to (dtype, shape, byte range of the map),
//! every range checked against the file when it is opened, so reading a tensor later cannot go
//! out of bounds whatever the file claims.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

#[cfg(not(target_arch = "wasm32"))]
use memmap2::Mmap;

use super::{convert, pickle, StoredDType, TensorInfo};
use crate::{Error, Result};

/// Where a tensor's bytes lie in the mapped file.
#[derive(Clone, Debug)]
pub(crate) struct RawTensor {
    pub info: TensorInfo,
    pub start: usize,
    pub len: usize,
}

/// A checkpoint's bytes: mapped from its file, or held (fetched by a browser, which has no
/// files to map).
enum FileBytes {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(Mmap),
    Held(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            FileBytes::Mapped(m) => m,
            FileBytes::Held(v) => v,
        }
    }
}

/// A checkpoint file's bytes and its validated tensor table (names as the file has them).
pub struct WeightSource {
    path: PathBuf,
    map: FileBytes,
    tensors: BTreeMap<String, RawTensor>,
}

impl std::fmt::Debug for WeightSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WeightSource({}, {} tensors)", self.path.display(), self.tensors.len())
    }
}

pub(crate) fn file_err(path: &Path, message: impl Into<String>) -> Error {
    Error::File { path: path.to_path_buf(), message: message.into() }
}

#[cfg(not(target_arch = "wasm32"))]
fn map_file(path: &Path) -> Result<FileBytes> {
    let file = std::fs::File::open(path).map_err(|e| file_err(path, format!("cannot open: {e}")))?;
    // SAFETY: the map is read-only; like every mmap-based loader we assume nobody truncates or
    // rewrites the checkpoint while it is open (the bytes are only read through bounds-checked
    // slices of the map).
    let map = unsafe { Mmap::map(&file) }.map_err(|e| file_err(path, format!("cannot map: {e}")))?;
    Ok(FileBytes::Mapped(map))
}

#[cfg(target_arch = "wasm32")]
fn map_file(path: &Path) -> Result<FileBytes> {
    std::fs::read(path).map(FileBytes::Held).map_err(|e| file_err(path, format!("cannot read: {e}")))
}

impl WeightSource {
    /// Opens either format, told apart by content: a zip (`PK\x03\x04`) is a torch.save file,
    /// anything else must be safetensors.
    pub fn open(path: impl AsRef<Path>) -> Result<WeightSource> {
        let path = path.as_ref();
        Self::from_file_bytes(path, map_file(path)?)
    }

    /// A checkpoint already in memory (a browser's fetch, say), either format; `name` stands
    /// for its path in messages.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: Vec<u8>) -> Result<WeightSource> {
        Self::from_file_bytes(name.as_ref(), FileBytes::Held(bytes))
    }

    fn from_file_bytes(path: &Path, map: FileBytes) -> Result<WeightSource> {
        if map.starts_with(b"PK\x03\x04") {
            Self::torch_from_map(path, map)
        } else {
            Self::safetensors_from_map(path, map)
        }
    }

    pub fn open_safetensors(path: impl AsRef<Path>) -> Result<WeightSource> {
        let path = path.as_ref();
        Self::safetensors_from_map(path, map_file(path)?)
    }

    fn safetensors_from_map(path: &Path, map: FileBytes) -> Result<WeightSource> {
        // read_metadata checks the header length, that the offsets tile the data section without
        // gaps or overlaps, that each size is shape x dtype, and that the file ends where the
        // data does.
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&map)
            .map_err(|e| file_err(path, format!("not a valid safetensors file: {e}")))?;
        let base = 8 + header_len;
        let mut tensors = BTreeMap::new();
        for (name, info) in meta.tensors() {
            let dtype = StoredDType::from_safetensors(info.dtype)
                .ok_or_else(|| file_err(path, format!("tensor `{name}` has unsupported dtype {:?}", info.dtype)))?;
            let (s, e) = info.data_offsets;
            let raw = RawTensor { info: TensorInfo { dtype, shape: info.shape.clone() }, start: base + s, len: e - s };
            check_range(path, &name, &raw, map.len())?;
            tensors.insert(name, raw);
        }
        Ok(WeightSource { path: path.to_path_buf(), map, tensors })
    }

    fn torch_from_map(path: &Path, map: FileBytes) -> Result<WeightSource> {
        let zerr = |e: zip::result::ZipError| file_err(path, format!("not a valid torch zip file: {e}"));
        let mut zip = zip::ZipArchive::new(Cursor::new(&map[..])).map_err(zerr)?;
        // Every entry `name -> (start, len)` of the stored (uncompressed) data within the file.
        let mut entries: BTreeMap<String, Result<(usize, usize), String>> = BTreeMap::new();
        for i in 0..zip.len() {
            let f = zip.by_index_raw(i).map_err(zerr)?;
            let name = f.name().to_string();
            let loc = match (f.compression(), f.data_start()) {
                (zip::CompressionMethod::Stored, Some(start)) => {
                    let (start, len) = (start as usize, f.size() as usize);
                    if f.compressed_size() != f.size() || start.checked_add(len).is_none_or(|e| e > map.len()) {
                        Err(format!("entry `{name}` lies outside the file"))
                    } else {
                        Ok((start, len))
                    }
                }
                (method, _) => Err(format!("entry `{name}` is compressed ({method}); torch.save stores entries")),
            };
            entries.insert(name, loc);
        }
        let pkl_names: Vec<&String> =
            entries.keys().filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1).collect();
        let [pkl_name] = pkl_names.as_slice() else {
            return Err(file_err(path, "not a torch.save file: want exactly one <archive>/data.pkl"));
        };
        let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
        let entry = |name: &str| -> std::result::Result<(usize, usize), String> {
            match entries.get(name) {
                Some(loc) => loc.clone(),
                None => Err(format!("missing zip entry `{name}`")),
            }
        };
        if let Ok((s, l)) = entry(&format!("{prefix}byteorder")) {
            if &map[s..s + l] != b"little" {
                return Err(file_err(path, "big-endian torch files are not supported"));
            }
        }
        let (s, l) = entry(&format!("{prefix}data.pkl")).map_err(|e| file_err(path, e))?;
        let state = pickle::read_state_dict(&map[s..s + l]).map_err(|e| file_err(path, format!("data.pkl: {e}")))?;

        let mut tensors = BTreeMap::new();
        for (name, t) in state {
            let dtype = t.storage.dtype;
            let ctx = |msg: String| file_err(path, format!("tensor `{name}`: {msg}"));
            let (s_start, s_len) = entry(&format!("{prefix}data/{}", t.storage.key))
                .map_err(|e| ctx(format!("storage {}: {e}", t.storage.key)))?;
            let elem = dtype.size() as u64;
            if t.storage.numel.checked_mul(elem) != Some(s_len as u64) {
                return Err(ctx(format!(
                    "storage {} holds {s_len} bytes, not {} elements of {dtype:?}",
                    t.storage.key, t.storage.numel
                )));
            }
            if t.size.len() != t.stride.len() {
                return Err(ctx("size and stride differ in rank".into()));
            }
            let shape: Vec<usize> = t.size.iter().map(|&d| d as usize).collect();
            let numel =
                t.size.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(|| ctx("size overflows".into()))?;
            // Contiguous (row-major) only; the stride of a dimension of size 1 does not matter.
            let mut want = 1u64;
            for (&d, &st) in t.size.iter().zip(&t.stride).rev() {
                if d != 1 && st != want {
                    return Err(ctx(format!("is not contiguous (size {:?}, stride {:?})", t.size, t.stride)));
                }
                want = want.saturating_mul(d);
            }
            let end = t.offset.checked_add(numel).filter(|&e| e <= t.storage.numel);
            if end.is_none() {
                return Err(ctx(format!(
                    "offset {} + {numel} elements exceed its storage of {}",
                    t.offset, t.storage.numel
                )));
            }
            let raw = RawTensor {
                info: TensorInfo { dtype, shape },
                start: s_start + (t.offset * elem) as usize,
                len: (numel * elem) as usize,
            };
            check_range(path, &name, &raw, map.len())?;
            if tensors.insert(name.clone(), raw).is_some() {
                return Err(file_err(path, format!("tensor `{name}` appears twice")));
            }
        }
        Ok(WeightSource { path: path.to_path_buf(), map, tensors })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }
    pub fn len(&self) -> usize {
        self.tensors.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name).map(|r| &r.info)
    }

    pub(crate) fn raw(&self, name: &str) -> Result<&RawTensor> {
        self.tensors.get(name).ok_or_else(|| file_err(&self.path, format!("missing tensor `{name}`")))
    }

    /// The stored little-endian bytes of a tensor.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let r = self.raw(name)?;
        Ok(&self.map[r.start..r.start + r.len])
    }

    /// A floating-point tensor's values widened to f32 (F32, F16, BF16, F64).
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>> {
        let r = self.raw(name)?;
        let mut out = vec![0.0; r.info.numel()];
        convert::to_f32(r.info.dtype, &self.map[r.start..r.start + r.len], &mut out)
            .map_err(|m| file_err(&self.path, format!("tensor `{name}`: {m}")))?;
        Ok(out)
    }

    /// An integer or bool tensor's values as i64 (I64, I32, I16, I8, U8, BOOL).
    pub fn to_i64(&self, name: &str) -> Result<Vec<i64>> {
        let r = self.raw(name)?;
        convert::to_i64(r.info.dtype, &self.map[r.start..r.start + r.len])
            .map_err(|m| file_err(&self.path, format!("tensor `{name}`: {m}")))
    }
}

/// Redundant with the format checks, but it is what guarantees every later slice is in bounds.
fn check_range(path: &Path, name: &str, r: &RawTensor, file_len: usize) -> Result<()> {
    let want = r.info.numel().checked_mul(r.info.dtype.size());
    if want != Some(r.len) || r.start.checked_add(r.len).is_none_or(|e| e > file_len) {
        return Err(file_err(path, format!("tensor `{name}` has an invalid size or offset")));
    }
    Ok(())
}
