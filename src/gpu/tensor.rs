//! Typed GPU buffers.
//!
//! Storage is always 32-bit words so every kernel binds `array<u32>`, `array<f32>` or
//! `array<i32>` and runs on adapters without SHADER_F16. An F16 tensor packs two halves per
//! word (`unpack2x16float` in WGSL) and pads its last dimension to an even length, so every row
//! starts on a word.

use std::sync::Arc;

use half::f16;

use super::Context;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    U32,
    I32,
}

impl DType {
    /// 32-bit words one row of `cols` elements occupies.
    pub fn row_words(self, cols: usize) -> usize {
        match self {
            DType::F16 => cols.div_ceil(2),
            _ => cols,
        }
    }
    /// Bytes of a tensor of this shape (rows = product of all but the last dimension).
    pub fn bytes(self, shape: &[usize]) -> u64 {
        let cols = shape.last().copied().unwrap_or(1);
        let rows: usize = shape.iter().rev().skip(1).product();
        (rows * self.row_words(cols) * 4) as u64
    }
}

pub(crate) const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

/// A counted buffer: when its last user drops it, it goes back to the context's pool (pooled)
/// or is destroyed.
pub(crate) struct Storage {
    buffer: Option<wgpu::Buffer>,
    ctx: Context,
    pooled: bool,
}

impl Storage {
    /// A buffer of at least `size` bytes (rounded to 4) from the pool, or a new one.
    pub fn pooled(ctx: &Context, size: u64, usage: wgpu::BufferUsages, label: &str) -> Result<Storage> {
        let size = size.max(4).div_ceil(4) * 4;
        let buffer = match ctx.inner.pool.take(size, usage) {
            Some(b) => b,
            None => ctx.create_buffer(size, usage, label)?,
        };
        Ok(Storage { buffer: Some(buffer), ctx: ctx.clone(), pooled: true })
    }
    /// A new buffer of its own, destroyed when dropped.
    pub fn owned(ctx: &Context, size: u64, usage: wgpu::BufferUsages, label: &str) -> Result<Storage> {
        let buffer = ctx.create_buffer(size, usage, label)?;
        Ok(Storage { buffer: Some(buffer), ctx: ctx.clone(), pooled: false })
    }
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("live buffer")
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            if self.pooled {
                self.ctx.inner.pool.give(b);
            } else {
                self.ctx.destroy_buffer(b);
            }
        }
    }
}

/// A GPU buffer with a shape and a dtype. Cloning shares the buffer.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.shape, self.dtype)
    }
}

fn f16_words(data: &[f32], cols: usize) -> Vec<u32> {
    let cols = cols.max(1);
    let mut out = Vec::with_capacity(data.len().div_ceil(2) + data.len() / cols);
    for row in data.chunks(cols) {
        for pair in row.chunks(2) {
            let lo = f16::from_f32(pair[0]).to_bits() as u32;
            let hi = pair.get(1).map_or(0, |&v| f16::from_f32(v).to_bits() as u32);
            out.push(lo | (hi << 16));
        }
    }
    out
}

fn check_len(shape: &[usize], len: usize) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != len {
        return Err(Error::Invalid(format!("shape {shape:?} holds {n} elements but {len} were given")));
    }
    Ok(())
}

impl Tensor {
    /// An uninitialised (zeroed by wgpu) tensor with its own, unpooled buffer.
    pub fn empty(ctx: &Context, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let storage = Storage::owned(ctx, dtype.bytes(shape), USAGE, "tensor")?;
        Ok(Tensor { storage: Arc::new(storage), shape: shape.to_vec(), dtype })
    }

    /// A tensor whose buffer comes from, and returns to, the context's pool.
    pub(crate) fn pooled(ctx: &Context, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let storage = Storage::pooled(ctx, dtype.bytes(shape), USAGE, "transient")?;
        Ok(Tensor { storage: Arc::new(storage), shape: shape.to_vec(), dtype })
    }

    /// Uploads f32 data, stored as `dtype` (F32 or F16).
    pub fn from_f32(ctx: &Context, data: &[f32], shape: &[usize], dtype: DType) -> Result<Tensor> {
        check_len(shape, data.len())?;
        let t = Tensor::empty(ctx, shape, dtype)?;
        t.write_f32(ctx, data)?;
        Ok(t)
    }

