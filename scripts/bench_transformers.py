#!/usr/bin/env python3
"""The transformers peer of benches/pipeline.rs: the same configurations (benches/configs.json), random
weights, token budget, sampling and table, in transformers' BarkModel on CUDA.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers numpy
    /tmp/venv/bin/python scripts/bench_transformers.py --model small,large --batch 1,16
    /tmp/venv/bin/python scripts/bench_transformers.py --device cpu --model tiny --runs 1   # a smoke test

Per configuration x dtype (fp32, fp16: the whole model cast, codec included, as
`from_pretrained(dtype=torch.float16)` gives) x batch, after one warm-up run, the median of --runs runs
of each stage, timed with torch.cuda.synchronize() around it:
- semantic prefill: `model.semantic.generate(..., max_new_tokens=1)`; semantic: the same with the full
  budget; the decode rate is (tokens - batch) / (t_full - t_prefill), as in the Rust bench;
- coarse: `model.coarse_acoustics.generate` (includes the prefill of each 60-token window);
- fine: `model.fine_acoustics.generate`; codec: `model.codec_decode`;
- end-to-end: `model.generate` (its own timed run; the RTF divides it by the seconds of audio it made).
Sampling as the Rust bench: temperatures 0.7 / 0.7 / 0.5, min_eos_p off, a fixed seed before every run.
Random weights make the semantic EOS arbitrary: rates use the tokens actually produced, up to and
including each sequence's first EOS (a batch keeps stepping until its last sequence ends).
GPU memory: torch.cuda.memory_allocated() after loading (weights) / torch.cuda.max_memory_allocated()
over the runs (peak).

Attention: `--attn sdpa` (default) is used when BarkModel supports it; transformers 5.23's Bark has only
"eager" and "flash_attention_2", so it falls back to eager and says so in the header and the JSON.
"""

import argparse
import datetime
import json
import pathlib
import statistics
import subprocess
import sys
import time

import torch
import transformers
from transformers import BarkConfig, BarkModel, BarkProcessor, BertTokenizerFast, GenerationConfig
from transformers.models.bark.generation_configuration_bark import (
    BarkCoarseGenerationConfig,
    BarkFineGenerationConfig,
    BarkGenerationConfig,
    BarkSemanticGenerationConfig,
)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from roofline import ROOT, causal_step_bytes, fine_pass_flops, fine_passes, load_configs  # noqa: E402

# The same text and tokenizer as benches/pipeline.rs.
TEXT = ("Hello, my name is Suno. And, uh, and I like pizza. But I also have other interests such as "
        "playing tic tac toe.")
TOKENIZER = ROOT / "tests" / "fixtures" / "tiny" / "tokenizer.json"
SAMPLE_RATE = 24_000
SEMANTIC_EOS = 10_000
TEMPS = dict(semantic=0.7, coarse=0.7, fine=0.5)
HEADER = ("| model | dtype | batch | semantic tokens | prefill ms | semantic tok/s | semantic GB/s | coarse tokens "
          "| coarse tok/s | coarse GB/s | fine frames | fine frames/s | fine GFLOP/s | samples | codec samples/s "
          "| end-to-end s | RTF | GPU MB weights / all |")


def bark_config(spec, vocab):
    def sub(vin, vout):
        return dict(hidden_size=spec["hidden_size"], num_layers=spec["num_layers"], num_heads=spec["num_heads"],
                    block_size=vocab["block_size"], input_vocab_size=vin, output_vocab_size=vout, bias=False)

    fine = sub(vocab["fine"], vocab["fine"])
    fine.update(n_codes_total=vocab["n_codes_total"], n_codes_given=vocab["n_codes_given"])
    return BarkConfig(semantic_config=sub(vocab["semantic_input"], vocab["semantic_output"]),
                      coarse_acoustics_config=sub(vocab["coarse"], vocab["coarse"]),
                      fine_acoustics_config=fine, codec_config=dict(spec["codec"]))


def make_model(spec, vocab, dtype, device, attn, seed):
    """A random BarkModel; returns it and the attention implementation it got."""
    torch.manual_seed(seed)
    cfg = bark_config(spec, vocab)
    try:
        model = BarkModel._from_config(cfg, attn_implementation=attn)
        used = attn
    except (ValueError, KeyError) as e:
        print(f"note: attn_implementation={attn!r} refused ({str(e).splitlines()[0][:120]}); using 'eager'")
        torch.manual_seed(seed)
        model = BarkModel._from_config(cfg, attn_implementation="eager")
        used = "eager"
    # Bark's generation constants, as the published generation_config.json holds them (nested dicts,
    # which is how BarkModel.generate reads them).
    model.generation_config = GenerationConfig.from_dict(BarkGenerationConfig().to_dict())
    return model.to(device=device, dtype=dtype).eval(), used


