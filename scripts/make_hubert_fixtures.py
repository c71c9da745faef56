#!/usr/bin/env python3
"""Builds the small HuBERT and semantic-quantizer checkpoints and reference outputs under
tests/fixtures/hubert-tiny/ (voice cloning from a recording, issue 16).

Regenerate (from the repository root; the virtualenv lives OUTSIDE the repository, never commit it):

    python3 -m venv /tmp/venv
    /tmp/venv/bin/pip install torch transformers safetensors numpy
    /tmp/venv/bin/python scripts/make_hubert_fixtures.py

Made with torch 2.15 and transformers 5.25 (CPU, float32). Every random draw comes from a seeded
torch.Generator, so a rerun with the same versions rewrites the same bytes.

What it writes (tests/fixtures/hubert-tiny/)
--------------------------------------------
config.json, model.safetensors   save_pretrained of a random transformers HubertModel shaped like
    facebook/hubert-base-ls960 but tiny: the real conv kernels (10,3,3,3,3,2,2) and strides
    (5,2,2,2,2,2,2) with 32 channels, feat_extract_norm "group" (GroupNorm after conv 0 only),
    conv_bias False, feat_proj_layer_norm True, hidden 32, 4 heads, MLP 64, positional conv kernel 16
    in 4 groups (even, so one frame is trimmed, as base's 128), post-LN layers
    (do_stable_layer_norm False), 10 layers so that reading hidden_states[9] leaves one unused.
    The positional conv's weight norm (dim=2) is stored as
    `encoder.pos_conv_embed.conv.parametrizations.weight.original0` (g, shape (1, 1, K)) and `...original1` (v).
pytorch_model.bin   the same weights as torch.save of the state dict with the legacy weight-norm
    names `encoder.pos_conv_embed.conv.weight_g` / `weight_v`, as facebook/hubert-base-ls960's
    pytorch_model.bin holds them.
quantizer_v0.pth, quantizer_v1.pth   random semantic quantizers with the state-dict names of
    GitMylo's CustomTokenizer (bark-voice-cloning-HuBERT-quantizer), saved as its `save` does:
    torch.save(state_dict) (zip format) with a `<stem>/.info` JSON entry appended
    ({"input_size", "hidden_size", "output_size", "version"}):
      v0: lstm.{weight_ih,weight_hh,bias_ih,bias_hh}_l{0,1} (2-layer LSTM 32 -> 48), fc (48 -> 10000)
      v1: the same LSTM, intermediate (48 -> 64), fc (64 -> 1000)
reference.safetensors   float32 (tokens int64):
    wave (16000,)          the input: 1 s at 16 kHz, sines plus noise, peak ~0.6
    wave_short (5123,)     a second input of an awkward length
    hidden9 (49, 32)       transformers' hidden_states[9] of wave (batch dimension dropped)
    hidden9_short (15, 32) the same for wave_short
    hidden0 (49, 32)       hidden_states[0] (after the positional conv, add and LayerNorm)
    features (49, 32)      the conv feature extractor's output, time-major (before the projection)
    tokens_v0 (49,) tokens_v1 (49,)   CustomTokenizer.get_token(hidden9): argmax over log_softmax
    tokens_v0_short (15,)  v0's tokens for hidden9_short
    hidden9_long_rows (32, 32)   hidden_states[9] of a minute of audio (the longest recording the
                           cloning pipeline takes; 2999 frames) at frames 0, 97, 194, ..., 2910 and
                           2998; the input is not stored but computed by long_wave() below, in
                           float64 then rounded to float32 (the test computes the same)
    tokens_v1_long (2999,) v1's tokens for all of them
The script checks hidden_states[9] against the layers run by hand (so index 9 = output of the 9th
layer) and that every frame's best class leads the second by at least 1e-3 in the logits, so f32
rounding on another device cannot flip a token.
"""

