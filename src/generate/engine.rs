//! The engine: one thread owns a [`Bark`] and serves requests from any thread. The sequences of
//! every request in flight share the semantic and coarse decode steps (continuous batching
//! across requests: one that arrives mid-generation joins at the next step, a coarse one at its
//! next step too, since each sequence restarts its own window) and the fine model's batches.
//! Each request receives its audio piece by piece, in order, exactly as
//! [`Bark::generate_stream`] would hand it over alone (rows of a batch do not depend on each
//! other). A request whose [`Stream`] is dropped is cancelled: its sequences leave at once and
//! their pages are freed. This is what a server stands on: handlers submit, the GPU is touched
//! only by the engine's thread.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::bark::{check_voice, Bark, Generation};
use super::coarse::CoarseSeq;
use super::fine;
use super::longform::{next_prompt, piece_options};
use super::options::GenerateOptions;
use super::rng::Rng;
use super::scheduler::{Event, Scheduler, Ticket};
use super::semantic::{self, SemanticSeq, MAX_SEMANTIC_TOKENS};
use crate::gpu::block_on;
use crate::text::MAX_TEXT_TOKENS;
use crate::vocab::N_COARSE_CODEBOOKS;
use crate::voice::VoicePrompt;
use crate::{Error, Result};

/// What to say: text of any length (split into pieces as [`Bark::generate_long`] does), how,
/// and in which voice.
#[derive(Clone, Debug)]
pub struct Request {
    pub text: String,
    pub opts: GenerateOptions,
    pub voice: Option<VoicePrompt>,
}

/// A request's audio as it is made: each piece's samples (the silence before every piece but
/// the first included), then the end. An error ends it early. Dropping it cancels the request.
pub struct Stream {
    chunks: Receiver<Result<Vec<f32>>>,
    cancelled: Arc<AtomicBool>,
}

impl Iterator for Stream {
    type Item = Result<Vec<f32>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.chunks.recv().ok()
    }
}

/// What [`Stream::wait`] found.
pub enum Wait {
    /// The next piece (or the error that ends the request).
    Chunk(Result<Vec<f32>>),
    /// The request is complete: no more pieces.
    Ended,
    /// Nothing yet within the time given.
    Pending,
}

