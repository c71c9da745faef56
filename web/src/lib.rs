//! bark-wgpu in a browser: what the page calls, over WebGPU. Everything async (a browser
//! cannot block on the GPU).

use std::rc::Rc;
use std::sync::Arc;

use wasm_bindgen::prelude::*;

use bark_wgpu::audio::{wav_bytes, WavFormat};
use bark_wgpu::generate::{Bark, GenerateOptions, Generation, LoadOptions, ModelFiles, VoicePrompt};
use bark_wgpu::progress::StageLog;
use bark_wgpu::{Context, ContextOptions};

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

thread_local! {
    /// The page's one device. (A second wgpu instance in the same page leaves the first
    /// without its WebGPU instance once dropped: error scopes then stop answering.)
    static CONTEXT: std::cell::RefCell<Option<Context>> = const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// What the page asked for before the device opened ([`configure`]).
    static OPTIONS: std::cell::RefCell<ContextOptions> = std::cell::RefCell::new(ContextOptions::default());
}

/// Overrides the device's defaults (`undefined` keeps one): the CPU kernel set (by default
/// exactly on a CPU adapter), the LayerNorm inside the GEMV, and WebGPU's default limits
/// instead of all the adapter offers (to run as the weakest adapters would). Call it before
/// anything else: the device opens once per page.
#[wasm_bindgen]
pub fn configure(
    cpu_kernels: Option<bool>,
    norm_in_gemv: Option<bool>,
    webgpu_limits: Option<bool>,
) -> Result<(), JsValue> {
    if CONTEXT.with(|c| c.borrow().is_some()) {
        return Err(js_err("the device is already open; configure it first"));
    }
    OPTIONS.with(|o| {
        let mut o = o.borrow_mut();
        o.cpu_kernels = cpu_kernels;
        o.norm_in_gemv = norm_in_gemv;
        o.webgpu_limits = webgpu_limits;
    });
    Ok(())
}

async fn context() -> Result<Context, JsValue> {
    if let Some(ctx) = CONTEXT.with(|c| c.borrow().clone()) {
        return Ok(ctx);
    }
    let opts = OPTIONS.with(|o| o.borrow().clone());
    let ctx = Context::new_async(&opts).await.map_err(js_err)?;
    CONTEXT.with(|c| *c.borrow_mut() = Some(ctx.clone()));
    Ok(ctx)
}

/// One line naming the adapter and what it offers.
#[wasm_bindgen]
pub async fn adapter_line() -> Result<String, JsValue> {
    let ctx = context().await?;
    let s = ctx.summary();
    let p = ctx.policy();
    Ok(format!(
        "{} ({}, {}): subgroups {}, shader-f16 {}, {} MiB bindings; {} kernels{}",
        if s.name.is_empty() { "unnamed adapter" } else { &s.name },
        s.backend,
        s.device_type,
        s.subgroup,
        s.shader_f16,
        ctx.max_binding_bytes() >> 20,
        if p.cpu_kernels { "CPU" } else { "GPU" },
        if p.norm_in_gemv { ", LayerNorm in the GEMV" } else { "" }
    ))
}

