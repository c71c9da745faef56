//! The graph executor: a multi-op step runs as one pass, intermediates share buffers by
//! lifetime, and running a compiled step again creates no buffer, pipeline or bind group.

use crate::common;

use bark_wgpu::graph::Scratch;
use bark_wgpu::ops::elementwise;
use bark_wgpu::{DType, Graph, Tensor};
use common::{assert_close, ctx, private_ctx, Rng};

fn gelu(v: f32) -> f32 {
    (0.5 * v as f64 * (1.0 + libm::erf(v as f64 / std::f64::consts::SQRT_2))) as f32
}

#[test]
fn chain_of_ops_reuses_buffers_and_matches_cpu() {
    let ctx = ctx();
    let n = 4099;
    let mut rng = Rng::new(7);
    let x = rng.normal(n, 1.0);
    let tx = Tensor::from_f32(ctx, &x, &[n], DType::F32).unwrap();

    // y = gelu(elu(x) + x) + gelu(x): five dispatches, four intermediates of n floats.
    let mut g = Graph::new(ctx);
    let vx = g.input(&tx);
    let a = elementwise::elu(&mut g, vx, 1.0).unwrap();
    let b = elementwise::add(&mut g, a, vx).unwrap();
    let c = elementwise::gelu(&mut g, b).unwrap();
    let d = elementwise::gelu(&mut g, vx).unwrap();
    let y = elementwise::add(&mut g, c, d).unwrap();
    g.readback(y);
    let plan = g.compile().unwrap();
    assert_eq!(plan.dispatch_count(), 5);
    // a dies at the add that makes b, b at the gelu making c: at most 3 live at once, so
    // lifetime planning needs at most 3 buffers for the 4 non-kept intermediates.
    let one = (n * 4) as u64;
    assert!(plan.transient_bytes <= 3 * one, "transient bytes {} > {}", plan.transient_bytes, 3 * one);

    plan.run().unwrap();
    let got: Vec<f32> = plan.read_words(y).unwrap().into_iter().map(f32::from_bits).collect();
    let want: Vec<f32> = x
        .iter()
        .map(|&v| {
            let a = if v > 0.0 { v } else { v.exp_m1() };
            gelu(a + v) + gelu(v)
        })
        .collect();
    assert_close("graph", &got[..n], &want, 2e-6, 2e-6);
}

#[test]
fn async_reads_give_what_blocking_reads_give() {
    // The reads a browser uses (it cannot block): driven here by pollster, as native code does.
    let gpu = private_ctx();
    let ctx = &pollster::block_on(bark_wgpu::Context::new_async(&Default::default())).unwrap();
    assert_eq!(ctx.summary().name, gpu.summary().name, "new_async picks the adapter new picks");
    let x = Rng::new(3).normal(1001, 1.0);
    let t = Tensor::from_f32(ctx, &x, &[1001], DType::F32).unwrap();
    assert_eq!(pollster::block_on(t.to_f32_async(ctx)).unwrap(), x);
    let mut g = Graph::new(ctx);
    let v = g.input(&t);
    let y = elementwise::gelu(&mut g, v).unwrap();
    g.readback(y);
    let plan = g.compile().unwrap();
    let run = plan.submit().unwrap();
    let by_run = pollster::block_on(plan.read_run_async(y, &run)).unwrap();
    assert_eq!(by_run, plan.read_run(y, &run).unwrap());
    assert_eq!(pollster::block_on(plan.read_words_async(y)).unwrap(), plan.read_words(y).unwrap());
    let want: Vec<f32> = x.iter().map(|&v| gelu(v)).collect();
    let got: Vec<f32> = by_run.into_iter().map(f32::from_bits).collect();
    assert_close("async gelu", &got[..1001], &want, 2e-6, 2e-6);
    assert!(pollster::block_on(plan.read_words_async(v)).is_err(), "an input never registered for readback");
}

