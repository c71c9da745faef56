//! The HTTP server in-process on 127.0.0.1 (a free port), spoken to over real TCP with plain
//! HTTP/1.1: the audio equals what the library gives the same request alone, alone or among
//! concurrent requests, in each format; bad requests get OpenAI's error JSON and the status the
//! issue names; a client that leaves, a deadline, memory that runs out and a device that is
//! lost each end their requests cleanly, and `/metrics` shows the work and that nothing is held.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bark_wgpu::audio::pcm16_le_bytes;
use bark_wgpu::generate::{Bark, Engine, GenerateOptions, LoadOptions};
use bark_wgpu::serve::{read_voice_map, router, serve_http, ServeConfig, Server};
use bark_wgpu::Context;

use crate::common::{ctx, generation, private_ctx};

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
    start_with(load(), 4, config)
}

/// A server of `bark` whose engine shares each step among `batch` sequences at most.
fn start_with(bark: Bark, batch: usize, config: impl FnOnce(&mut ServeConfig)) -> Running {
    let mut cfg = ServeConfig { max_queue: 16, ..ServeConfig::new("bark-tiny", Path::new(TINY)) };
    config(&mut cfg);
    let header_timeout = cfg.header_timeout;
    let server: Arc<Server> = Server::new(Engine::start(bark, batch).unwrap(), cfg).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(serve_http(listener, router(server), header_timeout, std::future::pending()));
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
        // While all four decode, clients send settings the sampler cannot take: each gets a 400
        // naming its field, and the four in flight go on untouched.
        let since = Instant::now();
        while metric(server.addr, "bark_requests_in_flight", "") < texts.len() as f64 {
            assert!(since.elapsed() < Duration::from_secs(60), "the requests never were in flight together");
            std::thread::sleep(Duration::from_millis(5));
        }
        for (field, value) in [("top_p", "7"), ("top_k", "0"), ("waveform_temp", "1e-30")] {
            let body = speech("Hi.", "pcm", 0).replace("\"seed\"", &format!("\"{field}\":{value},\"seed\""));
            let (status, _, answer) = http(server.addr, "POST", "/v1/audio/speech", &[], &body);
            let answer = String::from_utf8_lossy(&answer);
            assert!(status == 400 && answer.contains(field), "{field} {value}: {status} {answer}");
        }
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
            "max_semantic_tokens 0",
        ),
        (speech("Hi.", "pcm", 0).replace("\"seed\"", "\"top_p\":7,\"seed\""), "top_p 7"),
        (speech("Hi.", "pcm", 0).replace("\"seed\"", "\"top_k\":0,\"seed\""), "top_k 0"),
        (speech("Hi.", "pcm", 0).replace("\"seed\"", "\"text_temp\":1e-9,\"seed\""), "text_temp"),
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
    assert_eq!(metric(full.addr, "bark_requests_rejected_total", ""), 1.0);
}