/// Validates (`at_most` from the `skip`-th of) every kernel specialisation the library can
/// choose on this device (`ops::all_kernels`) with the browser's own WGSL front end, each in an
/// error scope the browser answers on its event loop; returns `{"kernels": N, "failed":
/// ["shader::entry: message", ...], "device_lost": ..., ...}` as JSON.
///
/// Shader modules only: the front end's rules (Tint's) are what every browser shares, while a
/// pipeline's back-end compile is SwiftShader's here and another on each real GPU. The
/// pipelines this device chooses are compiled by the page's generations; compiling all of them
/// took over 6 minutes of CI's 2 cores (BENCHMARKS.md, "CI time").
#[cfg(feature = "checks")]
#[wasm_bindgen]
pub async fn check_kernels(skip: usize, at_most: usize) -> Result<String, JsValue> {
    let ctx = context().await?;
    let device = ctx.device();
    let mut kernels: Vec<_> = bark_wgpu::ops::all_kernels().into_iter().skip(skip).collect();
    kernels.truncate(at_most);
    // The subgroup twins need the device's subgroups (a module naming their builtins fails
    // without them); the policy never chooses them on such a device, so they are not tried.
    let subgroups = device.features().contains(wgpu::Features::SUBGROUP);
    let is_twin =
        |k: &bark_wgpu::gpu::Kernel| k.consts.iter().any(|(name, value)| *name == "SUBGROUPS" && value == "true");
    let subgroup_kernels = kernels.iter().filter(|k| is_twin(k)).count();
    kernels.retain(|k| subgroups || !is_twin(k));
    let lost = Arc::new(std::sync::Mutex::new(None::<String>));
    let on_lost = lost.clone();
    device.set_device_lost_callback(move |reason, message| {
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
        let name = format!("{}::{}", k.shader, k.entry);
        match k.wgsl() {
            Err(e) => failed.push(format!("{name}: {e}")),
            Ok(src) => {
                if let Some(e) = module_error(device, &name, src).await {
                    failed.push(format!("{name}: {e}"));
                }
            }
        }
    }
    // The check itself must be able to fail: a shader that cannot compile has to be reported.
    let bad = "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }";
    let caught = module_error(device, "must-fail", bad.into()).await.is_some();
    let adapter = ctx.adapter().features().contains(wgpu::Features::SUBGROUP);
    Ok(serde_json::json!({
        "kernels": kernels.len(), "compiled": compiled, "failed": failed, "device_lost": lost.lock().unwrap().clone(), "last": last, "bad_shader_caught": caught,
        "device_subgroups": subgroups, "subgroup_kernels": subgroup_kernels, "adapter_subgroups": adapter
    })
    .to_string())
}

/// What the browser says of a shader module made from `src`, if anything.
#[cfg(feature = "checks")]
async fn module_error(device: &wgpu::Device, label: &str, src: String) -> Option<wgpu::Error> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    });
    drop(module);
    scope.pop().await
}

/// A model loaded on the page's device. Generation is async: every GPU read awaits the
/// browser's event loop, so the page stays responsive and can poll [`WebBark::progress`].
#[wasm_bindgen]
pub struct WebBark {
    bark: Rc<Bark>,
    progress: Arc<StageLog>,
}

#[wasm_bindgen]
impl WebBark {
    /// Loads a model from its files' bytes: `config.json`'s, `tokenizer.json`'s and the
    /// checkpoint's (`weights_name` is its file name, for messages). `f16` keeps the large
    /// matrices in f16 (the adapter must offer shader-f16).
    pub async fn load(
        config: Vec<u8>,
        tokenizer: Vec<u8>,
        weights: Vec<u8>,
        weights_name: String,
        f16: bool,
    ) -> Result<WebBark, JsValue> {
        let ctx = context().await?;
        let config = String::from_utf8(config).map_err(|_| js_err("config.json is not UTF-8 text"))?;
        let files = ModelFiles { config, tokenizer, weights, weights_name };
        let mut bark = Bark::load_files(&ctx, files, &LoadOptions { f16, ..LoadOptions::default() }).map_err(js_err)?;
        let progress = Arc::new(StageLog::new(|| js_sys::Date::now() / 1000.0));
        bark.set_progress(Some(progress.clone()));
        Ok(WebBark { bark: Rc::new(bark), progress })
    }

    /// Generates `text` (a promise of a [`WebGeneration`]). `voice`: an npz's bytes, or none;
    /// `greedy` reproduces transformers' `do_sample=False`; the numbers are used when given.
    pub fn generate(
        &self,
        text: String,
        voice: Option<Vec<u8>>,
        greedy: bool,
        max_semantic_tokens: Option<usize>,
        min_eos_p: Option<f32>,
        seed: Option<u32>,
    ) -> js_sys::Promise {
        let (bark, log) = (self.bark.clone(), self.progress.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let voice = voice.map(|b| VoicePrompt::from_npz_bytes("voice.npz", &b)).transpose().map_err(js_err)?;
            let mut opts = if greedy { GenerateOptions::greedy() } else { GenerateOptions::default() };
            if let Some(n) = max_semantic_tokens {
                opts.max_semantic_tokens = n;
            }
            if min_eos_p.is_some() {
                opts.min_eos_p = min_eos_p;
            }
            if let Some(s) = seed {
                opts.seed = s.into();
            }
            log.clear();
            let out = bark.generate_async(&text, &opts, voice.as_ref()).await.map_err(js_err)?;
            Ok(WebGeneration::new(out)?.into())
        })
    }

    /// The device's counters as JSON: buffers, bytes and pipelines created, bytes live and at
    /// their peak, bind groups (the page shows the GPU memory; tests see what a run made).
    pub fn stats(&self) -> String {
        let s = self.bark.context().stats();
        serde_json::json!({
            "buffers_created": s.buffers_created, "bytes_created": s.bytes_created, "bytes_live": s.bytes_live,
            "bytes_peak": s.bytes_peak, "pipelines_created": s.pipelines_created,
            "bind_groups_created": s.bind_groups_created,
        })
        .to_string()
    }

    /// The stages so far as JSON: `[{"stage", "done", "total", "seconds"}, ...]`, `seconds`
    /// once the stage has finished (wall time, as the page sees it).
    pub fn progress(&self) -> String {
        let records: Vec<_> = self
            .progress
            .records()
            .iter()
            .map(|r| serde_json::json!({"stage": r.stage.name(), "done": r.done, "total": r.total, "seconds": r.seconds}))
            .collect();
        serde_json::Value::from(records).to_string()
    }
}

