//! Token sampling against an f64 CPU reference of the rules documented in `src/ops/sampling.rs`.
//!
//! Tolerances: the kernel decides with f32 sums of f32 `exp` (Vulkan allows a few ulp per exp,
//! a tree of ~14 adds for 12,096 terms), so its probabilities and cumulative sums are within
//! ~1e-5 (relative to the row's total mass) of the f64 ones. The reference therefore flags a
//! case as *fragile* when a decision (EOS threshold, top-p boundary, inverse-CDF boundary, a
//! top-k tie that f32 rounding of x / t could create) lies within 1e-5 of flipping; tests draw
//! their inputs so that no case is fragile (and assert it), then require exact equality.

use crate::common;

use bark_wgpu::ops::sampling::{
    encode_settings, sample, EosRule, SampleSettings, SamplerInputs, SamplingOrder, SETTINGS_WORDS,
};
use bark_wgpu::{Context, ContextOptions, DType, Graph, Tensor};
use common::{ctx, Rng};

const NEG_INF: f32 = f32::NEG_INFINITY;
/// How close (relative to the row's mass) a decision may come to its boundary before the
/// reference calls the case fragile; see the module docs.
const MARGIN: f64 = 1e-5;

// ---------------------------------------------------------------- reference

struct Ref {
    id: u32,
    fragile: bool,
}

fn candidates(s: &SampleSettings, vocab: usize) -> Vec<usize> {
    let (lo, hi) = s.allowed;
    let mut c: Vec<usize> = (lo as usize..hi as usize).collect();
    if let Some(e) = s.extra_allowed.filter(|&e| e < lo || e >= hi) {
        c.push(e as usize);
        c.sort_unstable();
    }
    assert!(c.iter().all(|&i| i < vocab));
    c
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() <= MARGIN
}

/// The tokens a row may sample after top-k / top-p, in index order.
fn kept_set(x: &[f32], s: &SampleSettings, cand: &[usize], fragile: &mut bool) -> Vec<usize> {
    let t = s.temperature as f64;
    let original = s.order == SamplingOrder::Original;
    let fv = |i: usize| if original { x[i] as f64 } else { x[i] as f64 / t };
    let mut keep: Vec<bool> = vec![true; x.len()];
    let mut in_play: Vec<usize> = cand.to_vec();
    if let Some(k) = s.top_k.filter(|&k| (k as usize) < cand.len()) {
        let mut v: Vec<f64> = cand.iter().map(|&i| fv(i)).collect();
        v.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let thr = v[k as usize - 1];
        for &i in cand {
            keep[i] = fv(i) >= thr;
            // x / t rounds to f32 on the GPU: values this close could tie or swap there.
            if !original && t != 1.0 && fv(i) != thr && (fv(i) - thr).abs() <= 1e-6 * thr.abs().max(1e-30) {
                *fragile = true;
            }
        }
        if !original {
            in_play.retain(|&i| keep[i]);
        }
    }
    if let Some(p) = s.top_p.filter(|&p| p < 1.0) {
        let p = p as f64;
        let m = in_play.iter().map(|&i| fv(i)).fold(f64::NEG_INFINITY, f64::max);
        let w = |i: usize| if x[i] == NEG_INF { 0.0 } else { (fv(i) - m).exp() };
        let z: f64 = in_play.iter().map(|&i| w(i)).sum();
        let mut order = in_play.clone();
        order.sort_by(|&a, &b| fv(b).partial_cmp(&fv(a)).unwrap());
        // Mass strictly above each value: sum of the groups before it.
        let mut above = 0.0;
        let mut g = 0;
        let mut keep_p = vec![false; x.len()];
        while g < order.len() {
            let mut e = g;
            let mut group = 0.0;
            while e < order.len() && fv(order[e]) == fv(order[g]) {
                group += w(order[e]);
                e += 1;
            }
            let a = above / z;
            let kept = if original { a <= p } else { a < p } || g == 0;
            if g > 0 && near(a, p) {
                *fragile = true;
            }
            for &i in &order[g..e] {
                keep_p[i] = kept;
            }
            above += group;
            g = e;
        }
        for &i in cand {
            keep[i] = keep[i] && keep_p[i];
        }
    }
    cand.iter().copied().filter(|&i| keep[i]).collect()
}

