//! The one decode loop of the causal stages (semantic and coarse): continuous batching over a
//! fixed number of decode rows.
//!
//! A [`Scheduler`] owns the stage's KV cache, its compiled decode step and prefill, the rows
//! (one live sequence each), the queue of sequences waiting for a row, and the step in flight.
//! Each call to [`Scheduler::step`] admits waiting sequences into free rows (prefilling their
//! first window), queues one decode step for every row with a token still to make, and only
//! then reads the step queued before it: the GPU never waits for the host's round trip. A
//! sequence may be added at any time ([`Scheduler::add`]) and joins at the next step while the
//! others keep decoding; one may be cancelled ([`Scheduler::cancel`]), its pages freed at once.
//!
//! What differs between the stages is a small [`Sequence`]: its windows (a prompt prefilled
//! into a fresh cache, then up to a number of tokens), each token's sampling settings, and
//! what it does with a token (including whether it ends the sequence). Rows are independent
//! (a row's result does not depend on the others, see [`DecodeStep`]), so a sequence makes the
//! same tokens however it is batched.

use std::collections::VecDeque;

use super::rng::Rng;
use super::step::{cache_and_step, DecodeStep, Feed, Prefill, RowInput};
use crate::gpu::Context;
use crate::graph::Run;
use crate::kv::{PagedKvCache, SeqId};
use crate::model::gpt::CausalGpt;
use crate::ops::sampling::SampleSettings;
use crate::{Error, Result};

/// One window of a sequence: decoded from a fresh cache, starting with `prefill` (summed with
/// `extra` position by position when given), then `first` fed by the decode step, then the
/// window's own tokens fed back, `tokens` of them at most.
pub(crate) struct Window {
    pub prefill: Vec<u32>,
    pub extra: Option<Vec<u32>>,
    pub first: u32,
    pub tokens: usize,
}

/// A sequence of a causal stage, as the scheduler drives it.
pub(crate) trait Sequence {
    /// The next window, or `None` when the sequence is complete.
    fn next_window(&mut self) -> Result<Option<Window>>;
    /// How token `k` of the current window is chosen.
    fn settings(&self, k: usize) -> SampleSettings;
    /// Takes the next token of the current window; `true` ends the sequence's window early
    /// (an end token).
    fn push(&mut self, id: u32) -> bool;
}

/// Names a sequence given to a scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Ticket(u64);

/// What a step did to a sequence. (The batch entry points only count tokens; a streaming
/// caller reads which sequence took which token.)
#[allow(dead_code)]
pub(crate) enum Event<S> {
    /// The sequence took a token (already pushed to it).
    Token(Ticket, u32),
    /// The sequence is complete and has left the scheduler.
    Done(Ticket, S),
    /// The sequence failed on its own input (its next window, its sampling settings) and has
    /// left the scheduler; the others go on.
    Failed(Ticket, Error),
}

struct Entry<S> {
    ticket: Ticket,
    seq: S,
    rng: Option<Rng>,
}

/// A sequence holding a row and a cache sequence.
struct Row<S> {
    entry: Entry<S>,
    cache: SeqId,
    /// Windows started, so a late result of an earlier window is never taken.
    windows: u32,
    /// The current window, `None` between windows.
    window: Option<Progress>,
}

struct Progress {
    first: u32,
    tokens: usize,
    submitted: usize,
    taken: usize,
}

/// Per row of a step in flight: the sequence and window it computed for.
type Tags = Vec<Option<(Ticket, u32)>>;

pub(crate) struct Scheduler<'m, S> {
    ctx: Context,
    model: &'m CausalGpt,
    cache: PagedKvCache,
    step: DecodeStep,
    prefill: Prefill,
    all_pages: usize,
    rows: Vec<Option<Row<S>>>,
    waiting: VecDeque<Entry<S>>,
    in_flight: Option<(Run, Tags)>,
    tickets: u64,
}

