//! bark-wgpu in a browser: what the page calls, over WebGPU. Everything async (a browser
//! cannot block on the GPU).

use wasm_bindgen::prelude::*;

use bark_wgpu::{Context, ContextOptions};

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

thread_local! {
    /// The page's one device. (A second wgpu instance in the same page leaves the first
    /// without its WebGPU instance once dropped: error scopes then stop answering.)
    static CONTEXT: std::cell::RefCell<Option<Context>> = const { std::cell::RefCell::new(None) };
}

async fn context() -> Result<Context, JsValue> {
    if let Some(ctx) = CONTEXT.with(|c| c.borrow().clone()) {
        return Ok(ctx);
    }
    let ctx = Context::new_async(&ContextOptions::default()).await.map_err(js_err)?;
    CONTEXT.with(|c| *c.borrow_mut() = Some(ctx.clone()));
    Ok(ctx)
}

/// One line naming the adapter and what it offers.
#[wasm_bindgen]
pub async fn adapter_line() -> Result<String, JsValue> {
    let ctx = context().await?;
    let s = ctx.summary();
    Ok(format!(
        "{} ({}, {}): subgroups {}, shader-f16 {}, {} MiB bindings",
        s.name,
        s.backend,
        s.device_type,
        s.subgroup,
        s.shader_f16,
        ctx.max_binding_bytes() >> 20
    ))
}

/// Compiles (`at_most` from the `skip`-th of) every kernel specialisation the library can choose (`ops::all_kernels`) with the
/// browser's own WGSL compiler, each in an error scope the browser answers on its event loop;
/// returns `{"kernels": N, "failed": ["shader::entry: message", ...]}` as JSON.
#[wasm_bindgen]
pub async fn check_kernels(skip: usize, at_most: usize) -> Result<String, JsValue> {
    let ctx = context().await?;
    let mut kernels: Vec<_> = bark_wgpu::ops::all_kernels().into_iter().skip(skip).collect();
    kernels.truncate(at_most);
    let lost = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let on_lost = lost.clone();
    ctx.device().set_device_lost_callback(move |reason, message| {
        *on_lost.lock().unwrap() = Some(format!("{reason:?}: {message}"));
    });
    let mut failed = Vec::new();
    let mut compiled = 0;
    let mut last = String::new();
    for k in &kernels {
        if lost.lock().unwrap().is_some() {
            break;
        }
        compiled += 1;
        last = format!("{}::{} {:?}", k.shader, k.entry, k.consts);
        let scope = ctx.device().push_error_scope(wgpu::ErrorFilter::Validation);
        let made = ctx.pipeline(k);
        let error = scope.pop().await;
        match (made, error) {
            (Err(e), _) => failed.push(format!("{}::{}: {e}", k.shader, k.entry)),
            (Ok(_), Some(e)) => failed.push(format!("{}::{}: {e}", k.shader, k.entry)),
            (Ok(_), None) => {}
        }
    }
    // The check itself must be able to fail: a shader that cannot compile has to be reported.
    let scope = ctx.device().push_error_scope(wgpu::ErrorFilter::Validation);
    let module = ctx.device().create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("must-fail"),
        source: wgpu::ShaderSource::Wgsl("@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }".into()),
    });
    let pipeline = ctx.device().create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("must-fail"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    drop((module, pipeline));
    let caught = scope.pop().await.is_some();
    let subgroups = ctx.device().features().contains(wgpu::Features::SUBGROUP);
    let subgroup_kernels =
        kernels.iter().filter(|k| k.consts.iter().any(|(name, value)| *name == "SUBGROUPS" && value == "true")).count();
    let adapter = ctx.adapter().features().contains(wgpu::Features::SUBGROUP);
    Ok(serde_json::json!({
        "kernels": kernels.len(), "compiled": compiled, "failed": failed, "device_lost": lost.lock().unwrap().clone(), "last": last, "bad_shader_caught": caught,
        "device_subgroups": subgroups, "subgroup_kernels": subgroup_kernels, "adapter_subgroups": adapter
    })
    .to_string())
}