fn reference(x: &[f32], s: &SampleSettings, u: f32) -> Ref {
    let cand = candidates(s, x.len());
    let mut fragile = false;
    let lowest_argmax = |set: &[usize]| {
        let mut best = set[0];
        for &i in set {
            if x[i] > x[best] {
                best = i;
            }
        }
        best as u32
    };
    if cand.iter().all(|&i| x[i] == NEG_INF) {
        return Ref { id: cand[0] as u32, fragile };
    }
    let greedy = s.temperature <= 0.0;
    let eos = s.eos.map(|e| e as usize).filter(|e| cand.contains(e));
    let mx = cand.iter().map(|&i| x[i] as f64).fold(f64::NEG_INFINITY, f64::max);
    if let (Some(e), Some(m)) = (eos, s.min_eos_p) {
        if s.eos_rule == EosRule::Transformers || greedy {
            let z: f64 = cand.iter().map(|&i| (x[i] as f64 - mx).exp()).sum();
            let pe = (x[e] as f64 - mx).exp() / z;
            fragile |= near(pe, m as f64);
            let stop = if s.eos_rule == EosRule::Transformers { pe > m as f64 } else { pe >= m as f64 };
            if stop {
                return Ref { id: e as u32, fragile };
            }
        }
    }
    if greedy {
        return Ref { id: lowest_argmax(&cand), fragile };
    }
    let t = s.temperature as f64;
    let kept = kept_set(x, s, &cand, &mut fragile);
    let ms = cand.iter().map(|&i| x[i] as f64 / t).fold(f64::NEG_INFINITY, f64::max);
    let w = |i: usize| if x[i] == NEG_INF { 0.0 } else { (x[i] as f64 / t - ms).exp() };
    let z: f64 = kept.iter().map(|&i| w(i)).sum();
    if let (Some(e), Some(m), EosRule::Original) = (eos, s.min_eos_p, s.eos_rule) {
        let pe = if kept.contains(&e) { w(e) / z } else { 0.0 };
        fragile |= kept.contains(&e) && near(pe, m as f64);
        if pe >= m as f64 {
            return Ref { id: e as u32, fragile };
        }
    }
    let goal = u as f64 * z;
    let mut acc = 0.0;
    let mut id = None;
    for &i in &kept {
        if w(i) == 0.0 {
            continue;
        }
        acc += w(i);
        fragile |= near(acc / z, u as f64);
        if id.is_none() && acc > goal {
            id = Some(i as u32);
        }
    }
    Ref { id: id.unwrap_or(*kept.last().unwrap() as u32), fragile }
}

/// The reference, with the guarantee that the case is not fragile.
fn solid(x: &[f32], s: &SampleSettings, u: f32) -> u32 {
    let r = reference(x, s, u);
    assert!(!r.fragile, "test case too close to a decision boundary: {s:?} u={u}");
    r.id
}

/// Redraws u until the case is not fragile.
fn solid_u(rng: &mut Rng, x: &[f32], s: &SampleSettings) -> f32 {
    for _ in 0..10_000 {
        let u = rng.f32();
        if !reference(x, s, u).fragile {
            return u;
        }
    }
    panic!("no u keeps this case away from its decision boundaries: {s:?}");
}

// ---------------------------------------------------------------- GPU

/// Samples every row of `logits` (`rows * vocab`), returning (ids, eos flags).
fn run(logits: &[f32], vocab: usize, settings: &[SampleSettings], u: &[f32]) -> (Vec<u32>, Vec<u32>) {
    let ctx = ctx();
    let rows = logits.len() / vocab;
    let t = Tensor::from_f32(ctx, logits, &[rows, vocab], DType::F32).unwrap();
    let inputs = SamplerInputs::new(ctx, rows, vocab).unwrap();
    inputs.set_settings(ctx, settings).unwrap();
    inputs.set_uniforms(ctx, u).unwrap();
    let mut g = Graph::new(ctx);
    let (l, st, un) = (g.input(&t), g.input(inputs.settings()), g.input(inputs.uniforms()));
    let out = sample(&mut g, l, st, un).unwrap();
    g.readback(out.ids);
    g.readback(out.eos);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    (plan.read_words(out.ids).unwrap(), plan.read_words(out.eos).unwrap())
}

fn check(what: &str, logits: &[f32], vocab: usize, settings: &[SampleSettings], u: &[f32]) {
    let (ids, flags) = run(logits, vocab, settings, u);
    for (r, row) in logits.chunks(vocab).enumerate() {
        let s = &settings[r % settings.len()];
        let want = solid(row, s, u[r]);
        assert_eq!(ids[r], want, "{what}: row {r} (u = {})", u[r]);
        assert_eq!(flags[r], u32::from(s.eos == Some(want)), "{what}: eos flag of row {r}");
    }
}

fn all(vocab: usize) -> (u32, u32) {
    (0, vocab as u32)
}

// ---------------------------------------------------------------- tests

