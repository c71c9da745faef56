//! A stand-in for the Hugging Face hub on 127.0.0.1, for tests without internet: it answers the
//! `/{owner}/{name}/resolve/{revision}/{file}` requests hf-hub makes the way huggingface.co does
//! (`x-repo-commit`, `etag`, `Range` answered with 206 and `content-range`, 404 with
//! `x-error-code`), and records every request so a test can tell whether the network was used. A
//! repo may state a size for a file other than its true one, as an untrusted hub might.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One repo: the commit `main` points at, and its files by path.
pub struct FakeRepo {
    pub commit: String,
    pub files: BTreeMap<String, Vec<u8>>,
    /// Sizes the hub states (in `content-range`) instead of the true ones, by path.
    pub claimed_sizes: BTreeMap<String, u64>,
}

impl FakeRepo {
    /// A repo of `files` copied from `dir` (paths relative to it).
    pub fn from_dir(commit: &str, dir: &Path, files: &[&str]) -> FakeRepo {
        let files = files.iter().map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap())).collect();
        FakeRepo { commit: commit.into(), files, claimed_sizes: BTreeMap::new() }
    }
}

struct State {
    repos: BTreeMap<String, FakeRepo>,
    requests: Mutex<Vec<String>>,
    /// The paths whose bytes were asked for (any request but a one-byte probe).
    downloads: Mutex<Vec<String>>,
    /// While set, every file body stops half-way, as a dropped connection does.
    cut_bodies: AtomicBool,
}

pub struct FakeHub {
    pub endpoint: String,
    state: Arc<State>,
}

impl FakeHub {
    /// Serves `repos` (by `owner/name`) on a free port until the test process ends.
    pub fn start(repos: Vec<(&str, FakeRepo)>) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            repos: repos.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            requests: Mutex::new(Vec::new()),
            downloads: Mutex::new(Vec::new()),
            cut_bodies: AtomicBool::new(false),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(&state, stream));
            }
        });
        FakeHub { endpoint, state }
    }

    /// The paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The paths whose bytes (more than a one-byte size probe) were asked for, in order.
    pub fn downloads(&self) -> Vec<String> {
        self.state.downloads.lock().unwrap().clone()
    }

    pub fn cut_bodies(&self, on: bool) {
        self.state.cut_bodies.store(on, Ordering::SeqCst);
    }
}

/// A stable stand-in for the hub's etag (a content hash): FNV-1a, 64 bits, in hex.
fn etag(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    format!("{h:016x}")
}

/// One request per connection (`Connection: close`), which ureq handles like any server.
fn serve(state: &State, stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
    state.requests.lock().unwrap().push(path.clone());
    if range.as_deref() != Some("bytes=0-0") {
        state.downloads.lock().unwrap().push(path.clone());
    }
    let mut out = stream;
    let reply = answer(state, &path, range.as_deref());
    let (status, headers, body) = match reply {
        Ok(r) => r,
        Err((status, code)) => (status, vec![("x-error-code".to_string(), code.to_string())], Vec::new()),
    };
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        416 => "Range Not Satisfiable",
        _ => "Not Found",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let cut = state.cut_bodies.load(Ordering::SeqCst) && body.len() > 1;
    let sent = if cut { &body[..body.len() / 2] } else { &body[..] };
    let _ = out.write_all(head.as_bytes()).and_then(|_| out.write_all(sent));
}

type Reply = (u16, Vec<(String, String)>, Vec<u8>);

fn answer(state: &State, path: &str, range: Option<&str>) -> Result<Reply, (u16, &'static str)> {
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    let [owner, name, "resolve", revision, file] = parts[..] else { return Err((404, "EntryNotFound")) };
    let repo = state.repos.get(&format!("{owner}/{name}")).ok_or((404, "RepoNotFound"))?;
    if revision != "main" && revision != repo.commit {
        return Err((404, "RevisionNotFound"));
    }
    let bytes = repo.files.get(file).ok_or((404, "EntryNotFound"))?;
    let mut headers =
        vec![("x-repo-commit".to_string(), repo.commit.clone()), ("etag".to_string(), format!("\"{}\"", etag(bytes)))];
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        return Ok((200, headers, bytes.clone()));
    };
    let (start, end) = spec.split_once('-').unwrap();
    let start: usize = start.parse().unwrap();
    if start >= bytes.len() {
        return Err((416, "RangeNotSatisfiable"));
    }
    let end: usize = if end.is_empty() { bytes.len() - 1 } else { end.parse::<usize>().unwrap().min(bytes.len() - 1) };
    let total = repo.claimed_sizes.get(file).map_or(bytes.len() as u64, |&s| s);
    headers.push(("content-range".to_string(), format!("bytes {start}-{end}/{total}")));
    Ok((206, headers, bytes[start..=end].to_vec()))
}
