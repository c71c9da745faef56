//! The HTTP server in-process on 127.0.0.1 (a free port), spoken to over real TCP with plain
//! HTTP/1.1: the audio equals what the library gives the same request alone, alone or among
//! concurrent requests; bad requests get OpenAI's error JSON and the status the issue names.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use bark_wgpu::audio::pcm16_le_bytes;
use bark_wgpu::generate::{Bark, Engine, GenerateOptions, LoadOptions};
use bark_wgpu::serve::{router, ServeConfig, Server};

use crate::common::ctx;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");

fn load() -> Bark {
    Bark::load_on(ctx(), TINY, &LoadOptions::default()).unwrap()
}

/// A running server and the runtime it runs on (both stop when dropped).
struct Running {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn start(config: impl FnOnce(&mut ServeConfig)) -> Running {
    let mut cfg = ServeConfig {
        model_name: "bark-tiny".into(),
        model_dir: Path::new(TINY).into(),
        voices_dir: None,
        api_key: None,
        max_queue: 16,
        max_input_chars: 4096,
    };
    config(&mut cfg);
    let server: Arc<Server> = Server::new(Engine::start(load(), 4).unwrap(), cfg);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, router(server)).await });
    Running { addr, _runtime: runtime }
}

/// Status, headers (lower-case names) and the de-chunked body of one request.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked") {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

fn speech(text: &str, format: &str, seed: u64) -> String {
    serde_json::json!({
        "model": "tts-1", "input": text, "voice": "alloy", "response_format": format,
        "seed": seed, "max_semantic_tokens": 6, "min_eos_p": 0.0
    })
    .to_string()
}

/// What the library makes of the same request: its audio as 16-bit PCM.
fn solo_pcm(b: &Bark, text: &str, seed: u64) -> Vec<u8> {
    let opts = GenerateOptions { seed, max_semantic_tokens: 6, min_eos_p: None, ..GenerateOptions::default() };
    let long = b.generate_long(text, &opts, None).unwrap();
    pcm16_le_bytes(&long.audio.samples)
}

#[test]
fn speech_over_http_is_the_librarys_audio_in_pcm_and_wav() {
    let server = start(|_| {});
    let reference = load();
    let want = solo_pcm(&reference, "Hello, my name is Suno.", 3);
    let (status, headers, body) =
        http(server.addr, "POST", "/v1/audio/speech", &[], &speech("Hello, my name is Suno.", "pcm", 3));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains(&("content-type".into(), "audio/pcm".into())));
    assert!(body == want, "pcm: {} bytes, want {}", body.len(), want.len());
    let (status, _, body) =
        http(server.addr, "POST", "/v1/audio/speech", &[], &speech("Hello, my name is Suno.", "wav", 3));
    assert_eq!(status, 200);
    assert_eq!(&body[..4], b"RIFF");
    assert_eq!(&body[36..40], b"data");
    assert!(body[44..] == want[..], "wav: the samples after the header differ");
    let (status, _, body) = http(server.addr, "GET", "/v1/models", &[], "");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"bark-tiny\""));
    assert_eq!(http(server.addr, "GET", "/health", &[], "").0, 200);
}

#[test]
fn concurrent_requests_over_http_each_equal_their_solo_run() {
    let server = start(|_| {});
    let reference = load();
    let texts = ["Hello, my name is Suno.", "And, uh, I like pizza!", "One two three.", "Hi."];
    let want: Vec<Vec<u8>> = texts.iter().enumerate().map(|(i, t)| solo_pcm(&reference, t, i as u64)).collect();
    let got: Vec<(u16, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let addr = server.addr;
                s.spawn(move || {
                    let (status, _, body) = http(addr, "POST", "/v1/audio/speech", &[], &speech(t, "pcm", i as u64));
                    (status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, ((status, body), want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(*status, 200, "request {i}");
        assert!(body == want, "request {i}: the served audio differs from its solo run");
    }
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_goes_on() {
    let server = start(|c| c.api_key = Some("sesame".into()));
    let key = [("Authorization", "Bearer sesame")];
    let err = |headers: &[(&str, &str)], body: &str| {
        let (status, _, body) = http(server.addr, "POST", "/v1/audio/speech", headers, body);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("an error JSON");
        (status, v["error"]["message"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(err(&[], &speech("Hi.", "pcm", 0)).0, 401);
    assert_eq!(err(&[("Authorization", "Bearer wrong")], &speech("Hi.", "pcm", 0)).0, 401);
    let cases = [
        ("{not json".to_string(), "not a valid speech request"),
        (speech("Hi.", "mp3", 0), "response_format"),
        (speech("   ", "pcm", 0), "empty"),
        (speech("Hi.", "pcm", 0).replace("alloy", "nobody"), "unknown voice"),
        (speech("Hi.", "pcm", 0).replace("\"seed\"", "\"speed\":2.0,\"seed\""), "speed"),
        (
            speech("Hi.", "pcm", 0).replace("\"max_semantic_tokens\":6", "\"max_semantic_tokens\":0"),
            "max semantic tokens",
        ),
    ];
    for (body, needle) in &cases {
        let (status, message) = err(&key, body);
        assert_eq!(status, 400, "{body}: {message}");
        assert!(message.contains(needle), "{body}: {message}");
    }
    let (status, _, body) = http(server.addr, "POST", "/v1/audio/speech", &key, &speech("Hi.", "pcm", 0));
    assert_eq!(status, 200, "after the bad requests: {}", String::from_utf8_lossy(&body));
    assert!(!body.is_empty());
    // A full queue answers 429 and says when to come back.
    let full = start(|c| c.max_queue = 0);
    let (status, headers, _) = http(full.addr, "POST", "/v1/audio/speech", &[], &speech("Hi.", "pcm", 0));
    assert_eq!(status, 429);
    assert!(headers.iter().any(|(k, _)| k == "retry-after"));
    let (_, _, metrics) = http(full.addr, "GET", "/metrics", &[], "");
    assert!(String::from_utf8_lossy(&metrics).contains("bark_requests_rejected_total 1"));
}