#[test]
fn large_and_slow_clients_are_refused_before_they_reach_the_engine() {
    let limits = |c: &mut ServeConfig| {
        c.max_body_bytes = 4096;
        c.header_timeout = Duration::from_millis(400);
        c.body_timeout = Duration::from_millis(400);
    };
    let server = start(limits);
    let message = |body: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(body).expect("an error JSON");
        v["error"]["message"].as_str().unwrap_or_default().to_string()
    };
    // A body over the limit: 413, read no further than the limit.
    let big = speech(&"a".repeat(5000), "pcm", 0);
    let (status, _, body) = http(server.addr, "POST", "/v1/audio/speech", &[], &big);
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(message(&body).contains("4096 bytes"));
    // A length over the limit is refused at once, before any of its body is sent.
    let head = "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000000000\r\n\r\n";
    let since = Instant::now();
    let (status, body) = raw_exchange(server.addr, head.as_bytes(), &[]);
    assert_eq!(status, Some(413), "{}", String::from_utf8_lossy(&body));
    assert!(since.elapsed() < Duration::from_millis(400), "413 took {:?}", since.elapsed());
    // Headers a byte every 100 ms: the connection is closed within the header timeout, long
    // before the 40 bytes are through.
    let since = Instant::now();
    let trickle = vec![b'X'; 40];
    let (status, _) = raw_exchange(server.addr, b"POST /v1/audio/speech HTTP/1.1\r\nX-Slow: ", &trickle);
    assert!(status.is_none() || status == Some(408), "a slow header got {status:?}");
    assert!(since.elapsed() < Duration::from_secs(3), "cut off after {:?}", since.elapsed());
    // A body a byte every 100 ms: 408, and the engine never saw it.
    let body = speech("Hi.", "pcm", 0);
    let head = format!(
        "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (status, answer) = raw_exchange(server.addr, head.as_bytes(), body.as_bytes());
    assert_eq!(status, Some(408), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(metric(server.addr, "bark_engine_requests", ""), 0.0);
    assert_eq!(metric(server.addr, "bark_requests_in_flight", ""), 0.0);
    // And the server goes on.
    let (status, _, body) = http(server.addr, "POST", "/v1/audio/speech", &[], &speech("Hi.", "pcm", 0));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

/// Sends `head` at once, then `trickle` a byte every 100 ms while reading the answer; the
/// answer's status (`None` when the server closed without one) and its raw bytes.
fn raw_exchange(addr: SocketAddr, head: &[u8], trickle: &[u8]) -> (Option<u16>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head).unwrap();
    let mut writer = s.try_clone().unwrap();
    let trickle = trickle.to_vec();
    let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = answered.clone();
    let sender = std::thread::spawn(move || {
        for b in trickle {
            std::thread::sleep(Duration::from_millis(100));
            if stop.load(std::sync::atomic::Ordering::Relaxed) || writer.write_all(&[b]).is_err() {
                return;
            }
        }
    });
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    answered.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(s);
    sender.join().unwrap();
    let status = std::str::from_utf8(&raw).ok().and_then(|t| t.split(' ').nth(1)?.parse().ok());
    (status, raw)
}

/// One figure of `/metrics`: `name` with `labels` (`""` or `{stage="fine"}`).
fn metric(addr: SocketAddr, name: &str, labels: &str) -> f64 {
    let (status, _, body) = http(addr, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let key = format!("{name}{labels} ");
    let line = text.lines().find(|l| l.starts_with(&key)).unwrap_or_else(|| panic!("no {key:?} in\n{text}"));
    line[key.len()..].parse().unwrap()
}

/// Polls until `done` holds, for at most a minute (the engine frees what it held between steps).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(60), "{what}: not after a minute");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nothing in flight and no KV pages held.
fn drained(addr: SocketAddr) -> bool {
    metric(addr, "bark_requests_in_flight", "") == 0.0
        && metric(addr, "bark_engine_requests", "") == 0.0
        && metric(addr, "bark_kv_pages_held", "") == 0.0
}

#[test]
fn flac_holds_exactly_the_pcm_samples_and_metrics_count_the_work() {
    let server = start(|_| {});
    let text = "Hello, my name is Suno.";
    let (_, _, pcm) = http(server.addr, "POST", "/v1/audio/speech", &[], &speech(text, "pcm", 5));
    let (status, headers, flac) = http(server.addr, "POST", "/v1/audio/speech", &[], &speech(text, "flac", 5));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&flac));
    assert!(headers.contains(&("content-type".into(), "audio/flac".into())));
    let mut reader = claxon::FlacReader::new(&flac[..]).expect("a FLAC stream");
    assert_eq!((reader.streaminfo().sample_rate, reader.streaminfo().channels), (24_000, 1));
    let decoded: Vec<u8> = reader.samples().flat_map(|s| (s.unwrap() as i16).to_le_bytes()).collect();
    assert!(decoded == pcm, "flac decodes to {} bytes of PCM, pcm sent {}", decoded.len(), pcm.len());
    // Two requests of one piece each: both decode stages and the fine one ran and were counted.
    assert_eq!(metric(server.addr, "bark_requests_total", ""), 2.0);
    assert_eq!(metric(server.addr, "bark_steps_total", "{stage=\"fine\"}"), 2.0);
    for stage in ["semantic", "coarse", "fine"] {
        let labels = format!("{{stage=\"{stage}\"}}");
        assert!(metric(server.addr, "bark_tokens_total", &labels) > 0.0, "{stage}");
        assert!(metric(server.addr, "bark_tokens_per_second", &labels) > 0.0, "{stage}");
        let occupancy = metric(server.addr, "bark_batch_occupancy", &labels);
        assert!(occupancy > 0.0 && occupancy <= 1.0, "{stage}: occupancy {occupancy}");
    }
    let audio = metric(server.addr, "bark_audio_seconds_total", "");
    assert!((audio - pcm.len() as f64 / 24_000.0).abs() < 1e-6, "{audio} s of audio counted");
    eventually("the server drains", || drained(server.addr));
}

