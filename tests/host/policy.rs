//! What the kernel choices promise, under every policy, checked against the kernels themselves
//! rather than against `choose`'s own branches: every choice is enumerated (so the naga and
//! contract tests see it), legal on the device the policy describes (read from the kernel's
//! WGSL), honours the user's switches, and is the fastest known kernel where several fit. No
//! device: the choice is pure.

use std::collections::HashMap;

use bark_wgpu::gpu::{Kernel, KernelPolicy};
use bark_wgpu::ops::attention::{self, AttentionKernel, AttnOptions, AttnProblem};
use bark_wgpu::ops::layernorm::{self, LayerNormKernel};
use bark_wgpu::ops::matmul::{self, LinearKernel, LinearProblem, Variant, GEMV_MAX_M};
use naga::valid::Capabilities;

use crate::naga_shaders::{validates, without_subgroups};

/// What a kernel asks of the device, read from its prepared WGSL with naga.
#[derive(Clone, Copy)]
struct Needs {
    /// naga refuses the module without the subgroup capabilities.
    subgroups: bool,
    /// Its entry point's workgroup size, in threads.
    workgroup: u32,
}

/// [`Needs`] of each kernel asked about, validated once.
#[derive(Default)]
struct Device {
    seen: HashMap<Kernel, Needs>,
}

impl Device {
    fn needs(&mut self, k: &Kernel) -> Needs {
        if let Some(n) = self.seen.get(k) {
            return *n;
        }
        let src = k.wgsl().unwrap_or_else(|e| panic!("{k:?}: {e}"));
        let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{k:?}: {e}"));
        assert!(validates(&module, Capabilities::all()), "{k:?} is not valid WGSL with every capability");
        let entry = module.entry_points.iter().find(|e| e.name == k.entry).expect("the kernel's entry point");
        let subgroups = !validates(&module, without_subgroups());
        let n = Needs { subgroups, workgroup: entry.workgroup_size.iter().product() };
        self.seen.insert(k.clone(), n);
        n
    }

    /// Whether a device with `policy` may run `k`: subgroup operations only with subgroups; the
    /// CPU set's twins (`cpu/`, which shuffle from fixed lanes) only where their workgroup is one
    /// whole subgroup; and the rows attention's written-out blocks past 4 rows or 256 elements
    /// only there too, since elsewhere a compiler's time blows up on them (SwiftShader's took
    /// minutes, BENCHMARKS.md "Compile time on SwiftShader").
    fn legal(&mut self, k: &Kernel, policy: &KernelPolicy) -> bool {
        let needs = self.needs(k);
        let whole_subgroup = policy.subgroups_are(needs.workgroup);
        let fixed_lanes = k.shader.starts_with("cpu/") && needs.subgroups;
        let big_rows = k.shader == "cpu/attention_rows" && {
            let (rows, dim) = (constant(k, "RQ"), constant(k, "D"));
            rows > 4 || rows * dim > 256
        };
        (!needs.subgroups || policy.has_subgroups()) && (!(fixed_lanes || big_rows) || whole_subgroup)
    }
}

/// A `u32` specialisation constant of `k` ("8u").
fn constant(k: &Kernel, name: &str) -> u32 {
    let (_, value) = k.consts.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("{k:?} has no {name}"));
    value.trim_end_matches('u').parse().unwrap()
}

/// Every variant of a linear layer, fastest first where it fits, per kernel set. The CPU set's
/// order is measured on lavapipe (BENCHMARKS.md, "GEMM, GEMV and attention": the direct GEMM
/// beats the subgroup GEMV at M = 1 and 16, which beats the workgroup GEMV, and the tiled GEMM
/// by 10x or more in prefill). No GPU has measured the GPU set's yet: its order is the one the
/// kernels are written for (the GEMVs for decode rows, the tiled GEMM for the rest).
fn fastest_first(cpu_kernels: bool) -> [Variant; 4] {
    use Variant::*;
    if cpu_kernels {
        [GemmDirect, GemvSubgroup, Gemv, Gemm]
    } else {
        [GemvSubgroup, Gemv, Gemm, GemmDirect]
    }
}

