//! GPU time per kernel, from timestamp queries, for finding where a step's time goes.
//!
//! With profiling on (`ContextOptions::profile`, `BARK_PROFILE=1`) every plan run encodes each
//! dispatch in its own compute pass with a timestamp at both ends, then waits for the run and
//! adds each pass's time to its kernel's total. That serialises the host and the GPU (a decode
//! step can no longer be queued behind the previous one) and adds a pass per dispatch, so the
//! wall-clock times of a profiled run are not the real ones; the per-kernel times are the point.
//! The query sets and buffers it makes are its own and not counted in [`super::Stats`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{Context, Error, Result};

/// Time the GPU spent in one kernel (`shader::entry`) since profiling started or was last taken.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub kernel: String,
    pub dispatches: u64,
    pub seconds: f64,
}

/// Passes one query set times: wgpu's `QUERY_SET_MAX_QUERIES` (4096), two queries per pass.
const PASSES_PER_SET: u32 = 4096 / 2;

/// Totals per kernel, in nanoseconds.
#[derive(Default)]
pub(crate) struct Profiler {
    totals: Mutex<BTreeMap<String, (u64, f64)>>,
}

impl Profiler {
    /// Every kernel's total so far, longest first, and starts again from zero.
    pub fn take(&self) -> Vec<KernelTime> {
        let totals = std::mem::take(&mut *self.totals.lock().unwrap());
        let mut rows: Vec<KernelTime> = totals
            .into_iter()
            .map(|(kernel, (dispatches, ns))| KernelTime { kernel, dispatches, seconds: ns * 1e-9 })
            .collect();
        rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        rows
    }

    fn add(&self, kernel: &str, ns: f64) {
        let mut totals = self.totals.lock().unwrap();
        let e = totals.entry(kernel.to_string()).or_default();
        e.0 += 1;
        e.1 += ns;
    }
}

/// Timestamp queries for `passes` compute passes (two each), in as many sets as they need, and
/// the buffers they are read back through. A plan makes one on its first profiled run and keeps
/// it: a profiled run waits for itself, so the next one may reuse the buffers.
pub(crate) struct PassTimer {
    /// Each set and its query count.
    sets: Vec<(wgpu::QuerySet, u32)>,
    resolved: wgpu::Buffer,
    staging: wgpu::Buffer,
    passes: u32,
}

impl PassTimer {
    pub fn new(ctx: &Context, passes: usize) -> PassTimer {
        let device = ctx.device();
        let passes = passes as u32;
        let sets = (0..passes.div_ceil(PASSES_PER_SET))
            .map(|k| {
                let count = (passes - k * PASSES_PER_SET).min(PASSES_PER_SET) * 2;
                let desc = wgpu::QuerySetDescriptor { label: Some("profile"), ty: wgpu::QueryType::Timestamp, count };
                (device.create_query_set(&desc), count)
            })
            .collect();
        let bytes = u64::from(passes.max(1)) * 16;
        let buffer = |usage, label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        let resolved = buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC, "profile resolve");
        let staging = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, "profile staging");
        PassTimer { sets, resolved, staging, passes }
    }

    /// The timestamps of pass `i`: its start and end queries.
    pub fn writes(&self, i: usize) -> wgpu::ComputePassTimestampWrites<'_> {
        let per_set = PASSES_PER_SET as usize;
        let at = (i % per_set) as u32 * 2;
        wgpu::ComputePassTimestampWrites {
            query_set: &self.sets[i / per_set].0,
            beginning_of_pass_write_index: Some(at),
            end_of_pass_write_index: Some(at + 1),
        }
    }

    /// Copies every timestamp where [`PassTimer::finish`] can read it; after the last pass.
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        for (k, (set, count)) in self.sets.iter().enumerate() {
            enc.resolve_query_set(set, 0..*count, &self.resolved, u64::from(k as u32 * PASSES_PER_SET) * 16);
        }
        enc.copy_buffer_to_buffer(&self.resolved, 0, &self.staging, 0, self.staging.size());
    }

    /// Waits for `submission` and adds pass `i`'s time to `kernels[i]`'s total.
    pub fn finish<'a>(
        &self,
        ctx: &Context,
        submission: wgpu::SubmissionIndex,
        kernels: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        let profiler = ctx.profiler().ok_or_else(|| Error::Invalid("profiling is off".into()))?;
        let words = super::block_on(super::map_read_async(ctx, &self.staging, self.staging.size(), Some(submission)))?;
        let tick_ns = f64::from(ctx.queue().get_timestamp_period());
        for (i, kernel) in kernels.into_iter().enumerate().take(self.passes as usize) {
            let at = |q: usize| u64::from(words[2 * q]) | (u64::from(words[2 * q + 1]) << 32);
            let (start, end) = (at(2 * i), at(2 * i + 1));
            profiler.add(kernel, end.saturating_sub(start) as f64 * tick_ns);
        }
        Ok(())
    }
}
