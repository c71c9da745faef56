//! Each op family's `choose` against its enumeration, under every policy: whatever kernel a
//! problem gets is one `kernels()` lists (so the naga and contract tests see it), and the
//! choices follow the policy as documented. No device: the choice is pure.

use bark_wgpu::gpu::KernelPolicy;
use bark_wgpu::ops::attention::{self, AttentionKernel, AttnOptions, AttnProblem};
use bark_wgpu::ops::layernorm::{self, LayerNormKernel};
use bark_wgpu::ops::matmul::{self, LinearKernel, LinearProblem, Variant, GEMV_MAX_M};

#[test]
fn every_linear_choice_is_enumerated_and_follows_the_policy() {
    let all = LinearKernel::all();
    for policy in KernelPolicy::every() {
        for m in 1..=40 {
            for k in [4, 6, 8, 12, 768] {
                for (w_f16, norm) in [(false, false), (true, false), (false, true), (true, true)] {
                    let p = LinearProblem { m, n: 64, k, w_f16, norm };
                    let c = matmul::choose(&p, Variant::Auto, &policy).unwrap();
                    assert!(all.contains(&c.kernel), "{policy:?} {p:?}: {c:?} is not enumerated");
                    let gemv = m <= GEMV_MAX_M;
                    let want = match () {
                        _ if policy.cpu_kernels && !(gemv && norm && policy.norm_in_gemv) => Variant::GemmDirect,
                        _ if !gemv => Variant::Gemm,
                        _ if policy.has_subgroups() => Variant::GemvSubgroup,
                        _ => Variant::Gemv,
                    };
                    assert_eq!(c.kernel.variant(), want, "{policy:?} {p:?}");
                    // A norm rides in the GEMV exactly where the policy puts it there.
                    assert_eq!(c.norm_pass, norm && !(gemv && policy.norm_in_gemv), "{policy:?} {p:?}");
                }
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
fn every_attention_choice_is_enumerated_and_follows_the_policy() {
    for policy in KernelPolicy::every() {
        for head_dim in (4..=attention::MAX_HEAD_DIM).step_by(4) {
            let all = AttentionKernel::all(head_dim);
            for (paged, kv_f16) in [(true, false), (true, true), (false, false)] {
                for (n_rows, decode, append) in [(1, true, paged), (4, true, false), (300, false, false)] {
                    for max_keys in [16, 64, 1024] {
                        let p = AttnProblem { paged, n_rows, n_heads: 12, head_dim, kv_f16, decode, append, max_keys };
                        let c = attention::choose("test", &p, AttnOptions::default(), &policy).unwrap();
                        for k in [Some(c.main), c.merge].into_iter().flatten() {
                            assert!(all.contains(&k), "{policy:?} {p:?}: {k:?} is not enumerated");
                        }
                        let rows = matches!(c.main, AttentionKernel::Rows { .. });
                        assert_eq!(rows, policy.cpu_kernels, "{policy:?} {p:?}: the CPU set runs the rows kernel");
                        assert_eq!(c.merge.is_some(), c.split > 1, "{p:?}");
                        // Appending in the merge where there is one, else first.
                        let in_merge = matches!(c.merge, Some(AttentionKernel::Merge { append: Some(_), .. }));
                        assert_eq!(in_merge || c.append_first, append, "{policy:?} {p:?}");
                        assert!(!(in_merge && c.append_first), "{p:?}: appended twice");
                    }
                }
            }
        }
    }
}

#[test]
fn every_layer_norm_choice_is_enumerated() {
    let all = LayerNormKernel::all();
    for policy in KernelPolicy::every() {
        for h in [1, 7, 33, 768, 1024, layernorm::MAX_COLS] {
            let k = layernorm::choose(h, &policy);
            assert!(all.contains(&k), "{policy:?} h={h}: {k:?}");
            assert_eq!(k == LayerNormKernel::Rows, policy.cpu_kernels);
        }
    }
}
