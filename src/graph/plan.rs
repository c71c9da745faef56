//! Buffer planning and execution of a compiled [`Graph`].

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::{Graph, Val};
use crate::gpu::{DType, Family, PassTimer, Storage, Tensor};
use crate::{Context, Error, Result};

/// Index of a dispatch in its graph, for [`Plan::set_params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeId(pub usize);

struct Step {
    /// The kernel's shader file and op family (for [`Plan::shaders`], [`Plan::families`]).
    shader: &'static str,
    family: Option<Family>,
    /// `shader::entry`, the kernel's name in a profile.
    name: String,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
    /// Where this node's parameters live in the shared uniform buffer.
    params_at: Option<(u64, usize)>,
}

/// One submitted run of a plan, to read its results with [`Plan::read_run`].
#[derive(Clone, Debug)]
pub struct Run {
    submission: wgpu::SubmissionIndex,
    turn: usize,
}

/// A compiled step: every buffer and bind group exists; `run` only encodes and submits.
pub struct Plan {
    ctx: Context,
    steps: Vec<Step>,
    tensors: Vec<Tensor>,
    params: Option<Storage>,
    /// Two staging buffers per readback value, used by alternate runs.
    readbacks: Vec<(Val, [Storage; 2])>,
    copies: Vec<(Val, Val)>,
    /// Runs so far; run `n` copies its readbacks into staging buffer `n % 2`.
    runs: AtomicUsize,
    /// The timestamp queries of profiled runs, made by the first one.
    timer: OnceLock<PassTimer>,
    /// Bytes of intermediate buffers the plan added (after reuse by lifetime; compiled in a
    /// [`Scratch`], only those it did not find there).
    pub transient_bytes: u64,
}

/// Intermediate buffers shared by several plans, for plans that take turns: Bark's fine model
/// has one plan per predicted codebook, six plans of the same shape run one after another,
/// which would otherwise hold six copies of the largest intermediates.
///
/// Sharing is safe because an intermediate never carries anything from one run to the next:
/// each run writes it before reading it, and the queue runs submissions in order. Kept values
/// ([`Graph::keep`], read-backs) never come from here, so each plan's results stay its own;
/// what is not safe is reading a plan's intermediate after another plan of the scratch ran.
#[derive(Default)]
pub struct Scratch {
    buffers: Mutex<Vec<Tensor>>,
}

impl Scratch {
    /// Bytes of the buffers the scratch holds.
    pub fn bytes(&self) -> u64 {
        self.buffers.lock().unwrap().iter().map(|t| t.buffer().size()).sum()
    }
}

fn rounded(dtype: DType, shape: &[usize]) -> u64 {
    dtype.bytes(shape).max(4).div_ceil(4) * 4
}

