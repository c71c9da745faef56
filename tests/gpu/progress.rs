//! Stage progress: every stage reports its start with an upper bound, advances that add up to
//! the work it actually did, and its end, in order, for one text and for a batch.

use std::sync::{Arc, Mutex};

use bark_wgpu::generate::{Bark, GenerateOptions, LoadOptions};
use bark_wgpu::progress::{Progress, Stage};

#[derive(Debug, PartialEq)]
enum Event {
    Start(Stage, usize),
    Advance(Stage, usize),
    Finish(Stage),
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Progress for Recorder {
    fn start(&self, stage: Stage, total: usize) {
        self.0.lock().unwrap().push(Event::Start(stage, total));
    }
    fn advance(&self, stage: Stage, n: usize) {
        self.0.lock().unwrap().push(Event::Advance(stage, n));
    }
    fn finish(&self, stage: Stage) {
        self.0.lock().unwrap().push(Event::Finish(stage));
    }
}

/// Per stage, in order: (total announced, units advanced), checking each stage's events are
/// one start, advances of that stage only, one finish.
fn summary(events: &[Event]) -> Vec<(Stage, usize, usize)> {
    let mut out = Vec::new();
    let mut open: Option<(Stage, usize, usize)> = None;
    for e in events {
        match (e, &mut open) {
            (Event::Start(s, total), None) => open = Some((*s, *total, 0)),
            (Event::Advance(s, n), Some((cur, _, done))) if s == cur => *done += n,
            (Event::Finish(s), Some((cur, _, _))) if s == cur => out.push(open.take().unwrap()),
            (e, o) => panic!("event {e:?} while {o:?} is open"),
        }
    }
    assert!(open.is_none(), "{open:?} never finished");
    out
}

fn bark(recorder: &Arc<Recorder>) -> Bark {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");
    let mut bark = Bark::load(dir, &LoadOptions::default()).unwrap();
    bark.set_progress(Some(recorder.clone() as Arc<dyn Progress>));
    bark
}

#[test]
fn one_generation_reports_every_stage_and_its_work() {
    let rec = Arc::new(Recorder::default());
    let bark = bark(&rec);
    let opts = GenerateOptions { max_semantic_tokens: 8, ..GenerateOptions::greedy() };
    let out = bark.generate("Hello, my name is Suno.", &opts, None).unwrap();
    let s = summary(&rec.0.lock().unwrap());
    let stages: Vec<Stage> = s.iter().map(|x| x.0).collect();
    assert_eq!(stages, [Stage::Semantic, Stage::Coarse, Stage::Fine, Stage::Decode]);
    // Semantic: the cap is announced, the tokens made are advanced.
    assert_eq!((s[0].1, s[0].2), (8, out.semantic.len()));
    // Coarse: the count is known from the semantic tokens, and met exactly.
    assert_eq!((s[1].1, s[1].2), (out.coarse.len(), out.coarse.len()));
    assert!(!out.coarse.is_empty());
    // Fine: under 512 frames is one window, one run per codebook 2..7.
    assert!(out.fine[0].len() < 512);
    assert_eq!((s[2].1, s[2].2), (6, 6));
    assert_eq!((s[3].1, s[3].2), (1, 1));
}

#[test]
fn a_batch_reports_the_sum_of_its_sequences() {
    let rec = Arc::new(Recorder::default());
    let bark = bark(&rec);
    let opts = GenerateOptions { max_semantic_tokens: 6, ..GenerateOptions::greedy() };
    let texts = ["Hi.", "One two three.", "Four."];
    let out = bark.generate_batch(&texts, &opts, None, 2).unwrap();
    let s = summary(&rec.0.lock().unwrap());
    let sem: usize = out.iter().map(|g| g.semantic.len()).sum();
    let coarse: usize = out.iter().map(|g| g.coarse.len()).sum();
    assert_eq!((s[0].0, s[0].1, s[0].2), (Stage::Semantic, 3 * 6, sem));
    assert_eq!((s[1].0, s[1].1, s[1].2), (Stage::Coarse, coarse, coarse));
    assert_eq!((s[2].0, s[2].1, s[2].2), (Stage::Fine, 3 * 6, 3 * 6));
    assert_eq!((s[3].0, s[3].1, s[3].2), (Stage::Decode, 3, 3));
}