#[test]
fn warm_step_creates_nothing() {
    let ctx = &private_ctx();
    let t = Tensor::from_f32(ctx, &[1.0, -2.0, 3.0], &[3], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let v = g.input(&t);
    let h = elementwise::gelu(&mut g, v).unwrap();
    let y = elementwise::add(&mut g, h, v).unwrap();
    g.readback(y);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    let first = plan.read_words(y).unwrap();
    let before = ctx.stats();
    assert!(before.pipelines_created == 2 && before.bind_groups_created == 2, "{before:?}");
    for _ in 0..20 {
        t.write_f32(ctx, &[1.0, -2.0, 3.0]).unwrap();
        plan.run().unwrap();
        assert_eq!(plan.read_words(y).unwrap(), first);
    }
    assert_eq!(ctx.stats(), before, "a warm run created GPU objects");
}

#[test]
fn recompiling_the_same_step_draws_buffers_from_the_pool() {
    let ctx = &private_ctx();
    let t = Tensor::from_f32(ctx, &vec![0.5; 777], &[777], DType::F32).unwrap();
    let build = || {
        let mut g = Graph::new(ctx);
        let v = g.input(&t);
        let a = elementwise::gelu(&mut g, v).unwrap();
        let b = elementwise::gelu(&mut g, a).unwrap();
        let _ = elementwise::gelu(&mut g, b).unwrap();
        g.compile().unwrap()
    };
    drop(build()); // returns its intermediates to the pool
    let before = ctx.stats();
    let plan = build();
    plan.run().unwrap();
    let after = ctx.stats();
    assert!(plan.transient_bytes > 0);
    assert_eq!(after.buffers_created, before.buffers_created, "buffers were not reused from the pool");
    assert_eq!(after.pipelines_created, before.pipelines_created, "pipelines were not cached");
}

#[test]
fn views_share_their_root_buffer() {
    let ctx = ctx();
    let x: Vec<f32> = (0..12).map(|i| i as f32 - 6.0).collect();
    let t = Tensor::from_f32(ctx, &x, &[3, 4], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let v = g.input(&t);
    let flat = g.view(v, &[12]).unwrap();
    let y = elementwise::elu(&mut g, flat, 1.0).unwrap();
    let y2 = g.view(y, &[4, 3]).unwrap();
    assert!(g.view(y, &[5]).is_err());
    g.keep(y2);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    let got = plan.tensor(y2);
    assert_eq!(got.shape(), &[4, 3]);
    let want: Vec<f32> = x.iter().map(|&v| if v > 0.0 { v } else { v.exp_m1() }).collect();
    assert_close("view", &got.to_f32(ctx).unwrap(), &want, 1e-6, 1e-6);
}

#[test]
fn too_many_workgroups_is_an_error_not_a_crash() {
    let ctx = ctx();
    let mut g = Graph::new(ctx);
    let v = g.tensor(&[4], DType::F32);
    g.dispatch(bark_wgpu::gpu::Kernel::new("elementwise", "fill"), &[0u8; 8], &[("out", v)], [1 << 20, 1, 1]);
    assert!(g.compile().is_err());
}

#[test]
fn operands_are_bound_by_the_names_the_contract_gives_them() {
    // elementwise `add` binds x, b, y: the same operands in another order, or under another
    // name, would land on another binding, and a debug build refuses them at record time.
    let add = elementwise::kernels().into_iter().find(|k| k.entry == "add").expect("add is enumerated");
    let record = |names: [&'static str; 3]| {
        let mut g = Graph::new(ctx());
        let [a, b, y] = [0; 3].map(|_| g.tensor(&[4], DType::F32));
        let add = add.clone();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            g.dispatch(add, &[0u8; 8], &[(names[0], a), (names[1], b), (names[2], y)], [1, 1, 1]);
        }))
        .is_ok()
    };
    assert!(record(["x", "b", "y"]));
    if cfg!(debug_assertions) {
        assert!(!record(["b", "x", "y"]), "swapped operands were recorded");
        assert!(!record(["x", "bias", "y"]), "a misnamed operand was recorded");
    }
}

