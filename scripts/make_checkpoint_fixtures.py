#!/usr/bin/env python3
"""Writes tests/fixtures/checkpoints/: the tiny fixture model saved the ways other tools save Bark,
and transformers' greedy tokens for each, as `from_pretrained` of that very directory gives them.

Regenerate (from the repository root, after scripts/make_fixtures.py; the virtualenv lives OUTSIDE
the repository):

    /tmp/venv/bin/pip install torch transformers safetensors numpy tokenizers huggingface_hub
    /tmp/venv/bin/python scripts/make_checkpoint_fixtures.py

Made with torch 2.15, transformers 5.25, safetensors 0.8 and huggingface_hub 2.5 (CPU).

Variants (each from tests/fixtures/tiny, float32, hidden 16: the smallest fixture that can run a
whole generation; tiny-bias's block_size 256 is shorter than Bark's windows):
  sharded-safetensors  save_pretrained(max_shard_size="4MB"): model-0000k-of-0000n.safetensors and
                       model.safetensors.index.json.
  sharded-bin          what transformers 4.x save_pretrained(safe_serialization=False,
                       max_shard_size="4MB") wrote (transformers 5 writes safetensors only): the state
                       dict split by huggingface_hub.split_torch_state_dict_into_shards, each shard
                       torch.save'd, and pytorch_model.bin.index.json.
  f16, bf16            model.to(dtype).save_pretrained() (model.safetensors) and torch.save of the
                       same state dict (pytorch_model.bin); the reference runs in float32
                       (from_pretrained(dtype=torch.float32) upcasts exactly).
  tied-heads           the fine model's heads stored under `lm_heads.{j}` and the tied embeddings
                       `input_embeds_layers.{j+1}` left out, as a converter that keeps the head's
                       name writes it (safetensors.torch.save_file).

Committed bytes are kept small: a weight file is stored as a recipe (recipe.json) of segments, each
either literal bytes (headers, pickles, zip records, small tensors: in literals.zlib, zlib-compressed)
or the raw bytes of a tensor of tests/fixtures/tiny/model.safetensors rounded to f32/f16/bf16 as torch
rounds (to nearest even). The test rebuilds each file and checks its length and checksum (recorded
here from the file the tool wrote, and checked here against the rebuilt bytes) before loading it.
config.json and the index files are committed as written.

configs/: config.json texts of the tiny model's sizes as other transformers versions write them:
  transformers-4.31.json  BarkConfig.from_sub_model_configs(...).to_json_string() by transformers
      4.31.0 (`torch_dtype`, every PretrainedConfig key of that version in each sub-config). Made when
      TRANSFORMERS_431 names a directory holding the unpacked 4.31.0 wheel (pip download
      transformers==4.31.0 --no-deps; unzip), run in a subprocess with that directory first on the
      path; its dependency_versions_check.py must be emptied to import beside newer tokenizers, and
      `requests` be importable. 4.31's BarkConfig() without a codec_config raises a TypeError, so
      every file of that version has one.
  minimal.json  only the keys whose values differ from transformers' defaults (what a hand-written
      or converter-written file may hold), checked to load in transformers to the same sizes. reference.json: the text, the semantic
token cap and transformers' greedy semantic, coarse and fine tokens (BarkModel's stages, checked equal
to BarkModel.generate's audio), for every weight file of the variant.
"""

import json
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import BarkModel, BarkProcessor, BertTokenizerFast
from transformers.models.bark.generation_configuration_bark import (
    BarkCoarseGenerationConfig,
    BarkFineGenerationConfig,
    BarkSemanticGenerationConfig,
)

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
TINY = ROOT / "tiny"
OUT = ROOT / "checkpoints"
TEXT = "Hello, my name is Suno. [laughs] Bonjour Élodie!"
SEMANTIC_MAX_NEW_TOKENS = 6
SHARD = "4MB"
# Tensors smaller than this stay literal (not worth a reference).
MIN_REF = 256
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def checksum(data: bytes) -> int:
    """sum((byte + 1) * (offset + 1)) mod 2^64: the test computes the same."""
    b = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
    return int(np.sum((b + np.uint64(1)) * np.arange(1, len(b) + 1, dtype=np.uint64), dtype=np.uint64))


