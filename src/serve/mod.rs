//! `bark-wgpu serve`: OpenAI's speech endpoint (`POST /v1/audio/speech`) over HTTP, on the
//! [`Engine`]: every request in flight shares the engine's decode steps, each response streams
//! its audio piece by piece as it is decoded (chunked transfer; a WAV's header announces an
//! open-ended stream), and a client that disconnects cancels its work. The GPU is only touched
//! by the engine's thread; handlers submit and forward. Also `GET /v1/models`, `GET /health`
//! and `GET /metrics` (Prometheus text).
//!
//! The body is OpenAI's: `model` (any name: one model is served), `input`, `voice`,
//! `response_format` (`wav`, the default here, or `pcm`: 16-bit little-endian, 24 kHz mono,
//! both streamed; or `flac`, sent whole), `speed` (only 1), `stream_format` (`audio`, or
//! `sse`: server-sent events of base64 audio, as OpenAI's `speech.audio.delta` and `.done`),
//! plus Bark's own optional knobs: `seed`, `greedy`, `text_temp`, `waveform_temp`,
//! `fine_temp`, `top_k`, `top_p`, `min_eos_p`, `max_semantic_tokens`. Errors are OpenAI's error
//! JSON with a 4xx or 5xx status; a request past its deadline is a 504 (or, once its audio has
//! started, a body cut short).

mod flac;
mod listen;
mod sse;
mod voices;
mod wav_stream;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use crate::audio::{pcm16, pcm16_le_bytes, SAMPLE_RATE};
use crate::generate::{Engine, EngineMetrics, GenerateOptions, Request, StageMetrics, Stream, Wait};
use crate::{Error, Result};
pub use listen::serve_http;
pub use voices::{openai_voice_map, parse_voice_map, read_voice_map, VoiceTable, OPENAI_VOICES};

/// How the server answers.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The name `/v1/models` lists.
    pub model_name: String,
    /// Where the model's voice presets are (`speaker_embeddings_path.json`).
    pub model_dir: PathBuf,
    /// Voice prompts served by file stem (`--voices DIR`).
    pub voices_dir: Option<PathBuf>,
    /// Requests must send `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Requests in flight at most; more are refused with 429.
    pub max_queue: usize,
    /// The longest `input`, in characters.
    pub max_input_chars: usize,
    /// Names a request's `voice` may give and the stems or presets they speak as.
    pub voice_map: Vec<(String, String)>,
    /// How long a request may take, from its arrival to its last byte.
    pub request_timeout: Option<Duration>,
    /// The largest request body, in bytes; a larger one is refused with 413 unread.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers ([`serve_http`] cuts it off).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body once its headers are in (408).
    pub body_timeout: Duration,
}