    pub fn from_u32(ctx: &Context, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        check_len(shape, data.len())?;
        let t = Tensor::empty(ctx, shape, DType::U32)?;
        t.write_words(ctx, data)?;
        Ok(t)
    }

    /// Overwrites the whole tensor from f32 values (converted to f16 for F16 tensors).
    pub fn write_f32(&self, ctx: &Context, data: &[f32]) -> Result<()> {
        check_len(&self.shape, data.len())?;
        match self.dtype {
            DType::F32 => self.write_words(ctx, bytemuck::cast_slice(data)),
            DType::F16 => self.write_words(ctx, &f16_words(data, self.cols())),
            d => Err(Error::Invalid(format!("cannot write f32 values into a {d:?} tensor"))),
        }
    }

    /// Overwrites the leading words of the buffer (no conversion).
    pub fn write_words(&self, ctx: &Context, words: &[u32]) -> Result<()> {
        self.write_words_at(ctx, 0, words)
    }

    /// Overwrites words `at..at + words.len()` of the buffer (no conversion).
    pub fn write_words_at(&self, ctx: &Context, at: usize, words: &[u32]) -> Result<()> {
        if (at + words.len()) as u64 * 4 > self.buffer().size() {
            return Err(Error::Invalid(format!("{} words at {at} do not fit in {:?}", words.len(), self)));
        }
        if !words.is_empty() {
            ctx.queue().write_buffer(self.buffer(), at as u64 * 4, bytemuck::cast_slice(words));
            ctx.note_upload(words.len() as u64 * 4)?;
        }
        Ok(())
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// The last dimension (1 for a scalar).
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
    /// The product of all but the last dimension.
    pub fn rows(&self) -> usize {
        self.shape.iter().rev().skip(1).product()
    }
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.storage.buffer()
    }
    /// Same buffer, another shape with the same number of elements (and, for F16, the same last
    /// dimension parity, since rows are padded).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let t = Tensor { storage: self.storage.clone(), shape: shape.to_vec(), dtype: self.dtype };
        if t.numel() != self.numel() || self.dtype.bytes(shape) != self.dtype.bytes(&self.shape) {
            return Err(Error::Invalid(format!("cannot view {self:?} as {shape:?}")));
        }
        Ok(t)
    }
    /// The same buffer seen as another shape and dtype, without a size check: the graph
    /// planner uses it to place a value in a buffer at least as large.
    pub(crate) fn retyped(&self, shape: &[usize], dtype: DType) -> Tensor {
        Tensor { storage: self.storage.clone(), shape: shape.to_vec(), dtype }
    }

    /// Copies the raw words back to the host (waits for the GPU). For tests and tools: a decode
    /// step reads back through a plan's own staging buffer instead.
    pub fn read_words(&self, ctx: &Context) -> Result<Vec<u32>> {
        block_on(self.read_words_async(ctx))
    }

    /// [`Tensor::read_words`] without blocking (what a browser must use).
    pub async fn read_words_async(&self, ctx: &Context) -> Result<Vec<u32>> {
        let (staging, size) = self.copy_to_staging(ctx)?;
        map_read_async(ctx, staging.buffer(), size, None).await
    }

    /// Queues a copy of the whole buffer into a new mappable one.
    fn copy_to_staging(&self, ctx: &Context) -> Result<(Storage, u64)> {
        let size = self.buffer().size();
        let staging =
            Storage::owned(ctx, size, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, "readback")?;
        let mut enc = ctx.device().create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(self.buffer(), 0, staging.buffer(), 0, size);
        ctx.queue().submit([enc.finish()]);
        Ok((staging, size))
    }

    /// The values as f32 (F16 widened; U32/I32 rejected).
    pub fn to_f32(&self, ctx: &Context) -> Result<Vec<f32>> {
        block_on(self.to_f32_async(ctx))
    }

    /// [`Tensor::to_f32`] without blocking.
    pub async fn to_f32_async(&self, ctx: &Context) -> Result<Vec<f32>> {
        self.words_to_f32(self.read_words_async(ctx).await?)
    }

    fn words_to_f32(&self, words: Vec<u32>) -> Result<Vec<f32>> {
        let cols = self.cols();
        match self.dtype {
            DType::F32 => Ok(bytemuck::cast_slice(&words)[..self.numel()].to_vec()),
            DType::F16 => {
                let halves: &[u16] = bytemuck::cast_slice(&words);
                let stride = cols + cols % 2;
                let mut out = Vec::with_capacity(self.numel());
                for r in 0..self.rows() {
                    out.extend(halves[r * stride..r * stride + cols].iter().map(|&h| f16::from_bits(h).to_f32()));
                }
                Ok(out)
            }
            d => Err(Error::Invalid(format!("cannot read a {d:?} tensor as f32"))),
        }
    }

    pub fn to_u32(&self, ctx: &Context) -> Result<Vec<u32>> {
        block_on(self.to_u32_async(ctx))
    }

    /// [`Tensor::to_u32`] without blocking.
    pub async fn to_u32_async(&self, ctx: &Context) -> Result<Vec<u32>> {
        let mut w = self.read_words_async(ctx).await?;
        w.truncate(self.numel());
        Ok(w)
    }
}

