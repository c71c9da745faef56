//! The LSTM and EnCodec's LSTM-with-skip against a plain CPU nn.LSTM in f64.

use crate::common;

use bark_wgpu::ops::lstm::{encodec_lstm, lstm, LstmLayer};
use bark_wgpu::{DType, Graph, Tensor};
use common::{ctx, Rng};

/// One layer's weights on the host, PyTorch layout, gate order i, f, g, o.
struct HostLayer {
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b_ih: Vec<f32>,
    b_hh: Vec<f32>,
    input: usize,
    hidden: usize,
}

impl HostLayer {
    /// PyTorch's initialisation: everything uniform in +-1/sqrt(H).
    fn random(rng: &mut Rng, input: usize, hidden: usize) -> HostLayer {
        let k = 1.0 / (hidden as f32).sqrt();
        HostLayer {
            w_ih: rng.uniform(4 * hidden * input, -k, k),
            w_hh: rng.uniform(4 * hidden * hidden, -k, k),
            b_ih: rng.uniform(4 * hidden, -k, k),
            b_hh: rng.uniform(4 * hidden, -k, k),
            input,
            hidden,
        }
    }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// The reference: returns the outputs [B, H, T] of the last layer and the largest sum of
/// |terms| any gate pre-activation had (for the tolerance).
fn reference(x: &[f32], (b, c, t): (usize, usize, usize), layers: &[HostLayer]) -> (Vec<f64>, f64) {
    let mut seq: Vec<f64> = x.iter().map(|&v| v as f64).collect(); // [B, In, T]
    let mut input = c;
    let mut worst_sum = 0.0f64;
    for l in layers {
        let hd = l.hidden;
        let mut out = vec![0.0; b * hd * t];
        for bi in 0..b {
            let (mut h, mut cell) = (vec![0.0f64; hd], vec![0.0f64; hd]);
            for ti in 0..t {
                let mut pre = vec![0.0; 4 * hd];
                for (r, p) in pre.iter_mut().enumerate() {
                    let mut s = l.b_ih[r] as f64 + l.b_hh[r] as f64;
                    let mut m = s.abs();
                    for ci in 0..input {
                        let term = l.w_ih[r * input + ci] as f64 * seq[(bi * input + ci) * t + ti];
                        s += term;
                        m += term.abs();
                    }
                    for (k, &hk) in h.iter().enumerate() {
                        let term = l.w_hh[r * hd + k] as f64 * hk;
                        s += term;
                        m += term.abs();
                    }
                    *p = s;
                    worst_sum = worst_sum.max(m);
                }
                for j in 0..hd {
                    let (i, f, g, o) =
                        (sigmoid(pre[j]), sigmoid(pre[hd + j]), pre[2 * hd + j].tanh(), sigmoid(pre[3 * hd + j]));
                    cell[j] = f * cell[j] + i * g;
                    h[j] = o * cell[j].tanh();
                    out[(bi * hd + j) * t + ti] = h[j];
                }
            }
        }
        seq = out;
        input = hd;
    }
    (seq, worst_sum)
}

/// Runs `lstm` (or `encodec_lstm` when `skip`) on the GPU.
fn run_gpu(x: &[f32], (b, c, t): (usize, usize, usize), layers: &[HostLayer], skip: bool) -> (Vec<f32>, Vec<usize>) {
    let ctx = ctx();
    let tx = Tensor::from_f32(ctx, x, &[b, c, t], DType::F32).unwrap();
    let mut tensors = Vec::new();
    for l in layers {
        let h4 = 4 * l.hidden;
        tensors.push([
            Tensor::from_f32(ctx, &l.w_ih, &[h4, l.input], DType::F32).unwrap(),
            Tensor::from_f32(ctx, &l.w_hh, &[h4, l.hidden], DType::F32).unwrap(),
            Tensor::from_f32(ctx, &l.b_ih, &[h4], DType::F32).unwrap(),
            Tensor::from_f32(ctx, &l.b_hh, &[h4], DType::F32).unwrap(),
        ]);
    }
    let mut g = Graph::new(ctx);
    let vx = g.input(&tx);
    let vl: Vec<LstmLayer> = tensors
        .iter()
        .map(|[a, b, c, d]| LstmLayer { w_ih: g.input(a), w_hh: g.input(b), b_ih: g.input(c), b_hh: g.input(d) })
        .collect();
    let y = if skip { encodec_lstm(&mut g, vx, &vl) } else { lstm(&mut g, vx, &vl) }.unwrap();
    let shape = g.shape(y).to_vec();
    g.keep(y);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    (plan.tensor(y).to_f32(ctx).unwrap(), shape)
}

/// Random case vs the reference. Returns the largest error seen.
///
/// Tolerance: every gate pre-activation is an f32 sum of n = In + H + 2 terms; its rounding
/// error is about sqrt(n) * eps * S (S = sum of |terms|, probabilistic bound, Higham ch. 4).
/// Sigmoid and tanh are 1-Lipschitz, h = o * tanh(c) is bounded by 1, and the cell state
/// carries an error forward damped by the forget gate, so the error in h and c stays at that
/// scale; we allow 8 * sqrt(n) * eps * S_max (4x the bound, and 2x for the cell's
/// accumulation). A wrong gate order, a missing bias or an off-by-one step moves h by 1e-2 or
/// more at these weight scales, several orders above the tolerance.
fn check(seed: u64, (b, c, t): (usize, usize, usize), hidden: &[usize], skip: bool) -> f64 {
    let mut rng = Rng::new(seed);
    let x = rng.normal(b * c * t, 1.0);
    let mut layers = Vec::new();
    let mut input = c;
    for &h in hidden {
        layers.push(HostLayer::random(&mut rng, input, h));
        input = h;
    }
    let (got, shape) = run_gpu(&x, (b, c, t), &layers, skip);
    let (mut want, s_max) = reference(&x, (b, c, t), &layers);
    if skip {
        for (w, &xv) in want.iter_mut().zip(&x) {
            *w += xv as f64;
        }
    }
    let case = format!("b{b} c{c} t{t} hidden {hidden:?} skip {skip}");
    assert_eq!(shape, vec![b, input, t], "{case}: shape");
    let n = (layers.iter().map(|l| l.input + l.hidden).max().unwrap() + 2) as f64;
    let tol = 8.0 * n.sqrt() * f32::EPSILON as f64 * s_max;
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        // The skip adds |x| of f32 rounding on top.
        let tol = tol + if skip { f32::EPSILON as f64 * w.abs() } else { 0.0 };
        let err = (g as f64 - w).abs();
        assert!(err <= tol, "{case}: element {i} got {g} want {w} (tol {tol})");
        worst = worst.max(err);
    }
    eprintln!("{case}: max error {worst:.2e} (tolerance {tol:.2e})");
    worst
}

