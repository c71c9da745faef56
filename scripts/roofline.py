#!/usr/bin/env python3
"""Memory-bandwidth roofline of Bark's decode steps, from the sizes in benches/configs.json.

    python3 scripts/roofline.py            # prints the tables of BENCHMARKS.md's roofline section

The formulas (the same ones benches/pipeline.rs prints its GB/s columns with; scripts/bench_transformers.py
imports them from here):
- weight bytes of one causal (semantic or coarse) decode step, batch 1:
      L * (12 h^2 * w + 2 h * 4) + h * 4 + V_out * h * w
  the four matrices of every layer (att_proj 3h x h, out_proj h x h, mlp in 4h x h, mlp out h x 4h),
  the f32 layer-norm weights (Bark has no biases) and the LM head; w = 4 (f32) or 2 (f16) bytes. The
  token and position embedding rows (2 h w bytes) are left out. A batch of B sequences reads the same
  bytes once per step, so its ceiling is B times higher until it becomes compute-bound.
- KV-cache bytes a step also reads at context T: 2 * L * T * h * w (the cache stores the weights' dtype).
- GPU memory of a batch of B at the coarse stage (the largest cache: full-context sequences; the
  semantic one holds 256 + budget positions): all weights (every GPT's embeddings, blocks and heads,
  plus EnCodec's ~43 MB of f32) and the cache, 2 * L * 1024 * h * w * B. benches/memory.rs counts the
  real buffers (cache, plans) and agrees within its plans' few tens of MB.
- FLOPs of one fine pass over a 1024-frame window: L * (2 T 12 h^2 + 4 T^2 h) + 2 T h * 1056, T = 1024
  (linears, full non-causal attention QK^T and PV, one codebook head); a window takes 6 passes
  (codebooks 2..7), windows advance by 512 frames.
"""

import json
import math
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "benches" / "configs.json"

# Peak memory bandwidth of the two H100 variants (NVIDIA's data sheet), bytes/s.
H100_SXM = 3.35e12
H100_PCIE = 2.0e12
# Dense peak arithmetic of an H100 SXM (data sheet): f16 tensor cores, and plain f32 / f16 FMA.
H100_SXM_F16_TENSOR = 989e12
H100_SXM_F32 = 67e12
H100_SXM_F16 = 134e12


def load_configs():
    with open(CONFIGS, encoding="utf-8") as f:
        return json.load(f)


def causal_step_bytes(m, vocab_out, w):
    h, layers = m["hidden_size"], m["num_layers"]
    return layers * (12 * h * h * w + 2 * h * 4) + h * 4 + vocab_out * h * w


def kv_step_bytes(m, context, w):
    return 2 * m["num_layers"] * context * m["hidden_size"] * w


# EnCodec 24 kHz decoder and quantizer codebooks, f32: the load bench measured 833 MB (f16) and
# 1,623 MB (f32) of GPU buffers for bark-small, 43 MB above weight_bytes' GPTs in both.
CODEC_BYTES = 43e6


def weight_bytes(m, v, w):
    """Every GPT's matrices in dtype w (token and position embeddings, blocks, heads; f32 norms) and
    the codec."""
    h, layers, t = m["hidden_size"], m["num_layers"], v["block_size"]
    trunk = layers * (12 * h * h * w + 4 * h * 4) + 2 * h * 4 + t * h * w
    semantic = trunk + (v["semantic_input"] + v["semantic_output"]) * h * w
    coarse = trunk + 2 * v["coarse"] * h * w
    fine = trunk + (v["n_codes_total"] * v["fine"] + (v["n_codes_total"] - v["n_codes_given"]) * 1024) * h * w
    return semantic + coarse + fine + CODEC_BYTES


def fine_pass_flops(m, vocab_fine):
    t, h, layers = 1024, m["hidden_size"], m["num_layers"]
    return layers * (2 * t * 12 * h * h + 4 * t * t * h) + 2 * t * h * vocab_fine


def fine_passes(frames, n_codes_total=8):
    loops = math.ceil(max(frames - 1024, 0) / 512) + 1
    return loops * (n_codes_total - 2)