impl<'m, S: Sequence> Scheduler<'m, S> {
    /// Up to `rows` sequences decoding at once (fewer when the adapter's binding limit needs
    /// it), each of up to `positions` positions.
    pub fn new(ctx: &Context, model: &'m CausalGpt, rows: usize, positions: usize) -> Result<Self> {
        let (cache, step) = cache_and_step(ctx, model, rows, positions)?;
        let all_pages = cache.free_pages();
        let rows = (0..step.n_rows()).map(|_| None).collect();
        Ok(Scheduler {
            ctx: ctx.clone(),
            model,
            cache,
            step,
            prefill: Prefill::default(),
            all_pages,
            rows,
            waiting: VecDeque::new(),
            in_flight: None,
            tickets: 0,
        })
    }

    /// Queues a sequence; it takes a row at a coming step. `rng` gives it one uniform per
    /// token when it samples.
    pub fn add(&mut self, seq: S, rng: Option<Rng>) -> Ticket {
        let ticket = Ticket(self.tickets);
        self.tickets += 1;
        self.waiting.push_back(Entry { ticket, seq, rng });
        ticket
    }

    /// Takes a sequence out, waiting or decoding, freeing its row and pages now (a result of
    /// it still in flight is dropped). `None` when the scheduler does not hold it.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the engine's, native only
    pub fn cancel(&mut self, ticket: Ticket) -> Result<Option<S>> {
        if let Some(i) = self.waiting.iter().position(|e| e.ticket == ticket) {
            return Ok(self.waiting.remove(i).map(|e| e.seq));
        }
        let Some(slot) = self.rows.iter_mut().find(|r| r.as_ref().is_some_and(|r| r.entry.ticket == ticket)) else {
            return Ok(None);
        };
        let row = slot.take().expect("found above");
        self.cache.free(row.cache)?;
        Ok(Some(row.entry.seq))
    }

    /// KV cache pages its sequences hold now.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the engine's, native only
    pub fn pages_held(&self) -> usize {
        self.all_pages - self.cache.free_pages()
    }

