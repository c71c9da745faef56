//! `stream_format: "sse"`: the audio as server-sent events, the shape OpenAI's API sends: a
//! `speech.audio.delta` event per piece with its bytes in base64, then `speech.audio.done`.

use axum::body::Bytes;
use base64::Engine as _;

/// One event carrying `audio` (bytes of the response format).
pub fn delta(audio: Vec<u8>) -> Bytes {
    let b64 = base64::engine::general_purpose::STANDARD.encode(audio);
    Bytes::from(format!("data: {{\"type\":\"speech.audio.delta\",\"audio\":\"{b64}\"}}\n\n"))
}

/// The last event.
pub fn done() -> Bytes {
    Bytes::from_static(b"data: {\"type\":\"speech.audio.done\"}\n\n")
}
