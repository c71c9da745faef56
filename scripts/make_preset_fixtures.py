#!/usr/bin/env python3
"""Suno's real voice presets as fixtures, and checks that Suno's and transformers' loaders read ours.

The presets are those of Suno's `bark` package, version 0.1.5 on PyPI (MIT licensed,
`bark/assets/prompts/`, 271 .npz files). Regenerate (from the repository root; the virtualenv lives
OUTSIDE the repository):

    /tmp/venv/bin/pip install numpy torch transformers safetensors funcy
    /tmp/venv/bin/python scripts/make_preset_fixtures.py [--prompts DIR]

DIR defaults to a temporary copy fetched with `pip download bark==0.1.5 --no-deps`. Made with
NumPy 2.4, torch 2.15, transformers 5.25 (CPU, float32).

What it writes, under tests/fixtures/voices/suno/:
  README.md, LICENSE   where the presets come from, and bark's MIT license (from the wheel).
  en_speaker_6.npz, announcer.npz, de_speaker_7.npz   copied unchanged from bark 0.1.5: the first
      as 270 of the 271 are (int64 semantic, int64 coarse in FORTRAN order, int32 fine), announcer
      all uint16 in C order, de_speaker_7 the longest (731 semantic tokens, 1098 frames: longer than
      every window Bark reads, so the history is cut).
  presets.json   for every one of the 271 presets (path relative to prompts/): the shapes of
      semantic_prompt, coarse_prompt, fine_prompt and, per array, sum over the C-order flat index i
      of (i + 1) * value, as NumPy reads it (a reader that gets the order wrong gets another sum).
  parity.safetensors + parity.json   transformers' greedy BarkModel.generate on tests/fixtures/tiny
      (made by scripts/make_fixtures.py; Bark's real vocabulary sizes, so real codes fit) with
      history_prompt = de_speaker_7.npz as BarkProcessor(voice_preset=<path>) loads it:
      semantic (1,S) coarse (1,C) fine (1,8,F) audio (1,A), ids as int64, audio float32.

Check that a prompt bark-wgpu wrote (`bark-wgpu say ... --save-prompt FILE`) loads as Suno's bark
and transformers load voices; writes nothing:

    /tmp/venv/bin/python scripts/make_preset_fixtures.py --check-saved FILE [FILE ...]

It runs Suno's own code (bark 0.1.5's `generate_text_semantic`, `generate_coarse`, `generate_fine`
with history_prompt=FILE, stopped where they would load a model, so every history check and the
coarse history trimming run) and transformers' `BarkProcessor(voice_preset=FILE)` (which calls
`_validate_voice_preset_dict`).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "voices" / "suno"
TINY = ROOT / "tests" / "fixtures" / "tiny"
KEYS = ["semantic_prompt", "coarse_prompt", "fine_prompt"]
COPIED = ["en_speaker_6.npz", "announcer.npz", "de_speaker_7.npz"]
PARITY_PRESET = "de_speaker_7.npz"
PARITY_TEXT = "Hello, my name is Suno. [laughs] Bonjour Élodie!"
PARITY_SEMANTIC_TOKENS = 8
README = """\
The .npz files here are voice presets of Suno's `bark` package, version 0.1.5 on PyPI
(`bark/assets/prompts/`), copied unchanged; bark is MIT licensed (LICENSE, from its wheel).
scripts/make_preset_fixtures.py copies them and writes presets.json and parity.*.
"""


def fetch_bark(tmp):
    """bark 0.1.5's wheel from PyPI, unpacked; returns its prompts folder."""
    subprocess.run([sys.executable, "-m", "pip", "download", "bark==0.1.5", "--no-deps", "-d", tmp], check=True)
    (wheel,) = glob.glob(os.path.join(tmp, "bark-0.1.5-*.whl"))
    zipfile.ZipFile(wheel).extractall(os.path.join(tmp, "whl"))
    return os.path.join(tmp, "whl", "bark", "assets", "prompts")


def weighted_sum(a):
    flat = np.ascontiguousarray(a).reshape(-1).astype(np.int64)
    return int(np.sum(flat * np.arange(1, flat.size + 1, dtype=np.int64)))


def write_checksums(prompts):
    names = sorted(os.path.relpath(p, prompts) for p in glob.glob(os.path.join(prompts, "**", "*.npz"), recursive=True))
    assert len(names) == 271, f"bark 0.1.5 has 271 presets, found {len(names)}"
    lines = []
    for name in names:
        with np.load(os.path.join(prompts, name)) as z:
            arrays = [z[k] for k in KEYS]
        entry = {"shapes": [list(a.shape) for a in arrays], "sums": [weighted_sum(a) for a in arrays]}
        lines.append(f" {json.dumps(name)}: {json.dumps(entry)}")
    with open(OUT / "presets.json", "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")