    /// Nothing waiting, decoding or in flight.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.rows.iter().all(Option::is_none) && self.in_flight.is_none()
    }

    /// One decode step (see the module docs): what it did to each sequence. Awaiting it waits
    /// for the step queued by the call before (a blocking caller uses [`crate::gpu::block_on`]).
    pub async fn step(&mut self) -> Result<Vec<Event<S>>> {
        let mut events = Vec::new();
        self.admit(&mut events)?;
        let next = self.submit(&mut events)?;
        let queued = next.is_some();
        let read = self.in_flight.is_some();
        if let Some((run, tags)) = self.in_flight.take() {
            self.take_tokens(&run, &tags, &mut events).await?;
        }
        self.in_flight = next;
        if !queued && !read && events.is_empty() && !self.is_idle() {
            return Err(Error::Gpu("internal: a decode step found sequences but nothing to do".into()));
        }
        Ok(events)
    }

    /// Steps until every sequence is complete; `on_token` hears of each token as it is taken.
    /// Returns the sequences in the order they were added.
    pub async fn run(mut self, seqs: Vec<(S, Option<Rng>)>, mut on_token: impl FnMut(usize)) -> Result<Vec<S>> {
        let first = self.tickets;
        let n = seqs.len();
        for (seq, rng) in seqs {
            self.add(seq, rng);
        }
        let mut done: Vec<Option<S>> = (0..n).map(|_| None).collect();
        while !self.is_idle() {
            let mut tokens = 0;
            for event in self.step().await? {
                match event {
                    Event::Token(..) => tokens += 1,
                    Event::Done(Ticket(t), seq) => done[(t - first) as usize] = Some(seq),
                    Event::Failed(_, e) => return Err(e),
                }
            }
            on_token(tokens);
        }
        self.check_all_free()?;
        done.into_iter().map(|s| s.ok_or_else(|| Error::Gpu("internal: a sequence never completed".into()))).collect()
    }

    /// Fails when an idle scheduler holds pages: every sequence frees its own.
    fn check_all_free(&self) -> Result<()> {
        match self.cache.free_pages() {
            n if n == self.all_pages => Ok(()),
            n => {
                Err(Error::Gpu(format!("internal: {} KV cache pages still held after generation", self.all_pages - n)))
            }
        }
    }

    /// Fills free rows from the queue and starts the next window of every row between windows;
    /// a sequence with no window left completes and frees its row.
    fn admit(&mut self, events: &mut Vec<Event<S>>) -> Result<()> {
        for slot in self.rows.iter_mut() {
            loop {
                if slot.is_none() {
                    let Some(entry) = self.waiting.pop_front() else { break };
                    let cache = self.cache.add_sequence()?;
                    *slot = Some(Row { entry, cache, windows: 0, window: None });
                }
                let row = slot.as_mut().expect("filled above");
                if row.window.is_some() {
                    break;
                }
                let next = match row.entry.seq.next_window() {
                    Ok(next) => next,
                    Err(e) => {
                        let row = slot.take().expect("the row is busy");
                        self.cache.free(row.cache)?;
                        events.push(Event::Failed(row.entry.ticket, e));
                        continue;
                    }
                };
                match next {
                    Some(w) => {
                        if w.tokens == 0 {
                            return Err(Error::Gpu("internal: a window of no tokens".into()));
                        }
                        self.cache.reset(row.cache)?;
                        let (model, cache) = (self.model, &mut self.cache);
                        self.prefill.run(&self.ctx, model, cache, row.cache, &w.prefill, w.extra.as_deref())?;
                        row.windows += 1;
                        row.window = Some(Progress { first: w.first, tokens: w.tokens, submitted: 0, taken: 0 });
                        break;
                    }
                    None => {
                        let row = slot.take().expect("the row is busy");
                        self.cache.free(row.cache)?;
                        events.push(Event::Done(row.entry.ticket, row.entry.seq));
                    }
                }
            }
        }
        Ok(())
    }

    /// Queues a step for every row with a token still to make; `None` when there is none. Its
    /// first token feeds the window's given one, the rest the GPU's own previous choice.
    /// A row whose settings are invalid leaves with [`Event::Failed`] before the step is queued.
    fn submit(&mut self, events: &mut Vec<Event<S>>) -> Result<Option<(Run, Tags)>> {
        self.drop_invalid(events)?;
        let mut inputs = Vec::with_capacity(self.rows.len());
        let mut tags = Vec::with_capacity(self.rows.len());
        for slot in self.rows.iter_mut() {
            let busy = slot.as_mut().and_then(|r| match &mut r.window {
                Some(w) if w.submitted < w.tokens => Some((&mut r.entry, r.cache, r.windows, w)),
                _ => None,
            });
            let Some((entry, seq, windows, w)) = busy else {
                inputs.push(None);
                tags.push(None);
                continue;
            };
            let feed = if w.submitted == 0 { Feed::Token(w.first) } else { Feed::Chosen };
            let settings = entry.seq.settings(w.submitted);
            let uniform = entry.rng.as_mut().map(Rng::uniform);
            inputs.push(Some(RowInput { seq, feed, settings, uniform }));
            tags.push(Some((entry.ticket, windows)));
            w.submitted += 1;
        }
        if inputs.iter().all(Option::is_none) {
            return Ok(None);
        }
        Ok(Some((self.step.submit(&mut self.cache, &inputs)?, tags)))
    }

    /// Takes out every row whose next token's settings the sampler would refuse, so that one
    /// sequence's bad settings never fail the step the others share.
    fn drop_invalid(&mut self, events: &mut Vec<Event<S>>) -> Result<()> {
        let vocab = self.model.config().output_vocab_size;
        for slot in self.rows.iter_mut() {
            let invalid = slot.as_ref().and_then(|r| match &r.window {
                Some(w) if w.submitted < w.tokens => r.entry.seq.settings(w.submitted).encode(vocab).err(),
                _ => None,
            });
            if let Some(e) = invalid {
                let row = slot.take().expect("checked above");
                self.cache.free(row.cache)?;
                events.push(Event::Failed(row.entry.ticket, e));
            }
        }
        Ok(())
    }

    /// Gives each row the token a step chose for it, if the row still holds that sequence and
    /// window; a window ends after its last token or an early end.
    async fn take_tokens(&mut self, run: &Run, tags: &Tags, events: &mut Vec<Event<S>>) -> Result<()> {
        let chosen = self.step.read(run).await?;
        for ((slot, &id), tag) in self.rows.iter_mut().zip(&chosen).zip(tags) {
            let Some(row) = slot.as_mut() else { continue };
            if *tag != Some((row.entry.ticket, row.windows)) {
                continue;
            }
            let Some(w) = row.window.as_mut() else { continue };
            w.taken += 1;
            let ended = row.entry.seq.push(id);
            events.push(Event::Token(row.entry.ticket, id));
            if ended || w.taken == w.tokens {
                row.window = None;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::semantic::{history_window, Prompt, SemanticSeq};
    use crate::generate::{Bark, GenerateOptions, LoadOptions};
    use crate::gpu::block_on;
    use std::path::Path;

    const MAX_TOKENS: usize = 12;

    fn bark() -> Bark {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let opts = LoadOptions {
            tokenizer: Some(root.join("tests/fixtures/tokenizer/tokenizer.json")),
            ..LoadOptions::default()
        };
        Bark::load(root.join("tests/fixtures/tiny"), &opts).unwrap()
    }

    /// Greedy semantic sequences of three texts.
    fn seqs(b: &Bark) -> Vec<SemanticSeq> {
        let settings = GenerateOptions::greedy().semantic_settings();
        ["Hi.", "One two three.", "Four, five."]
            .iter()
            .map(|t| {
                let prompt = Prompt { text: b.text_window(t).unwrap(), history: history_window(None) };
                SemanticSeq::new(&b.semantic, prompt, settings, MAX_TOKENS).unwrap()
            })
            .collect()
    }

    fn alone(b: &Bark) -> Vec<Vec<u32>> {
        seqs(b)
            .into_iter()
            .map(|s| {
                let sched = Scheduler::new(&b.ctx, &b.semantic, 1, 256 + MAX_TOKENS).unwrap();
                block_on(sched.run(vec![(s, None)], |_| {})).unwrap().pop().unwrap().into_tokens()
            })
            .collect()
    }

    /// Steps until idle; each sequence's tokens as the events told them, and its final tokens.
    fn drain(sched: &mut Scheduler<SemanticSeq>, out: &mut Vec<(Ticket, Vec<u32>)>, heard: &mut Vec<(Ticket, u32)>) {
        while !sched.is_idle() {
            for e in block_on(sched.step()).unwrap() {
                match e {
                    Event::Token(t, id) => heard.push((t, id)),
                    Event::Done(t, s) => out.push((t, s.into_tokens())),
                    Event::Failed(t, e) => panic!("{t:?} failed: {e}"),
                }
            }
        }
    }

    #[test]
    fn a_sequence_with_bad_settings_fails_alone_and_the_others_decode_as_they_would_alone() {
        let b = bark();
        let want = alone(&b);
        let mut sched = Scheduler::new(&b.ctx, &b.semantic, 4, 256 + MAX_TOKENS).unwrap();
        let all_pages = sched.cache.free_pages();
        let good: Vec<Ticket> = seqs(&b).into_iter().map(|s| sched.add(s, None)).collect();
        // Settings no request can pass the engine's admission with, given straight to the scheduler.
        let settings = SampleSettings { top_p: Some(7.0), ..GenerateOptions::greedy().semantic_settings() };
        let prompt = Prompt { text: b.text_window("Bad.").unwrap(), history: history_window(None) };
        let bad = sched.add(SemanticSeq::new(&b.semantic, prompt, settings, MAX_TOKENS).unwrap(), None);
        let (mut out, mut failed) = (Vec::new(), Vec::new());
        while !sched.is_idle() {
            for e in block_on(sched.step()).unwrap() {
                match e {
                    Event::Token(t, _) => assert_ne!(t, bad, "the bad sequence took a token"),
                    Event::Done(t, s) => out.push((t, s.into_tokens())),
                    Event::Failed(t, e) => failed.push((t, e.to_string())),
                }
            }
        }
        assert!(failed.len() == 1 && failed[0].0 == bad && failed[0].1.contains("top_p 7"), "{failed:?}");
        out.sort_by_key(|(t, _)| t.0);
        let expected: Vec<(Ticket, Vec<u32>)> = good.into_iter().zip(want).collect();
        assert_eq!(out, expected, "the good sequences beside the failed one against alone");
        assert_eq!(sched.cache.free_pages(), all_pages, "every page came back");
    }

    #[test]
    fn a_sequence_added_while_others_decode_joins_and_decodes_as_it_would_alone() {
        let b = bark();
        let want = alone(&b);
        // The first sequence must still be decoding when the second joins (after its first token).
        assert!(want[0].len() > 2 && want.iter().all(|w| !w.is_empty()), "{want:?}");
        // Two rows for three sequences: the second joins two steps into the first, the third
        // waits for a row and takes the pages one of them gave back.
        let mut sched = Scheduler::new(&b.ctx, &b.semantic, 2, 256 + MAX_TOKENS).unwrap();
        let all_pages = sched.cache.free_pages();
        let mut seqs = seqs(&b).into_iter();
        let first = sched.add(seqs.next().unwrap(), None);
        let mut heard = Vec::new();
        for _ in 0..2 {
            for e in block_on(sched.step()).unwrap() {
                if let Event::Token(t, id) = e {
                    heard.push((t, id));
                }
            }
        }
        assert!(heard.iter().all(|&(t, _)| t == first), "only the first sequence decoded so far");
        let second = sched.add(seqs.next().unwrap(), None);
        let third = sched.add(seqs.next().unwrap(), None);
        let mut out = Vec::new();
        drain(&mut sched, &mut out, &mut heard);
        out.sort_by_key(|(t, _)| t.0);
        let tickets: Vec<Ticket> = out.iter().map(|(t, _)| *t).collect();
        assert_eq!(tickets, [first, second, third]);
        for ((t, got), want) in out.iter().zip(&want) {
            assert_eq!(got, want, "{t:?} batched against alone");
            let told: Vec<u32> = heard.iter().filter(|(h, _)| h == t).map(|&(_, id)| id).collect();
            assert_eq!(&told, got, "{t:?}: the events told its tokens in order");
        }
        assert_eq!(sched.cache.free_pages(), all_pages, "every page came back");
    }

    #[test]
    fn a_cancelled_sequence_frees_its_pages_at_once_and_is_heard_of_no_more() {
        let b = bark();
        let want = alone(&b);
        let mut sched = Scheduler::new(&b.ctx, &b.semantic, 1, 256 + MAX_TOKENS).unwrap();
        let all_pages = sched.cache.free_pages();
        let mut seqs = seqs(&b).into_iter();
        let gone = sched.add(seqs.next().unwrap(), None);
        let next = sched.add(seqs.next().unwrap(), None);
        for _ in 0..3 {
            block_on(sched.step()).unwrap();
        }
        assert!(sched.cache.free_pages() < all_pages, "the first sequence holds pages");
        let cancelled = sched.cancel(gone).unwrap().expect("it was decoding");
        assert_eq!(sched.cache.free_pages(), all_pages, "its pages are free at once");
        assert!(!cancelled.into_tokens().is_empty());
        assert!(sched.cancel(gone).unwrap().is_none(), "a second cancel finds nothing");
        let (mut out, mut heard) = (Vec::new(), Vec::new());
        drain(&mut sched, &mut out, &mut heard);
        assert!(heard.iter().all(|&(t, _)| t == next), "nothing more of the cancelled one: {heard:?}");
        assert_eq!(out, [(next, want[1].clone())]);
        // A waiting sequence can be cancelled too, before it ever decodes.
        let waiting = sched.add(seqs.next().unwrap(), None);
        assert!(sched.cancel(waiting).unwrap().is_some());
        assert!(sched.is_idle());
    }
}