/// Runs a future of the async core to its end on this thread: every blocking method is this
/// over its `_async` form. A browser cannot wait for the GPU, so there it is an error that
/// names the way out.
pub(crate) fn block_on<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    #[cfg(target_arch = "wasm32")]
    {
        drop(future);
        Err(Error::Gpu("a browser cannot wait for the GPU; call the async form of this method".into()))
    }
    #[cfg(not(target_arch = "wasm32"))]
    pollster::block_on(future)
}

/// Maps `staging` and copies out its first `size` bytes as words, once submission `until`
/// (`None`: all submitted work) is done: natively the device is polled until then (so the map
/// is ready when first polled); in a browser the map completes on its event loop.
pub(crate) async fn map_read_async(
    ctx: &Context,
    staging: &wgpu::Buffer,
    size: u64,
    until: Option<wgpu::SubmissionIndex>,
) -> Result<Vec<u32>> {
    let mapped = Mapped::default();
    let done = mapped.clone();
    staging.map_async(wgpu::MapMode::Read, ..size, move |r| done.complete(r));
    #[cfg(not(target_arch = "wasm32"))]
    match until {
        Some(index) => ctx.wait_for(index)?,
        None => ctx.wait()?,
    }
    #[cfg(target_arch = "wasm32")]
    let _ = (ctx, until);
    mapped.await.map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
    let words = {
        let view = staging.get_mapped_range(..size).map_err(|e| Error::Gpu(e.to_string()))?;
        bytemuck::cast_slice::<u8, u32>(&view).to_vec()
    };
    staging.unmap();
    Ok(words)
}

/// Resolves when wgpu calls back with a buffer mapping's result.
#[derive(Clone, Default)]
struct Mapped(std::sync::Arc<std::sync::Mutex<MapState>>);

#[derive(Default)]
struct MapState {
    result: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<std::task::Waker>,
}

impl Mapped {
    fn complete(&self, r: std::result::Result<(), wgpu::BufferAsyncError>) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.result = Some(r);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl std::future::Future for Mapped {
    type Output = std::result::Result<(), wgpu::BufferAsyncError>;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match s.result.take() {
            Some(r) => std::task::Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}

/// A matrix too large for one storage binding, kept as consecutive row ranges, each in its own
/// buffer within the adapter's binding limit (Bark's 129,600-row text embedding is 398-531 MB).
#[derive(Clone, Debug)]
pub struct RowSplit {
    /// `(first_row, part)`; each part has shape `[part_rows, cols]`.
    pub parts: Vec<(usize, Tensor)>,
    pub rows: usize,
    pub cols: usize,
    pub dtype: DType,
}

impl RowSplit {
    /// Uploads a row-major `[rows, cols]` matrix in as few parts as the binding limit allows.
    pub fn from_f32(ctx: &Context, data: &[f32], rows: usize, cols: usize, dtype: DType) -> Result<RowSplit> {
        check_len(&[rows, cols], data.len())?;
        let row_bytes = (dtype.row_words(cols) * 4) as u64;
        let per_part = (ctx.max_binding_bytes() / row_bytes.max(1)).max(1) as usize;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < rows.max(1) {
            let n = per_part.min(rows - start);
            if n == 0 {
                break;
            }
            let t = Tensor::from_f32(ctx, &data[start * cols..(start + n) * cols], &[n, cols], dtype)?;
            parts.push((start, t));
            start += n;
        }
        Ok(RowSplit { parts, rows, cols, dtype })
    }
}
