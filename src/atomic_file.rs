//! Writing a file so that readers see either the old file or the complete new one: the bytes go
//! to a temporary file in the same directory, which is renamed over the target only when done.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// Creates `path` through `write`, which fills a buffered temporary file. On any error the
/// temporary file is removed and the target is left untouched; the error names `path`.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), String>,
) -> Result<()> {
    let fail = |message: String| Error::File { path: path.into(), message };
    let file_name = path.file_name().ok_or_else(|| fail("the output path has no file name".into()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if path.is_dir() {
        return Err(fail("is a directory".into()));
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(".{}.{}-{unique}.tmp", file_name.to_string_lossy(), std::process::id()));
    let file = File::create(&temp).map_err(|e| fail(format!("cannot create a file in {}: {e}", dir.display())))?;
    let mut writer = BufWriter::new(file);
    let result = write(&mut writer).and_then(|()| {
        let file = writer.into_inner().map_err(|e| e.error().to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        drop(file);
        std::fs::rename(&temp, path).map_err(|e| format!("cannot move the finished file into place: {e}"))
    });
    result.map_err(|message| {
        let _ = std::fs::remove_file(&temp);
        fail(message)
    })
}