#[test]
fn argmax_with_ties_and_infinities() {
    let mut rng = Rng::new(1);
    for vocab in [1usize, 7, 300, 10048, 12096] {
        for rows in [1usize, 16] {
            let mut x = rng.normal(rows * vocab, 3.0);
            for (r, row) in x.chunks_mut(vocab).enumerate() {
                match r % 4 {
                    // Several copies of the maximum: the lowest index must win.
                    1 => {
                        let m = row.iter().cloned().fold(NEG_INF, f32::max) + 1.0;
                        for _ in 0..3 {
                            let i = rng.below(vocab as u32) as usize;
                            row[i] = m;
                        }
                    }
                    // -inf everywhere but one position.
                    2 => {
                        let keep = rng.below(vocab as u32) as usize;
                        let v = row[keep];
                        row.fill(NEG_INF);
                        row[keep] = v;
                    }
                    // All -inf: the lowest candidate.
                    3 if r == 3 => row.fill(NEG_INF),
                    _ => {}
                }
            }
            let s = SampleSettings { eos: Some(vocab as u32 - 1), ..SampleSettings::greedy(all(vocab)) };
            check(&format!("argmax V={vocab} B={rows}"), &x, vocab, &[s], &vec![0.5; rows]);
        }
    }
}

#[test]
fn allowed_ranges_and_extra_id() {
    let mut rng = Rng::new(2);
    // Semantic (transformers): suppress 10001..10047, which hold the largest logits here.
    let v = 10048;
    let mut x = rng.normal(4 * v, 2.0);
    for row in x.chunks_mut(v) {
        for l in &mut row[10001..] {
            *l = 50.0;
        }
    }
    let semantic = |t: f32| SampleSettings { temperature: t, eos: Some(10000), ..SampleSettings::greedy((0, 10001)) };
    let u: Vec<f32> = (0..4).map(|_| rng.f32()).collect();
    let settings = [semantic(0.0), semantic(0.7), semantic(0.0), semantic(1.3)];
    let (ids, _) = run(&x, v, &settings, &u);
    assert!(ids.iter().all(|&i| i <= 10000), "{ids:?}");
    check("semantic suppression", &x, v, &settings, &u);

    // Coarse: rows alternate between the two codebook ranges; the other range is larger.
    let v = 12096;
    let mut x = rng.normal(16 * v, 2.0);
    let mut settings = Vec::new();
    for (r, row) in x.chunks_mut(v).enumerate() {
        let range = if r % 2 == 0 { (10000, 11024) } else { (11024, 12048) };
        for (i, l) in row.iter_mut().enumerate() {
            if !(range.0 as usize..range.1 as usize).contains(&i) {
                *l += 8.0;
            }
        }
        let t = if r < 8 { 0.0 } else { 0.7 };
        settings.push(SampleSettings::sampled(range, t));
    }
    let mut u = vec![0.0; 16];
    for r in 0..16 {
        u[r] = solid_u(&mut rng, &x[r * v..(r + 1) * v], &settings[r]);
    }
    let (ids, _) = run(&x, v, &settings, &u);
    for (r, &id) in ids.iter().enumerate() {
        assert!((settings[r].allowed.0..settings[r].allowed.1).contains(&id), "row {r}: {id}");
    }
    check("coarse ranges", &x, v, &settings, &u);

    // Original semantic: [0, 10000) plus the EOS as an extra id; make the EOS the argmax.
    let v = 10048;
    let mut x = rng.normal(v, 2.0);
    x[10000] = 20.0;
    x[10001] = 30.0;
    let s = SampleSettings { extra_allowed: Some(10000), eos: Some(10000), ..SampleSettings::greedy((0, 10000)) };
    let (ids, flags) = run(&x, v, &[s], &[0.3]);
    assert_eq!((ids[0], flags[0]), (10000, 1));
    check("extra id", &x, v, &[s], &[0.3]);
    // An empty range with only the extra id.
    let s = SampleSettings { extra_allowed: Some(5), ..SampleSettings::sampled((9, 9), 0.8) };
    check("extra id only", &x, v, &[s], &[0.7]);
}

/// A semantic-like row whose EOS (10000) has probability `p` at temperature 1 among [0, 10001).
fn row_with_eos_p(rng: &mut Rng, p: f64) -> Vec<f32> {
    let mut x = rng.normal(10048, 2.0);
    let others: f64 = x[..10000].iter().map(|&v| (v as f64).exp()).sum();
    x[10000] = (others * p / (1.0 - p)).ln() as f32;
    x
}

fn eos_p(x: &[f32]) -> f64 {
    let z: f64 = x[..10001].iter().map(|&v| (v as f64).exp()).sum();
    (x[10000] as f64).exp() / z
}

