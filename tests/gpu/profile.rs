//! Profiling (`ContextOptions::profile`, `BARK_PROFILE=1`): every dispatch of a profiled run is
//! counted under its kernel with a GPU time, the results are those of an unprofiled run, and a
//! greedy generation on a profiling context still equals transformers' tokens.

use crate::common;

use std::path::Path;
use std::sync::OnceLock;

use bark_wgpu::generate::{Bark, GenerateOptions, LoadOptions};
use bark_wgpu::ops::elementwise;
use bark_wgpu::{Context, ContextOptions, DType, Graph, Tensor};
use common::generation::{dir, ids};
use common::{ctx, Rng};

fn profiling_ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| match Context::new(&ContextOptions { profile: Some(true), ..Default::default() }) {
        Ok(c) => c,
        Err(e) => panic!("profiling needs an adapter with timestamp queries (lavapipe has them): {e}"),
    })
}

/// gelu(x) + x, then elu of that, run `runs` times on `ctx`; returns the read-back words of the
/// last run and the input the plan's copy fed back (the sum), as bits.
fn run_chain(ctx: &Context, x: &[f32], runs: usize) -> (Vec<u32>, Vec<u32>) {
    let xt = Tensor::from_f32(ctx, x, &[x.len()], DType::F32).unwrap();
    let fed = Tensor::from_f32(ctx, &vec![0.0; x.len()], &[x.len()], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let xv = g.input(&xt);
    let fv = g.input(&fed);
    let y = elementwise::gelu(&mut g, xv).unwrap();
    let s = elementwise::add(&mut g, y, xv).unwrap();
    let e = elementwise::elu(&mut g, s, 1.0).unwrap();
    g.readback(e);
    g.copy(s, fv).unwrap();
    let plan = g.compile().unwrap();
    for _ in 0..runs {
        plan.run().unwrap();
    }
    let out = plan.read_words(e).unwrap();
    let fed = fed.to_f32(ctx).unwrap().iter().map(|v| v.to_bits()).collect();
    (out, fed)
}

#[test]
fn a_profiled_run_times_every_dispatch_and_computes_the_same() {
    let x = Rng::new(3).normal(4099, 2.0);
    let p = profiling_ctx();
    p.take_profile(); // whatever other tests of this binary ran
    let runs = 3;
    let got = run_chain(p, &x, runs);
    let profile = p.take_profile();
    assert_eq!(got, run_chain(ctx(), &x, 1), "profiled results and feedback copy equal unprofiled ones");

    let mut names: Vec<&str> = profile.iter().map(|k| k.kernel.as_str()).collect();
    names.sort();
    assert_eq!(names, ["elementwise::add", "elementwise::elu", "elementwise::gelu"]);
    for k in &profile {
        assert_eq!(k.dispatches, runs as u64, "{}: one dispatch per run", k.kernel);
        // 4,099 elements take lavapipe microseconds; a missing or unresolved timestamp reads 0.
        assert!(k.seconds > 0.0 && k.seconds < 10.0, "{}: {} s", k.kernel, k.seconds);
    }
    assert!(profile.windows(2).all(|w| w[0].seconds >= w[1].seconds), "longest first");
    assert!(p.take_profile().is_empty(), "taking the profile starts it again from zero");
}

#[test]
fn without_profiling_nothing_is_recorded() {
    let c = ctx();
    if std::env::var("BARK_PROFILE").is_ok_and(|v| v.trim() == "1") {
        assert!(c.profiling(), "BARK_PROFILE=1 turns profiling on");
        return;
    }
    assert!(!c.profiling());
    run_chain(c, &[1.0, -2.0], 1);
    assert!(c.take_profile().is_empty());
}

#[test]
fn profiling_without_timestamp_queries_is_a_clear_error() {
    let opts = ContextOptions { profile: Some(true), no_optional_features: true, ..Default::default() };
    let err = Context::new(&opts).err().expect("no timestamps, no profile").to_string();
    assert!(err.contains("timestamp"), "{err}");
}

#[test]
fn profiled_greedy_generation_equals_transformers() {
    let p = profiling_ctx();
    let opts = LoadOptions {
        f16: false,
        tokenizer: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/tokenizer.json")),
        weights: Some(dir().join("model.safetensors")),
    };
    let bark = Bark::load_on(p, dir(), &opts).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("generation.json")).unwrap()).unwrap();
    let text = json["text"].as_str().unwrap();
    let cap = json["semantic_max_new_tokens"].as_u64().unwrap() as usize;
    let greedy = GenerateOptions { max_semantic_tokens: cap, ..GenerateOptions::greedy() };
    p.take_profile();
    let semantic = bark.semantic(text, &greedy, None).unwrap();
    let profile = p.take_profile();
    assert_eq!(semantic, ids("greedy.semantic"), "semantic tokens on a profiling context");
    // One sampler dispatch per decode step; a step may be queued past the last token.
    let sampled = profile.iter().find(|k| k.kernel == "sampling::sample").map_or(0, |k| k.dispatches);
    assert!((semantic.len() as u64..=semantic.len() as u64 + 1).contains(&sampled), "{sampled} sampler dispatches");
    let g = bark.generate(text, &greedy, None).unwrap();
    assert_eq!(g.coarse, ids("greedy.coarse"), "coarse tokens on a profiling context");
    assert_eq!(g.fine.concat(), ids("greedy.fine"), "fine codes on a profiling context");
}