impl Stream {
    /// The next piece if one comes within `timeout` (a caller with a deadline, or one that
    /// also watches its client, waits in slices).
    pub fn wait(&mut self, timeout: Duration) -> Wait {
        match self.chunks.recv_timeout(timeout) {
            Ok(chunk) => Wait::Chunk(chunk),
            Err(RecvTimeoutError::Timeout) => Wait::Pending,
            Err(RecvTimeoutError::Disconnected) => Wait::Ended,
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

struct Submission {
    request: Request,
    chunks: Sender<Result<Vec<f32>>>,
    cancelled: Arc<AtomicBool>,
}

/// One stage's running totals since the engine started.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageMetrics {
    /// Tokens made; for the fine stage, codec frames filled in.
    pub tokens: u64,
    /// Decode steps that made tokens (fine: batches run), and the sequences they carried, summed:
    /// `rows / steps / max_batch` is the batch occupancy.
    pub steps: u64,
    pub rows: u64,
    /// Seconds spent in the stage's steps: `tokens / busy_seconds` is its speed while busy.
    pub busy_seconds: f64,
}

/// What the engine has done and holds, read without waiting for its thread (for `/metrics`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineMetrics {
    /// The most sequences sharing a step.
    pub max_batch: usize,
    /// Requests being served, as of the last turn.
    pub requests: usize,
    /// KV cache pages held, as of the last turn.
    pub pages_held: usize,
    /// GPU bytes of every buffer on the engine's context now ([`crate::gpu::Stats::bytes_live`];
    /// mid-step when read during one).
    pub bytes_live: u64,
    /// Requests the engine ended with an error (a bad request, or a turn that failed: that
    /// fails every request in flight then).
    pub failures: u64,
    pub semantic: StageMetrics,
    pub coarse: StageMetrics,
    pub fine: StageMetrics,
    /// Why the engine stopped, if it did (a panic on the GPU's thread: device lost, or a bug).
    pub stopped: Option<String>,
}

#[derive(Default)]
struct StageCounters {
    tokens: AtomicU64,
    steps: AtomicU64,
    rows: AtomicU64,
    busy_ns: AtomicU64,
}

impl StageCounters {
    fn record(&self, tokens: usize, rows: usize, since: Instant) {
        if rows > 0 {
            self.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
            self.steps.fetch_add(1, Ordering::Relaxed);
            self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        }
        self.busy_ns.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> StageMetrics {
        StageMetrics {
            tokens: self.tokens.load(Ordering::Relaxed),
            steps: self.steps.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            busy_seconds: self.busy_ns.load(Ordering::Relaxed) as f64 * 1e-9,
        }
    }
}

/// The totals the engine's thread keeps and any thread reads.
#[derive(Default)]
struct Counters {
    semantic: StageCounters,
    coarse: StageCounters,
    fine: StageCounters,
    requests: AtomicUsize,
    pages_held: AtomicUsize,
    failures: AtomicU64,
    stopped: Mutex<Option<String>>,
}

/// Serves requests on its own thread (see the module docs). Dropping it lets the requests in
/// flight finish, then stops the thread.
pub struct Engine {
    inbox: Option<Sender<Submission>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    max_batch: usize,
    ctx: crate::gpu::Context,
}

impl Engine {
    /// Starts the engine's thread with `bark`, at most `max_batch` (>= 1) sequences sharing
    /// each stage's steps.
    pub fn start(bark: Bark, max_batch: usize) -> Result<Engine> {
        if max_batch == 0 {
            return Err(Error::Invalid("max_batch is 0; at least 1 sequence must be live at once".into()));
        }
        let (inbox, requests) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let (c, ctx) = (counters.clone(), bark.ctx.clone());
        let thread = std::thread::Builder::new()
            .name("bark-engine".into())
            .spawn(move || serve(&bark, max_batch, requests, &c))
            .map_err(Error::Io)?;
        Ok(Engine { inbox: Some(inbox), thread: Some(thread), counters, max_batch, ctx })
    }

    /// The engine's totals and gauges, without waiting for its thread.
    pub fn metrics(&self) -> EngineMetrics {
        let c = &self.counters;
        EngineMetrics {
            max_batch: self.max_batch,
            requests: c.requests.load(Ordering::Relaxed),
            pages_held: c.pages_held.load(Ordering::Relaxed),
            bytes_live: self.ctx.stats().bytes_live,
            failures: c.failures.load(Ordering::Relaxed),
            semantic: c.semantic.snapshot(),
            coarse: c.coarse.snapshot(),
            fine: c.fine.snapshot(),
            stopped: c.stopped.lock().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone()),
        }
    }