#[test]
fn eos_prioritiser_transformers_rule() {
    let mut rng = Rng::new(3);
    let m = 0.2f32;
    // 1e-3 relative is far beyond the kernel's ~1e-5 probability error (module docs).
    for (p, want_eos) in [(0.2 * 1.001, true), (0.2 * 0.999, false)] {
        let x = row_with_eos_p(&mut rng, p);
        assert_eq!(eos_p(&x) > m as f64, want_eos, "construction");
        for t in [0.0, 0.7] {
            let s = SampleSettings {
                temperature: t,
                min_eos_p: Some(m),
                eos: Some(10000),
                ..SampleSettings::greedy((0, 10001))
            };
            for u in [0.01f32, 0.5] {
                // When EOS is not forced, draw u away from the CDF boundaries.
                let u = if want_eos { u } else { solid_u(&mut rng, &x, &s) };
                let (ids, flags) = run(&x, 10048, &[s], &[u]);
                let want = solid(&x, &s, u);
                assert_eq!(ids[0], want, "p={p} t={t}");
                assert_eq!(flags[0], u32::from(want == 10000));
                if want_eos {
                    assert_eq!((ids[0], flags[0]), (10000, 1), "p={p} t={t}");
                }
            }
        }
    }
}

#[test]
fn eos_prioritiser_original_rule() {
    let mut rng = Rng::new(4);
    let m = 0.2f32;
    // EOS is the most likely token with p(T=1) = 0.19 < m; T = 0.5 sharpens it above m, so the
    // original rule (post-temperature) stops and transformers' (T = 1) does not. 64 ids, so
    // the non-EOS tokens keep CDF steps wider than the margin.
    let mut x = rng.normal(64, 0.5);
    let others: f64 = x[..63].iter().map(|&v| (v as f64).exp()).sum();
    x[63] = (others * 0.19 / 0.81).ln() as f32;
    let base =
        SampleSettings { temperature: 0.5, min_eos_p: Some(m), eos: Some(63), ..SampleSettings::greedy((0, 64)) };
    let orig = SampleSettings { eos_rule: EosRule::Original, ..base };
    let z: f64 = x.iter().map(|&v| (v as f64).exp()).sum();
    assert!(((x[63] as f64).exp() / z) < m as f64);
    // transformers' rule does not stop, but may still sample EOS: pick a u where it does not.
    let u = loop {
        let u = solid_u(&mut rng, &x, &base);
        if solid(&x, &base, u) != 63 {
            break u;
        }
    };
    assert_eq!(solid(&x, &orig, u), 63, "construction");
    check("original rule stops", &[x.clone(), x].concat(), 64, &[orig, base], &[u, u]);

    // Semantic-sized rows from here on.
    let orig = SampleSettings { eos: Some(10000), allowed: (0, 10001), ..orig };

    // Just above / below m at the sampling temperature, with `>=`.
    let t = 0.7f64;
    for (p, want) in [(0.2 * 1.001, true), (0.2 * 0.999, false)] {
        let mut x = rng.normal(10048, 1.0);
        let others: f64 = x[..10000].iter().map(|&v| (v as f64 / t).exp()).sum();
        x[10000] = ((others * p / (1.0 - p)).ln() * t) as f32;
        let s = SampleSettings { temperature: t as f32, ..orig };
        // Below the threshold EOS may still be sampled (p ~ 0.2): pick a u that does not.
        let u = loop {
            let u = solid_u(&mut rng, &x, &s);
            if want || solid(&x, &s, u) != 10000 {
                break u;
            }
        };
        assert_eq!(solid(&x, &s, u) == 10000, want, "construction p={p}");
        check(&format!("original rule p={p}"), &x, 10048, &[s], &[u]);
    }

    // top-k filtering EOS away gives it probability 0 under the original rule: no stop,
    // although without top-k its probability (~0.005 here) is above min_eos_p.
    let mut x = rng.normal(10048, 1.0);
    x[10000] = 3.0;
    let s = SampleSettings { min_eos_p: Some(0.001), ..orig };
    assert_eq!(solid(&x, &s, 0.5), 10000, "construction");
    let s = SampleSettings { top_k: Some(5), ..s };
    let u = solid_u(&mut rng, &x, &s);
    assert_ne!(solid(&x, &s, u), 10000, "construction");
    check("original rule, EOS filtered", &x, 10048, &[s], &[u]);

    // Greedy with the original rule: softmax at T = 1 and `>=`.
    for p in [0.2 * 1.001, 0.2 * 0.999] {
        let x = row_with_eos_p(&mut rng, p);
        let s = SampleSettings { temperature: 0.0, ..orig };
        check(&format!("original rule greedy p={p}"), &x, 10048, &[s], &[0.5]);
    }
}

