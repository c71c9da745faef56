//! Compute pipelines, built once per (shader, entry point, specialisation) and cached.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{shaders, Context, Contract};
use crate::{Error, Result};

/// What identifies one compiled kernel: the shader file, its entry point and the values its
/// module-scope constants are specialised to (see [`shaders::specialize`]); and what it binds
/// (not part of its identity: the same shader code has the same contract).
#[derive(Clone, Debug)]
pub struct Kernel {
    pub shader: &'static str,
    pub entry: &'static str,
    pub consts: Vec<(&'static str, String)>,
    /// Every op's kernel has one (`tests/host/contract.rs` checks it against the WGSL).
    pub contract: Option<&'static Contract>,
}

impl PartialEq for Kernel {
    fn eq(&self, other: &Kernel) -> bool {
        (self.shader, self.entry, &self.consts) == (other.shader, other.entry, &other.consts)
    }
}

impl Eq for Kernel {}

impl Hash for Kernel {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.shader, self.entry, &self.consts).hash(state);
    }
}

impl Kernel {
    pub fn new(shader: &'static str, entry: &'static str) -> Kernel {
        Kernel { shader, entry, consts: Vec::new(), contract: None }
    }
    /// Declares what the kernel binds (see [`Contract`]).
    pub fn contract(mut self, contract: &'static Contract) -> Kernel {
        self.contract = Some(contract);
        self
    }
    /// The WGSL this kernel compiles from: its file in `shaders/`, specialised and prepared
    /// ([`shaders::prepare`]). The error says what is wrong in words.
    pub fn wgsl(&self) -> std::result::Result<String, String> {
        let src = shaders::source(self.shader).ok_or("no such file in shaders/")?;
        shaders::prepare(src, &self.consts)
    }
    /// Sets the module-scope `const NAME: u32` to `value`.
    pub fn with_u32(self, name: &'static str, value: u32) -> Kernel {
        self.set(name, format!("{value}u"))
    }
    /// Sets the module-scope `const NAME: bool` to `value` (also what `// #if NAME` reads).
    pub fn with_bool(self, name: &'static str, value: bool) -> Kernel {
        self.set(name, value.to_string())
    }
    /// Sets the module-scope `alias NAME` to the WGSL type `ty` (`"f32"`, `"vec4<u32>"`).
    pub fn with_alias(self, name: &'static str, ty: &'static str) -> Kernel {
        self.set(name, ty.to_string())
    }
    fn set(mut self, name: &'static str, text: String) -> Kernel {
        self.consts.push((name, text));
        self
    }
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    map: Mutex<HashMap<Kernel, Arc<wgpu::ComputePipeline>>>,
}

impl Context {
    /// The pipeline for `kernel`, compiling it on first use. Layout is derived from the shader.
    pub fn pipeline(&self, kernel: &Kernel) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self.inner.pipelines.map.lock().unwrap().get(kernel) {
            return Ok(p.clone());
        }
        let shader_err = |message: String| Error::Shader { name: kernel.shader.to_string(), message };
        let src = kernel.wgsl().map_err(shader_err)?;
        let device = self.device();
        let (pipeline, error) = validated(device, || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.shader),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry),
                layout: None,
                module: &module,
                entry_point: Some(kernel.entry),
                compilation_options: Default::default(),
                cache: None,
            })
        });
        if let Some(e) = error {
            return Err(shader_err(format!("{} ({:?})", e, kernel.consts)));
        }
        self.inner.counters.pipelines_created.fetch_add(1, Ordering::Relaxed);
        let p = Arc::new(pipeline);
        self.inner.pipelines.map.lock().unwrap().insert(kernel.clone(), p.clone());
        Ok(p)
    }
}

/// Runs `make` inside a validation error scope: what it made, and the error it raised. A
/// browser cannot wait for the scope's answer (it comes on the event loop), so there errors go
/// to the device's uncaptured-error handler (the console) instead; native builds check each.
pub(crate) fn validated<T>(device: &wgpu::Device, make: impl FnOnce() -> T) -> (T, Option<wgpu::Error>) {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = device;
        (make(), None)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let made = make();
        (made, pollster::block_on(scope.pop()))
    }
}