#[test]
fn a_bad_kernel_is_an_error_not_a_crash() {
    let ctx = ctx();
    let unknown_file = bark_wgpu::gpu::Kernel::new("no_such_shader", "main");
    assert!(matches!(ctx.pipeline(&unknown_file), Err(bark_wgpu::Error::Shader { .. })));
    let unknown_entry = bark_wgpu::gpu::Kernel::new("elementwise", "no_such_entry");
    assert!(matches!(ctx.pipeline(&unknown_entry), Err(bark_wgpu::Error::Shader { .. })));
    // A type where a number belongs: the module does not compile.
    let bad_value = bark_wgpu::gpu::Kernel::new("elementwise", "gelu").with_alias("WG", "not_a_type");
    assert!(matches!(ctx.pipeline(&bad_value), Err(bark_wgpu::Error::Shader { .. })));
}

#[test]
fn a_copied_output_feeds_the_next_run_and_two_runs_read_back_separately() {
    let ctx = ctx();
    // x += 1 per run: the add's output is copied back into its own input after the pass.
    let x = Tensor::from_f32(ctx, &[10.0, -3.5, 0.25], &[3], DType::F32).unwrap();
    let one = Tensor::from_f32(ctx, &[1.0; 3], &[3], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let (vx, v1) = (g.input(&x), g.input(&one));
    let y = elementwise::add(&mut g, vx, v1).unwrap();
    g.readback(y);
    g.copy(y, vx).unwrap();
    // Copies write only inputs, of the same size.
    assert!(g.copy(vx, y).is_err());
    let short = Tensor::from_f32(ctx, &[0.0; 2], &[2], DType::F32).unwrap();
    let vs = g.input(&short);
    assert!(g.copy(y, vs).is_err());
    let plan = g.compile().unwrap();
    let read = |words: Vec<u32>| words.into_iter().map(f32::from_bits).collect::<Vec<f32>>();

    // Two runs in flight before either is read: each keeps its own result.
    let first = plan.submit().unwrap();
    let second = plan.submit().unwrap();
    assert_eq!(read(plan.read_run(y, &first).unwrap()), [11.0, -2.5, 1.25]);
    assert_eq!(read(plan.read_run(y, &second).unwrap()), [12.0, -1.5, 2.25]);
    // read_words is the latest run's.
    let third = plan.submit().unwrap();
    assert_eq!(read(plan.read_words(y).unwrap()), [13.0, -0.5, 3.25]);
    assert_eq!(read(plan.read_run(y, &third).unwrap()), [13.0, -0.5, 3.25]);
    assert_eq!(x.to_f32(ctx).unwrap(), [13.0, -0.5, 3.25]);
}

#[test]
fn plans_in_one_scratch_share_intermediates_and_keep_their_results() {
    let ctx = &private_ctx();
    let n = 5000;
    let x = Tensor::from_f32(ctx, &vec![0.5; n], &[n], DType::F32).unwrap();
    // Two chains of the same shapes: gelu(gelu(x)) + x and gelu(x) + x, each keeping its output.
    let build = |depth: usize, scratch: &Scratch| {
        let mut g = Graph::new(ctx);
        let v = g.input(&x);
        let mut h = v;
        for _ in 0..depth {
            h = elementwise::gelu(&mut g, h).unwrap();
        }
        let y = elementwise::add(&mut g, h, v).unwrap();
        g.keep(y);
        (g.compile_in(scratch).unwrap(), y)
    };
    let scratch = Scratch::default();
    let (a, ya) = build(2, &scratch);
    let live = ctx.stats().bytes_live;
    let (b, yb) = build(2, &scratch);
    assert!(a.transient_bytes > 0);
    assert_eq!(b.transient_bytes, 0, "the second plan should find every intermediate in the scratch");
    assert_eq!(scratch.bytes(), a.transient_bytes);
    // Only b's kept output and its uniforms are new.
    assert!(ctx.stats().bytes_live - live < a.transient_bytes, "b allocated its own intermediates");
    let (c, yc) = build(1, &scratch);
    // Run them interleaved: each output is its own chain's, not what another plan left behind.
    for plan in [&a, &c, &b] {
        plan.run().unwrap();
    }
    let one = gelu(0.5) + 0.5;
    let two = gelu(gelu(0.5)) + 0.5;
    for (plan, y, want) in [(&a, ya, two), (&b, yb, two), (&c, yc, one)] {
        let got = plan.tensor(y).to_f32(ctx).unwrap();
        assert_close("scratch plan", &got, &vec![want; n], 2e-6, 2e-6);
    }
}