fn linear_problems() -> Vec<LinearProblem> {
    let mut out = Vec::new();
    for m in 1..=40 {
        for k in [4, 6, 8, 12, 768] {
            for (w_f16, norm) in [(false, false), (true, false), (false, true), (true, true)] {
                out.push(LinearProblem { m, n: 64, k, w_f16, norm });
            }
        }
    }
    out
}

#[test]
fn every_linear_choice_is_enumerated_legal_and_the_fastest_that_fits() {
    let all = LinearKernel::all();
    let mut device = Device::default();
    for policy in KernelPolicy::every() {
        for p in linear_problems() {
            let c = matmul::choose(&p, Variant::Auto, &policy).unwrap();
            assert!(all.contains(&c.kernel), "{policy:?} {p:?}: {c:?} is not enumerated");
            assert!(device.legal(&c.kernel.kernel(), &policy), "{policy:?} {p:?}: {c:?} is not legal there");
            // The fastest variant the device may run at this size; a normed product of decode
            // rows keeps a GEMV where the user put norms inside the GEMVs (a dispatch fewer).
            let legal = |v: Variant, device: &mut Device| {
                matmul::choose(&p, v, &policy).is_ok_and(|c| device.legal(&c.kernel.kernel(), &policy))
            };
            let norm_rides = p.norm && policy.norm_in_gemv && p.m <= GEMV_MAX_M;
            let want =
                fastest_first(policy.cpu_kernels && !norm_rides).into_iter().find(|&v| legal(v, &mut device)).unwrap();
            assert_eq!(c.kernel.variant(), want, "{policy:?} {p:?}");
            // The norm rides in a GEMV exactly where the policy says; elsewhere a pass does it.
            let in_gemv = matches!(c.kernel, LinearKernel::Gemv { .. }) && policy.norm_in_gemv;
            assert_eq!(c.norm_pass, p.norm && !in_gemv, "{policy:?} {p:?}");
            // A direct GEMM shares its x loads wherever its twin is legal (fewer loads: faster).
            if let LinearKernel::GemmDirect { vec4: true, w_f16, rows, shared_x } = c.kernel {
                let twin = LinearKernel::GemmDirect { vec4: true, w_f16, rows, shared_x: true };
                assert_eq!(shared_x, device.legal(&twin.kernel(), &policy), "{policy:?} {p:?}");
            }
        }
    }
}

#[test]
fn a_linear_variant_the_device_lacks_is_an_error() {
    let none = KernelPolicy { cpu_kernels: false, norm_in_gemv: true, subgroups: None };
    let p = LinearProblem { m: 1, n: 8, k: 8, w_f16: false, norm: false };
    assert!(matmul::choose(&p, Variant::GemvSubgroup, &none).is_err());
    let tall = LinearProblem { m: GEMV_MAX_M + 1, ..p };
    assert!(matmul::choose(&tall, Variant::Gemv, &none).is_err());
}

#[test]
fn legality_is_read_from_the_kernels() {
    // The check above must be able to fail: these kernels are not legal on these devices.
    let mut device = Device::default();
    let policy = |subgroups| KernelPolicy { cpu_kernels: true, norm_in_gemv: false, subgroups };
    let subgroup_gemv = LinearKernel::Gemv { subgroup: true, vec4: true, w_f16: false, m_tile: 1, norm: false };
    assert!(!device.legal(&subgroup_gemv.kernel(), &policy(None)));
    assert!(device.legal(&subgroup_gemv.kernel(), &policy(Some((4, 64)))));
    let shared_x = LinearKernel::GemmDirect { vec4: true, w_f16: false, rows: 4, shared_x: true };
    for lanes in [None, Some((4, 4)), Some((4, 64)), Some((32, 32))] {
        assert!(!device.legal(&shared_x.kernel(), &policy(lanes)), "{lanes:?}");
    }
    assert!(device.legal(&shared_x.kernel(), &policy(Some((8, 8)))));
    let eight_rows =
        AttentionKernel::Rows { paged: true, head_dim: 64, kv_f16: false, rows_per_thread: 8, shared_loads: false };
    assert!(!device.legal(&eight_rows.kernel(), &policy(Some((4, 4)))));
    assert!(device.legal(&eight_rows.kernel(), &policy(Some((8, 8)))));
}