/// Rows sharing one logit row, each with its own u: shows the kept set and the CDF.
fn sweep(what: &str, rng: &mut Rng, x: &[f32], s: &SampleSettings, n: usize) {
    let vocab = x.len();
    let u: Vec<f32> = (0..n).map(|_| solid_u(rng, x, s)).collect();
    let logits: Vec<f32> = (0..n).flat_map(|_| x.iter().copied()).collect();
    check(what, &logits, vocab, &[*s], &u);
}

#[test]
fn top_k_keeps_ties() {
    let mut rng = Rng::new(5);
    // Values on a coarse grid, so many tie; the k-th largest is inside a tie group.
    let x: Vec<f32> = (0..300).map(|_| rng.below(12) as f32 * 0.5).collect();
    let mut sorted = x.clone();
    sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
    for k in [1u32, 3, 10, 40, 299, 300, 1000] {
        for order in [SamplingOrder::Transformers, SamplingOrder::Original] {
            let s = SampleSettings { top_k: Some(k), order, ..SampleSettings::sampled(all(300), 0.8) };
            sweep(&format!("top-k {k} {order:?}"), &mut rng, &x, &s, 64);
            // Every sampled id is at least the k-th largest value, ties included.
            let thr = sorted[(k as usize).min(300) - 1];
            let u: Vec<f32> = (0..64).map(|i| (i as f32 + 0.5) / 64.0).collect();
            let logits: Vec<f32> = (0..64).flat_map(|_| x.iter().copied()).collect();
            let (ids, _) = run(&logits, 300, &[s], &u);
            assert!(ids.iter().all(|&i| x[i as usize] >= thr), "top-k {k}");
        }
    }
    // Random rows, k at Bark's vocabulary scale, temperature applied before (transformers).
    for vocab in [10048usize, 12096] {
        let x = rng.normal(vocab, 3.0);
        let s = SampleSettings { top_k: Some(50), ..SampleSettings::sampled(all(vocab), 0.7) };
        sweep(&format!("top-k 50 V={vocab}"), &mut rng, &x, &s, 16);
    }
}

#[test]
fn top_p_edge_cases() {
    let mut rng = Rng::new(6);
    let vocab = 10048;
    let x = rng.normal(vocab, 3.0);
    let argmax = solid(&x, &SampleSettings::greedy(all(vocab)), 0.0);
    for order in [SamplingOrder::Transformers, SamplingOrder::Original] {
        let plain = SampleSettings { order, ..SampleSettings::sampled(all(vocab), 0.8) };
        // top_p = 1.0 keeps everything: identical to no top-p, for the same u.
        let u: Vec<f32> = (0..16).map(|_| solid_u(&mut rng, &x, &plain)).collect();
        let logits: Vec<f32> = (0..16).flat_map(|_| x.iter().copied()).collect();
        let with_one = SampleSettings { top_p: Some(1.0), ..plain };
        assert_eq!(run(&logits, vocab, &[plain], &u), run(&logits, vocab, &[with_one], &u), "{order:?}");
        check("top_p 1", &logits, vocab, &[with_one], &u);
        // Tiny (and zero) top_p keeps only the maximum, whatever u is.
        for p in [1e-6f32, 0.0] {
            let s = SampleSettings { top_p: Some(p), ..plain };
            let u: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
            let (ids, _) = run(&logits, vocab, &[s], &u);
            assert!(ids.iter().all(|&i| i == argmax), "top_p {p} {order:?}: {ids:?}");
        }
        // Ties at the maximum with top_p = 0: the whole tie group stays.
        let mut y = x.clone();
        y[17] = 20.0;
        y[4000] = 20.0;
        let s = SampleSettings { top_p: Some(0.0), ..plain };
        let (ids, _) = run(&[y.clone(), y].concat(), vocab, &[s], &[0.25, 0.75]);
        assert_eq!(ids, vec![17, 4000], "{order:?}");
        // Random top_p, alone and with top-k.
        for (p, k) in [(0.9f32, None), (0.5, Some(100)), (0.95, Some(20)), (0.3, None)] {
            let s = SampleSettings { top_p: Some(p), top_k: k, ..plain };
            sweep(&format!("top-p {p} top-k {k:?} {order:?}"), &mut rng, &x, &s, 8);
        }
    }
}

