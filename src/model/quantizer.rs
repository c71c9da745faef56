//! The semantic quantizer of the Bark voice-cloning community (GitMylo's `CustomTokenizer`):
//! HuBERT features `[T, In]` -> a 2-layer LSTM (batch_first, zero initial state) -> Linear
//! (version 1: Linear to 4096 first, no activation between) -> argmax per frame = Bark semantic
//! tokens. The file is torch.save of the state dict (`lstm.weight_ih_l0`, ..., `fc.weight`,
//! version 1 also `intermediate.*`); its `<stem>/.info` JSON repeats the sizes, but the sizes
//! are read from the tensors. The reference's LogSoftmax before the argmax does not move it.

use std::path::Path;

use crate::error::shape_err;
use crate::gpu::{Context, DType, Tensor};
use crate::graph::{Graph, Val};
use crate::model::hubert::Hubert;
use crate::ops::lstm::{lstm, LstmLayer};
use crate::ops::matmul::{linear, Epilogue};
use crate::ops::sampling::{sample, SamplerInputs};
use crate::ops::transpose::transpose;
use crate::weights::Weights;
use crate::{Error, Result};

/// A quantizer's weights on the GPU.
pub struct Quantizer {
    lstm: Vec<[Tensor; 4]>,
    /// Version 1's `intermediate` layer.
    intermediate: Option<(Tensor, Tensor)>,
    fc: (Tensor, Tensor),
    input: usize,
    classes: usize,
}

impl Quantizer {
    /// Loads a quantizer checkpoint (torch zip, or safetensors with the same names).
    pub fn load(ctx: &Context, path: impl AsRef<Path>) -> Result<Quantizer> {
        Quantizer::from_weights(ctx, &Weights::open(path)?)
    }

    pub fn from_weights(ctx: &Context, w: &Weights) -> Result<Quantizer> {
        Quantizer::check_weights(w)?;
        let bad = |m: String| Error::File { path: w.path().to_path_buf(), message: m };
        let shape = |name: &str| -> Result<Vec<usize>> { Ok(w.info(name)?.shape) };
        let up = |name: &str| -> Result<Tensor> { w.upload(ctx, name, &shape(name)?, DType::F32) };
        let mut lstm = Vec::new();
        while w.contains(&format!("lstm.weight_ih_l{}", lstm.len())) {
            let l = lstm.len();
            let get = |what: &str| up(&format!("lstm.{what}_l{l}"));
            lstm.push([get("weight_ih")?, get("weight_hh")?, get("bias_ih")?, get("bias_hh")?]);
        }
        let [first, ..] = lstm.as_slice() else {
            return Err(bad("no `lstm.weight_ih_l0`: not a semantic quantizer checkpoint".into()));
        };
        let (input, hidden) = match (first[0].shape(), first[1].shape()) {
            ([four_h, input], [_, h]) if *four_h == 4 * h => (*input, *h),
            (ih, hh) => return Err(bad(format!("lstm.weight_ih_l0 {ih:?} and weight_hh_l0 {hh:?} are not an LSTM's"))),
        };
        let pair = |name: &str, rows: Option<usize>| -> Result<(Tensor, Tensor)> {
            let ws = shape(&format!("{name}.weight"))?;
            let [n, k] = ws[..] else { return Err(bad(format!("{name}.weight {ws:?} is not a matrix"))) };
            if rows.is_some_and(|r| r != k) {
                return Err(bad(format!(
                    "{name}.weight {ws:?} does not take the previous layer's {} values",
                    rows.unwrap_or(0)
                )));
            }
            let weight = up(&format!("{name}.weight"))?;
            let bias = w.upload(ctx, &format!("{name}.bias"), &[n], DType::F32)?;
            Ok((weight, bias))
        };
        let intermediate =
            if w.contains("intermediate.weight") { Some(pair("intermediate", Some(hidden))?) } else { None };
        let fc_in = intermediate.as_ref().map_or(hidden, |(wt, _)| wt.shape()[0]);
        let fc = pair("fc", Some(fc_in))?;
        let classes = fc.0.shape()[0];
        Ok(Quantizer { lstm, intermediate, fc, input, classes })
    }

    /// Checks on the host, before any upload, that a checkpoint's tensors are a quantizer's: the
    /// LSTM layers' shapes chain, `intermediate` (if any) and `fc` take the previous layer's
    /// output, and every tensor is floating point. Returns (input features, classes).
    pub fn check_weights(w: &Weights) -> Result<(usize, usize)> {
        let bad = |m: String| Error::File { path: w.path().to_path_buf(), message: m };
        let shape = |name: &str| -> Result<Vec<usize>> { Ok(w.info(name)?.shape) };
        let [four_h, input] = shape("lstm.weight_ih_l0")
            .map_err(|_| bad("no `lstm.weight_ih_l0`: not a semantic quantizer checkpoint".into()))?[..]
        else {
            return Err(bad("lstm.weight_ih_l0 is not a matrix".into()));
        };
        if four_h == 0 || four_h % 4 != 0 {
            return Err(bad(format!("lstm.weight_ih_l0 has {four_h} rows, not 4 x a hidden size")));
        }
        let hidden = four_h / 4;
        let mut layer_input = input;
        let mut layers = 0;
        while w.contains(&format!("lstm.weight_ih_l{layers}")) {
            let l = layers;
            w.expect(&format!("lstm.weight_ih_l{l}"), &[four_h, layer_input])?;
            w.expect(&format!("lstm.weight_hh_l{l}"), &[four_h, hidden])?;
            w.expect(&format!("lstm.bias_ih_l{l}"), &[four_h])?;
            w.expect(&format!("lstm.bias_hh_l{l}"), &[four_h])?;
            layer_input = hidden;
            layers += 1;
        }
        let linear = |name: &str, k: usize| -> Result<usize> {
            let ws = shape(&format!("{name}.weight"))?;
            let [n, cols] = ws[..] else { return Err(bad(format!("{name}.weight {ws:?} is not a matrix"))) };
            if cols != k {
                return Err(bad(format!("{name}.weight {ws:?} does not take the previous layer's {k} values")));
            }
            w.expect(&format!("{name}.weight"), &ws)?;
            w.expect(&format!("{name}.bias"), &[n])?;
            Ok(n)
        };
        let fc_in = if w.contains("intermediate.weight") { linear("intermediate", hidden)? } else { hidden };
        let classes = linear("fc", fc_in)?;
        Ok((input, classes))
    }