def tensor_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""


def base_candidates():
    """Byte strings of every tiny tensor in each dtype -> (name, dtype), largest first."""
    cands = {}
    with safe_open(str(TINY / "model.safetensors"), "pt") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            kinds = DTYPES.items() if t.dtype == torch.float32 else [("raw", None)]
            for kind, dtype in kinds:
                b = tensor_bytes(t if dtype is None else t.to(dtype))
                if len(b) >= MIN_REF:
                    cands.setdefault(b, (name, kind))
    return sorted(cands.items(), key=lambda kv: -len(kv[0]))


def make_recipe(data: bytes, cands, literals: bytearray):
    """Covers `data` with tensor references where its bytes equal a candidate's, literals elsewhere."""
    claimed = []  # (start, end, name, kind)
    taken = np.zeros(len(data), dtype=bool)
    for b, (name, kind) in cands:
        start = 0
        while (i := data.find(b, start)) >= 0:
            if not taken[i:i + len(b)].any():
                taken[i:i + len(b)] = True
                claimed.append((i, i + len(b), name, kind))
                start = i + len(b)
            else:
                start = i + 1
    claimed.sort()
    segments, pos = [], 0
    for s, e, name, kind in claimed + [(len(data), len(data), None, None)]:
        if s > pos:
            segments.append(["lit", len(literals), s - pos])
            literals.extend(data[pos:s])
        if name is not None:
            segments.append(["tensor", name, kind])
        pos = e
    return segments


def rebuild(segments, literals: bytes, tensors) -> bytes:
    out = bytearray()
    for seg in segments:
        if seg[0] == "lit":
            out.extend(literals[seg[1]:seg[1] + seg[2]])
        else:
            t = tensors[seg[1]]
            out.extend(tensor_bytes(t if seg[2] == "raw" else t.to(DTYPES[seg[2]])))
    return bytes(out)


def tokens(model_dir: Path, use_safetensors: bool):
    model = BarkModel.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=use_safetensors).eval()
    tok = BertTokenizerFast(tokenizer_file=str(ROOT / "tokenizer" / "tokenizer.json"), do_lower_case=False)
    inputs = BarkProcessor(tokenizer=tok)(TEXT)
    gc = model.generation_config
    sem_cfg = BarkSemanticGenerationConfig(**gc.semantic_config)
    coarse_cfg = BarkCoarseGenerationConfig(**gc.coarse_acoustics_config)
    fine_cfg = BarkFineGenerationConfig(**gc.fine_acoustics_config)
    with torch.no_grad():
        semantic = model.semantic.generate(inputs["input_ids"], semantic_generation_config=sem_cfg,
                                           attention_mask=inputs["attention_mask"],
                                           max_new_tokens=SEMANTIC_MAX_NEW_TOKENS, do_sample=False)
        coarse = model.coarse_acoustics.generate(semantic, semantic_generation_config=sem_cfg,
                                                 coarse_generation_config=coarse_cfg,
                                                 codebook_size=gc.codebook_size, do_sample=False)
        fine = model.fine_acoustics.generate(coarse, semantic_generation_config=sem_cfg,
                                             coarse_generation_config=coarse_cfg, fine_generation_config=fine_cfg,
                                             codebook_size=gc.codebook_size, do_sample=False)
        whole = model.generate(**inputs, do_sample=False, semantic_max_new_tokens=SEMANTIC_MAX_NEW_TOKENS)
        assert torch.equal(whole, model.codec_decode(fine)), "the stages differ from BarkModel.generate"
    return dict(semantic=semantic[0].tolist(), coarse=coarse[0].tolist(), fine=fine[0].tolist())


def base_model():
    return BarkModel.from_pretrained(TINY, dtype=torch.float32).eval()