#[test]
fn transformers_and_original_orders_differ() {
    // Few tokens, so the filters bite: at T = 2 (transformers) top-p sees a flatter
    // distribution than on the raw logits (original) and keeps more tokens.
    let x: Vec<f32> = vec![3.0, 2.5, 2.0, 1.0, 0.0, -1.0];
    let tf = SampleSettings { top_p: Some(0.8), ..SampleSettings::sampled(all(6), 2.0) };
    let orig = SampleSettings { order: SamplingOrder::Original, ..tf };
    let mut f1 = false;
    let kept_tf = kept_set(&x, &tf, &[0, 1, 2, 3, 4, 5], &mut f1);
    let kept_orig = kept_set(&x, &orig, &[0, 1, 2, 3, 4, 5], &mut f1);
    assert!(!f1 && kept_tf.len() > kept_orig.len(), "construction: {kept_tf:?} {kept_orig:?}");
    let mut rng = Rng::new(7);
    sweep("transformers order", &mut rng, &x, &tf, 64);
    sweep("original order", &mut rng, &x, &orig, 64);
    // u = 0.999 lands on the last kept token, which differs between the orders.
    let both = [x.clone(), x.clone()].concat();
    check("orders at u = 0.999", &both, 6, &[tf, orig], &[0.999, 0.999]);
    let (ids, _) = run(&both, 6, &[tf, orig], &[0.999, 0.999]);
    assert_eq!(ids, vec![*kept_tf.last().unwrap() as u32, *kept_orig.last().unwrap() as u32]);
}

#[test]
fn inverse_cdf_matches_reference() {
    let mut rng = Rng::new(8);
    for vocab in [1usize, 2, 300, 10048, 12096] {
        for rows in [1usize, 16] {
            let x = rng.normal(rows * vocab, 2.5);
            let settings: Vec<SampleSettings> =
                (0..rows).map(|r| SampleSettings::sampled(all(vocab), [0.7, 1.0, 1.3, 0.2][r % 4])).collect();
            let u: Vec<f32> =
                (0..rows).map(|r| solid_u(&mut rng, &x[r * vocab..(r + 1) * vocab], &settings[r])).collect();
            check(&format!("sampling V={vocab} B={rows}"), &x, vocab, &settings, &u);
        }
    }
    // u exactly 0 picks the first token with any weight.
    let x = vec![NEG_INF, NEG_INF, 1.0, 2.0];
    assert_eq!(run(&x, 4, &[SampleSettings::sampled(all(4), 1.0)], &[0.0]).0, vec![2]);
}

/// Chi-square of observed counts against expected probabilities (bins with p > 0).
fn chi_square(counts: &[u64], probs: &[f64], n: u64) -> f64 {
    counts
        .iter()
        .zip(probs)
        .filter(|(_, &p)| p > 0.0)
        .map(|(&c, &p)| {
            let e = p * n as f64;
            (c as f64 - e).powi(2) / e
        })
        .sum()
}

#[test]
fn sampled_frequencies_match_probabilities() {
    let mut rng = Rng::new(9);
    let vocab = 40;
    let x = rng.normal(vocab, 1.0);
    let n = 10_000u64;
    let logits: Vec<f32> = (0..n).flat_map(|_| x.iter().copied()).collect();
    for s in [
        SampleSettings::sampled(all(vocab), 0.7),
        SampleSettings { top_k: Some(12), top_p: Some(0.8), ..SampleSettings::sampled(all(vocab), 1.2) },
    ] {
        // Probabilities from the reference's kept set.
        let mut fragile = false;
        let cand: Vec<usize> = (0..vocab).collect();
        let kept = kept_set(&x, &s, &cand, &mut fragile);
        assert!(!fragile);
        let t = s.temperature as f64;
        let w: Vec<f64> = (0..vocab).map(|i| if kept.contains(&i) { (x[i] as f64 / t).exp() } else { 0.0 }).collect();
        let z: f64 = w.iter().sum();
        let probs: Vec<f64> = w.iter().map(|v| v / z).collect();
        let u: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
        let (ids, _) = run(&logits, vocab, &[s], &u);
        let mut counts = vec![0u64; vocab];
        for &i in &ids {
            counts[i as usize] += 1;
        }
        for i in 0..vocab {
            assert!(probs[i] > 0.0 || counts[i] == 0, "token {i} was filtered out but sampled");
        }
        let dof = kept.len() as f64 - 1.0;
        let chi = chi_square(&counts, &probs, n);
        // Chi-square has mean dof and sd sqrt(2 dof): 6 sd above the mean is a miss a correct
        // sampler makes with probability far below 1e-6 (and the seed is fixed).
        assert!(chi < dof + 6.0 * (2.0 * dof).sqrt(), "chi-square {chi} for {dof} degrees of freedom");
    }
}