import json
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import HubertConfig, HubertModel

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hubert-tiny"
READ_LAYER = 9

CONFIG = dict(
    hidden_size=32,
    num_hidden_layers=10,
    num_attention_heads=4,
    intermediate_size=64,
    hidden_act="gelu",
    hidden_dropout=0.0,
    activation_dropout=0.0,
    attention_dropout=0.0,
    feat_proj_dropout=0.0,
    layerdrop=0.0,
    layer_norm_eps=1e-5,
    feat_extract_norm="group",
    feat_extract_activation="gelu",
    feat_proj_layer_norm=True,
    conv_dim=(32,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_bias=False,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    do_stable_layer_norm=False,
    apply_spec_augment=False,
)

QUANTIZERS = {
    "v0": dict(hidden=48, intermediate=None, output=10000, seed=11),
    "v1": dict(hidden=48, intermediate=64, output=1000, seed=12),
}


def randomize(model, gen):
    """Redraws every float parameter so each one matters (transformers' init leaves norms at 1/0)."""
    with torch.no_grad():
        for name, t in model.named_parameters():
            shape = t.shape
            if name.endswith("original0"):  # weight-norm magnitude g: positive
                new = 0.5 + torch.rand(shape, generator=gen)
            elif "norm" in name and name.endswith("weight"):
                new = 1.0 + 0.2 * torch.randn(shape, generator=gen)
            elif t.dim() >= 2:
                fan_in = int(torch.tensor(shape[1:]).prod())
                new = torch.randn(shape, generator=gen) / (fan_in ** 0.5)
            else:  # biases
                new = 0.1 * torch.randn(shape, generator=gen)
            t.copy_(new)


def waveform(n, gen):
    t = torch.arange(n, dtype=torch.float64) / 16000.0
    x = 0.3 * torch.sin(2 * torch.pi * 220.0 * t) + 0.2 * torch.sin(2 * torch.pi * 1375.0 * t + 0.5)
    x = x + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)
    return x.float()


LONG = 60 * 16000
LONG_ROWS = list(range(0, 2999, 97)) + [2998]


def long_wave():
    """A minute of two tones and a chirp, from a formula (no generator), so the test can make it too."""
    t = torch.arange(LONG, dtype=torch.float64) / 16000.0
    x = (0.3 * torch.sin(2 * torch.pi * 220.0 * t) + 0.2 * torch.sin(2 * torch.pi * 1375.0 * t + 0.5)
         + 0.1 * torch.sin(2 * torch.pi * (100.0 + 50.0 * t) * t))
    return x.float()


def by_hand(model, wave):
    """hidden_states[READ_LAYER] computed module by module, to pin down what the index means."""
    feats = model.feature_extractor(wave[None]).transpose(1, 2)
    h = model.feature_projection(feats)
    enc = model.encoder
    h = enc.layer_norm(h + enc.pos_conv_embed(h))
    for layer in enc.layers[:READ_LAYER]:
        out = layer(h)
        h = out[0] if isinstance(out, tuple) else out
    return feats[0], h[0]


class Quantizer(torch.nn.Module):
    """The module layout of GitMylo's CustomTokenizer (names lstm / intermediate / fc)."""

    def __init__(self, inp, hidden, intermediate, output):
        super().__init__()
        self.lstm = torch.nn.LSTM(inp, hidden, 2, batch_first=True)
        self.intermediate = torch.nn.Linear(hidden, intermediate) if intermediate else None
        self.fc = torch.nn.Linear(intermediate or hidden, output)

    def logits(self, x):
        x, _ = self.lstm(x)
        if self.intermediate is not None:
            x = self.intermediate(x)
        return self.fc(x)

    def get_token(self, x):
        return torch.argmax(torch.log_softmax(self.logits(x), dim=1), dim=1)


