//! Compute pipelines, built once per (shader, entry point, specialisation) and cached.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{shaders, Context};
use crate::{Error, Result};

/// What identifies one compiled kernel: the shader file, its entry point and the values its
/// module-scope constants are specialised to (see [`shaders::specialize`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub shader: &'static str,
    pub entry: &'static str,
    pub consts: Vec<(&'static str, String)>,
}

impl Kernel {
    pub fn new(shader: &'static str, entry: &'static str) -> Kernel {
        Kernel { shader, entry, consts: Vec::new() }
    }
    /// Sets a module-scope `const`/`alias` to `value` (WGSL text, e.g. `"64u"`, `"true"`).
    pub fn with(mut self, name: &'static str, value: impl ToString) -> Kernel {
        self.consts.push((name, value.to_string()));
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
        let src = shaders::source(kernel.shader).ok_or_else(|| shader_err("no such file in shaders/".into()))?;
        let src = shaders::prepare(src, &kernel.consts).map_err(shader_err)?;
        let device = self.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.shader),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: None,
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(shader_err(format!("{} ({:?})", e, kernel.consts)));
        }
        self.inner.counters.pipelines_created.fetch_add(1, Ordering::Relaxed);
        let p = Arc::new(pipeline);
        self.inner.pipelines.map.lock().unwrap().insert(kernel.clone(), p.clone());
        Ok(p)
    }
}