    /// Feature width it reads (768 for hubert-base).
    pub fn input_size(&self) -> usize {
        self.input
    }
    /// Token classes (10,000: Bark's semantic vocabulary).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Logits `[T, classes]` of features `[T, In]`.
    pub fn record_logits(&self, g: &mut Graph, features: Val) -> Result<Val> {
        let shape = g.shape(features).to_vec();
        let [t, width] = shape[..] else {
            return Err(shape_err("quantizer", format!("features must be [frames, width], got {shape:?}")));
        };
        if width != self.input {
            return Err(Error::Invalid(format!(
                "the quantizer reads features of {} values but HuBERT gives {width}: they do not belong together",
                self.input
            )));
        }
        let x = g.view(features, &[1, t, width])?;
        let x = transpose(g, x)?;
        let layers: Vec<LstmLayer> = self
            .lstm
            .iter()
            .map(|[a, b, c, d]| LstmLayer { w_ih: g.input(a), w_hh: g.input(b), b_ih: g.input(c), b_hh: g.input(d) })
            .collect();
        let y = lstm(g, x, &layers)?;
        let y = transpose(g, y)?;
        let hidden = g.shape(y)[2];
        let mut y = g.view(y, &[t, hidden])?;
        for (w, b) in self.intermediate.iter().chain(std::iter::once(&self.fc)) {
            let (w, b) = (g.input(w), g.input(b));
            y = linear(g, y, w, Some(b), Epilogue::None, None)?;
        }
        Ok(y)
    }

    /// Semantic tokens (u32 `[T]`) of features `[T, In]`: the argmax of each frame's logits
    /// (the sampler's greedy path, which `inputs` must be sized for: T rows of `classes`).
    pub fn record(&self, g: &mut Graph, features: Val, inputs: &SamplerInputs) -> Result<Val> {
        let logits = self.record_logits(g, features)?;
        let (settings, uniforms) = (g.input(inputs.settings()), g.input(inputs.uniforms()));
        Ok(sample(g, logits, settings, uniforms)?.ids)
    }

    /// The tokens of `features` (`frames` rows, row-major), run on their own.
    pub fn tokens(&self, ctx: &Context, features: &[f32], frames: usize) -> Result<Vec<u32>> {
        if frames == 0 || features.len() != frames * self.input {
            return Err(Error::Invalid(format!(
                "{} feature values are not {frames} frames of {}",
                features.len(),
                self.input
            )));
        }
        let input = Tensor::from_f32(ctx, features, &[frames, self.input], DType::F32)?;
        let inputs = SamplerInputs::new(ctx, frames, self.classes)?;
        let mut g = Graph::new(ctx);
        let x = g.input(&input);
        let ids = self.record(&mut g, x, &inputs)?;
        g.keep(ids);
        let plan = g.compile()?;
        plan.run()?;
        plan.tensor(ids).to_u32(ctx)
    }
}

/// A recording's semantic tokens: HuBERT's features (`hubert.output_layer()`; the quantizer was
/// trained on layer 9) through the quantizer, in one graph (the features stay on the GPU).
/// `wave` is mono 16 kHz audio as the reference feeds it (not normalised).
pub fn audio_to_tokens(ctx: &Context, hubert: &Hubert, quantizer: &Quantizer, wave: &[f32]) -> Result<Vec<u32>> {
    let width = hubert.config().hidden_size;
    if quantizer.input_size() != width {
        return Err(Error::Invalid(format!(
            "the quantizer reads features of {} values but this HuBERT gives {width}: they do not belong together",
            quantizer.input_size()
        )));
    }
    hubert.check_samples(ctx, wave.len())?;
    let frames = hubert.config().frames(wave.len());
    let input = Tensor::from_f32(ctx, wave, &[wave.len()], DType::F32)?;
    let inputs = SamplerInputs::new(ctx, frames, quantizer.classes())?;
    let mut g = Graph::new(ctx);
    let x = g.input(&input);
    let features = hubert.record(&mut g, x)?;
    let ids = quantizer.record(&mut g, features, &inputs)?;
    g.keep(ids);
    let plan = g.compile()?;
    plan.run()?;
    plan.tensor(ids).to_u32(ctx)
}
