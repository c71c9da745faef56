//! Adapter choice and device creation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::profile::{KernelTime, Profiler};
use super::{BufferPool, KernelPolicy, PipelineCache};
use crate::{Error, Result};

/// Optional features we use when the adapter offers them; everything also works without them.
/// Not SHADER_F16: no kernel uses WGSL's `f16` (f16 values are packed two per u32 word).
const WANTED_FEATURES: [wgpu::Features; 2] = [wgpu::Features::SUBGROUP, wgpu::Features::TIMESTAMP_QUERY];

/// How to pick the adapter. `Default` reads `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Backends to search; `None` means `WGPU_BACKEND` if set, else all of them.
    pub backends: Option<wgpu::Backends>,
    /// Case-insensitive substring of the adapter name; `None` means `WGPU_ADAPTER_NAME` if set.
    pub adapter_name: Option<String>,
    /// Lower the largest storage binding we use (bytes), to exercise the split-tensor paths
    /// on adapters whose real limit is large. `None` keeps the adapter's limit.
    pub max_binding_bytes: Option<u64>,
    /// Ask for none of the optional features (subgroups, timestamps), to test the fallbacks.
    pub no_optional_features: bool,
    /// Whether a decode step's GEMVs apply the LayerNorm in front of them themselves
    /// ([`crate::ops::matmul::norm_linear`]: one dispatch fewer per norm, three per layer and
    /// the head). `None` means `BARK_NORM_IN_GEMV` (`0` or `1`) if set, else yes on every
    /// adapter but a CPU one: on lavapipe the kernel's extra work per workgroup costs more
    /// than the dispatch it saves (see BENCHMARKS.md), on a GPU a dispatch is the dearer.
    pub norm_in_gemv: Option<bool>,
    /// Whether the linear layers, the attention and the layer norms run their variants for
    /// CPUs (`shaders/cpu/`, `ops::cpu`: no workgroup tiles or barriers) instead of the GPU kernels. `None` means `BARK_CPU_KERNELS`
    /// (`0` or `1`) if set, else yes exactly on a CPU adapter (faster there, see BENCHMARKS.md;
    /// a GPU wants the tiles).
    pub cpu_kernels: Option<bool>,
    /// Whether to open the device with WebGPU's default limits (`wgpu::Limits::default()`:
    /// 128 MiB bindings, 256 MiB buffers, 16 KiB of workgroup memory, 256 invocations) instead
    /// of everything the adapter offers, to run as the weakest adapters and browsers would.
    /// `None` means `BARK_WEBGPU_LIMITS` (`0` or `1`) if set, else no.
    pub webgpu_limits: Option<bool>,
    /// Whether plan runs time each dispatch with timestamp queries, for
    /// [`Context::take_profile`] (see `gpu/profile.rs`: it slows every run down). `None` means
    /// `BARK_PROFILE` (`0` or `1`) if set, else no. Needs an adapter with timestamp queries.
    pub profile: Option<bool>,
}

/// What `bark-wgpu devices` prints for one adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// Whether the adapter offers WGSL `f16` (SHADER_F16). For information only: it is never
    /// requested, since no kernel uses it.
    pub shader_f16: bool,
    pub subgroup: bool,
    pub timestamp_query: bool,
    /// The smallest and largest subgroup size the adapter may pick (0 where it has none).
    pub subgroup_sizes: (u32, u32),
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let f = adapter.features();
        let driver = format!("{} {}", info.driver, info.driver_info).trim().to_string();
        AdapterSummary {
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver,
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroup: f.contains(wgpu::Features::SUBGROUP),
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
        }
    }
}

/// Counters a test reads to prove a warm step allocates nothing.
#[derive(Default)]
pub(crate) struct Counters {
    pub buffers_created: AtomicU64,
    pub bytes_created: AtomicU64,
    /// Bytes of buffers that exist now (in use or idle in the pool), and the most there were.
    pub bytes_live: AtomicU64,
    pub bytes_peak: AtomicU64,
    /// Bytes queued by `write_buffer` since the last flush (see `Context::note_upload`).
    pub pending_upload: AtomicU64,
    pub pipelines_created: AtomicU64,
    pub bind_groups_created: AtomicU64,
    /// The most bytes buffers may hold at once ([`Context::set_memory_limit`]; 0: no limit).
    pub memory_limit: AtomicU64,
}

