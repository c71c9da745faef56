//! GPU memory accounting (`Stats::bytes_live` / `bytes_peak`) and what keeps the peak down: a
//! dropped buffer is freed, a finished plan's intermediates wait in the pool until
//! `Context::trim_pool`, and `Bark` trims after every stage so one stage's intermediates and
//! KV cache are gone before the next stage allocates its own.

use crate::common;

use bark_wgpu::generate::coarse::coarse_len;
use bark_wgpu::generate::{Bark, GenerateOptions, LoadOptions};
use bark_wgpu::ops::elementwise;
use bark_wgpu::{DType, Graph, Tensor};
use common::generation::dir;
use common::private_ctx;

#[test]
fn live_bytes_follow_buffers_and_the_peak_remembers() {
    let ctx = &private_ctx();
    let base = ctx.stats();
    let a = Tensor::empty(ctx, &[1000, 250], DType::F32).unwrap();
    let b = Tensor::empty(ctx, &[1000, 250], DType::F16).unwrap();
    let both = ctx.stats();
    assert_eq!(both.bytes_live - base.bytes_live, 1_000_000 + 500_000);
    drop(a);
    drop(b);
    let after = ctx.stats();
    assert_eq!(after.bytes_live, base.bytes_live, "dropped tensors still counted");
    assert_eq!(after.bytes_peak, both.bytes_live, "the peak forgot the two tensors");
    ctx.reset_peak();
    assert_eq!(ctx.stats().bytes_peak, base.bytes_live);
    // A readback's staging buffer is freed when the read is done.
    let t = Tensor::from_f32(ctx, &[1.0; 64], &[64], DType::F32).unwrap();
    let held = ctx.stats().bytes_live;
    assert_eq!(t.to_f32(ctx).unwrap(), vec![1.0; 64]);
    assert_eq!(ctx.stats().bytes_live, held, "the readback's staging buffer leaked");
}

#[test]
fn pooled_intermediates_live_until_the_pool_is_trimmed() {
    let ctx = &private_ctx();
    let n = 100_000;
    let x = Tensor::from_f32(ctx, &vec![0.25; n], &[n], DType::F32).unwrap();
    let base = ctx.stats().bytes_live;
    let mut g = Graph::new(ctx);
    let v = g.input(&x);
    let a = elementwise::gelu(&mut g, v).unwrap();
    let _ = elementwise::gelu(&mut g, a).unwrap();
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    let running = ctx.stats().bytes_live;
    assert!(running >= base + plan.transient_bytes, "{running} < {base} + {}", plan.transient_bytes);
    drop(plan);
    assert_eq!(ctx.stats().bytes_live, running, "the pool should keep a dropped plan's buffers");
    ctx.trim_pool();
    assert_eq!(ctx.stats().bytes_live, base, "trimming the pool left buffers behind");
}

#[test]
fn generation_frees_every_stage_and_peaks_at_one_stage() {
    let ctx = private_ctx();
    let bark = Bark::load_on(&ctx, dir(), &LoadOptions::default()).unwrap();
    ctx.wait().unwrap();
    let weights = ctx.stats().bytes_live;
    let texts = ["Hello there.", "A second, somewhat longer line of text."];
    let gen = GenerateOptions { max_semantic_tokens: 24, ..GenerateOptions::greedy() };

    // Each stage alone: what it holds at its peak above the weights, and nothing after.
    let mut stage_peaks = Vec::new();
    let mut stage = |run: &mut dyn FnMut()| {
        ctx.reset_peak();
        run();
        let s = ctx.stats();
        assert_eq!(s.bytes_live, weights, "a stage left {} bytes behind", s.bytes_live - weights);
        stage_peaks.push(s.bytes_peak - weights);
    };
    let (mut sem, mut coarse, mut fine) = (Vec::new(), Vec::new(), Vec::new());
    stage(&mut || sem = bark.semantic_batch(&texts, &gen, None, 2).unwrap());
    stage(&mut || coarse = bark.coarse_batch(&sem, &gen, None, 2).unwrap());
    stage(&mut || fine = bark.fine_batch(&coarse, &gen, None, 2).unwrap());
    for f in &fine {
        stage(&mut || drop(bark.decode(f).unwrap()));
    }
    eprintln!("bytes above the weights ({weights}) at each stage's peak: {stage_peaks:?}");
    assert!(stage_peaks.iter().all(|&p| p > 0), "a stage allocated nothing: {stage_peaks:?}");

    // Bark::stage_memory predicts them without running: the same cache and plans, so semantic,
    // fine and decode match exactly; coarse plans for the longest window prompt (886 tokens),
    // more than these short inputs reach.
    let planned = bark.stage_memory(2, 24).unwrap();
    eprintln!("planned: {planned:?}");
    assert_eq!(ctx.stats().bytes_live, weights, "stage_memory left buffers behind");
    assert_eq!(planned.semantic, stage_peaks[0], "semantic");
    assert!(planned.coarse >= stage_peaks[1], "coarse: planned {} < measured {}", planned.coarse, stage_peaks[1]);
    assert_eq!(planned.fine, stage_peaks[2], "fine");
    // Decode plans for the budget's length, which both texts reach on the fixture (greedy, no
    // EOS within 24 tokens), so it matches exactly too.
    let frames = coarse_len(24) / 2;
    assert!(fine.iter().all(|f| f[0].len() == frames), "a text stopped before the budget");
    assert!(stage_peaks[3..].iter().all(|&p| p == planned.decode), "decode: planned {}", planned.decode);
    assert_eq!(planned.largest(), planned.semantic.max(planned.coarse).max(planned.fine).max(planned.decode));

    // The whole pipeline peaks at its largest stage, not at the sum of them.
    ctx.reset_peak();
    let out = bark.generate_batch(&texts, &gen, None, 2).unwrap();
    let s = ctx.stats();
    assert_eq!(out.len(), 2);
    assert_eq!(s.bytes_live, weights, "generation left {} bytes behind", s.bytes_live - weights);
    let largest = *stage_peaks.iter().max().unwrap();
    assert_eq!(s.bytes_peak - weights, largest, "stage peaks {stage_peaks:?}");
}