    /// Queues a request; its audio arrives on the returned stream.
    pub fn submit(&self, request: Request) -> Result<Stream> {
        let (chunks, rx) = mpsc::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let s = Submission { request, chunks, cancelled: cancelled.clone() };
        let inbox = self.inbox.as_ref().expect("open until dropped");
        inbox.send(s).map_err(|_| Error::Gpu("the engine has stopped".into()))?;
        Ok(Stream { chunks: rx, cancelled })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        drop(self.inbox.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request being served: its pieces, the one in flight, and the voice the next one uses.
struct Active {
    sub: Submission,
    pieces: Vec<String>,
    /// The piece in flight (pieces go one after another: each may continue from the last).
    piece: usize,
    carried: Option<VoicePrompt>,
    /// The piece's semantic tokens once made, its coarse tokens once made.
    semantic: Vec<u32>,
    coarse: Vec<u32>,
    /// Where the piece is: its ticket in a scheduler, or waiting for the fine model.
    at: Stage,
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Semantic(Ticket),
    Coarse(Ticket),
    Fine,
}

impl Active {
    fn voice(&self) -> Option<&VoicePrompt> {
        self.sub.request.voice.as_ref().or(self.carried.as_ref())
    }
    fn piece_opts(&self) -> GenerateOptions {
        piece_options(&self.sub.request.opts, self.piece)
    }
}

type Id = u64;

/// The engine's loop: take requests, step both decode schedulers, run the fine model over the
/// pieces waiting for it, decode and hand out the audio; sleep only when there is nothing to do.
/// A failed turn fails the requests in flight and the engine goes on; a panic (wgpu's answer to
/// a lost device or memory it could not find) fails them and stops the engine, which
/// [`EngineMetrics::stopped`] then says.
fn serve(bark: &Bark, max_batch: usize, requests: Receiver<Submission>, counters: &Counters) {
    let mut state = Serving::new(bark, max_batch, counters);
    loop {
        let idle = state.is_idle();
        let next = if idle { requests.recv().ok() } else { requests.try_recv().ok() };
        if next.is_none() && idle {
            return;
        }
        let round = catch_unwind(AssertUnwindSafe(|| {
            for sub in next.into_iter().chain(std::iter::from_fn(|| requests.try_recv().ok())) {
                state.admit(sub);
            }
            if state.is_idle() {
                return;
            }
            if let Err(e) = state.turn() {
                state.fail_all(&e);
            }
        }));
        if let Err(panic) = round {
            let why = panic_message(&*panic);
            state.fail_all(&Error::Gpu(why.clone()));
            *counters.stopped.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            return;
        }
        state.publish();
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic.downcast_ref::<String>().map(String::as_str).or(panic.downcast_ref::<&str>().copied());
    text.unwrap_or("a panic on the engine's thread").to_string()
}

struct Serving<'b> {
    bark: &'b Bark,
    max_batch: usize,
    counters: &'b Counters,
    semantic: Option<Scheduler<'b, SemanticSeq>>,
    coarse: Option<Scheduler<'b, CoarseSeq>>,
    active: HashMap<Id, Active>,
    next_id: Id,
}

impl<'b> Serving<'b> {
    fn new(bark: &'b Bark, max_batch: usize, counters: &'b Counters) -> Self {
        Serving { bark, max_batch, counters, semantic: None, coarse: None, active: HashMap::new(), next_id: 0 }
    }

    fn pages_held(&self) -> usize {
        self.semantic.as_ref().map_or(0, Scheduler::pages_held) + self.coarse.as_ref().map_or(0, Scheduler::pages_held)
    }

    /// Updates the gauges [`Engine::metrics`] reads.
    fn publish(&self) {
        self.counters.requests.store(self.active.len(), Ordering::Relaxed);
        self.counters.pages_held.store(self.pages_held(), Ordering::Relaxed);
    }

    fn is_idle(&self) -> bool {
        self.active.is_empty()
    }

    /// Checks a request and starts its first piece; a bad one gets its error and ends.
    fn admit(&mut self, sub: Submission) {
        let checked = (|| {
            let opts = &sub.request.opts;
            opts.check()?;
            semantic::check_max_tokens(&self.bark.semantic, opts.max_semantic_tokens)?;
            if let Some(v) = &sub.request.voice {
                check_voice(v)?;
            }
            self.bark.split_text(&sub.request.text)
        })();
        match checked {
            Ok(pieces) => {
                let id = self.next_id;
                self.next_id += 1;
                let a = Active {
                    sub,
                    pieces,
                    piece: 0,
                    carried: None,
                    semantic: Vec::new(),
                    coarse: Vec::new(),
                    at: Stage::Fine,
                };
                self.active.insert(id, a);
                if let Err(e) = self.start_piece(id) {
                    self.finish(id, Some(e));
                }
            }
            Err(e) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                let _ = sub.chunks.send(Err(e));
            }
        }
    }

    /// Queues the current piece of request `id` for the semantic stage.
    fn start_piece(&mut self, id: Id) -> Result<()> {
        let a = &self.active[&id];
        let (seq, rng) = self.bark.semantic_seq(&a.pieces[a.piece], &a.piece_opts(), a.voice())?;
        let sched = match &mut self.semantic {
            Some(s) => s,
            None => self.semantic.insert(Scheduler::new(
                &self.bark.ctx,
                &self.bark.semantic,
                self.max_batch,
                MAX_TEXT_TOKENS + MAX_SEMANTIC_TOKENS,
            )?),
        };
        let ticket = sched.add(seq, rng);
        self.active.get_mut(&id).expect("active").at = Stage::Semantic(ticket);
        Ok(())
    }

    /// One round: cancellations, a semantic step, a coarse step, a fine batch.
    fn turn(&mut self) -> Result<()> {
        let gone: Vec<Id> =
            self.active.iter().filter(|(_, a)| a.sub.cancelled.load(Ordering::Relaxed)).map(|(&i, _)| i).collect();
        for id in gone {
            self.cancel(id)?;
        }
        self.step_semantic()?;
        self.step_coarse()?;
        self.run_fine()
    }

    fn owner(&self, stage: Stage) -> Option<Id> {
        self.active.iter().find(|(_, a)| a.at == stage).map(|(&i, _)| i)
    }

    fn step_semantic(&mut self) -> Result<()> {
        let Some(sched) = self.semantic.as_mut().filter(|s| !s.is_idle()) else { return Ok(()) };
        let start = Instant::now();
        let events = block_on(sched.step())?;
        let tokens = events.iter().filter(|e| matches!(e, Event::Token(..))).count();
        self.counters.semantic.record(tokens, tokens, start);
        for (id, seq) in self.completed(events, Stage::Semantic) {
            let a = self.active.get_mut(&id).expect("owner is active");
            a.semantic = seq.into_tokens();
            let started = (|| {
                let a = &self.active[&id];
                let (seq, rng) = self.bark.coarse_seq(&a.semantic, &a.piece_opts(), a.voice())?;
                let sched = match &mut self.coarse {
                    Some(s) => s,
                    None => self.coarse.insert(Scheduler::new(
                        &self.bark.ctx,
                        &self.bark.coarse,
                        self.max_batch,
                        self.bark.coarse.config().block_size,
                    )?),
                };
                Ok(sched.add(seq, rng))
            })();
            match started {
                Ok(ticket) => self.active.get_mut(&id).expect("active").at = Stage::Coarse(ticket),
                Err(e) => self.finish(id, Some(e)),
            }
        }
        Ok(())
    }

    /// The sequences a step completed, with their requests; a sequence that failed on its own
    /// input ends its request here.
    fn completed<S>(&mut self, events: Vec<Event<S>>, stage: fn(Ticket) -> Stage) -> Vec<(Id, S)> {
        let mut done = Vec::new();
        for event in events {
            match event {
                Event::Done(ticket, seq) => done.extend(self.owner(stage(ticket)).map(|id| (id, seq))),
                Event::Failed(ticket, e) => {
                    if let Some(id) = self.owner(stage(ticket)) {
                        self.finish(id, Some(e));
                    }
                }
                Event::Token(..) => {}
            }
        }
        done
    }

    fn step_coarse(&mut self) -> Result<()> {
        let Some(sched) = self.coarse.as_mut().filter(|s| !s.is_idle()) else { return Ok(()) };
        let start = Instant::now();
        let events = block_on(sched.step())?;
        let tokens = events.iter().filter(|e| matches!(e, Event::Token(..))).count();
        self.counters.coarse.record(tokens, tokens, start);
        for (id, seq) in self.completed(events, Stage::Coarse) {
            let a = self.active.get_mut(&id).expect("owner is active");
            a.coarse = seq.into_tokens();
            a.at = Stage::Fine;
        }
        Ok(())
    }

    /// Runs the fine model over up to `max_batch` pieces waiting for it that share a fine
    /// temperature, then decodes and hands out each one's audio.
    fn run_fine(&mut self) -> Result<()> {
        let mut waiting: Vec<Id> = self.active.iter().filter(|(_, a)| a.at == Stage::Fine).map(|(&i, _)| i).collect();
        let Some(&first) = waiting.iter().min() else { return Ok(()) };
        let temperature = self.active[&first].piece_opts().fine_temperature();
        waiting.retain(|i| self.active[i].piece_opts().fine_temperature() == temperature);
        waiting.sort_unstable();
        waiting.truncate(self.max_batch);
        let start = Instant::now();
        let mut jobs = Vec::new();
        let mut rngs: Vec<Option<Rng>> = Vec::new();
        let mut ready = Vec::new();
        for id in waiting {
            let a = &self.active[&id];
            match self.bark.fine_job(&a.coarse, &a.piece_opts(), a.voice()) {
                Ok((job, rng)) => {
                    jobs.push(job);
                    rngs.push(rng);
                    ready.push(id);
                }
                // One request's bad input ends that request, not the batch.
                Err(e) => self.finish(id, Some(e)),
            }
        }
        let waiting = ready;
        if waiting.is_empty() {
            return Ok(());
        }
        let frames: usize = waiting.iter().map(|i| self.active[i].coarse.len() / N_COARSE_CODEBOOKS).sum();
        let bark = self.bark;
        let fine = fine::generate(&bark.ctx, &bark.fine, jobs, temperature, &mut rngs, self.max_batch, bark.reporter());
        let fine = block_on(fine)?;
        self.counters.fine.record(frames, waiting.len(), start);
        for (id, fine) in waiting.into_iter().zip(fine) {
            let audio = block_on(bark.decode_quietly(&fine));
            bark.ctx.trim_pool();
            let audio = match audio {
                Ok(audio) => audio,
                Err(e @ Error::Invalid(_)) => {
                    self.finish(id, Some(e));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let a = self.active.get_mut(&id).expect("waiting is active");
            let g = Generation {
                semantic: std::mem::take(&mut a.semantic),
                coarse: std::mem::take(&mut a.coarse),
                fine,
                audio,
            };
            self.deliver(id, g);
        }
        Ok(())
    }

    /// Hands a piece's audio to its request, then starts its next piece or ends it.
    fn deliver(&mut self, id: Id, g: Generation) {
        let a = self.active.get_mut(&id).expect("delivered to an active request");
        let chunk = self.bark.piece_chunk(a.piece, &g.audio.samples);
        if a.sub.chunks.send(Ok(chunk)).is_err() {
            self.active.remove(&id);
            return;
        }
        if a.sub.request.voice.is_none() {
            a.carried = next_prompt(&g).or(a.carried.take());
        }
        a.piece += 1;
        if a.piece == a.pieces.len() {
            self.finish(id, None);
        } else if let Err(e) = self.start_piece(id) {
            self.finish(id, Some(e));
        }
    }

    /// Ends request `id`, with its error if any (its stream then closes).
    fn finish(&mut self, id: Id, error: Option<Error>) {
        if let (Some(a), Some(e)) = (self.active.remove(&id), error) {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
            let _ = a.sub.chunks.send(Err(e));
        }
    }

    /// Takes request `id` out of whichever stage holds it, freeing its pages now.
    fn cancel(&mut self, id: Id) -> Result<()> {
        let Some(a) = self.active.remove(&id) else { return Ok(()) };
        match a.at {
            Stage::Semantic(t) => drop(self.semantic.as_mut().map(|s| s.cancel(t)).transpose()?),
            Stage::Coarse(t) => drop(self.coarse.as_mut().map(|s| s.cancel(t)).transpose()?),
            Stage::Fine => {}
        }
        Ok(())
    }

    /// A stage failed for everyone: each request gets the error, and the schedulers start over.
    fn fail_all(&mut self, e: &Error) {
        for (_, a) in self.active.drain() {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
            let e = match e {
                Error::OutOfMemory(m) => Error::OutOfMemory(m.clone()),
                e => Error::Gpu(format!("the engine failed: {e}")),
            };
            let _ = a.sub.chunks.send(Err(e));
        }
        self.semantic = None;
        self.coarse = None;
        self.bark.ctx.trim_pool();
        self.publish();
    }
}