#[test]
fn fine_stage_many_rows() {
    let mut rng = Rng::new(10);
    // [B, T, 1056] with B*T = 2 * 1024 rows; ids 1024.. hold the largest logits and must never win.
    let (b, t, v) = (2usize, 1024usize, 1056usize);
    let mut x = rng.normal(b * t * v, 2.0);
    for row in x.chunks_mut(v) {
        row[1030] = 40.0;
    }
    let ctx = ctx();
    let tensor = Tensor::from_f32(ctx, &x, &[b, t, v], DType::F32).unwrap();
    let inputs = SamplerInputs::new(ctx, b * t, v).unwrap();
    let mut g = Graph::new(ctx);
    let (l, st, un) = (g.input(&tensor), g.input(inputs.settings()), g.input(inputs.uniforms()));
    let out = sample(&mut g, l, st, un).unwrap();
    g.readback(out.ids);
    let plan = g.compile().unwrap();
    for temp in [None, Some(1.0), Some(0.5)] {
        let s = SampleSettings::fine(temp);
        inputs.set_settings(ctx, &[s]).unwrap();
        let u: Vec<f32> = (0..b * t).map(|r| solid_u(&mut rng, &x[r * v..(r + 1) * v], &s)).collect();
        inputs.set_uniforms(ctx, &u).unwrap();
        plan.run().unwrap();
        let ids = plan.read_words(out.ids).unwrap();
        for (r, row) in x.chunks(v).enumerate() {
            assert_eq!(ids[r], solid(row, &s, u[r]), "fine {temp:?} row {r}");
        }
    }
}

#[test]
fn settings_change_between_runs_without_recompiling() {
    // A device of its own: the other tests, running in parallel, allocate on the shared one.
    let ctx = &Context::new(&ContextOptions::default()).unwrap();
    let mut rng = Rng::new(11);
    let v = 12096;
    let x = rng.normal(2 * v, 2.0);
    let t = Tensor::from_f32(ctx, &x, &[2, v], DType::F32).unwrap();
    let inputs = SamplerInputs::new(ctx, 2, v).unwrap();
    let mut g = Graph::new(ctx);
    let (l, st, un) = (g.input(&t), g.input(inputs.settings()), g.input(inputs.uniforms()));
    let out = sample(&mut g, l, st, un).unwrap();
    g.readback(out.ids);
    g.readback(out.eos);
    let plan = g.compile().unwrap();
    let mut before = None;
    for step in 0..4 {
        // Coarse alternates its codebook range each step.
        let range = if step % 2 == 0 { (10000, 11024) } else { (11024, 12048) };
        let s = SampleSettings::sampled(range, 0.7);
        let u = [solid_u(&mut rng, &x[..v], &s), solid_u(&mut rng, &x[v..], &s)];
        inputs.set_settings(ctx, &[s]).unwrap();
        inputs.set_uniforms(ctx, &u).unwrap();
        plan.run().unwrap();
        let ids = plan.read_words(out.ids).unwrap();
        assert_eq!(ids, vec![solid(&x[..v], &s, u[0]), solid(&x[v..], &s, u[1])], "step {step}");
        assert!(ids.iter().all(|&i| (range.0..range.1).contains(&i)));
        let stats = ctx.stats();
        if let Some(b) = before {
            assert_eq!(stats, b, "a step created buffers, pipelines or bind groups");
        }
        before = Some(stats);
    }
}

#[test]
fn more_rows_than_one_grid_dimension() {
    // 70,000 rows fold into a 2-D grid (65,535 per dimension); each row's argmax is its r % 3.
    let rows = 70_000usize;
    let x: Vec<f32> = (0..rows).flat_map(|r| (0..3).map(move |i| if i == r % 3 { 1.0 } else { 0.0 })).collect();
    let (ids, _) = run(&x, 3, &[SampleSettings::greedy(all(3))], &vec![0.0; rows]);
    assert!(ids.iter().enumerate().all(|(r, &i)| i as usize == r % 3));
}