def make_quantizer(name, q, hidden9, hidden9_short, hidden9_long, refs):
    gen = torch.Generator().manual_seed(q["seed"])
    model = Quantizer(CONFIG["hidden_size"], q["hidden"], q["intermediate"], q["output"]).eval()
    with torch.no_grad():
        for t in model.parameters():
            fan_in = t.shape[1] if t.dim() == 2 else q["hidden"]
            t.copy_(torch.randn(t.shape, generator=gen) / (fan_in ** 0.5))
        # Wider logits, so that the best of 10000 classes leads clearly (see the margin check).
        model.fc.weight.mul_(4.0)
        for suffix, x in [("", hidden9), ("_short", hidden9_short), ("_long", hidden9_long)]:
            if (suffix == "_short" and name != "v0") or (suffix == "_long" and name != "v1"):
                continue
            logits = model.logits(x)
            top2 = logits.topk(2, dim=1).values
            gap = float((top2[:, 0] - top2[:, 1]).min())
            assert gap > 1e-3, f"quantizer {name}: a token is decided by {gap} only; change the seed"
            tokens = model.get_token(x)
            assert torch.equal(tokens, logits.argmax(dim=1))
            refs[f"tokens_{name}{suffix}"] = tokens.to(torch.int64)
    path = OUT / f"quantizer_{name}.pth"
    torch.save(model.state_dict() if q["intermediate"] else
               {k: v for k, v in model.state_dict().items() if not k.startswith("intermediate")}, path)
    info = dict(input_size=CONFIG["hidden_size"], hidden_size=q["hidden"], output_size=q["output"],
                version=1 if q["intermediate"] else 0)
    with zipfile.ZipFile(path, "a") as z:
        # A fixed date, so a rerun rewrites the same bytes.
        z.writestr(zipfile.ZipInfo(f"{path.stem}/.info", date_time=(1980, 1, 1, 0, 0, 0)), json.dumps(info))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(7)
    model = HubertModel(HubertConfig(**CONFIG)).eval()
    randomize(model, gen)
    model.save_pretrained(OUT, safe_serialization=True)
    legacy = {k.replace(".parametrizations.weight.original0", ".weight_g")
               .replace(".parametrizations.weight.original1", ".weight_v"): v
              for k, v in model.state_dict().items()}
    assert "encoder.pos_conv_embed.conv.weight_g" in legacy
    torch.save(legacy, OUT / "pytorch_model.bin")

    refs = {}
    refs["wave"] = waveform(16000, gen)
    refs["wave_short"] = waveform(5123, gen)
    with torch.no_grad():
        for suffix, wave in [("", refs["wave"]), ("_short", refs["wave_short"])]:
            out = model(wave[None], output_hidden_states=True)
            hs = out.hidden_states
            assert len(hs) == CONFIG["num_hidden_layers"] + 1
            feats, mine = by_hand(model, wave)
            assert torch.allclose(mine, hs[READ_LAYER][0], atol=1e-6), "hidden_states index differs"
            refs[f"hidden9{suffix}"] = hs[READ_LAYER][0].contiguous()
            if not suffix:
                refs["hidden0"] = hs[0][0].contiguous()
                refs["features"] = feats.contiguous()
        # The reloaded checkpoint must give the same features.
        again = HubertModel.from_pretrained(OUT).eval()
        assert torch.equal(again(refs["wave"][None], output_hidden_states=True).hidden_states[READ_LAYER][0],
                           refs["hidden9"])
        long = model(long_wave()[None], output_hidden_states=True).hidden_states[READ_LAYER][0]
        assert long.shape[0] == 2999
        refs["hidden9_long_rows"] = long[LONG_ROWS].contiguous()
        for name, q in QUANTIZERS.items():
            make_quantizer(name, q, refs["hidden9"], refs["hidden9_short"], long, refs)
    save_file({k: v.contiguous() for k, v in refs.items()}, OUT / "reference.safetensors")
    for p in sorted(OUT.iterdir()):
        print(f"{p.relative_to(OUT.parent.parent.parent)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