/// A snapshot of the context's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub buffers_created: u64,
    /// Bytes of all buffers ever created (weights, caches, pooled intermediates, staging).
    pub bytes_created: u64,
    /// Bytes of the buffers that exist now: held by tensors, plans and caches, or idle in the
    /// pool until [`Context::trim_pool`].
    pub bytes_live: u64,
    /// The most `bytes_live` has been since the context was made or [`Context::reset_peak`].
    pub bytes_peak: u64,
    pub pipelines_created: u64,
    pub bind_groups_created: u64,
}

pub(crate) struct Inner {
    /// Kept as long as the device: a browser's WebGPU stops answering (error scopes, maps)
    /// once the instance that made the adapter is gone.
    pub instance: wgpu::Instance,
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub summary: AdapterSummary,
    pub max_binding_bytes: u64,
    pub max_buffer_bytes: u64,
    pub policy: KernelPolicy,
    pub profiler: Option<Profiler>,
    pub counters: Counters,
    pub pool: BufferPool,
    pub pipelines: PipelineCache,
}

/// One adapter, its device and queue, the buffer pool and the pipeline cache. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<Inner>,
}

/// An on/off setting: the caller's choice, else the environment variable `var` (`0` or `1`),
/// else `default`.
fn switch(chosen: Option<bool>, var: &str, default: bool) -> Result<bool> {
    match (chosen, std::env::var(var).ok()) {
        (Some(on), _) => Ok(on),
        (None, Some(v)) => match v.trim() {
            "1" => Ok(true),
            "0" => Ok(false),
            _ => Err(Error::Invalid(format!("{var} is {v:?}; set it to 0 or 1"))),
        },
        (None, None) => Ok(default),
    }
}

fn backends_from(opts: &ContextOptions) -> wgpu::Backends {
    opts.backends.unwrap_or_else(|| wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()))
}

/// The backend's own validation (the Vulkan validation layer, where installed) only when
/// `WGPU_VALIDATION` asks for it: wgpu turns it on in every debug build otherwise, which
/// slows the tests severalfold wherever the layer happens to be installed. wgpu's own checks
/// of every call run either way.
fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    desc.flags = (desc.flags - wgpu::InstanceFlags::VALIDATION).with_env();
    wgpu::Instance::new(desc)
}

/// Lower is better: real GPUs first, a CPU driver next, GL only as a last resort.
fn preference(a: &wgpu::Adapter) -> (u8, u8) {
    let info = a.get_info();
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let gl_last = u8::from(info.backend == wgpu::Backend::Gl);
    (gl_last, ty)
}