impl ServeConfig {
    /// Serves the model in `model_dir` under `model_name`, with the defaults of `bark-wgpu serve`.
    pub fn new(model_name: impl Into<String>, model_dir: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            model_name: model_name.into(),
            model_dir: model_dir.into(),
            voices_dir: None,
            api_key: None,
            max_queue: 64,
            max_input_chars: 4096,
            voice_map: openai_voice_map(),
            request_timeout: Some(Duration::from_secs(600)),
            max_body_bytes: 1 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// The server's state: the engine, the configuration and the counters `/metrics` reports.
pub struct Server {
    engine: Engine,
    config: ServeConfig,
    voices: VoiceTable,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    audio_samples: AtomicU64,
}

impl Server {
    /// Fails when the voice map names a voice the server does not have.
    pub fn new(engine: Engine, config: ServeConfig) -> Result<Arc<Server>> {
        let voices = VoiceTable::new(&config.model_dir, config.voices_dir.clone(), config.voice_map.clone())?;
        Ok(Arc::new(Server {
            engine,
            config,
            voices,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            audio_samples: AtomicU64::new(0),
        }))
    }

    /// The engine's figures (see [`Engine::metrics`]); `stopped` says whether it still serves.
    pub fn engine_metrics(&self) -> EngineMetrics {
        self.engine.metrics()
    }
}

/// The routes, for [`axum::serve()`].
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/v1/audio/speech", post(speech))
        .route("/v1/models", get(models))
        .route("/v1/audio/voices", get(voice_names))
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(server)
}

/// Compares in time that depends on the lengths only, so the answer's timing tells nothing about
/// how much of a guessed key was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// OpenAI's error JSON with `status`, and a line on standard error for the operator.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    eprintln!("speech request answered {}: {message}", status.as_u16());
    let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
    let body = json!({ "error": { "message": message, "type": kind, "param": null, "code": null } });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[derive(Deserialize)]
struct SpeechBody {
    #[allow(dead_code)] // one model is served, whatever the client calls it
    model: String,
    input: String,
    voice: String,
    response_format: Option<String>,
    speed: Option<f32>,
    stream_format: Option<String>,
    #[serde(default)]
    instructions: Option<String>,
    seed: Option<u64>,
    greedy: Option<bool>,
    text_temp: Option<f32>,
    waveform_temp: Option<f32>,
    fine_temp: Option<f32>,
    top_k: Option<u32>,
    top_p: Option<f32>,
    min_eos_p: Option<f32>,
    max_semantic_tokens: Option<usize>,
}

impl SpeechBody {
    fn options(&self) -> GenerateOptions {
        let base = if self.greedy == Some(true) { GenerateOptions::greedy() } else { GenerateOptions::default() };
        GenerateOptions {
            seed: self.seed.unwrap_or(base.seed),
            text_temp: self.text_temp.unwrap_or(base.text_temp),
            waveform_temp: self.waveform_temp.unwrap_or(base.waveform_temp),
            fine_temp: self.fine_temp.or(base.fine_temp),
            top_k: self.top_k.or(base.top_k),
            top_p: self.top_p.or(base.top_p),
            min_eos_p: self.min_eos_p.or(base.min_eos_p),
            max_semantic_tokens: self.max_semantic_tokens.unwrap_or(base.max_semantic_tokens),
            ..base
        }
    }
}

/// Counts a request in flight until dropped (with its response body).
struct InFlight(Arc<Server>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Set when the handler is dropped before its response exists (the client left).
struct Left(Arc<AtomicBool>);

impl Drop for Left {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Wav,
    Pcm,
    Flac,
}

impl Format {
    fn parse(name: &str) -> Option<Format> {
        match name {
            "wav" => Some(Format::Wav),
            "pcm" => Some(Format::Pcm),
            "flac" => Some(Format::Flac),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Wav => "audio/wav",
            Format::Pcm => "audio/pcm",
            Format::Flac => "audio/flac",
        }
    }
}

async fn speech(State(server): State<Arc<Server>>, headers: HeaderMap, body: Body) -> Response {
    server.requests.fetch_add(1, Ordering::Relaxed);
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let config = &server.config;
    let response = match listen::read_body(body, declared, config.max_body_bytes, config.body_timeout).await {
        Ok(body) => speak(&server, &headers, &body).await,
        Err(e) => error(e.status(), e.message()),
    };
    match response.status() {
        StatusCode::TOO_MANY_REQUESTS => server.rejected.fetch_add(1, Ordering::Relaxed),
        StatusCode::GATEWAY_TIMEOUT => server.timed_out.fetch_add(1, Ordering::Relaxed),
        s if !s.is_success() => server.failed.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    response
}

/// A speech request's body, parsed and every field checked.
struct Checked {
    req: SpeechBody,
    opts: GenerateOptions,
    format: Format,
    sse: bool,
}

/// Parses and checks a speech request's body; the error is the message of its 400.
fn read_speech(body: &[u8], max_input_chars: usize) -> std::result::Result<Checked, String> {
    let req: SpeechBody =
        serde_json::from_slice(body).map_err(|e| format!("the request body is not a valid speech request: {e}"))?;
    let requested = req.response_format.as_deref().unwrap_or("wav");
    let Some(format) = Format::parse(requested) else {
        return Err(format!("response_format {requested:?} is not supported; use \"wav\", \"pcm\" or \"flac\""));
    };
    if req.speed.is_some_and(|s| (s - 1.0).abs() > 1e-6) {
        return Err("speed is not supported (Bark speaks at its own pace); send 1 or omit it".into());
    }
    let sse = match req.stream_format.as_deref() {
        None | Some("audio") => false,
        Some("sse") if format != Format::Flac => true,
        Some("sse") => return Err("stream_format \"sse\" takes \"pcm\" or \"wav\" audio".into()),
        Some(_) => return Err("stream_format must be \"audio\" or \"sse\"".into()),
    };
    if req.instructions.is_some() {
        return Err("instructions are not supported; Bark takes cues in the text itself".into());
    }
    if req.input.trim().is_empty() {
        return Err("input is empty".into());
    }
    let chars = req.input.chars().count();
    if chars > max_input_chars {
        return Err(format!("input is {chars} characters; this server takes at most {max_input_chars}"));
    }
    // Every setting is checked here, so a bad one is a 400 naming its field and never reaches
    // the decode steps other requests share.
    let opts = req.options();
    opts.check().map_err(|e| e.to_string())?;
    Ok(Checked { req, opts, format, sse })
}

/// Checks a speech request's JSON body as the server does before any work (with at most
/// `max_input_chars` characters of input); the error is the message its 400 would carry.
pub fn check_speech_body(body: &[u8], max_input_chars: usize) -> std::result::Result<(), String> {
    read_speech(body, max_input_chars).map(drop)
}

async fn speak(server: &Arc<Server>, headers: &HeaderMap, body: &[u8]) -> Response {
    let deadline = server.config.request_timeout.map(|t| Instant::now() + t);
    if let Some(key) = &server.config.api_key {
        let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if !sent.is_some_and(|s| same_secret(s.as_bytes(), format!("Bearer {key}").as_bytes())) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong API key (Authorization: Bearer KEY)");
        }
    }
    let Checked { req, opts, format, sse } = match read_speech(body, server.config.max_input_chars) {
        Ok(checked) => checked,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if server.in_flight.fetch_add(1, Ordering::Relaxed) >= server.config.max_queue {
        server.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "the server is busy; try again shortly");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let guard = InFlight(server.clone());
    let (srv, name) = (server.clone(), req.voice.clone());
    let voice = match tokio::task::spawn_blocking(move || srv.voices.resolve(&name)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let stream = match server.engine.submit(Request { text: req.input, opts, voice }) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    // The first piece (all of them, for FLAC) decides the status: a request the engine refuses
    // is a 400 before any audio. Dropping `left` (the client gone) cancels the wait.
    let left = Left(Arc::new(AtomicBool::new(false)));
    let gone = left.0.clone();
    let whole = format == Format::Flac;
    let first = tokio::task::spawn_blocking(move || {
        let mut stream = stream;
        let mut samples = Vec::new();
        loop {
            match next_piece(&mut stream, deadline, || gone.load(Ordering::Relaxed)) {
                Next::Piece(piece) if whole => samples.extend(piece),
                Next::Piece(piece) => return (stream, Next::Piece(piece)),
                Next::Ended if whole && !samples.is_empty() => return (stream, Next::Piece(samples)),
                other => return (stream, other),
            }
        }
    })
    .await;
    drop(left);
    let (stream, first) = match first {
        Ok((stream, Next::Piece(chunk))) => (stream, chunk),
        Ok((_, Next::Failed(e @ Error::Invalid(_)))) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok((_, Next::Failed(e))) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Ok((_, Next::TimedOut)) => return error(StatusCode::GATEWAY_TIMEOUT, timeout_message(server)),
        Ok((_, Next::Ended | Next::Gone)) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "the engine ended the request")
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    server.audio_samples.fetch_add(first.len() as u64, Ordering::Relaxed);
    if whole {
        let pcm: Vec<i16> = first.iter().map(|&s| pcm16(s)).collect();
        return match flac::encode(&pcm, SAMPLE_RATE) {
            Ok(bytes) => ([(header::CONTENT_TYPE, format.content_type())], bytes).into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let head = if format == Format::Wav { wav_stream::header(SAMPLE_RATE) } else { Vec::new() };
    let frame = if sse { sse::delta } else { Bytes::from };
    let _ = tx.try_send(Ok(frame([head, pcm16_le_bytes(&first)].concat())));
    tokio::task::spawn_blocking(move || forward(stream, tx, guard, deadline, frame, sse));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let kind = if sse { "text/event-stream" } else { format.content_type() };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

fn timeout_message(server: &Server) -> String {
    let limit = server.config.request_timeout.unwrap_or_default().as_secs_f64();
    format!("the request took longer than this server allows ({limit} s)")
}

/// What waiting for a request's next piece gave.
enum Next {
    Piece(Vec<f32>),
    Failed(Error),
    Ended,
    TimedOut,
    Gone,
}

/// How often a waiting handler looks whether its client is still there.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Waits for the next piece of `stream` until `deadline`, giving up when `gone` says the
/// client left (the caller then drops the stream, which cancels the request's work).
fn next_piece(stream: &mut Stream, deadline: Option<Instant>, gone: impl Fn() -> bool) -> Next {
    loop {
        if gone() {
            return Next::Gone;
        }
        let mut slice = LOOK_EVERY;
        if let Some(d) = deadline {
            match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => slice = slice.min(left),
                _ => return Next::TimedOut,
            }
        }
        match stream.wait(slice) {
            Wait::Chunk(Ok(piece)) => return Next::Piece(piece),
            Wait::Chunk(Err(e)) => return Next::Failed(e),
            Wait::Ended => return Next::Ended,
            Wait::Pending => {}
        }
    }
}

/// Sends the rest of a request's pieces to its response, each as `frame` makes it (and, for
/// server-sent events, the closing event). A client gone (the body dropped) drops the stream,
/// which cancels the request's work; an engine error or the deadline ends the body early.
fn forward(
    mut stream: Stream,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    guard: InFlight,
    deadline: Option<Instant>,
    frame: fn(Vec<u8>) -> Bytes,
    sse: bool,
) {
    loop {
        let item = match next_piece(&mut stream, deadline, || tx.is_closed()) {
            Next::Piece(samples) => {
                guard.0.audio_samples.fetch_add(samples.len() as u64, Ordering::Relaxed);
                Ok(frame(pcm16_le_bytes(&samples)))
            }
            Next::Ended if sse => {
                let _ = tx.blocking_send(Ok(sse::done()));
                return;
            }
            Next::Failed(e) => Err(std::io::Error::other(e.to_string())),
            Next::TimedOut => {
                guard.0.timed_out.fetch_add(1, Ordering::Relaxed);
                Err(std::io::Error::other(timeout_message(&guard.0)))
            }
            Next::Ended | Next::Gone => return,
        };
        if let Err(e) = &item {
            eprintln!("speech request cut short: {e}");
        }
        let stop = item.is_err();
        if tx.blocking_send(item).is_err() || stop {
            return;
        }
    }
}

async fn models(State(server): State<Arc<Server>>) -> Response {
    let model = json!({ "id": server.config.model_name, "object": "model", "created": 0, "owned_by": "suno" });
    axum::Json(json!({ "object": "list", "data": [model] })).into_response()
}

async fn voice_names(State(server): State<Arc<Server>>) -> Response {
    match tokio::task::spawn_blocking(move || server.voices.names()).await {
        Ok(Ok(names)) => axum::Json(json!({ "voices": names })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Prometheus text. The figure to scale on is `bark_requests_in_flight` against
/// `bark_batch_capacity`: past it, requests wait for a row (`bark_queue_depth`).
async fn metrics(State(server): State<Arc<Server>>) -> String {
    let e = server.engine.metrics();
    let in_flight = server.in_flight.load(Ordering::Relaxed);
    let seconds = server.audio_samples.load(Ordering::Relaxed) as f64 / SAMPLE_RATE as f64;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in samples {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    let count = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    metric("bark_requests_total", "counter", "Speech requests received.", &[("", count(&server.requests))]);
    metric("bark_requests_rejected_total", "counter", "Requests refused with 429.", &[("", count(&server.rejected))]);
    metric("bark_requests_failed_total", "counter", "Requests answered 4xx or 5xx.", &[("", count(&server.failed))]);
    metric(
        "bark_requests_timed_out_total",
        "counter",
        "Requests past their deadline.",
        &[("", count(&server.timed_out))],
    );
    metric("bark_requests_in_flight", "gauge", "Requests accepted and not yet finished.", &[("", in_flight as f64)]);
    let queued = in_flight.saturating_sub(e.max_batch) as f64;
    metric("bark_queue_depth", "gauge", "Requests in flight beyond the batch capacity.", &[("", queued)]);
    metric("bark_batch_capacity", "gauge", "Sequences that share a decode step at most.", &[("", e.max_batch as f64)]);
    metric("bark_engine_requests", "gauge", "Requests the engine is working on.", &[("", e.requests as f64)]);
    metric("bark_kv_pages_held", "gauge", "KV cache pages held by sequences.", &[("", e.pages_held as f64)]);
    metric("bark_gpu_bytes", "gauge", "Bytes of the GPU buffers the engine holds.", &[("", e.bytes_live as f64)]);
    metric(
        "bark_engine_failures_total",
        "counter",
        "Requests the engine ended with an error.",
        &[("", e.failures as f64)],
    );
    metric("bark_engine_up", "gauge", "1 while the engine serves.", &[("", f64::from(u8::from(e.stopped.is_none())))]);
    metric("bark_audio_seconds_total", "counter", "Seconds of audio sent.", &[("", seconds)]);
    let stages: [(&str, &StageMetrics); 3] =
        [("{stage=\"semantic\"}", &e.semantic), ("{stage=\"coarse\"}", &e.coarse), ("{stage=\"fine\"}", &e.fine)];
    let per_stage = |f: &dyn Fn(&StageMetrics) -> f64| stages.map(|(l, s)| (l, f(s)));
    metric("bark_tokens_total", "counter", "Tokens made (fine: codec frames).", &per_stage(&|s| s.tokens as f64));
    metric("bark_steps_total", "counter", "Decode steps (fine: batches) run.", &per_stage(&|s| s.steps as f64));
    metric("bark_busy_seconds_total", "counter", "Seconds spent in the stage.", &per_stage(&|s| s.busy_seconds));
    let speed = |s: &StageMetrics| if s.busy_seconds > 0.0 { s.tokens as f64 / s.busy_seconds } else { 0.0 };
    metric("bark_tokens_per_second", "gauge", "Tokens per busy second since start.", &per_stage(&speed));
    let occupancy = |s: &StageMetrics| {
        if s.steps > 0 {
            s.rows as f64 / (s.steps as f64 * e.max_batch as f64)
        } else {
            0.0
        }
    };
    metric("bark_batch_occupancy", "gauge", "Mean rows per step over the capacity.", &per_stage(&occupancy));
    out
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn same_secret_is_equality_of_bytes() {
        assert!(same_secret(b"Bearer sesame", b"Bearer sesame"));
        assert!(!same_secret(b"Bearer sesamf", b"Bearer sesame"));
        assert!(!same_secret(b"Bearer sesam", b"Bearer sesame"));
        assert!(!same_secret(b"", b"Bearer sesame"));
        assert!(same_secret(b"", b""));
    }
}
