//! Server bench: `bark-wgpu serve`'s router in-process on 127.0.0.1, driven over real HTTP/1.1
//! by N concurrent clients (N = the engine's batch), each sending requests back to back.
//! Reports requests per second, time to first audio (the first body bytes of a streamed `pcm`
//! response) and to the whole response, audio seconds made per wall second, and how full the
//! engine's steps were (rows per step over the batch, per stage, from `Engine::metrics`) and how
//! busy its thread was (the stages' busy seconds over the wall time).
//!
//! `cargo bench --bench serve` (add `--profile dev` to reuse the test build's dependencies).
//! Random weights of `benches/configs.json`'s sizes (no download). Environment:
//! - `BENCH_MODEL`: `tiny`, `small` or `large` (default `tiny` on a CPU adapter, else `small`).
//! - `BENCH_DTYPE`: `f32` or `f16` (default `f32` on a CPU adapter, else `f16`).
//! - `BENCH_BATCH`: engine batches = concurrent clients, default `1,4,16`.
//! - `BENCH_REQUESTS`: requests per client (default 2 on a CPU adapter, 4 otherwise).
//! - `BENCH_SEMANTIC_TOKENS`: each request's semantic budget (default: configs.json's).
//!
//! Each request is two long-form pieces (see `TEXT`). Sampled (the defaults) with `min_eos_p` off and a seed per request; random weights make the
//! end of the semantic stage arbitrary, so audio lengths differ between requests (reported).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bark_wgpu::generate::{Bark, Engine, EngineMetrics, LoadOptions, StageMetrics};
use bark_wgpu::serve::{router, ServeConfig, Server};
use bark_wgpu::{Context, ContextOptions};
use common::ModelSpec;

/// Each request says this 20 times over: two 256-token pieces, so the first audio (the first
/// piece's) comes before the whole.
const TEXT: &str = "Hello, my name is Suno. And, uh, and I like pizza. ";

/// What one request saw, in seconds, and the PCM bytes it got.
struct Timing {
    first_audio: f64,
    whole: f64,
    bytes: usize,
}

/// One streamed `pcm` request: times to the first body byte and to the end.
fn request(addr: SocketAddr, seed: u64, tokens: usize) -> Timing {
    let body = serde_json::json!({
        "model": "bark", "input": TEXT.repeat(20), "voice": "alloy", "response_format": "pcm",
        "seed": seed, "max_semantic_tokens": tokens, "min_eos_p": null
    })
    .to_string();
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "POST /v1/audio/speech HTTP/1.1\r\nHost: b\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).and_then(|_| s.write_all(body.as_bytes())).expect("send");
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let mut first_audio = None;
    loop {
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        // The header block, then a chunk-size line: the first audio has arrived.
        if first_audio.is_none() {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                assert!(raw.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&raw[..at]));
                if raw.len() > at + 4 {
                    first_audio = Some(start.elapsed().as_secs_f64());
                }
            }
        }
    }
    let whole = start.elapsed().as_secs_f64();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    // Chunked body: sizes and framing are a few bytes per chunk; count the PCM within.
    let mut rest = &raw[at + 4..];
    let mut bytes = 0;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        bytes += size;
        rest = &rest[eol + 2 + size + 2..];
    }
    Timing { first_audio: first_audio.unwrap_or(whole), whole, bytes }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn occupancy(s: &StageMetrics, before: &StageMetrics, batch: usize) -> f64 {
    let steps = (s.steps - before.steps) as f64;
    if steps == 0.0 {
        return 0.0;
    }
    (s.rows - before.rows) as f64 / steps / batch as f64
}

fn busy(m: &EngineMetrics, b: &EngineMetrics) -> f64 {
    [(&m.semantic, &b.semantic), (&m.coarse, &b.coarse), (&m.fine, &b.fine)]
        .iter()
        .map(|(s, b)| s.busy_seconds - b.busy_seconds)
        .sum()
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

fn main() {
    let ctx = Context::new(&ContextOptions::default()).expect("a wgpu adapter");
    let a = ctx.summary().clone();
    let cpu = a.device_type == "Cpu";
    let model = env_or("BENCH_MODEL", if cpu { "tiny" } else { "small" });
    let dtype = env_or("BENCH_DTYPE", if cpu { "f32" } else { "f16" });
    let spec = ModelSpec::named(&model).unwrap_or_else(|| panic!("BENCH_MODEL={model}: tiny, small or large"));
    let batches: Vec<usize> =
        env_or("BENCH_BATCH", "1,4,16").split(',').map(|b| b.trim().parse().expect("BENCH_BATCH: counts")).collect();
    let per_client: usize = env_or("BENCH_REQUESTS", if cpu { "2" } else { "4" }).parse().expect("BENCH_REQUESTS");
    let tokens: usize =
        std::env::var("BENCH_SEMANTIC_TOKENS").map_or(spec.semantic_tokens, |t| t.parse().expect("a count"));
    let dir = common::random_model_dir(&spec, "serve", true).expect("write the random model");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");

    println!("adapter: {} ({}, {}), driver: {}", a.name, a.backend, a.device_type, a.driver);
    println!("model {model} ({dtype}, random weights), two pieces of {tokens} semantic tokens at most per request, {per_client} requests per client");
    println!("| batch = clients | requests | requests/s | first audio p50 / p95 s | whole p50 / p95 s | audio s per s | occupancy semantic / coarse / fine | engine busy |");
    println!("|---|---|---|---|---|---|---|---|");
    for &batch in &batches {
        let bark = Bark::load_on(&ctx, &dir.path, &LoadOptions { f16: dtype == "f16", ..LoadOptions::default() })
            .expect("load the random model");
        let cfg = ServeConfig { max_queue: batch * per_client + 1, ..ServeConfig::new("bark", &dir.path) };
        let server: Arc<Server> = Server::new(Engine::start(bark, batch).expect("engine"), cfg).expect("server");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("address");
        let routes = router(server.clone());
        let serving = runtime.spawn(async move { axum::serve(listener, routes).await });
        request(addr, 0, tokens); // warm-up: pipelines compiled, pools filled
        let before = server.engine_metrics();
        let start = Instant::now();
        let timings: Vec<Timing> = std::thread::scope(|s| {
            let clients: Vec<_> = (0..batch)
                .map(|c| {
                    s.spawn(move || {
                        (0..per_client)
                            .map(|r| request(addr, (1 + c * per_client + r) as u64, tokens))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            clients.into_iter().flat_map(|c| c.join().expect("a client")).collect()
        });
        let wall = start.elapsed().as_secs_f64();
        let after = server.engine_metrics();
        serving.abort();
        drop(server);
        std::thread::sleep(Duration::from_millis(50));
        let mut first: Vec<f64> = timings.iter().map(|t| t.first_audio).collect();
        let mut whole: Vec<f64> = timings.iter().map(|t| t.whole).collect();
        first.sort_by(f64::total_cmp);
        whole.sort_by(f64::total_cmp);
        let audio_s = timings.iter().map(|t| t.bytes).sum::<usize>() as f64 / 2.0 / 24_000.0;
        println!(
            "| {batch} | {} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} | {:.2} / {:.2} / {:.2} | {:.0}% |",
            timings.len(),
            timings.len() as f64 / wall,
            percentile(&first, 0.5),
            percentile(&first, 0.95),
            percentile(&whole, 0.5),
            percentile(&whole, 0.95),
            audio_s / wall,
            occupancy(&after.semantic, &before.semantic, batch),
            occupancy(&after.coarse, &before.coarse, batch),
            occupancy(&after.fine, &before.fine, batch),
            100.0 * busy(&after, &before) / wall,
        );
    }
}