def write_parity():
    import torch
    from safetensors.torch import save_file
    from transformers import BarkModel, BarkProcessor, BertTokenizerFast

    torch.set_num_threads(1)
    model = BarkModel.from_pretrained(TINY, dtype=torch.float32).eval()
    tok = BertTokenizerFast(tokenizer_file=str(TINY / "tokenizer.json"), do_lower_case=False)
    inputs = BarkProcessor(tokenizer=tok)(PARITY_TEXT, voice_preset=str(OUT / PARITY_PRESET))
    history = inputs.pop("history_prompt")
    with torch.no_grad():
        semantic, coarse, fine = stages(model, inputs, history)
        audio = model.codec_decode(fine)
        whole = model.generate(**inputs, history_prompt=history, do_sample=False,
                               semantic_max_new_tokens=PARITY_SEMANTIC_TOKENS)
    assert torch.equal(whole, audio), "the stages differ from BarkModel.generate"
    out = dict(semantic=semantic, coarse=coarse, fine=fine)
    out = {k: t.to(torch.int64).contiguous() for k, t in out.items()}
    out["audio"] = audio.float().contiguous()
    save_file(out, str(OUT / "parity.safetensors"))
    with open(OUT / "parity.json", "w", encoding="utf-8") as f:
        json.dump(dict(preset=PARITY_PRESET, text=PARITY_TEXT, semantic_max_new_tokens=PARITY_SEMANTIC_TOKENS,
                       do_sample=False, shapes={k: list(t.shape) for k, t in out.items()}), f, ensure_ascii=False,
                  indent=1)
        f.write("\n")


def stages(model, inputs, history):
    """BarkModel.generate's stages one by one (greedy), as scripts/make_fixtures.py runs them."""
    from transformers.models.bark.generation_configuration_bark import (
        BarkCoarseGenerationConfig, BarkFineGenerationConfig, BarkSemanticGenerationConfig)

    gc = model.generation_config
    sem_cfg = BarkSemanticGenerationConfig(**gc.semantic_config)
    coarse_cfg = BarkCoarseGenerationConfig(**gc.coarse_acoustics_config)
    fine_cfg = BarkFineGenerationConfig(**gc.fine_acoustics_config)
    semantic = model.semantic.generate(inputs["input_ids"], history_prompt=history, semantic_generation_config=sem_cfg,
                                       attention_mask=inputs["attention_mask"],
                                       max_new_tokens=PARITY_SEMANTIC_TOKENS, do_sample=False)
    coarse = model.coarse_acoustics.generate(semantic, history_prompt=history, semantic_generation_config=sem_cfg,
                                             coarse_generation_config=coarse_cfg, codebook_size=gc.codebook_size,
                                             do_sample=False)
    fine = model.fine_acoustics.generate(coarse, history_prompt=history, semantic_generation_config=sem_cfg,
                                         coarse_generation_config=coarse_cfg, fine_generation_config=fine_cfg,
                                         codebook_size=gc.codebook_size, do_sample=False)
    return semantic, coarse, fine


class ReachedModel(Exception):
    """Raised where Suno's code would load a model: every history check before it passed."""


def suno_generation(prompts):
    """bark 0.1.5's generation module, importable without its model-side dependencies (EnCodec and
    scipy are only used once a model runs, which never happens here)."""
    sys.path.insert(0, str(Path(prompts).parents[2]))
    for name, attrs in [("encodec", {"EncodecModel": None}), ("scipy", {}), ("scipy.special", {"softmax": None})]:
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.SimpleNamespace(**attrs)
    import bark.generation as gen

    def stop(*_args, **_kwargs):
        raise ReachedModel

    gen.preload_models = stop
    return gen


def check_saved(files, prompts):
    from transformers import BarkProcessor, BertTokenizerFast

    gen = suno_generation(prompts)
    processor = BarkProcessor(tokenizer=BertTokenizerFast(tokenizer_file=str(TINY / "tokenizer.json")))
    for path in files:
        with np.load(path) as z:
            assert sorted(z.files) == sorted(KEYS), f"{path}: keys {z.files}"
            arrays = {k: z[k] for k in KEYS}
        for k, a in arrays.items():
            assert a.dtype.kind in "iu", f"{path}: {k} has dtype {a.dtype}"
        # Suno's checks, in the order its generation reads the prompt.
        fine_len = arrays["fine_prompt"].shape[1]
        for call in [lambda: gen.generate_text_semantic("hello", history_prompt=path),
                     lambda: gen.generate_coarse(arrays["semantic_prompt"], history_prompt=path),
                     lambda: gen.generate_fine(arrays["coarse_prompt"][:, : max(fine_len, 1)], history_prompt=path)]:
            try:
                call()
                raise AssertionError(f"{path}: Suno's code did not stop at its model")
            except ReachedModel:
                pass
        # transformers: BarkProcessor loads the .npz and validates it.
        out = processor("hello", voice_preset=path)
        got = {k: out["history_prompt"][k].numpy() for k in KEYS}
        assert all(np.array_equal(got[k], arrays[k]) for k in KEYS), f"{path}: transformers read other codes"
        shapes = {k: a.shape for k, a in arrays.items()}
        print(f"ok  {path}: {shapes}, dtypes {[str(a.dtype) for a in arrays.values()]}; Suno's bark 0.1.5 and "
              f"transformers' BarkProcessor accept it")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", help="bark 0.1.5's bark/assets/prompts folder (default: pip download it)")
    parser.add_argument("--check-saved", nargs="+", metavar="FILE", help="check prompts bark-wgpu saved; write nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        prompts = args.prompts or fetch_bark(tmp)
        if args.check_saved:
            check_saved(args.check_saved, prompts)
            return
        OUT.mkdir(parents=True, exist_ok=True)
        for name in COPIED:
            shutil.copyfile(os.path.join(prompts, name), OUT / name)
        shutil.copyfile(Path(prompts).parents[2] / "bark-0.1.5.dist-info" / "LICENSE", OUT / "LICENSE")
        with open(OUT / "README.md", "w", encoding="utf-8") as f:
            f.write(README)
        write_checksums(prompts)
        write_parity()
    for f in sorted(OUT.iterdir()):
        print(f"{f.stat().st_size:9d}  {f.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
