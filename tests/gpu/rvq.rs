//! RVQ decode and encode against plain CPU references (transformers'
//! EncodecResidualVectorQuantizer semantics).

use crate::common;

use bark_wgpu::ops::rvq::{rvq_decode, rvq_encode, upload_codes};
use bark_wgpu::{DType, Graph, Tensor};
use common::{ctx, Rng};

/// Codebooks `[n_books, n, d]`, book q scaled by `decay^q` (real RVQ books shrink with depth).
fn books(rng: &mut Rng, n_books: usize, n: usize, d: usize, decay: f32) -> Vec<f32> {
    let mut v = rng.normal(n_books * n * d, 1.0);
    for (q, book) in v.chunks_mut(n * d).enumerate() {
        let s = decay.powi(q as i32);
        book.iter_mut().for_each(|x| *x *= s);
    }
    v
}

fn decode_gpu(codes: &[u32], [n_q, b, t]: [usize; 3], cb: &[f32], [n_books, n, d]: [usize; 3]) -> Vec<f32> {
    let ctx = ctx();
    let tc = upload_codes(ctx, codes, [n_q, b, t], n).unwrap();
    let tb = Tensor::from_f32(ctx, cb, &[n_books, n, d], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let (vc, vb) = (g.input(&tc), g.input(&tb));
    let y = rvq_decode(&mut g, vc, vb).unwrap();
    assert_eq!(g.shape(y), &[b, d, t]);
    g.keep(y);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    plan.tensor(y).to_f32(ctx).unwrap()
}

fn encode_gpu(x: &[f32], [b, d, t]: [usize; 3], cb: &[f32], [n_books, n]: [usize; 2], n_q: usize) -> Vec<u32> {
    let ctx = ctx();
    let tx = Tensor::from_f32(ctx, x, &[b, d, t], DType::F32).unwrap();
    let tb = Tensor::from_f32(ctx, cb, &[n_books, n, d], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let (vx, vb) = (g.input(&tx), g.input(&tb));
    let codes = rvq_encode(&mut g, vx, vb, n_q).unwrap();
    assert_eq!(g.shape(codes), &[n_q, b, t]);
    assert_eq!(g.dtype(codes), DType::U32);
    g.keep(codes);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    plan.tensor(codes).to_u32(ctx).unwrap()
}

/// Decode vs an f64 sum. The GPU adds n_q f32 values in stage order; a sequential f32 sum of
/// n terms is off by at most (n - 1) * eps/2 * sum|terms|; we allow n_q * eps * sum|terms|.
fn check_decode(seed: u64, n_books: usize, n_q: usize, n: usize, d: usize, b: usize, t: usize) {
    let mut rng = Rng::new(seed);
    let cb = books(&mut rng, n_books, n, d, 0.5);
    let codes: Vec<u32> = (0..n_q * b * t).map(|_| rng.below(n as u32)).collect();
    let got = decode_gpu(&codes, [n_q, b, t], &cb, [n_books, n, d]);
    for bi in 0..b {
        for di in 0..d {
            for ti in 0..t {
                let (mut s, mut m) = (0.0f64, 0.0f64);
                for q in 0..n_q {
                    let c = codes[(q * b + bi) * t + ti] as usize;
                    let v = cb[(q * n + c) * d + di] as f64;
                    s += v;
                    m += v.abs();
                }
                let g = got[(bi * d + di) * t + ti] as f64;
                let tol = n_q as f64 * f32::EPSILON as f64 * m;
                assert!((g - s).abs() <= tol, "seed {seed}: [{bi}, {di}, {ti}] got {g} want {s}");
            }
        }
    }
}

#[test]
fn decode_awkward_and_real_sizes() {
    check_decode(1, 1, 1, 1, 1, 1, 1);
    check_decode(2, 5, 3, 7, 3, 2, 13);
    check_decode(3, 4, 4, 300, 5, 3, 1);
    // EnCodec 24 kHz: 32 books of 1024 x 128, Bark decodes with 8; 10 s = 750 frames.
    let start = std::time::Instant::now();
    check_decode(4, 32, 8, 1024, 128, 1, 750);
    eprintln!("decode 8 x 750 frames: {:?}", start.elapsed());
}

#[test]
fn out_of_range_codes_are_rejected_on_the_host() {
    // Bark's fine-stage pad code is 1024 = the codebook size: it must never reach the decoder.
    let err = upload_codes(ctx(), &[3, 1024, 5], [1, 1, 3], 1024);
    assert!(err.is_err());
    assert!(upload_codes(ctx(), &[3, 1023, 5], [1, 1, 3], 1024).is_ok());
    assert!(upload_codes(ctx(), &[3, 1023], [1, 1, 3], 1024).is_err(), "length vs shape");
}

/// decode then encode gives the codes back when every stage's codeword is much nearer than
/// any other (books shrinking by 4x per stage: the later stages perturb a stage's target by far
/// less than half the distance between its codewords).
fn check_roundtrip(seed: u64, n_books: usize, n_q: usize, n: usize, d: usize, b: usize, t: usize) {
    let mut rng = Rng::new(seed);
    let cb = books(&mut rng, n_books, n, d, 0.25);
    let codes: Vec<u32> = (0..n_q * b * t).map(|_| rng.below(n as u32)).collect();
    let x = decode_gpu(&codes, [n_q, b, t], &cb, [n_books, n, d]);
    let back = encode_gpu(&x, [b, d, t], &cb, [n_books, n], n_q);
    assert_eq!(back, codes, "seed {seed}: n_q {n_q} n {n} d {d} b {b} t {t}");
}

#[test]
fn encode_recovers_decoded_codes() {
    check_roundtrip(10, 2, 2, 3, 4, 1, 1);
    check_roundtrip(11, 3, 3, 300, 8, 3, 5);
    let start = std::time::Instant::now();
    check_roundtrip(12, 32, 8, 1024, 128, 2, 37);
    eprintln!("roundtrip 8 x 1024 x 128, 74 positions: {:?}", start.elapsed());
}

/// Encode of random data vs a CPU argmin in f64, stage by stage. The residual is formed in f32
/// exactly as the GPU forms it (one rounded subtraction per stage, the same on both), following
/// the GPU's codes, so only the distances differ: the GPU sums D rounded squares in f32, off by
/// at most about (D + 2) * eps/2 of the distance. The GPU's pick must be within
/// (D + 3) * eps * distance of the true minimum, and is the exact lowest-index argmin whenever
/// the runner-up is further than that.
fn check_encode_random(seed: u64, n_books: usize, n_q: usize, n: usize, d: usize, b: usize, t: usize) {
    let mut rng = Rng::new(seed);
    let cb = books(&mut rng, n_books, n, d, 1.0);
    let x = rng.normal(b * d * t, 1.0);
    let got = encode_gpu(&x, [b, d, t], &cb, [n_books, n], n_q);
    let rel = (d + 3) as f64 * f32::EPSILON as f64;
    let mut near_ties = 0;
    for bi in 0..b {
        for ti in 0..t {
            let mut r: Vec<f32> = (0..d).map(|di| x[(bi * d + di) * t + ti]).collect();
            for q in 0..n_q {
                let dist: Vec<f64> = (0..n)
                    .map(|j| (0..d).map(|di| (r[di] as f64 - cb[(q * n + j) * d + di] as f64).powi(2)).sum())
                    .collect();
                // Lowest index among the minimal distances.
                let best = (0..n).fold(0, |a, j| if dist[j] < dist[a] { j } else { a });
                let g = got[(q * b + bi) * t + ti] as usize;
                let tol = rel * dist[best].max(1e-30);
                let case = format!("seed {seed} b{bi} t{ti} stage {q}: gpu {g} cpu {best}");
                assert!(g < n && dist[g] <= dist[best] + tol, "{case}: {} vs {}", dist[g.min(n - 1)], dist[best]);
                let runner_up = (0..n).filter(|&j| j != best).map(|j| dist[j]).fold(f64::INFINITY, f64::min);
                if runner_up - dist[best] > tol {
                    assert_eq!(g, best, "{case}: a clear winner must be picked");
                } else {
                    near_ties += 1;
                }
                for di in 0..d {
                    r[di] -= cb[(q * n + g) * d + di];
                }
            }
        }
    }
    eprintln!("seed {seed}: {near_ties} near ties of {}", b * t * n_q);
}

#[test]
fn encode_matches_cpu_argmin_on_random_data() {
    check_encode_random(20, 3, 3, 5, 4, 2, 7);
    check_encode_random(21, 2, 2, 257, 12, 1, 9);
    check_encode_random(22, 4, 4, 1024, 128, 1, 24);
}

#[test]
fn encode_ties_go_to_the_lowest_index() {
    // Targets equal to duplicated codewords: exact ties at distance 0. The shader scans
    // codeword j in invocation j % 256, so the pairs cover a tie inside one invocation
    // (3 and 259), across invocations (10 and 20), and across invocations with the higher
    // index in the lower invocation (13 and 520).
    let (n, d) = (600, 4);
    let mut rng = Rng::new(30);
    let mut cb: Vec<f32> = rng.normal(n * d, 1.0).iter().map(|v| v + 100.0).collect();
    let targets = [[1.0f32, -2.0, 3.0, 0.5], [-1.5, 0.25, 2.0, -3.0], [0.0, 1.0, -1.0, 2.0]];
    for (&(lo, hi), v) in [(3usize, 259usize), (10, 20), (13, 520)].iter().zip(&targets) {
        cb[lo * d..(lo + 1) * d].copy_from_slice(v);
        cb[hi * d..(hi + 1) * d].copy_from_slice(v);
    }
    // x [1, 4, 3]: position t holds targets[t].
    let x: Vec<f32> = (0..d).flat_map(|di| targets.iter().map(move |v| v[di])).collect();
    assert_eq!(encode_gpu(&x, [1, d, 3], &cb, [1, n], 1), vec![3, 10, 13]);
}

#[test]
fn bad_input_is_an_error() {
    let ctx = ctx();
    let mut g = Graph::new(ctx);
    let cb = g.tensor(&[4, 16, 8], DType::F32);
    let codes = g.tensor(&[2, 1, 5], DType::U32);
    assert!(rvq_decode(&mut g, codes, cb).is_ok());
    let too_many = g.tensor(&[5, 1, 5], DType::U32);
    assert!(rvq_decode(&mut g, too_many, cb).is_err(), "more stages than books");
    let f32_codes = g.tensor(&[2, 1, 5], DType::F32);
    assert!(rvq_decode(&mut g, f32_codes, cb).is_err(), "codes dtype");
    let flat = g.tensor(&[10], DType::U32);
    assert!(rvq_decode(&mut g, flat, cb).is_err(), "codes rank");
    let cb2 = g.tensor(&[16, 8], DType::F32);
    assert!(rvq_decode(&mut g, codes, cb2).is_err(), "codebook rank");

    let x = g.tensor(&[1, 8, 5], DType::F32);
    assert!(rvq_encode(&mut g, x, cb, 4).is_ok());
    assert!(rvq_encode(&mut g, x, cb, 5).is_err(), "more stages than books");
    assert!(rvq_encode(&mut g, x, cb, 0).is_err(), "no stages");
    let x_wrong = g.tensor(&[1, 7, 5], DType::F32);
    assert!(rvq_encode(&mut g, x_wrong, cb, 1).is_err(), "dimension mismatch");
    let cb_odd = g.tensor(&[1, 16, 6], DType::F32);
    let x_odd = g.tensor(&[1, 6, 5], DType::F32);
    assert!(rvq_encode(&mut g, x_odd, cb_odd, 1).is_err(), "dimension not a multiple of 4");
    let cb_wide = g.tensor(&[1, 4, 260], DType::F32);
    let x_wide = g.tensor(&[1, 260, 2], DType::F32);
    assert!(rvq_encode(&mut g, x_wide, cb_wide, 1).is_err(), "dimension over the maximum");
}