#[test]
fn hand_worked_gate_order() {
    // One unit, zero weights, biases chosen so each gate is saturated or known:
    // i = sigmoid(100) = 1, f = sigmoid(100) = 1, g = tanh(0.5), o = sigmoid(-1). Then
    // c_t = (t + 1) * tanh(0.5) and h_t = sigmoid(-1) * tanh(c_t). A different gate order
    // gives something else entirely.
    let layer = HostLayer {
        w_ih: vec![0.0; 4],
        w_hh: vec![0.0; 4],
        b_ih: vec![60.0, 60.0, 0.25, -0.5],
        b_hh: vec![40.0, 40.0, 0.25, -0.5],
        input: 1,
        hidden: 1,
    };
    let (got, _) = run_gpu(&[0.3, -2.0, 7.0, 0.0], (1, 1, 4), &[layer], false);
    for (t, &g) in got.iter().enumerate() {
        let want = sigmoid(-1.0) * ((t + 1) as f64 * 0.5f64.tanh()).tanh();
        assert!((g as f64 - want).abs() < 1e-6, "t={t} got {g} want {want}");
    }
}

#[test]
fn small_and_awkward() {
    check(1, (1, 1, 1), &[1], false);
    check(2, (2, 5, 7), &[3, 3], false);
    check(3, (3, 32, 37), &[32, 32], true);
    check(4, (1, 3, 2), &[1, 4, 2], false);
    // A hidden size past the shader's 256-column chunk, not a multiple of it or of 2 units.
    check(5, (2, 7, 5), &[301], false);
}

#[test]
fn long_sequence_error_stays_bounded() {
    check(6, (1, 17, 300), &[17], true);
}

#[test]
fn encodec_size() {
    // The real model: 512 channels, 2 layers, hidden 512, plus the skip; short sequences.
    let start = std::time::Instant::now();
    check(7, (1, 512, 6), &[512, 512], true);
    check(8, (2, 512, 3), &[512, 512], true);
    eprintln!("encodec_size: {:?}", start.elapsed());
}

#[test]
fn bad_input_is_an_error() {
    let ctx = ctx();
    let mut g = Graph::new(ctx);
    let x = g.tensor(&[1, 8, 5], DType::F32);
    let layer = |g: &mut Graph, input: usize, h: usize| LstmLayer {
        w_ih: g.tensor(&[4 * h, input], DType::F32),
        w_hh: g.tensor(&[4 * h, h], DType::F32),
        b_ih: g.tensor(&[4 * h], DType::F32),
        b_hh: g.tensor(&[4 * h], DType::F32),
    };
    let good = layer(&mut g, 8, 8);
    assert!(encodec_lstm(&mut g, x, &[good, good]).is_ok());
    assert!(lstm(&mut g, x, &[]).is_err(), "no layers");
    let narrow = layer(&mut g, 8, 4);
    assert!(lstm(&mut g, x, &[narrow]).is_ok());
    assert!(encodec_lstm(&mut g, x, &[narrow]).is_err(), "skip needs hidden = channels");
    assert!(lstm(&mut g, x, &[narrow, good]).is_err(), "layer 2 input width");
    let wrong_in = layer(&mut g, 7, 8);
    assert!(lstm(&mut g, x, &[wrong_in]).is_err(), "weight_ih width");
    let mut bad_hh = good;
    bad_hh.w_hh = g.tensor(&[32, 7], DType::F32);
    assert!(lstm(&mut g, x, &[bad_hh]).is_err(), "weight_hh not [4H, H]");
    let mut bad_bias = good;
    bad_bias.b_hh = g.tensor(&[31], DType::F32);
    assert!(lstm(&mut g, x, &[bad_bias]).is_err(), "bias length");
    let mut f16_bias = good;
    f16_bias.b_ih = g.tensor(&[32], DType::F16);
    assert!(lstm(&mut g, x, &[f16_bias]).is_err(), "dtype");
    let x2 = g.tensor(&[8, 5], DType::F32);
    assert!(lstm(&mut g, x2, &[good]).is_err(), "rank");
}
