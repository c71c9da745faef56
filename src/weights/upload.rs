//! Uploads from the memory map to GPU buffers, a bounded chunk of rows at a time: the host never
//! holds a second full copy of a tensor (the 129,600-row text embedding is 531 MB in f32).

use super::{convert, file_err, Entry, Weights};
use crate::gpu::{Context, DType, RowSplit, Tensor};
use crate::{Error, Result};

/// Elements converted per write: large enough for few queue writes, small enough to stay cheap.
const CHUNK_ELEMS: usize = 1 << 20;

fn check_dtype(dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 | DType::F16 => Ok(()),
        d => Err(Error::Dtype { op: "weights upload", message: format!("weights upload as F32 or F16, not {d:?}") }),
    }
}

/// Converts `rows` rows of `cols` stored elements in `bytes` and writes them into `dst` starting
/// at row `dst_row`.
fn write_rows(
    ctx: &Context,
    dst: &Tensor,
    dst_row: usize,
    bytes: &[u8],
    stored: super::StoredDType,
    cols: usize,
) -> Result<()> {
    let row_bytes = cols * stored.size();
    let row_words = dst.dtype().row_words(cols);
    let rows_per_chunk = (CHUNK_ELEMS / cols.max(1)).max(1);
    let mut values = Vec::new();
    let mut words = Vec::new();
    for (i, chunk) in bytes.chunks(rows_per_chunk * row_bytes.max(1)).enumerate() {
        values.resize(chunk.len() / stored.size(), 0.0f32);
        // The byte count is whole rows of a validated tensor, so the conversion cannot fail.
        let _ = convert::to_f32(stored, chunk, &mut values);
        let data: &[u8] = match dst.dtype() {
            DType::F16 => {
                convert::f16_words(&values, cols, &mut words);
                bytemuck::cast_slice(&words)
            }
            _ => bytemuck::cast_slice(&values),
        };
        let offset = ((dst_row + i * rows_per_chunk) * row_words * 4) as u64;
        if !data.is_empty() {
            ctx.queue().write_buffer(dst.buffer(), offset, data);
            // Lets wgpu free its staging copy every 64 MB, so no second full copy builds up.
            ctx.note_upload(data.len() as u64)?;
        }
    }
    Ok(())
}

impl Weights {
    /// Uploads `name`, which must have exactly `shape`, as an F32 or F16 tensor.
    pub fn upload(&self, ctx: &Context, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        check_dtype(dtype)?;
        let info = self.expect(name, shape)?;
        match self.entry(name)? {
            Entry::WeightNorm { .. } => Tensor::from_f32(ctx, &self.to_f32(name)?, shape, dtype),
            Entry::Stored(file_name) => {
                let t = Tensor::empty(ctx, shape, dtype)?;
                let cols = shape.last().copied().unwrap_or(1);
                write_rows(ctx, &t, 0, self.src(file_name)?.bytes(file_name)?, info.dtype, cols)?;
                Ok(t)
            }
        }
    }

    /// Uploads a `[rows, cols]` matrix split by rows into buffers within the binding limit (as
    /// [`RowSplit::from_f32`] splits it), converting one part at a time.
    pub fn upload_rows(&self, ctx: &Context, name: &str, rows: usize, cols: usize, dtype: DType) -> Result<RowSplit> {
        check_dtype(dtype)?;
        let info = self.expect(name, &[rows, cols])?;
        let file_name = match self.entry(name)? {
            Entry::WeightNorm { .. } => return RowSplit::from_f32(ctx, &self.to_f32(name)?, rows, cols, dtype),
            Entry::Stored(n) => n,
        };
        let bytes = self.src(file_name)?.bytes(file_name)?;
        let row_bytes = cols * info.dtype.size();
        let per_part = (ctx.max_binding_bytes() / (dtype.row_words(cols) as u64 * 4).max(1)).max(1) as usize;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < rows {
            let n = per_part.min(rows - start);
            let t = Tensor::empty(ctx, &[n, cols], dtype)?;
            write_rows(ctx, &t, 0, &bytes[start * row_bytes..(start + n) * row_bytes], info.dtype, cols)?;
            parts.push((start, t));
            start += n;
        }
        if parts.is_empty() {
            return Err(file_err(self.path(), format!("tensor `{name}` has no rows")));
        }
        Ok(RowSplit { parts, rows, cols, dtype })
    }
}