#[test]
fn bad_input_is_a_typed_error() {
    let ctx = ctx();
    let v = 100;
    let ok = SampleSettings::sampled(all(v), 0.7);
    let bad = [
        SampleSettings { top_k: Some(0), ..ok },
        SampleSettings { top_p: Some(1.5), ..ok },
        SampleSettings { top_p: Some(f32::NAN), ..ok },
        SampleSettings { temperature: f32::NAN, ..ok },
        SampleSettings { temperature: 1e-9, ..ok },
        SampleSettings { eos: Some(100), ..ok },
        SampleSettings { min_eos_p: Some(0.2), ..ok },
        SampleSettings { min_eos_p: Some(-0.1), eos: Some(3), ..ok },
        SampleSettings { allowed: (0, 101), ..ok },
        SampleSettings { allowed: (5, 4), ..ok },
        SampleSettings { allowed: (4, 4), ..ok },
        SampleSettings { extra_allowed: Some(100), ..ok },
    ];
    for s in bad {
        assert!(s.encode(v).is_err(), "{s:?} was accepted");
    }
    assert!(ok.encode(v).is_ok());
    assert!(encode_settings(&[ok, ok], 3, v).is_err(), "2 settings for 3 rows");
    assert_eq!(encode_settings(&[ok], 3, v).unwrap().len(), 3 * SETTINGS_WORDS);

    let inputs = SamplerInputs::new(ctx, 2, v).unwrap();
    assert!(inputs.set_uniforms(ctx, &[0.5, 1.0]).is_err());
    assert!(inputs.set_uniforms(ctx, &[0.5, -0.1]).is_err());
    assert!(inputs.set_uniforms(ctx, &[0.5]).is_err());
    assert!(inputs.set_settings(ctx, &[SampleSettings::greedy((0, 101))]).is_err());
    assert!(SamplerInputs::new(ctx, 0, v).is_err());

    let mut g = Graph::new(ctx);
    let logits = g.tensor(&[2, v], DType::F32);
    let settings = g.input(inputs.settings());
    let uniforms = g.input(inputs.uniforms());
    let wrong_rows = g.tensor(&[3, v], DType::F32);
    let wrong_dtype = g.tensor(&[2, v], DType::F16);
    let wrong_u = g.tensor(&[2], DType::U32);
    let empty = g.tensor(&[2, 0], DType::F32);
    assert!(sample(&mut g, wrong_rows, settings, uniforms).is_err());
    assert!(sample(&mut g, wrong_dtype, settings, uniforms).is_err());
    assert!(sample(&mut g, logits, settings, wrong_u).is_err());
    assert!(sample(&mut g, logits, uniforms, settings).is_err());
    assert!(sample(&mut g, empty, settings, uniforms).is_err());
    assert!(sample(&mut g, logits, settings, uniforms).is_ok());
}

#[test]
fn garbage_settings_stay_in_bounds() {
    // Words the host validation would refuse, written raw: the kernel must still return an
    // id below V for every row (it clamps the range and ignores out-of-range ids).
    let ctx = ctx();
    let v = 50;
    let x = Rng::new(12).normal(4 * v, 1.0);
    let t = Tensor::from_f32(ctx, &x, &[4, v], DType::F32).unwrap();
    let inputs = SamplerInputs::new(ctx, 4, v).unwrap();
    let garbage: Vec<u32> = [
        [40, 900, 7_000, 5_000, 0x3f00_0000, 3, 0x3f00_0000, 0x3e4c_cccd, 3],
        [60, 70, u32::MAX, 60, 0x3f80_0000, 0, 0x4000_0000, 0xbf80_0000, 0],
        [0, 0, 99, u32::MAX, 0x7fc0_0000, u32::MAX, 0x7fc0_0000, 0x7fc0_0000, u32::MAX],
        [u32::MAX, u32::MAX, u32::MAX, u32::MAX, 0xff80_0000, 9, 0x0000_0000, 0x0000_0000, 7],
    ]
    .concat();
    inputs.settings().write_words(ctx, &garbage).unwrap();
    let mut g = Graph::new(ctx);
    let (l, st, un) = (g.input(&t), g.input(inputs.settings()), g.input(inputs.uniforms()));
    let out = sample(&mut g, l, st, un).unwrap();
    g.readback(out.ids);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    let ids = plan.read_words(out.ids).unwrap();
    assert!(ids.iter().all(|&i| (i as usize) < v), "{ids:?}");
    // Row 0 clamps [40, 900) to [40, 50).
    assert!((40..50).contains(&ids[0]), "{ids:?}");

    // NaN and +inf logits: some token of the allowed range, whatever the settings.
    let mut x = Rng::new(13).normal(4 * v, 1.0);
    x[..v].fill(f32::NAN);
    x[v + 15] = f32::NAN;
    x[2 * v + 12] = f32::INFINITY;
    x[3 * v + 11] = f32::INFINITY;
    x[3 * v + 13] = f32::NAN;
    let base = SampleSettings { top_k: Some(3), top_p: Some(0.7), ..SampleSettings::sampled((10, 20), 0.9) };
    let settings = [SampleSettings::greedy((10, 20)), base, SampleSettings { order: SamplingOrder::Original, ..base }];
    for s in settings {
        let (ids, _) = run(&x, v, &[s], &[0.2, 0.5, 0.9, 0.0]);
        assert!(ids.iter().all(|i| (10..20).contains(i)), "{s:?}: {ids:?}");
    }
}
