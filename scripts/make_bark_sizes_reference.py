#!/usr/bin/env python3
"""Builds tests/fixtures/bark-sizes/reference.safetensors: transformers' logits for the random
bark-small-sized checkpoint that tests/gpu/bark_sizes.rs makes (hidden 768, 12 heads, Bark's
vocabularies, 2 layers per model), so that test checks the GPU kernel set against the reference,
not only against the CPU kernel set. Only the ids and a few rows of logits are stored (the
checkpoint itself is 731 MB; the test writes it again from its seeded generator).

Regenerate (from the repository root; the virtualenv lives outside the repository):

    BARK_SIZES_CHECKPOINT=/tmp/bark-sizes cargo test --test gpu -- bark_sizes::   # keeps the checkpoint
    /tmp/venv/bin/python scripts/make_bark_sizes_reference.py /tmp/bark-sizes

Made with torch 2.15 and transformers 5.25 (CPU, float32).

What it stores (float32 logits, ids as int64), with the test's inputs:
  semantic.input_ids (41,)   coarse.input_ids (41,)   the test's ids: a prefill of 37, then 4 steps
  semantic.rows (6, 10048)   coarse.rows (6, 12096)   rows 0 and 36 of the prefill (use_cache=True),
      then the logits of each single-token step fed with the cache of the step before
  fine.input_ids (1, 60, 8)  fine.rows (2, 1056)      rows 0 and 59 for codebook_idx 7
"""

import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import BarkConfig, BarkModel

PREFILL, TOTAL, FRAMES, BOOKS = 37, 41, 60, 8


def test_ids(vocab, n):
    """The ids tests/gpu/bark_sizes.rs feeds: two of the table's last rows, then a spread."""
    spread = [(i * 7919 + 13) % vocab for i in range(n - 2)]
    return [vocab - 1, vocab - 5] + spread


def causal_rows(model, vocab):
    ids = torch.tensor([test_ids(vocab, TOTAL)])
    out = model(input_ids=ids[:, :PREFILL], use_cache=True)
    rows = [out.logits[0, 0], out.logits[0, PREFILL - 1]]
    past = out.past_key_values
    for i in range(PREFILL, TOTAL):
        out = model(input_ids=ids[:, i:i + 1], past_key_values=past, use_cache=True)
        past = out.past_key_values
        rows.append(out.logits[0, 0])
    return ids[0], torch.stack(rows)


def main(checkpoint):
    config = BarkConfig.from_pretrained(checkpoint)
    # The random checkpoint's fine heads are drawn apart from its embeddings (Bark's published
    # ones are copies), and inference reads the heads: untied, transformers reads them too.
    config.fine_acoustics_config.tie_word_embeddings = False
    model = BarkModel(config).eval()
    # The GPTs only: the codec (stored folded, as inference reads it) never runs here.
    gpts = ("semantic.", "coarse_acoustics.", "fine_acoustics.")
    weights = {k: v for k, v in load_file(f"{checkpoint}/model.safetensors").items() if k.startswith(gpts)}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # The causal masks are buffers the checkpoint need not carry.
    assert not unexpected, unexpected
    missing = [k for k in missing if k.startswith(gpts)]
    assert all(k.endswith("attn.bias") for k in missing), missing
    fine = model.fine_acoustics
    assert fine.lm_heads[0].weight.data_ptr() != fine.input_embeds_layers[1].weight.data_ptr()
    refs = {}
    with torch.no_grad():
        refs["semantic.input_ids"], refs["semantic.rows"] = causal_rows(model.semantic, 129600)
        refs["coarse.input_ids"], refs["coarse.rows"] = causal_rows(model.coarse_acoustics, 12096)
        codes = torch.tensor(test_ids(1056, FRAMES * BOOKS)).reshape(1, FRAMES, BOOKS)
        logits = model.fine_acoustics(BOOKS - 1, input_ids=codes).logits
        refs["fine.input_ids"], refs["fine.rows"] = codes, torch.stack([logits[0, 0], logits[0, FRAMES - 1]])
    refs = {k: v.contiguous() for k, v in refs.items()}
    out = "tests/fixtures/bark-sizes/reference.safetensors"
    os.makedirs(os.path.dirname(out), exist_ok=True)
    save_file(refs, out)
    for k, v in refs.items():
        print(k, tuple(v.shape), v.dtype)


if __name__ == "__main__":
    main(sys.argv[1])