def coarse_prefill_flops(m, vocab_out, coarse_tokens):
    """Prompts of the 60-token coarse windows: 256 semantic + 1 + up to 630 coarse history tokens;
    linears and head 2 n (12 h^2 L + V h), causal attention ~2 n^2 h L."""
    h, layers = m["hidden_size"], m["num_layers"]
    total = 0
    for i in range(math.ceil(coarse_tokens / 60)):
        n = 256 + 1 + min(630, 60 * i)
        total += 2 * n * (12 * h * h * layers + vocab_out * h) + 2 * n * n * h * layers
    return total


def floor_10s(m, v, w, bandwidth, flops):
    """Seconds of the bandwidth / compute floor of 10 s of audio at batch 1: 499 semantic and 1500
    coarse decode steps (weights + KV at the mean context), the coarse window prefills and one fine
    window (6 passes) at `flops`; the semantic prefill and the codec are left out (small)."""
    sem = 499 * (causal_step_bytes(m, v["semantic_output"], w) + kv_step_bytes(m, 513 + 250, w)) / bandwidth
    coarse = 1500 * (causal_step_bytes(m, v["coarse"], w) + kv_step_bytes(m, 600, w)) / bandwidth
    prefill = coarse_prefill_flops(m, v["coarse"], 1500) / flops
    fine = 6 * fine_pass_flops(m, v["fine"]) / flops
    return sem, coarse, prefill, fine


def main():
    c = load_configs()
    v = c["vocab"]
    print("| model | dtype | stage | weight MB / step | KV MB / step at T=1024 | tokens/s ceiling H100 SXM | H100 PCIe |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name in ["small", "large"]:
        m = c["models"][name]
        for dtype, w in [("f32", 4), ("f16", 2)]:
            for stage, vocab in [("semantic", v["semantic_output"]), ("coarse", v["coarse"])]:
                b = causal_step_bytes(m, vocab, w)
                kv = kv_step_bytes(m, 1024, w)
                print(f"| {name} | {dtype} | {stage} | {b / 1e6:.1f} | {kv / 1e6:.1f} | "
                      f"{H100_SXM / b:,.0f} ({H100_SXM / (b + kv):,.0f} with KV) | "
                      f"{H100_PCIE / b:,.0f} ({H100_PCIE / (b + kv):,.0f} with KV) |")
    print()
    print("| model | fine GFLOP / pass | GFLOP / window (6 passes) | ms / window at 989 TFLOP/s (f16 tensor) | at 134 TFLOP/s (f16 FMA) | at 67 TFLOP/s (f32) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in ["small", "large"]:
        m = c["models"][name]
        f = fine_pass_flops(m, v["fine"])
        win = 6 * f
        print(f"| {name} | {f / 1e9:.1f} | {win / 1e9:.0f} | {win / H100_SXM_F16_TENSOR * 1e3:.2f} | "
              f"{win / H100_SXM_F16 * 1e3:.1f} | {win / H100_SXM_F32 * 1e3:.1f} |")
    print()
    print("Floor of 10 s of audio, batch 1, H100 SXM (3.35 TB/s; arithmetic at 67 TFLOP/s, f32 FMA, as WGSL "
          "without tensor cores):")
    print("| model | dtype | semantic decode ms | coarse decode ms | coarse prefills ms | fine ms | sum ms | RTF floor |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in ["small", "large"]:
        m = c["models"][name]
        for dtype, w in [("f32", 4), ("f16", 2)]:
            parts = floor_10s(m, v, w, H100_SXM, H100_SXM_F32)
            cells = " | ".join(f"{p * 1e3:.0f}" for p in parts)
            print(f"| {name} | {dtype} | {cells} | {sum(parts) * 1e3:.0f} | {sum(parts) / 10:.3f} |")
    print()
    print("GPU memory at the coarse stage (weights + a full-context KV cache per sequence), GB:")
    print("| model | dtype | weights | KV per sequence | batch 1 | batch 16 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name in ["small", "large"]:
        m = c["models"][name]
        for dtype, w in [("f32", 4), ("f16", 2)]:
            wb, kv = weight_bytes(m, v, w), kv_step_bytes(m, v["block_size"], w)
            print(f"| {name} | {dtype} | {wb / 1e9:.3f} | {kv / 1e9:.3f} | {(wb + kv) / 1e9:.2f} | {(wb + 16 * kv) / 1e9:.2f} |")


if __name__ == "__main__":
    main()