#[test]
fn every_attention_choice_is_enumerated_legal_and_shares_where_it_may() {
    let mut device = Device::default();
    for policy in KernelPolicy::every() {
        for head_dim in (4..=attention::MAX_HEAD_DIM).step_by(4) {
            let all = AttentionKernel::all(head_dim);
            // naga reads a few head dims' kernels (the rest only need enumerating).
            let read = [4, 32, 36, 64, 100, 128].contains(&head_dim);
            for (paged, kv_f16) in [(true, false), (true, true), (false, false)] {
                for (n_rows, decode, append) in [(1, true, paged), (4, true, false), (300, false, false)] {
                    for max_keys in [16, 64, 1024] {
                        let p = AttnProblem { paged, n_rows, n_heads: 12, head_dim, kv_f16, decode, append, max_keys };
                        let c = attention::choose("test", &p, AttnOptions::default(), &policy).unwrap();
                        for k in [Some(c.main), c.merge].into_iter().flatten() {
                            assert!(all.contains(&k), "{policy:?} {p:?}: {k:?} is not enumerated");
                            if read {
                                assert!(device.legal(&k.kernel(), &policy), "{policy:?} {p:?}: {k:?} is not legal");
                            }
                        }
                        // The CPU set is the rows kernel: no tiles or barriers.
                        let rows = matches!(c.main, AttentionKernel::Rows { .. });
                        assert_eq!(rows, policy.cpu_kernels, "{policy:?} {p:?}");
                        assert_eq!(c.merge.is_some(), c.split > 1, "{p:?}");
                        // Appended once: in the merge where there is one, else first.
                        let in_merge = matches!(c.merge, Some(AttentionKernel::Merge { append: Some(_), .. }));
                        assert_eq!(in_merge || c.append_first, append, "{policy:?} {p:?}");
                        assert!(!(in_merge && c.append_first), "{p:?}: appended twice");
                        // Several rows per thread share their loads wherever an enumerated twin is
                        // legal, at the most rows it may take (each load then serves more rows).
                        if let (AttentionKernel::Rows { rows_per_thread, shared_loads, .. }, true) = (c.main, read) {
                            let twin = all.iter().copied().find(|k| {
                                matches!(*k, AttentionKernel::Rows { paged: pg, kv_f16: f, shared_loads: true, .. }
                                    if pg == paged && f == kv_f16)
                            });
                            let twin_legal = twin.is_some_and(|t| device.legal(&t.kernel(), &policy));
                            if rows_per_thread > 1 && twin_legal {
                                assert_eq!(Some(c.main), twin, "{policy:?} {p:?}");
                            } else {
                                assert!(!shared_loads, "{policy:?} {p:?}");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn every_layer_norm_choice_is_enumerated_and_legal() {
    let all = LayerNormKernel::all();
    let mut device = Device::default();
    for policy in KernelPolicy::every() {
        for h in [1, 7, 33, 768, 1024, layernorm::MAX_COLS] {
            let k = layernorm::choose(h, &policy);
            assert!(all.contains(&k), "{policy:?} h={h}: {k:?}");
            assert!(device.legal(&k.kernel(), &policy), "{policy:?} h={h}: {k:?}");
            // The CPU set is the thread-per-row kernel (no barriers), GPUs the workgroup one.
            assert_eq!(k.kernel().shader.starts_with("cpu/"), policy.cpu_kernels, "{policy:?} h={h}");
        }
    }
}