/// One generation's output, as Suno's npz holds the tokens (semantic without its end token,
/// coarse `[2][frames]`, fine `[8][frames]`, rows flattened here) and the audio.
#[wasm_bindgen]
pub struct WebGeneration {
    prompt: VoicePrompt,
    samples: Vec<f32>,
    sample_rate: u32,
}

impl WebGeneration {
    fn new(g: Generation) -> Result<WebGeneration, JsValue> {
        let prompt = g.voice_prompt().map_err(js_err)?;
        Ok(WebGeneration { prompt, samples: g.audio.samples, sample_rate: g.audio.sample_rate })
    }
}

#[wasm_bindgen]
impl WebGeneration {
    pub fn semantic(&self) -> Vec<u32> {
        self.prompt.semantic.clone()
    }
    /// Coarse codes, row after row (2 rows of `frames`).
    pub fn coarse(&self) -> Vec<u32> {
        self.prompt.coarse.concat()
    }
    /// Fine codes, row after row (8 rows of `frames`).
    pub fn fine(&self) -> Vec<u32> {
        self.prompt.fine.concat()
    }
    pub fn frames(&self) -> usize {
        self.prompt.frames()
    }
    pub fn samples(&self) -> Vec<f32> {
        self.samples.clone()
    }
    #[wasm_bindgen(getter)]
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
    /// The audio as a 32-bit float WAV file, as `bark-wgpu say` writes it.
    pub fn wav(&self) -> Result<Vec<u8>, JsValue> {
        wav_bytes(&self.samples, self.sample_rate, WavFormat::Float32).map_err(js_err)
    }
}

/// Runs the fine model's dense attention with the CPU set's rows kernel and with the tiled
/// kernel on the same random input, for heads of `head_dim` and `seq_len` causal rows, and
/// returns the largest difference (they agree within f32 rounding on every native driver).
#[cfg(feature = "checks")]
#[wasm_bindgen]
pub async fn check_attention(head_dim: usize, seq_len: usize) -> Result<f64, JsValue> {
    use bark_wgpu::ops::attention::{dense_with, AttnOptions, Mask};
    use bark_wgpu::{DType, Graph, Tensor};
    let ctx = context().await?;
    let heads = 2;
    let h = heads * head_dim;
    let mut rng = bark_wgpu::generate::rng::Rng::new(1, 0);
    let qkv: Vec<f32> = (0..seq_len * 3 * h).map(|_| rng.uniform() * 4.0 - 2.0).collect();
    let x = Tensor::from_f32(&ctx, &qkv, &[seq_len, 3 * h], DType::F32).map_err(js_err)?;
    let mut outs = Vec::new();
    for rows_kernel in [true, false] {
        let mut g = Graph::new(&ctx);
        let xv = g.input(&x);
        let opts = AttnOptions { rows_kernel: Some(rows_kernel), ..AttnOptions::default() };
        let out = dense_with(&mut g, xv, heads, 1, seq_len, Mask::Causal, opts).map_err(js_err)?;
        g.keep(out);
        let plan = g.compile().map_err(js_err)?;
        plan.run().map_err(js_err)?;
        outs.push(plan.tensor(out).to_f32_async(&ctx).await.map_err(js_err)?);
    }
    Ok(outs[0].iter().zip(&outs[1]).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max))
}