#[test]
fn a_client_that_leaves_mid_stream_cancels_its_work_and_frees_its_pages() {
    let server = start(|_| {});
    // Text of several 256-token pieces, made one after another; the client leaves after the first.
    let text: String = (1..=120).map(|i| format!("Sentence number {i} is here. ")).collect();
    let pieces = load().split_text(&text).unwrap().len();
    assert!(pieces >= 3, "{pieces} pieces");
    let body = speech(&text, "pcm", 1);
    let mut s = TcpStream::connect(server.addr).unwrap();
    let req = format!("POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).unwrap();
    let mut got = vec![0u8; 4096];
    let n = s.read(&mut got).unwrap();
    assert!(String::from_utf8_lossy(&got[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got[..n]));
    drop(s);
    eventually("the request is cancelled", || drained(server.addr));
    let pieces_decoded = metric(server.addr, "bark_steps_total", "{stage=\"fine\"}");
    assert!(pieces_decoded < pieces as f64, "all {pieces} pieces were made for a client that left after one");
    // And the server goes on.
    let (status, _, _) = http(server.addr, "POST", "/v1/audio/speech", &[], &speech("Hi.", "pcm", 0));
    assert_eq!(status, 200);
}

#[test]
fn a_request_past_its_deadline_gets_504_and_leaves_nothing_held() {
    let server = start(|c| c.request_timeout = Some(Duration::from_millis(1)));
    let (status, _, body) = http(server.addr, "POST", "/v1/audio/speech", &[], &speech("Hello there.", "pcm", 0));
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("an error JSON");
    assert!(v["error"]["message"].as_str().unwrap().contains("longer than this server allows"), "{v}");
    assert_eq!(metric(server.addr, "bark_requests_timed_out_total", ""), 1.0);
    eventually("the timed-out request is cancelled", || drained(server.addr));
}

#[test]
fn the_voice_map_names_served_prompts_and_rejects_what_it_cannot_serve() {
    let dir = std::env::temp_dir().join(format!("bark-wgpu-serve-voices-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    generation::voice().save_npz(dir.join("mine.npz")).unwrap();
    let map_file = dir.join("map.json");
    std::fs::write(&map_file, r#"{"narrator": "mine", "alloy": null}"#).unwrap();
    let map = read_voice_map(&map_file).unwrap();
    assert!(map.iter().any(|(n, t)| n == "narrator" && t == "mine"));
    assert!(!map.iter().any(|(n, _)| n == "alloy"), "null takes a name out");
    let server = start(|c| {
        c.voices_dir = Some(dir.clone());
        c.voice_map = map.clone();
    });
    let ask = |voice: &str| {
        http(server.addr, "POST", "/v1/audio/speech", &[], &speech("Hi.", "pcm", 2).replace("alloy", voice))
    };
    let (_, _, by_stem) = ask("mine");
    let (status, _, by_name) = ask("narrator");
    assert_eq!(status, 200);
    assert!(by_name == by_stem, "a mapped name speaks as the prompt it names");
    let opts = GenerateOptions { seed: 2, max_semantic_tokens: 6, min_eos_p: None, ..GenerateOptions::default() };
    let want = load().generate_long("Hi.", &opts, Some(&generation::voice())).unwrap();
    assert!(by_stem == pcm16_le_bytes(&want.audio.samples), "the served prompt is the saved voice");
    assert_eq!(ask("alloy").0, 400, "alloy was taken out");
    let (_, _, names) = http(server.addr, "GET", "/v1/audio/voices", &[], "");
    let names: serde_json::Value = serde_json::from_slice(&names).unwrap();
    let names: Vec<&str> = names["voices"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(names.contains(&"narrator") && names.contains(&"mine") && !names.contains(&"alloy"), "{names:?}");
    // A map must be a JSON object of strings, and name what the server has.
    std::fs::write(&map_file, r#"{"narrator": 3}"#).unwrap();
    assert!(read_voice_map(&map_file).unwrap_err().to_string().contains("narrator"));
    std::fs::write(&map_file, "[]").unwrap();
    assert!(read_voice_map(&map_file).is_err());
    let presets = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/voices/presets");
    let bad = vec![("narrator".to_string(), "v2/xx_speaker_99".to_string())];
    let cfg = ServeConfig { voice_map: bad, ..ServeConfig::new("bark-tiny", &presets) };
    let refused = Server::new(Engine::start(load(), 1).unwrap(), cfg).err().expect("a map to a missing preset");
    assert!(refused.to_string().contains("v2/xx_speaker_99"), "{refused}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Bark on a context of its own (the test changes the context's memory limit or ends its
/// device), and that context.
fn private_bark() -> (Bark, Context) {
    let gpu = private_ctx();
    (Bark::load_on(&gpu, TINY, &LoadOptions::default()).unwrap(), gpu)
}

#[test]
fn out_of_memory_fails_the_request_with_500_and_the_server_recovers() {
    let (bark, gpu) = private_bark();
    let server = start_with(bark, 4, |_| {});
    gpu.set_memory_limit(Some(gpu.stats().bytes_live + 1024));
    let (status, _, body) = http(server.addr, "POST", "/v1/audio/speech", &[], &speech("Hi.", "pcm", 4));
    assert_eq!(status, 500);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("an error JSON");
    assert!(v["error"]["message"].as_str().unwrap().contains("out of GPU memory"), "{v}");
    assert!(metric(server.addr, "bark_engine_failures_total", "") >= 1.0);
    gpu.set_memory_limit(None);
    let (status, _, body) = http(server.addr, "POST", "/v1/audio/speech", &[], &speech("Hi.", "pcm", 4));
    assert_eq!(status, 200, "after the limit is lifted: {}", String::from_utf8_lossy(&body));
    assert!(body == solo_pcm(&load(), "Hi.", 4));
    eventually("the server drains", || drained(server.addr));
}

#[test]
fn a_lost_device_fails_requests_and_says_the_engine_stopped() {
    let (bark, gpu) = private_bark();
    let server = start_with(bark, 4, |_| {});
    gpu.device().destroy();
    let (status, _, body) = http(server.addr, "POST", "/v1/audio/speech", &[], &speech("Hi.", "pcm", 0));
    assert!(status >= 500, "{status}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<serde_json::Value>(&body).expect("an error JSON");
    eventually("the engine reports it stopped", || metric(server.addr, "bark_engine_up", "") == 0.0);
    let (status, _, _) = http(server.addr, "POST", "/v1/audio/speech", &[], &speech("Hi.", "pcm", 0));
    assert_eq!(status, 503, "a stopped engine takes no more requests");
}

#[test]
fn server_sent_events_carry_the_same_audio_in_base64() {
    use base64::Engine as _;
    let server = start(|_| {});
    let body = speech("Hello, my name is Suno.", "pcm", 3).replace("\"seed\"", "\"stream_format\":\"sse\",\"seed\"");
    let (status, headers, events) = http(server.addr, "POST", "/v1/audio/speech", &[], &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&events));
    assert!(headers.contains(&("content-type".into(), "text/event-stream".into())));
    let events: Vec<serde_json::Value> = String::from_utf8(events)
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").expect("a data line")).unwrap())
        .collect();
    let (last, deltas) = events.split_last().unwrap();
    assert_eq!(last["type"], "speech.audio.done");
    let mut audio = Vec::new();
    for d in deltas {
        assert_eq!(d["type"], "speech.audio.delta");
        audio.extend(base64::engine::general_purpose::STANDARD.decode(d["audio"].as_str().unwrap()).unwrap());
    }
    assert!(audio == solo_pcm(&load(), "Hello, my name is Suno.", 3), "the events' audio differs from the library's");
    let flac = speech("Hi.", "flac", 0).replace("\"seed\"", "\"stream_format\":\"sse\",\"seed\"");
    assert_eq!(http(server.addr, "POST", "/v1/audio/speech", &[], &flac).0, 400);
}

/// The body of a sampled request for `text` with `seed` and `tokens` semantic tokens at most.
fn sampled(text: &str, seed: u64, tokens: usize) -> String {
    serde_json::json!({
        "model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm",
        "seed": seed, "max_semantic_tokens": tokens, "min_eos_p": null
    })
    .to_string()
}

#[test]
fn thirty_two_concurrent_requests_of_mixed_lengths_each_equal_their_solo_run() {
    let reference = load();
    let texts = ["Hi.", "Hello, my name is Suno.", "And, uh, I like pizza!", "One two three four five six."];
    let request = |i: u64| (texts[i as usize % texts.len()], i, 2 + (i as usize % 5));
    let want: Vec<Vec<u8>> = (0..32)
        .map(|i| {
            let (text, seed, tokens) = request(i);
            let opts = GenerateOptions { seed, max_semantic_tokens: tokens, min_eos_p: None, ..Default::default() };
            pcm16_le_bytes(&reference.generate_long(text, &opts, None).unwrap().audio.samples)
        })
        .collect();
    let server = start_with(load(), 8, |c| c.max_queue = 32);
    let got: Vec<(u16, Vec<u8>)> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..32)
            .map(|i| {
                let (addr, (text, seed, tokens)) = (server.addr, request(i));
                s.spawn(move || {
                    let (status, _, body) = http(addr, "POST", "/v1/audio/speech", &[], &sampled(text, seed, tokens));
                    (status, body)
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (i, ((status, body), want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(*status, 200, "request {i}: {}", String::from_utf8_lossy(body));
        assert!(body == want, "request {i}: the served audio differs from its solo run");
    }
    eventually("the server drains", || drained(server.addr));
    let occupancy = metric(server.addr, "bark_batch_occupancy", "{stage=\"semantic\"}");
    assert!(occupancy > 1.0 / 8.0, "32 requests at once never shared a semantic step ({occupancy})");
}

#[test]
fn two_hundred_requests_in_a_row_leave_the_gpu_as_they_found_it() {
    // A context of its own: the other tests' buffers must not show in its byte count.
    let (bark, _gpu) = private_bark();
    let server = start_with(bark, 2, |_| {});
    let body = speech("Hi.", "pcm", 0).replace("\"max_semantic_tokens\":6", "\"max_semantic_tokens\":2");
    let run = || http(server.addr, "POST", "/v1/audio/speech", &[], &body);
    // The first request builds the schedulers' caches and plans; those stay.
    let (status, _, first) = run();
    assert_eq!(status, 200);
    eventually("the first request leaves", || drained(server.addr));
    let bytes = metric(server.addr, "bark_gpu_bytes", "");
    for i in 0..200 {
        let (status, _, audio) = run();
        assert!(status == 200 && audio == first, "request {i} differs from the first");
    }
    eventually("GPU bytes and pages back where the first request left them", || {
        drained(server.addr) && metric(server.addr, "bark_gpu_bytes", "") == bytes
    });
}
