//! The server's edge: the accept loop and the reading of a request body, each with the limits a
//! server on a network needs. A client that trickles its headers is cut off after
//! `header_timeout`, one that trickles its body after `body_timeout`, and a body over its limit
//! is refused with 413 as soon as its length says so (or its bytes pass the limit), never read
//! whole. None of this holds a decode row: a request reaches the engine only once its body is in.

use std::future::Future;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Serves `app` on `listener` (HTTP/1.1) until `shutdown` completes, then waits for the
/// connections open at that moment to finish their responses. Every request's headers must
/// arrive within `header_timeout`.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: pause rather than spin.
                Err(e) => {
                    eprintln!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that goes away or is cut off ends only its own connection.
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Why a body was not read.
pub enum BodyError {
    /// Over `limit` bytes (413).
    TooLarge(usize),
    /// Not all there within the timeout (408).
    TooSlow(Duration),
    /// The connection failed while reading (400).
    Broken(String),
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }

    pub fn message(&self) -> String {
        match self {
            BodyError::TooLarge(limit) => format!("the request body is larger than this server takes ({limit} bytes)"),
            BodyError::TooSlow(t) => {
                format!("the request body did not arrive within {} s", t.as_secs_f64())
            }
            BodyError::Broken(e) => format!("the request body could not be read: {e}"),
        }
    }
}

/// Reads `body` whole if it is at most `limit` bytes and arrives within `timeout`. A declared
/// length over the limit is refused before a byte of the body is read.
pub async fn read_body(body: Body, declared: Option<u64>, limit: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let read = async {
        let mut body = body;
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                if bytes.len() + data.len() > limit {
                    return Err(BodyError::TooLarge(limit));
                }
                bytes.extend_from_slice(data);
            }
        }
        Ok(Bytes::from(bytes))
    };
    tokio::time::timeout(timeout, read).await.unwrap_or(Err(BodyError::TooSlow(timeout)))
}
