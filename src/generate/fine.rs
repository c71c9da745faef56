//! Stage 3, the coarse codebooks to all eight (transformers' `BarkFineModel.generate`, the
//! original's `generate_fine`).
//!
//! Frames are rows of 8 codes: the two coarse codes, then 1024 (the pad) for codebooks 2..7.
//! The voice's fine prompt (last 512 frames) goes first; the whole is padded with pad frames to
//! at least 1024. The non-causal model sees 1024-frame windows, advancing 512 at a time:
//! window `n` starts at `s = min(512 n, L - 1024)` and fills from `fs = min(nh + 512 n, L - 512)`
//! (`nh` = history frames). For each codebook 2..7 in turn, the model predicts the whole window
//! and frames `fs ..` of the window take the prediction. The window is a view of the frames
//! (in transformers `input_buffer` is a slice of `fine_input`), so each codebook sees the ones
//! filled before it and later windows see earlier windows' codes; here the frames are one host
//! array written in place, and each model run uploads its window of it.
//!
//! Temperature `None` or `1.0` takes the argmax over codes `0..1024`; any other samples from
//! `softmax(logits[..1024] / t)`, one uniform per frame of the window.

use super::coarse::{coarse_codes, N_COARSE_CODEBOOKS};
use super::rng::Rng;
use crate::gpu::{Context, Tensor};
use crate::graph::{Graph, Plan, Val};
use crate::model::gpt::FineGpt;
use crate::ops::sampling::{sample, SampleSettings, SamplerInputs};
use crate::{Error, Result};

/// Frames the fine model sees at once.
pub const MAX_FINE_INPUT: usize = 1024;
/// Frames of the voice's fine prompt kept, and the stride of the windows.
pub const MAX_FINE_HISTORY: usize = 512;
/// The pad code of the codebooks still to predict.
pub const FINE_PAD: u32 = 1024;

/// Generates codebooks `2..n_codes_total` for interleaved coarse tokens. `history`: the voice's
/// fine prompt, one row of codes per codebook (validated). Returns `[codebook][frame]`.
pub(crate) fn generate(
    ctx: &Context,
    model: &FineGpt,
    coarse: &[u32],
    history: Option<&[Vec<u32>]>,
    temperature: Option<f32>,
    mut rng: Option<&mut Rng>,
) -> Result<Vec<Vec<u32>>> {
    let n_cb = model.config().n_codes_total;
    if n_cb <= N_COARSE_CODEBOOKS {
        return Err(Error::Invalid(format!("a fine model of {n_cb} codebooks predicts none beyond the coarse two")));
    }
    let [c0, c1] = coarse_codes(coarse)?;
    let t_frames = c0.len();
    if t_frames == 0 {
        return Ok(vec![Vec::new(); n_cb]);
    }
    if model.config().model.block_size < MAX_FINE_INPUT {
        return Err(Error::Invalid(format!("the fine model's context is below {MAX_FINE_INPUT} frames")));
    }

    // Frames as rows of n_cb codes: history, then the coarse frames, then pad frames.
    let hist = history.unwrap_or(&[]);
    let hist_frames = hist.first().map_or(0, Vec::len);
    let nh = hist_frames.min(MAX_FINE_HISTORY);
    let mut f = Vec::with_capacity(n_cb * (nh + t_frames).max(MAX_FINE_INPUT));
    if !hist.is_empty() && hist.len() != n_cb {
        return Err(Error::Invalid(format!("a fine history of {} codebooks, want {n_cb}", hist.len())));
    }
    for t in hist_frames - nh..hist_frames {
        f.extend(hist.iter().map(|row| row[t]));
    }
    for t in 0..t_frames {
        f.extend([c0[t], c1[t]]);
        f.extend(std::iter::repeat_n(FINE_PAD, n_cb - N_COARSE_CODEBOOKS));
    }
    let n_remove = MAX_FINE_INPUT.saturating_sub(f.len() / n_cb);
    f.resize(f.len() + n_remove * n_cb, FINE_PAD);
    let len = f.len() / n_cb;

    let over = t_frames as f64 - (MAX_FINE_INPUT - nh) as f64;
    let n_loops = ((over / MAX_FINE_HISTORY as f64).ceil() as i64).max(0) as usize + 1;

    let settings = SampleSettings::fine(temperature);
    let greedy = settings.temperature <= 0.0;
    let runner = FineRunner::new(ctx, model, n_cb)?;
    runner.sampler.set_settings(ctx, &[settings])?;
    for n in 0..n_loops {
        let start = (n * MAX_FINE_HISTORY).min(len - MAX_FINE_INPUT);
        let fill = (nh + n * MAX_FINE_HISTORY).min(len - MAX_FINE_HISTORY);
        let rel = fill - start;
        for cb in N_COARSE_CODEBOOKS..n_cb {
            let window = &f[start * n_cb..(start + MAX_FINE_INPUT) * n_cb];
            let uniforms = match (&mut rng, greedy) {
                (Some(r), false) => Some((0..MAX_FINE_INPUT).map(|_| r.uniform()).collect::<Vec<_>>()),
                _ => None,
            };
            let preds = runner.run(ctx, cb, window, uniforms.as_deref())?;
            for (i, &p) in preds.iter().enumerate().skip(rel) {
                f[(start + i) * n_cb + cb] = p;
            }
        }
    }
    let frames = nh..len - n_remove;
    Ok((0..n_cb).map(|cb| frames.clone().map(|t| f[t * n_cb + cb]).collect()).collect())
}

/// One compiled plan per predicted codebook over a shared window of codes and shared sampler
/// inputs.
struct FineRunner {
    codes: Tensor,
    sampler: SamplerInputs,
    plans: Vec<(Plan, Val)>,
}

impl FineRunner {
    fn new(ctx: &Context, model: &FineGpt, n_cb: usize) -> Result<FineRunner> {
        let codes = Tensor::from_u32(ctx, &vec![0; MAX_FINE_INPUT * n_cb], &[1, MAX_FINE_INPUT, n_cb])?;
        let vocab = model.config().model.output_vocab_size;
        let sampler = SamplerInputs::new(ctx, MAX_FINE_INPUT, vocab)?;
        let mut plans = Vec::new();
        for cb in N_COARSE_CODEBOOKS..n_cb {
            let mut g = Graph::new(ctx);
            let c = g.input(&codes);
            let logits = model.record(&mut g, c, cb)?;
            let (s, u) = (g.input(sampler.settings()), g.input(sampler.uniforms()));
            let chosen = sample(&mut g, logits, s, u)?;
            g.readback(chosen.ids);
            plans.push((g.compile()?, chosen.ids));
        }
        Ok(FineRunner { codes, sampler, plans })
    }

    /// The model's choice for codebook `cb` at every frame of `window` (`[frame][codebook]`).
    fn run(&self, ctx: &Context, cb: usize, window: &[u32], uniforms: Option<&[f32]>) -> Result<Vec<u32>> {
        self.codes.write_words(ctx, window)?;
        if let Some(u) = uniforms {
            self.sampler.set_uniforms(ctx, u)?;
        }
        let (plan, ids) = &self.plans[cb - N_COARSE_CODEBOOKS];
        plan.run()?;
        plan.read_words(*ids)
    }
}