def write_variants(tmp: Path):
    """Each variant's directory as the tool writes it, and which weight files it has."""
    variants = {}
    d = tmp / "sharded-safetensors"
    base_model().save_pretrained(d, max_shard_size=SHARD)
    assert (d / "model.safetensors.index.json").is_file() and not (d / "model.safetensors").exists()
    variants[d.name] = [None]

    d = tmp / "sharded-bin"
    d.mkdir()
    shutil.copy(TINY / "config.json", d / "config.json")
    state = base_model().state_dict()
    split = split_torch_state_dict_into_shards(state, filename_pattern="pytorch_model{suffix}.bin",
                                               max_shard_size=SHARD)
    assert split.is_sharded and len(split.filename_to_tensors) > 1
    for file, names in split.filename_to_tensors.items():
        torch.save({n: state[n].contiguous() for n in names}, d / file)
    index = dict(metadata=split.metadata, weight_map=split.tensor_to_filename)
    (d / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    variants[d.name] = [None]

    for name, dtype in [("f16", torch.float16), ("bf16", torch.bfloat16)]:
        d = tmp / name
        model = base_model().to(dtype)
        model.save_pretrained(d)
        torch.save(model.state_dict(), d / "pytorch_model.bin")
        variants[d.name] = ["model.safetensors", "pytorch_model.bin"]

    d = tmp / "tied-heads"
    d.mkdir()
    shutil.copy(TINY / "config.json", d / "config.json")
    state = {}
    with safe_open(str(TINY / "model.safetensors"), "pt") as f:
        for n in f.keys():
            state[n] = f.get_tensor(n)
    for j in range(7):
        state[f"fine_acoustics.lm_heads.{j}.weight"] = state.pop(f"fine_acoustics.input_embeds_layers.{j + 1}.weight")
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    variants[d.name] = [None]
    return variants


def check_tie_rule(tmp: Path):
    """With both names stored and different, transformers 5 keeps each as stored (it warns and does
    not tie them); with only the head stored, the embedding takes the head's values. The loader
    does the same; checked here so the rule is transformers', not ours."""
    d = tmp / "both"
    d.mkdir()
    shutil.copy(TINY / "config.json", d / "config.json")
    with safe_open(str(TINY / "model.safetensors"), "pt") as f:
        state = {n: f.get_tensor(n) for n in f.keys()}
    state["fine_acoustics.lm_heads.0.weight"] = torch.full_like(state["fine_acoustics.input_embeds_layers.1.weight"], 7.0)
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    m = BarkModel.from_pretrained(d, dtype=torch.float32)
    assert torch.equal(m.fine_acoustics.lm_heads[0].weight, state["fine_acoustics.lm_heads.0.weight"])
    assert torch.equal(m.fine_acoustics.input_embeds_layers[1].weight, state["fine_acoustics.input_embeds_layers.1.weight"])
    m = BarkModel.from_pretrained(tmp / "tied-heads", dtype=torch.float32)
    with safe_open(str(TINY / "model.safetensors"), "pt") as f:
        want = f.get_tensor("fine_acoustics.input_embeds_layers.1.weight")
    assert torch.equal(m.fine_acoustics.input_embeds_layers[1].weight, want), "the head did not fill the embedding"


def config_431_text():
    """Runs in a subprocess under transformers 4.31.0 (see the module docstring)."""
    import transformers
    from transformers import EncodecConfig
    from transformers.models.bark.configuration_bark import (BarkCoarseConfig, BarkConfig, BarkFineConfig,
                                                             BarkSemanticConfig)
    assert transformers.__version__ == "4.31.0", transformers.__version__
    tiny = json.loads((TINY / "config.json").read_text())
    sub = {k: {f: v for f, v in tiny[k].items() if f != "model_type"} for k in tiny if k.endswith("_config")}
    cfg = BarkConfig.from_sub_model_configs(BarkSemanticConfig(**sub["semantic_config"]),
                                            BarkCoarseConfig(**sub["coarse_acoustics_config"]),
                                            BarkFineConfig(**sub["fine_acoustics_config"]),
                                            EncodecConfig(**sub["codec_config"]))
    cfg.torch_dtype = "float32"
    return cfg.to_json_string()


def write_configs():
    import os
    import subprocess
    dst = OUT / "configs"
    dst.mkdir(parents=True)
    tiny = json.loads((TINY / "config.json").read_text())
    if os.environ.get("TRANSFORMERS_431"):
        env = dict(os.environ, PYTHONPATH=os.environ["TRANSFORMERS_431"])
        text = subprocess.run([sys.executable, __file__, "--config-431"], env=env, check=True, capture_output=True,
                              text=True).stdout
        (dst / "transformers-4.31.json").write_text(text)
    from transformers import BarkConfig, EncodecConfig
    from transformers.models.bark.configuration_bark import BarkSubModelConfig, BarkFineConfig
    defaults = dict(semantic_config=BarkSubModelConfig().to_dict(), coarse_acoustics_config=BarkSubModelConfig().to_dict(),
                    fine_acoustics_config=BarkFineConfig().to_dict(), codec_config=EncodecConfig().to_dict())
    minimal = {k: {f: v for f, v in tiny[k].items() if defaults[k].get(f, object()) != v and f != "model_type"}
               for k in defaults}
    (dst / "minimal.json").write_text(json.dumps(minimal, indent=2, sort_keys=True) + "\n")
    with tempfile.TemporaryDirectory() as t:
        (Path(t) / "config.json").write_text(json.dumps(minimal))
        got, want = BarkConfig.from_pretrained(t).to_dict(), BarkConfig.from_pretrained(TINY).to_dict()
        for k in defaults:
            for f in tiny[k]:
                assert got[k][f] == want[k][f], (k, f)


def main():
    if sys.argv[1:] == ["--config-431"]:
        print(config_431_text())
        return 0
    cands = base_candidates()
    with safe_open(str(TINY / "model.safetensors"), "pt") as f:
        tensors = {n: f.get_tensor(n) for n in f.keys()}
    if OUT.exists():
        shutil.rmtree(OUT)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        variants = write_variants(tmp)
        check_tie_rule(tmp)
        write_configs()
        for name, weight_files in variants.items():
            src, dst = tmp / name, OUT / name
            dst.mkdir(parents=True)
            kinds = {"f16": "f16", "bf16": "bf16"}.get(name, "f32")
            mine = [c for c in cands if c[1][1] in (kinds, "raw")]
            literals, recipe = bytearray(), {}
            for p in sorted(src.iterdir()):
                if p.suffix == ".json":
                    shutil.copy(p, dst / p.name)
                    continue
                data = p.read_bytes()
                segments = make_recipe(data, mine, literals)
                assert rebuild(segments, bytes(literals), tensors) == data, p
                recipe[p.name] = dict(len=len(data), checksum=str(checksum(data)), segments=segments)
            (dst / "literals.zlib").write_bytes(zlib.compress(bytes(literals), 9))
            (dst / "recipe.json").write_text(json.dumps(dict(base="tiny/model.safetensors", files=recipe)) + "\n")
            # Bark's generation constants (from_pretrained reads them; our loader has them built in).
            shutil.copy(TINY / "generation_config.json", src / "generation_config.json")
            refs = {}
            for wf in weight_files:
                key = wf or "dir"
                refs[key] = tokens(src, use_safetensors=(wf != "pytorch_model.bin") if wf else None)
            if len(weight_files) == 2:
                assert refs["model.safetensors"] == refs["pytorch_model.bin"], name
            ref = dict(text=TEXT, semantic_max_new_tokens=SEMANTIC_MAX_NEW_TOKENS, do_sample=False, tokens=refs)
            (dst / "reference.json").write_text(json.dumps(ref) + "\n")
            size = sum(f.stat().st_size for f in dst.iterdir())
            print(f"{name}: {len(recipe)} weight files, {len(literals)} literal bytes, {size} bytes committed")


if __name__ == "__main__":
    sys.exit(main())
