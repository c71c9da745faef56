//! The engine: requests from several threads share its decode steps and fine batches, and
//! each receives exactly what `Bark::generate_stream` gives it alone; a dropped stream cancels
//! its request without disturbing the others; bad requests end with their error. (The load
//! tests, 32 at once and 200 in a row, go through the HTTP server: tests/gpu/serve.rs.)

use std::path::Path;
use std::sync::OnceLock;

use bark_wgpu::generate::{Bark, Engine, GenerateOptions, LoadOptions, Request};
use bark_wgpu::Error;

use crate::common::ctx;

fn dir() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny"))
}

fn load() -> Bark {
    Bark::load_on(ctx(), dir(), &LoadOptions::default()).unwrap()
}

/// A sentence of at least `tokens` tokens, so two of them make long text of two pieces.
fn long_sentence(b: &Bark, tokens: usize) -> String {
    let mut s = String::from("The quick brown fox jumps over the lazy dog");
    while b.count_tokens(&s).unwrap() < tokens {
        s.push_str(", and the quick brown fox jumps again");
    }
    s + "."
}

fn solo(b: &Bark, r: &Request) -> Vec<Vec<f32>> {
    let mut chunks = Vec::new();
    b.generate_stream(&r.text, &r.opts, r.voice.as_ref(), |c| {
        chunks.push(c.to_vec());
        Ok(())
    })
    .unwrap();
    chunks
}

/// Each request's audio, every request submitted from a thread of its own at once.
fn from_threads(engine: &Engine, requests: &[Request]) -> Vec<Vec<Vec<f32>>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = requests.iter().map(|r| s.spawn(move || audio(engine, r))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// One request's audio, piece by piece.
fn audio(engine: &Engine, r: &Request) -> Vec<Vec<f32>> {
    engine.submit(r.clone()).unwrap().map(|c| c.unwrap()).collect()
}

#[test]
fn concurrent_requests_each_get_what_they_would_alone() {
    let reference = load();
    let greedy = GenerateOptions { max_semantic_tokens: 6, ..GenerateOptions::greedy() };
    let sampled = GenerateOptions { max_semantic_tokens: 5, min_eos_p: None, seed: 9, ..GenerateOptions::default() };
    let long = format!("{} {}", long_sentence(&reference, 150), long_sentence(&reference, 140));
    let requests = [
        Request { text: "Hello, my name is Suno.".into(), opts: greedy.clone(), voice: None },
        Request { text: "And, uh, I like pizza!".into(), opts: sampled.clone(), voice: None },
        Request { text: long, opts: GenerateOptions { max_semantic_tokens: 3, ..greedy.clone() }, voice: None },
        Request { text: "One two three.".into(), opts: GenerateOptions { seed: 4, ..sampled }, voice: None },
    ];
    let want: Vec<Vec<Vec<f32>>> = requests.iter().map(|r| solo(&reference, r)).collect();
    assert_eq!(want[2].len(), 2, "the long request is two pieces");
    // Two rows per stage for four requests: some wait for a row, and they arrive from four
    // threads while others decode.
    let engine = Engine::start(load(), 2).unwrap();
    let got = from_threads(&engine, &requests);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), w.len(), "request {i}: pieces");
        assert!(g == w, "request {i}: the engine's audio differs from its solo run");
    }
}

#[test]
fn a_dropped_stream_cancels_its_request_and_the_others_go_on() {
    let reference = load();
    let opts = GenerateOptions { max_semantic_tokens: 6, ..GenerateOptions::greedy() };
    let long = format!("{} {}", long_sentence(&reference, 150), long_sentence(&reference, 140));
    let kept = Request { text: "Hello, my name is Suno.".into(), opts: opts.clone(), voice: None };
    let want = solo(&reference, &kept);
    let engine = Engine::start(load(), 2).unwrap();
    drop(engine.submit(Request { text: long, opts, voice: None }).unwrap());
    let got = audio(&engine, &kept);
    assert!(got == want, "a request beside a cancelled one differs from its solo run");
    // And the engine keeps serving afterwards.
    let again = audio(&engine, &kept);
    assert!(again == want);
}

#[test]
fn a_bad_request_gets_its_error_and_the_engine_goes_on() {
    let engine = Engine::start(load(), 1).unwrap();
    let opts = GenerateOptions { max_semantic_tokens: 4, ..GenerateOptions::greedy() };
    let bad = |text: &str, opts: GenerateOptions| {
        let out: Vec<_> = engine.submit(Request { text: text.into(), opts, voice: None }).unwrap().collect();
        assert_eq!(out.len(), 1, "{text:?}: one error, then the end");
        match &out[0] {
            Err(Error::Invalid(m)) => m.clone(),
            other => panic!("{text:?}: expected an invalid-input error, got {other:?}"),
        }
    };
    assert!(bad("   ", opts.clone()).contains("empty"));
    assert!(bad("Hi.", GenerateOptions { max_semantic_tokens: 0, ..opts.clone() }).contains("max_semantic_tokens 0"));
    assert!(bad("Hi.", GenerateOptions { top_p: Some(7.0), ..opts.clone() }).contains("top_p 7"));
    assert!(bad("Hi.", GenerateOptions { fine_temp: Some(f32::NAN), ..opts.clone() }).contains("fine_temp NaN"));
    let ok: Vec<_> = engine.submit(Request { text: "Hi.".into(), opts, voice: None }).unwrap().collect();
    assert!(ok.len() == 1 && ok[0].as_ref().is_ok_and(|c| !c.is_empty()));
}