impl Plan {
    pub(super) fn new(g: Graph, scratch: Option<&Scratch>) -> Result<Plan> {
        let ctx = g.ctx.clone();
        let n_slots = g.slots.len();
        // Lifetime of every root intermediate: first and last node that touches it.
        let mut first = vec![usize::MAX; n_slots];
        let mut last = vec![0usize; n_slots];
        for (i, node) in g.nodes.iter().enumerate() {
            for v in &node.binds {
                let r = g.slots[v.0].root;
                first[r] = first[r].min(i);
                last[r] = last[r].max(i);
            }
        }
        // Bytes each root needs: the largest of its views.
        let mut need = vec![0u64; n_slots];
        for s in &g.slots {
            need[s.root] = need[s.root].max(rounded(s.dtype, &s.shape));
        }
        // Greedy by order of first use: take the smallest free buffer that fits, else a new
        // pooled one; a buffer is free again after the last node that uses its value.
        let mut root_tensor: Vec<Option<Tensor>> = vec![None; n_slots];
        // With a scratch, its buffers start free and new ones join it.
        let mut free: Vec<Tensor> = scratch.map(|s| s.buffers.lock().unwrap().clone()).unwrap_or_default();
        let mut transient_bytes = 0;
        let mut by_first: Vec<usize> =
            (0..n_slots).filter(|&r| g.slots[r].root == r && g.slots[r].external.is_none()).collect();
        by_first.sort_by_key(|&r| first[r]);
        let mut next = 0;
        for i in 0..g.nodes.len().max(1) {
            while next < by_first.len() && first[by_first[next]] <= i {
                let r = by_first[next];
                next += 1;
                let s = &g.slots[r];
                let t = if s.keep {
                    Tensor::pooled(&ctx, &[need[r] as usize / 4], DType::U32)?
                } else if let Some(k) = best_fit(&free, need[r]) {
                    free.swap_remove(k)
                } else {
                    let t = Tensor::pooled(&ctx, &[need[r] as usize / 4], DType::U32)?;
                    transient_bytes += t.buffer().size();
                    if let Some(s) = scratch {
                        s.buffers.lock().unwrap().push(t.clone());
                    }
                    t
                };
                root_tensor[r] = Some(t);
            }
            for &r in &by_first[..next] {
                if last[r] == i && !g.slots[r].keep && first[r] != usize::MAX {
                    if let Some(t) = &root_tensor[r] {
                        free.push(t.clone());
                    }
                }
            }
        }
        // A typed tensor for every value (views share their root's buffer).
        let mut tensors = Vec::with_capacity(n_slots);
        for s in &g.slots {
            let t = match &s.external {
                Some(t) => t.clone(),
                None => match &root_tensor[s.root] {
                    Some(t) => t.retyped(&s.shape, s.dtype),
                    // Never touched by a dispatch: still give it a buffer so reads work.
                    None => Tensor::pooled(&ctx, &s.shape, s.dtype)?,
                },
            };
            tensors.push(t);
        }

        // One uniform buffer for all parameters, each at an aligned offset.
        let align = ctx.device().limits().min_uniform_buffer_offset_alignment as u64;
        let mut offsets = Vec::with_capacity(g.nodes.len());
        let mut total = 0u64;
        for node in &g.nodes {
            if node.params.is_empty() {
                offsets.push(None);
            } else {
                let len = node.params.len().div_ceil(16) * 16;
                offsets.push(Some((total, len)));
                total = (total + len as u64).div_ceil(align) * align;
            }
        }
        let params = if total > 0 {
            let storage =
                Storage::pooled(&ctx, total, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST, "params")?;
            let buf = storage.buffer();
            let mut bytes = vec![0u8; buf.size() as usize];
            for (node, at) in g.nodes.iter().zip(&offsets) {
                if let Some((off, _)) = at {
                    bytes[*off as usize..*off as usize + node.params.len()].copy_from_slice(&node.params);
                }
            }
            ctx.queue().write_buffer(buf, 0, &bytes);
            Some(storage)
        } else {
            None
        };

        let max_groups = ctx.device().limits().max_compute_workgroups_per_dimension;
        let mut steps = Vec::with_capacity(g.nodes.len());
        for (node, at) in g.nodes.iter().zip(&offsets) {
            if node.groups.iter().any(|&n| n > max_groups) {
                return Err(Error::Invalid(format!(
                    "{}::{} dispatches {:?} workgroups, over the adapter's {max_groups} per dimension",
                    node.kernel.shader, node.kernel.entry, node.groups
                )));
            }
            let pipeline = ctx.pipeline(&node.kernel)?;
            let mut entries = Vec::new();
            if let (Some((off, len)), Some(buf)) = (at, &params) {
                entries.push(wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: buf.buffer(),
                        offset: *off,
                        size: NonZeroU64::new(*len as u64),
                    }),
                });
            }
            let base = entries.len() as u32;
            for (k, v) in node.binds.iter().enumerate() {
                let t = &tensors[v.0];
                let size = rounded(t.dtype(), t.shape()).min(t.buffer().size());
                entries.push(wgpu::BindGroupEntry {
                    binding: base + k as u32,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: t.buffer(),
                        offset: 0,
                        size: NonZeroU64::new(size),
                    }),
                });
            }
            let (bind_group, error) = crate::gpu::validated(ctx.device(), || {
                ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(node.kernel.entry),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &entries,
                })
            });
            if let Some(e) = error {
                return Err(Error::Gpu(format!("binding {}::{}: {e}", node.kernel.shader, node.kernel.entry)));
            }
            ctx.count_bind_group();
            let shader = node.kernel.shader;
            let name = format!("{shader}::{}", node.kernel.entry);
            let family = node.kernel.contract.map(|c| c.family);
            steps.push(Step { shader, family, name, pipeline, bind_group, groups: node.groups, params_at: *at });
        }

        let mut readbacks = Vec::new();
        for &v in &g.readbacks {
            let size = tensors[v.0].buffer().size();
            let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
            let pair = [Storage::pooled(&ctx, size, usage, "staging")?, Storage::pooled(&ctx, size, usage, "staging")?];
            readbacks.push((v, pair));
        }
        let copies = g.copies.clone();
        Ok(Plan {
            ctx,
            steps,
            tensors,
            params,
            readbacks,
            copies,
            runs: AtomicUsize::new(0),
            timer: OnceLock::new(),
            transient_bytes,
        })
    }

    /// Encodes every dispatch into one compute pass, then the readback copies and the copies,
    /// and submits once. Does not wait, except when the context is profiling (it then reads
    /// the run's timestamps).
    pub fn run(&self) -> Result<()> {
        self.submit().map(|_| ())
    }

    /// [`Plan::run`], returning the run for [`Plan::read_run`]. At most two runs' readbacks can
    /// be pending: run `k + 2` reuses run `k`'s staging buffers, so read `k` (or give it up)
    /// before submitting `k + 2`.
    pub fn submit(&self) -> Result<Run> {
        let device = self.ctx.device();
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") });
        let timer =
            self.ctx.profiling().then(|| self.timer.get_or_init(|| PassTimer::new(&self.ctx, self.steps.len())));
        match timer {
            // One pass per dispatch, each timed at both ends.
            Some(timer) => {
                for (i, s) in self.steps.iter().enumerate() {
                    let desc =
                        wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: Some(timer.writes(i)) };
                    encode(&mut enc.begin_compute_pass(&desc), std::slice::from_ref(s));
                }
                timer.resolve(&mut enc);
            }
            None => {
                let desc = wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: None };
                encode(&mut enc.begin_compute_pass(&desc), &self.steps);
            }
        }
        let turn = self.runs.fetch_add(1, Ordering::Relaxed) % 2;
        // Readbacks first: a copy may overwrite an input that is also read back.
        for (v, staging) in &self.readbacks {
            let staging = staging[turn].buffer();
            enc.copy_buffer_to_buffer(self.tensors[v.0].buffer(), 0, staging, 0, staging.size());
        }
        for (src, dst) in &self.copies {
            let (s, d) = (&self.tensors[src.0], &self.tensors[dst.0]);
            enc.copy_buffer_to_buffer(s.buffer(), 0, d.buffer(), 0, rounded(s.dtype(), s.shape()));
        }
        let submission = self.ctx.queue().submit([enc.finish()]);
        if let Some(timer) = timer {
            timer.finish(&self.ctx, submission.clone(), self.steps.iter().map(|s| s.name.as_str()))?;
        }
        Ok(Run { submission, turn })
    }

    /// Words of a value registered with [`Graph::readback`], after the last `run` (waits for
    /// all submitted work).
    pub fn read_words(&self, v: Val) -> Result<Vec<u32>> {
        crate::gpu::block_on(self.read_words_async(v))
    }

    /// [`Plan::read_words`] without blocking (what a browser must use).
    pub async fn read_words_async(&self, v: Val) -> Result<Vec<u32>> {
        let (staging, bytes) = self.staging(v, self.last_turn())?;
        crate::gpu::map_read_async(&self.ctx, staging, bytes, None).await
    }

    /// Words of a value registered with [`Graph::readback`] as `run` left them: waits for
    /// that submission only, so later runs may still be executing.
    pub fn read_run(&self, v: Val, run: &Run) -> Result<Vec<u32>> {
        crate::gpu::block_on(self.read_run_async(v, run))
    }

    /// [`Plan::read_run`] without blocking.
    pub async fn read_run_async(&self, v: Val, run: &Run) -> Result<Vec<u32>> {
        let (staging, bytes) = self.staging(v, run.turn)?;
        crate::gpu::map_read_async(&self.ctx, staging, bytes, Some(run.submission.clone())).await
    }

    /// The staging buffer of the last `run`'s turn.
    fn last_turn(&self) -> usize {
        (self.runs.load(Ordering::Relaxed) + 1) % 2
    }

    /// The staging buffer value `v` was copied to on `turn`, and its bytes.
    fn staging(&self, v: Val, turn: usize) -> Result<(&wgpu::Buffer, u64)> {
        let (_, staging) = self
            .readbacks
            .iter()
            .find(|(r, _)| *r == v)
            .ok_or_else(|| Error::Invalid("value was not registered with Graph::readback".into()))?;
        let t = &self.tensors[v.0];
        let staging = staging[turn].buffer();
        Ok((staging, rounded(t.dtype(), t.shape()).min(staging.size())))
    }

    /// The tensor holding value `v` (external, kept, or a view of one).
    pub fn tensor(&self, v: Val) -> Tensor {
        self.tensors[v.0].clone()
    }

    /// Replaces a node's parameters for the next `run` (same length as recorded).
    pub fn set_params(&self, node: super::NodeId, bytes: &[u8]) -> Result<()> {
        let step = self.steps.get(node.0).ok_or_else(|| Error::Invalid(format!("no node {}", node.0)))?;
        match (step.params_at, &self.params) {
            (Some((off, len)), Some(buf)) if bytes.len() <= len => {
                self.ctx.queue().write_buffer(buf.buffer(), off, bytes);
                Ok(())
            }
            _ => Err(Error::Invalid(format!("node {} takes no parameters of {} bytes", node.0, bytes.len()))),
        }
    }

    pub fn dispatch_count(&self) -> usize {
        self.steps.len()
    }

    /// The shader of each dispatch, in the order they run.
    pub fn shaders(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.shader).collect()
    }

    /// The op family of each dispatch, in the order they run (`None`: a kernel without a
    /// contract, made outside `ops`).
    pub fn families(&self) -> Vec<Option<Family>> {
        self.steps.iter().map(|s| s.family).collect()
    }
}

/// Records `steps`' dispatches into `pass`.
fn encode(pass: &mut wgpu::ComputePass<'_>, steps: &[Step]) {
    for s in steps {
        pass.set_pipeline(&s.pipeline);
        pass.set_bind_group(0, &s.bind_group, &[]);
        pass.dispatch_workgroups(s.groups[0], s.groups[1], s.groups[2]);
    }
}

fn best_fit(free: &[Tensor], need: u64) -> Option<usize> {
    free.iter()
        .enumerate()
        .filter(|(_, t)| t.buffer().size() >= need)
        .min_by_key(|(_, t)| t.buffer().size())
        .map(|(k, _)| k)
}
