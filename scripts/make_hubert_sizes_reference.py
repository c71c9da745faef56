#!/usr/bin/env python3
"""Builds tests/fixtures/hubert-sizes/reference.safetensors: transformers' HubertModel and a torch
LSTM + Linear quantizer on the random hubert-base-sized checkpoint that tests/gpu/hubert_sizes.rs
writes (512 conv channels, hidden 768, 12 heads, MLP 3072, positional conv 128 in 16 groups,
2 layers; quantizer LSTM 768 -> 1024 x 2 layers, 10000 classes), on the 1 s waveform it writes
beside it. Only the outputs are stored (the checkpoint is ~200 MB; the test writes it again).

Regenerate (from the repository root; the virtualenv lives outside the repository):

    HUBERT_SIZES_CHECKPOINT=/tmp/hubert-sizes cargo test --test gpu -- hubert_sizes::   # keeps it
    /tmp/venv/bin/python scripts/make_hubert_sizes_reference.py /tmp/hubert-sizes

Made with torch 2.15 and transformers 5.25 (CPU, float32).

What it stores:
  hidden2 (49, 768) float32   hidden_states[2] (the last layer's output), batch dimension dropped
  tokens (49,) int64          argmax(log_softmax(fc(lstm(hidden2)))) per frame, as GitMylo's
                              CustomTokenizer.get_token computes it
The script checks that every frame's best class leads the second by more than 1e-3, so f32
rounding elsewhere cannot flip a token.
"""

import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import HubertModel


def main(checkpoint):
    model = HubertModel.from_pretrained(checkpoint).eval()
    wave = load_file(f"{checkpoint}/wave.safetensors")["wave"]
    q = load_file(f"{checkpoint}/quantizer.safetensors")
    lstm = torch.nn.LSTM(768, 1024, 2, batch_first=True)
    lstm.load_state_dict({k[len("lstm."):]: v for k, v in q.items() if k.startswith("lstm.")})
    fc = torch.nn.Linear(1024, 10000)
    fc.load_state_dict({"weight": q["fc.weight"], "bias": q["fc.bias"]})
    with torch.no_grad():
        hs = model(wave[None], output_hidden_states=True).hidden_states
        assert len(hs) == 3
        hidden = hs[2][0].contiguous()
        logits = fc(lstm(hidden)[0])
        top2 = logits.topk(2, dim=1).values
        gap = float((top2[:, 0] - top2[:, 1]).min())
        assert gap > 1e-3, f"a token is decided by {gap} only"
        tokens = torch.argmax(torch.log_softmax(logits, dim=1), dim=1)
        assert torch.equal(tokens, logits.argmax(dim=1))
    out = "tests/fixtures/hubert-sizes/reference.safetensors"
    os.makedirs(os.path.dirname(out), exist_ok=True)
    save_file({"hidden2": hidden, "tokens": tokens.to(torch.int64)}, out)
    print(f"hidden2 {tuple(hidden.shape)}, tokens {tokens.tolist()[:8]}..., smallest margin {gap:.3g}")


if __name__ == "__main__":
    main(sys.argv[1])
