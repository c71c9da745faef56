//! `bark-wgpu serve`: OpenAI's speech endpoint (`POST /v1/audio/speech`) over HTTP, on the
//! [`Engine`]: every request in flight shares the engine's decode steps, each response streams
//! its audio piece by piece as it is decoded (chunked transfer; a WAV's header announces an
//! open-ended stream), and a client that disconnects cancels its work. The GPU is only touched
//! by the engine's thread; handlers submit and forward. Also `GET /v1/models`, `GET /health`
//! and `GET /metrics` (Prometheus text).
//!
//! The body is OpenAI's: `model` (any name: one model is served), `input`, `voice`,
//! `response_format` (`wav`, the default here, or `pcm`: 16-bit little-endian, 24 kHz mono),
//! `speed` (only 1), `stream_format` (only `audio`), plus Bark's own optional knobs: `seed`,
//! `greedy`, `text_temp`, `waveform_temp`, `fine_temp`, `top_k`, `top_p`, `min_eos_p`,
//! `max_semantic_tokens`. Errors are OpenAI's error JSON with a 4xx or 5xx status.

mod voices;
mod wav_stream;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use crate::audio::{pcm16_le_bytes, SAMPLE_RATE};
use crate::generate::{Engine, GenerateOptions, Request, Stream};
use crate::Error;
pub use voices::{VoiceTable, OPENAI_VOICES};

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
    audio_samples: AtomicU64,
}

impl Server {
    pub fn new(engine: Engine, config: ServeConfig) -> Arc<Server> {
        let voices = VoiceTable::new(&config.model_dir, config.voices_dir.clone());
        Arc::new(Server {
            engine,
            config,
            voices,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            audio_samples: AtomicU64::new(0),
        })
    }
}

/// The routes, for [`axum::serve`].
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/v1/audio/speech", post(speech))
        .route("/v1/models", get(models))
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(server)
}

/// OpenAI's error JSON with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
    let body = json!({ "error": { "message": message.into(), "type": kind, "param": null, "code": null } });
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

async fn speech(State(server): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    server.requests.fetch_add(1, Ordering::Relaxed);
    let response = speak(&server, &headers, &body).await;
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        server.rejected.fetch_add(1, Ordering::Relaxed);
    } else if !response.status().is_success() {
        server.failed.fetch_add(1, Ordering::Relaxed);
    }
    response
}

async fn speak(server: &Arc<Server>, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(key) = &server.config.api_key {
        let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if sent != Some(&format!("Bearer {key}")) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong API key (Authorization: Bearer KEY)");
        }
    }
    let req: SpeechBody = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, format!("the request body is not a valid speech request: {e}"))
        }
    };
    let pcm = match req.response_format.as_deref().unwrap_or("wav") {
        "wav" => false,
        "pcm" => true,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("response_format {other:?} is not supported; use \"wav\" or \"pcm\""),
            )
        }
    };
    if req.speed.is_some_and(|s| (s - 1.0).abs() > 1e-6) {
        return error(
            StatusCode::BAD_REQUEST,
            "speed is not supported (Bark speaks at its own pace); send 1 or omit it",
        );
    }
    if req.stream_format.as_deref().is_some_and(|f| f != "audio") {
        return error(StatusCode::BAD_REQUEST, "stream_format must be \"audio\" (the audio streams as it is made)");
    }
    if req.instructions.is_some() {
        return error(StatusCode::BAD_REQUEST, "instructions are not supported; Bark takes cues in the text itself");
    }
    if req.input.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "input is empty");
    }
    let chars = req.input.chars().count();
    if chars > server.config.max_input_chars {
        return error(
            StatusCode::BAD_REQUEST,
            format!("input is {chars} characters; this server takes at most {}", server.config.max_input_chars),
        );
    }
    if server.in_flight.fetch_add(1, Ordering::Relaxed) >= server.config.max_queue {
        server.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "the server is busy; try again shortly");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let guard = InFlight(server.clone());
    let opts = req.options();
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
    // The first piece decides the status: a request the engine refuses is a 400 before any audio.
    let first = tokio::task::spawn_blocking(move || {
        let mut stream = stream;
        let first = stream.next();
        (stream, first)
    })
    .await;
    let (stream, first) = match first {
        Ok((stream, Some(Ok(chunk)))) => (stream, chunk),
        Ok((_, Some(Err(e @ Error::Invalid(_))))) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok((_, Some(Err(e)))) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Ok((_, None)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the engine ended the request"),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let head = if pcm { Vec::new() } else { wav_stream::header(SAMPLE_RATE) };
    server.audio_samples.fetch_add(first.len() as u64, Ordering::Relaxed);
    let first = Bytes::from([head, pcm16_le_bytes(&first)].concat());
    let _ = tx.try_send(Ok(first));
    tokio::task::spawn_blocking(move || forward(stream, tx, guard));
    let kind = if pcm { "audio/pcm" } else { "audio/wav" };
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// Sends the rest of a request's pieces to its response; a client gone drops the stream (and
/// with it the request's work), an engine error ends the body early.
fn forward(stream: Stream, tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>, guard: InFlight) {
    for chunk in stream {
        let item = match chunk {
            Ok(samples) => {
                guard.0.audio_samples.fetch_add(samples.len() as u64, Ordering::Relaxed);
                Ok(Bytes::from(pcm16_le_bytes(&samples)))
            }
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        let stop = item.is_err();
        if tx.blocking_send(item).is_err() || stop {
            break;
        }
    }
}

async fn models(State(server): State<Arc<Server>>) -> Response {
    let model = json!({ "id": server.config.model_name, "object": "model", "created": 0, "owned_by": "suno" });
    axum::Json(json!({ "object": "list", "data": [model] })).into_response()
}

async fn metrics(State(server): State<Arc<Server>>) -> String {
    let seconds = server.audio_samples.load(Ordering::Relaxed) as f64 / SAMPLE_RATE as f64;
    format!(
        "# TYPE bark_requests_total counter\nbark_requests_total {}\n\
         # TYPE bark_requests_rejected_total counter\nbark_requests_rejected_total {}\n\
         # TYPE bark_requests_failed_total counter\nbark_requests_failed_total {}\n\
         # TYPE bark_requests_in_flight gauge\nbark_requests_in_flight {}\n\
         # TYPE bark_audio_seconds_total counter\nbark_audio_seconds_total {seconds}\n",
        server.requests.load(Ordering::Relaxed),
        server.rejected.load(Ordering::Relaxed),
        server.failed.load(Ordering::Relaxed),
        server.in_flight.load(Ordering::Relaxed),
    )
}