impl Context {
    /// Every adapter wgpu can see on the chosen backends.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn list_adapters(opts: &ContextOptions) -> Vec<AdapterSummary> {
        let inst = instance(backends_from(opts));
        let adapters = pollster::block_on(inst.enumerate_adapters(backends_from(opts)));
        adapters.iter().map(AdapterSummary::of).collect()
    }

    /// Picks an adapter (honouring `WGPU_BACKEND` / `WGPU_ADAPTER_NAME`) and opens its device.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(opts: &ContextOptions) -> Result<Context> {
        pollster::block_on(Self::new_async(opts))
    }

    /// [`Context::new`] for callers that cannot block (a browser: the adapter and device
    /// arrive on its event loop).
    pub async fn new_async(opts: &ContextOptions) -> Result<Context> {
        let backends = backends_from(opts);
        let inst = instance(backends);
        let mut adapters = inst.enumerate_adapters(backends).await;
        let name = opts.adapter_name.clone().or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
        if let Some(name) = &name {
            let want = name.to_lowercase();
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&want));
        }
        adapters.sort_by_key(preference);
        let adapter = adapters.into_iter().next().ok_or_else(|| {
            let which = name.map(|n| format!(" whose name contains {n:?}")).unwrap_or_default();
            let help = if cfg!(target_arch = "wasm32") {
                "this browser offers no WebGPU adapter (WebGPU may be off or the GPU blocklisted; \
                 Chrome and Edge 113+ on Windows, macOS and ChromeOS have it, Linux needs --enable-unsafe-webgpu)"
            } else {
                "install a Vulkan driver, e.g. mesa-vulkan-drivers"
            };
            let searched =
                if cfg!(target_arch = "wasm32") { String::new() } else { format!(" (backends {backends:?})") };
            Error::NoAdapter(format!("{which}{searched}; {help}"))
        })?;
        Self::from_adapter(inst, adapter, opts).await
    }

    async fn from_adapter(instance: wgpu::Instance, adapter: wgpu::Adapter, opts: &ContextOptions) -> Result<Context> {
        let offered = adapter.features();
        let mut features = wgpu::Features::empty();
        if !opts.no_optional_features {
            for f in WANTED_FEATURES {
                if offered.contains(f) {
                    features |= f;
                }
            }
        }
        // Ask for everything the adapter can do unless told to act as WebGPU's defaults do
        // (128 MiB bindings, 256 MiB buffers): far below what Bark's weights want on most
        // real GPUs, so tensors are split at the binding limit.
        let limits = if switch(opts.webgpu_limits, "BARK_WEBGPU_LIMITS", false)? {
            wgpu::Limits::default().or_worse_values_from(&adapter.limits())
        } else {
            adapter.limits()
        };
        let desc = wgpu::DeviceDescriptor {
            label: Some("bark-wgpu"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = adapter.request_device(&desc).await.map_err(|e| Error::Device(e.to_string()))?;
        let mut summary = AdapterSummary::of(&adapter);
        summary.subgroup = features.contains(wgpu::Features::SUBGROUP);
        summary.timestamp_query = features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let adapter_binding = limits.max_storage_buffer_binding_size;
        let max_binding_bytes = opts.max_binding_bytes.map_or(adapter_binding, |m| m.min(adapter_binding));
        let cpu = adapter.get_info().device_type == wgpu::DeviceType::Cpu;
        let norm_in_gemv = switch(opts.norm_in_gemv, "BARK_NORM_IN_GEMV", !cpu)?;
        let cpu_kernels = switch(opts.cpu_kernels, "BARK_CPU_KERNELS", cpu)?;
        let subgroups = summary.subgroup.then_some(summary.subgroup_sizes);
        let policy = KernelPolicy { cpu_kernels, norm_in_gemv, subgroups };
        let profiler = switch(opts.profile, "BARK_PROFILE", false)?.then(Profiler::default);
        if profiler.is_some() && !summary.timestamp_query {
            return Err(Error::Invalid(format!(
                "profiling needs timestamp queries, which {} does not offer here; unset BARK_PROFILE",
                summary.name
            )));
        }
        Ok(Context {
            inner: Arc::new(Inner {
                instance,
                adapter,
                device,
                queue,
                summary,
                max_binding_bytes,
                max_buffer_bytes: limits.max_buffer_size,
                policy,
                profiler,
                counters: Counters::default(),
                pool: BufferPool::default(),
                pipelines: PipelineCache::default(),
            }),
        })
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }
    pub fn adapter(&self) -> &wgpu::Adapter {
        &self.inner.adapter
    }
    /// The instance the adapter came from (a caller making surfaces or more devices).
    pub fn instance(&self) -> &wgpu::Instance {
        &self.inner.instance
    }
    /// Name, backend, type, driver and the optional features in use (`shader_f16`: offered).
    pub fn summary(&self) -> &AdapterSummary {
        &self.inner.summary
    }
    /// The largest storage-buffer binding the kernels may use, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.inner.max_binding_bytes
    }
    /// Which kernels the ops choose on this context (device facts and switches, settled when
    /// it opened).
    pub fn policy(&self) -> &KernelPolicy {
        &self.inner.policy
    }

    /// Whether plan runs time their dispatches (see [`ContextOptions::profile`]).
    pub fn profiling(&self) -> bool {
        self.inner.profiler.is_some()
    }

    /// GPU time per kernel since profiling started or was last taken, longest first; empty
    /// when profiling is off.
    pub fn take_profile(&self) -> Vec<KernelTime> {
        self.inner.profiler.as_ref().map(Profiler::take).unwrap_or_default()
    }

    pub(crate) fn profiler(&self) -> Option<&Profiler> {
        self.inner.profiler.as_ref()
    }

    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            buffers_created: c.buffers_created.load(Ordering::Relaxed),
            bytes_created: c.bytes_created.load(Ordering::Relaxed),
            bytes_live: c.bytes_live.load(Ordering::Relaxed),
            bytes_peak: c.bytes_peak.load(Ordering::Relaxed),
            pipelines_created: c.pipelines_created.load(Ordering::Relaxed),
            bind_groups_created: c.bind_groups_created.load(Ordering::Relaxed),
        }
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.inner.device.poll(wgpu::PollType::wait_indefinitely()).map(|_| ()).map_err(|e| Error::Gpu(e.to_string()))
    }

    /// Blocks until submission `index` is done (later ones may still run).
    pub fn wait_for(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        let poll = wgpu::PollType::Wait { submission_index: Some(index), timeout: None };
        self.inner.device.poll(poll).map(|_| ()).map_err(|e| Error::Gpu(e.to_string()))
    }

    /// A raw buffer; every buffer the crate makes goes through here so it is counted.
    pub(crate) fn create_buffer(&self, size: u64, usage: wgpu::BufferUsages, label: &str) -> Result<wgpu::Buffer> {
        if size > self.inner.max_buffer_bytes {
            return Err(Error::Invalid(format!(
                "{label}: a buffer of {size} bytes is larger than this adapter's limit of {} bytes",
                self.inner.max_buffer_bytes
            )));
        }
        // Round to 4 bytes: copies and mappings need it; storage bindings see the logical size.
        let size = size.max(4).div_ceil(4) * 4;
        let c = &self.inner.counters;
        let limit = c.memory_limit.load(Ordering::Relaxed);
        if limit > 0 && c.bytes_live.load(Ordering::Relaxed) + size > limit {
            self.trim_pool();
            let live = c.bytes_live.load(Ordering::Relaxed);
            if live + size > limit {
                return Err(Error::OutOfMemory(format!(
                    "{label}: {size} more bytes would take the {live} held past the limit of {limit}"
                )));
            }
        }
        c.buffers_created.fetch_add(1, Ordering::Relaxed);
        c.bytes_created.fetch_add(size, Ordering::Relaxed);
        let live = c.bytes_live.fetch_add(size, Ordering::Relaxed) + size;
        c.bytes_peak.fetch_max(live, Ordering::Relaxed);
        Ok(self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        }))
    }

    /// Destroys a buffer made by [`Context::create_buffer`] and takes it off the live count.
    /// wgpu frees its memory as soon as the submissions that use it are done, without waiting
    /// for every handle to it to be dropped.
    pub(crate) fn destroy_buffer(&self, buffer: wgpu::Buffer) {
        self.inner.counters.bytes_live.fetch_sub(buffer.size(), Ordering::Relaxed);
        buffer.destroy();
    }

    /// Frees every idle buffer of the pool. The pool keeps a finished plan's intermediates for
    /// the next plan of the same sizes; between stages (whose sizes differ) that would only add
    /// each stage's intermediates to the next one's peak, so `Bark` trims after every stage.
    /// Caps the bytes all buffers may hold at once (`None`: as much as the device gives): a
    /// buffer past it is refused with [`Error::OutOfMemory`] (after the pool's idle buffers are
    /// let go), so a process sharing a GPU stays within its share and fails cleanly.
    pub fn set_memory_limit(&self, bytes: Option<u64>) {
        self.inner.counters.memory_limit.store(bytes.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn trim_pool(&self) {
        for buffer in self.inner.pool.drain() {
            self.destroy_buffer(buffer);
        }
    }

    /// The GPU bytes `build`'s result holds while it lives, freed again before returning: what
    /// a stage holds beyond the weights, when `build` makes what the stage makes. Nothing else
    /// should allocate on the context meanwhile.
    pub fn bytes_held<T>(&self, build: impl FnOnce() -> Result<T>) -> Result<u64> {
        self.trim_pool();
        let before = self.stats().bytes_live;
        let held = build()?;
        let bytes = self.stats().bytes_live.saturating_sub(before);
        drop(held);
        self.trim_pool();
        Ok(bytes)
    }

    /// Starts a new peak: [`Stats::bytes_peak`] becomes the bytes live now.
    pub fn reset_peak(&self) {
        let c = &self.inner.counters;
        c.bytes_peak.store(c.bytes_live.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Records `bytes` queued with `Queue::write_buffer`; past 64 MB, submits and waits so wgpu
    /// frees its staging copies. Without this, loading a checkpoint keeps a second host copy
    /// of every weight alive until the first real submit.
    pub(crate) fn note_upload(&self, bytes: u64) -> Result<()> {
        const FLUSH_BYTES: u64 = 64 << 20;
        let pending = self.inner.counters.pending_upload.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if pending >= FLUSH_BYTES {
            self.inner.counters.pending_upload.store(0, Ordering::Relaxed);
            self.queue().submit([]);
            self.wait()?;
        }
        Ok(())
    }

    pub(crate) fn count_bind_group(&self) {
        self.inner.counters.bind_groups_created.fetch_add(1, Ordering::Relaxed);
    }
}