def sub_configs(model):
    gc = model.generation_config
    return (BarkSemanticGenerationConfig(**gc.semantic_config),
            BarkCoarseGenerationConfig(**gc.coarse_acoustics_config),
            BarkFineGenerationConfig(**gc.fine_acoustics_config))


def semantic_lengths(semantic):
    """Tokens each sequence produced, up to and including its first EOS."""
    out = []
    for row in semantic.tolist():
        out.append(row.index(SEMANTIC_EOS) + 1 if SEMANTIC_EOS in row else len(row))
    return out


def run_stages(model, inputs, budget, seed, sync):
    """One run of every stage; returns times and counts (summed over the batch)."""
    sem_cfg, coarse_cfg, fine_cfg = sub_configs(model)
    batch = inputs["input_ids"].shape[0]

    def timed(f):
        sync()
        t = time.perf_counter()
        out = f()
        sync()
        return time.perf_counter() - t, out

    def semantic(n):
        return model.semantic.generate(inputs["input_ids"], semantic_generation_config=sem_cfg,
                                       attention_mask=inputs["attention_mask"], max_new_tokens=n, min_eos_p=None,
                                       do_sample=True, temperature=TEMPS["semantic"])

    r = {}
    torch.manual_seed(seed)
    r["prefill_s"], _ = timed(lambda: semantic(1))
    torch.manual_seed(seed)
    r["semantic_s"], sem = timed(lambda: semantic(budget))
    # coarse generate rewrites its input in place (EOS -> pad): give it a copy.
    r["coarse_s"], (coarse, coarse_lens) = timed(lambda: model.coarse_acoustics.generate(
        sem.clone(), semantic_generation_config=sem_cfg, coarse_generation_config=coarse_cfg, codebook_size=1024,
        return_output_lengths=True, do_sample=True, temperature=TEMPS["coarse"]))
    r["fine_s"], fine = timed(lambda: model.fine_acoustics.generate(
        coarse, semantic_generation_config=sem_cfg, coarse_generation_config=coarse_cfg,
        fine_generation_config=fine_cfg, codebook_size=1024, temperature=TEMPS["fine"]))
    frames = [int(n) // 2 for n in coarse_lens]
    lengths = torch.tensor(frames) if batch > 1 else None
    r["codec_s"], audio = timed(lambda: model.codec_decode(fine, lengths))
    torch.manual_seed(seed)
    r["e2e_s"], (whole, whole_lens) = timed(lambda: model.generate(
        **inputs, do_sample=True, semantic_max_new_tokens=budget, semantic_temperature=TEMPS["semantic"],
        coarse_temperature=TEMPS["coarse"], fine_temperature=TEMPS["fine"], return_output_lengths=True))
    r["semantic_tokens"] = sum(semantic_lengths(sem))
    r["coarse_tokens"] = int(sum(int(n) for n in coarse_lens))
    r["fine_frames"] = sum(frames)
    r["fine_frames_per_seq"] = frames
    r["samples"] = sum(a.shape[-1] for a in audio) if batch > 1 else audio.shape[-1]
    r["e2e_samples"] = int(sum(whole_lens))
    return r


def report(name, spec, vocab, dtype, batch, m, mem):
    w = 2 if dtype == "fp16" else 4
    sem_bytes = causal_step_bytes(spec, vocab["semantic_output"], w)
    coarse_bytes = causal_step_bytes(spec, vocab["coarse"], w)
    sem_rate = (m["semantic_tokens"] - batch) / max(m["semantic_s"] - m["prefill_s"], 1e-9)
    coarse_rate = m["coarse_tokens"] / m["coarse_s"]
    fine_flops = sum(fine_passes(f) for f in m["fine_frames_per_seq"]) * fine_pass_flops(spec, vocab["fine"])
    audio_s = m["e2e_samples"] / SAMPLE_RATE
    d = dict(model=name, hidden_size=spec["hidden_size"], num_layers=spec["num_layers"],
             num_heads=spec["num_heads"], dtype=dtype, batch=batch,
             semantic_tokens=m["semantic_tokens"], semantic_prefill_s=m["prefill_s"], semantic_s=m["semantic_s"],
             semantic_decode_tokens_per_s=sem_rate, semantic_weight_bytes_per_step=sem_bytes,
             semantic_weight_gb_per_s=sem_rate / batch * sem_bytes / 1e9,
             coarse_tokens=m["coarse_tokens"], coarse_s=m["coarse_s"], coarse_tokens_per_s=coarse_rate,
             coarse_weight_bytes_per_step=coarse_bytes, coarse_weight_gb_per_s=coarse_rate / batch * coarse_bytes / 1e9,
             fine_frames=m["fine_frames"], fine_s=m["fine_s"], fine_frames_per_s=m["fine_frames"] / m["fine_s"],
             fine_flops=fine_flops, codec_samples=m["samples"], codec_s=m["codec_s"],
             codec_samples_per_s=m["samples"] / m["codec_s"], end_to_end_s=m["e2e_s"], audio_s=audio_s,
             rtf=m["e2e_s"] / audio_s if audio_s else float("nan"),
             gpu_weight_bytes=mem[0], gpu_peak_bytes=mem[1])
    mb = (lambda b: f"{b / 1e6:.0f}") if mem[0] is not None else (lambda b: "n/a")
    row = (f"| {name} | {dtype} | {batch} | {d['semantic_tokens']} | {m['prefill_s'] * 1e3:.1f} | {sem_rate:.1f} | "
           f"{d['semantic_weight_gb_per_s']:.2f} | {d['coarse_tokens']} | {coarse_rate:.1f} | "
           f"{d['coarse_weight_gb_per_s']:.2f} | {d['fine_frames']} | {d['fine_frames_per_s']:.1f} | "
           f"{fine_flops / m['fine_s'] / 1e9:.1f} | {d['codec_samples']} | {d['codec_samples_per_s']:.0f} | "
           f"{m['e2e_s']:.2f} | {d['rtf']:.3f} | {mb(mem[0])} / {mb(mem[1])} |")
    return row, d


def median_run(runs):
    out = dict(runs[0])
    for k in ["prefill_s", "semantic_s", "coarse_s", "fine_s", "codec_s", "e2e_s"]:
        out[k] = statistics.median(r[k] for r in runs)
    return out


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="tiny,small,large (default: small,large on CUDA, tiny on CPU)")
    ap.add_argument("--dtype", default="fp32,fp16")
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--semantic-tokens", type=int, default=None, help="default: the model's in configs.json")
    ap.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", default=str(ROOT / "target" / "bench-transformers.json"))
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA is not available (use --device cpu for a smoke test)")
    cuda = a.device == "cuda"
    # transformers warns on every sub-generate call (generation_config plus kwargs, no pad token in a
    # batch: both as BarkModel.generate itself calls them); keep the table readable.
    transformers.logging.set_verbosity_error()
    device = torch.device(a.device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    configs = load_configs()
    vocab = configs["vocab"]
    models = (a.model or ("small,large" if cuda else "tiny")).split(",")
    dtypes = a.dtype.split(",")
    batches = [int(b) for b in a.batch.split(",")]

    name = torch.cuda.get_device_name(0) if cuda else "CPU"
    driver = f"CUDA {torch.version.cuda}" if cuda else "none"
    date = datetime.date.today().isoformat()
    tok = BertTokenizerFast(tokenizer_file=str(TOKENIZER), do_lower_case=False)
    processor = BarkProcessor(tokenizer=tok)
    print(f"adapter: {name} (torch {torch.__version__}, {a.device}), driver: {driver}")
    print(f"transformers {transformers.__version__}; {date}, commit {git_commit()}")
    print(f"median of {a.runs} runs after a warm-up; sampled (0.7/0.7/0.5), min_eos_p off, seed {a.seed}")
    print("GPU MB: torch.cuda.memory_allocated after loading / max_memory_allocated over the runs\n")

    results, attn_used = [], None
    for mname in models:
        spec = configs["models"][mname]
        budget = a.semantic_tokens or spec["semantic_tokens"]
        print(f"{mname}: semantic budget {budget}\n\n{HEADER}\n" + "| --- " * (HEADER.count(" | ") + 1) + "|")
        for dtype in dtypes:
            tdtype = {"fp32": torch.float32, "fp16": torch.float16}[dtype]
            model, attn_used = make_model(spec, vocab, tdtype, device, a.attn, a.seed)
            if cuda:
                torch.cuda.synchronize()
                weights = torch.cuda.memory_allocated()
            for batch in batches:
                inputs = processor([TEXT] * batch)
                inputs = {k: inputs[k].to(device) for k in ["input_ids", "attention_mask"]}
                with torch.inference_mode():
                    run_stages(model, inputs, budget, a.seed, sync)  # warm-up
                    if cuda:
                        torch.cuda.reset_peak_memory_stats()
                    runs = [run_stages(model, inputs, budget, a.seed, sync) for _ in range(max(a.runs, 1))]
                mem = (weights, torch.cuda.max_memory_allocated()) if cuda else (None, None)
                row, d = report(mname, spec, vocab, dtype, batch, median_run(runs), mem)
                print(row, flush=True)
                results.append(d)
            del model
            if cuda:
                torch.cuda.empty_cache()
        print()
    doc = dict(adapter=dict(name=name, backend=f"torch {torch.__version__} {a.device}", driver=driver),
               transformers=transformers.__version__, attn_implementation=attn_used, date=date, commit=git_commit(),
               runs=a.runs, text=TEXT, results=results)
    path = pathlib.Path(a.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"attention: {attn_used}; wrote {path}")


if __name__ == "__main__":
    main()
