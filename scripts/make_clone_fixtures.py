#!/usr/bin/env python3
"""Builds tests/fixtures/clone/: a short stereo recording and the voice prompt the voice-cloning
community's pipeline makes from it (GitMylo's bark-voice-cloning-HuBERT-quantizer, voicecloning.py),
with the tiny HuBERT of tests/fixtures/hubert-tiny, a quantizer made here (below) and the codec of the tiny Bark
fixture (tests/fixtures/tiny) in place of the real models (issue 16, end to end).

Regenerate (from the repository root; the virtualenv lives OUTSIDE the repository):

    /tmp/venv/bin/pip install torch transformers numpy
    # torchaudio's resample is pure Python: its wheel unpacked on PYTHONPATH is enough
    PYTHONPATH=/tmp/ta-pkg /tmp/venv/bin/python scripts/make_clone_fixtures.py

Made with torch 2.15, transformers 5.25, torchaudio 2.11.1 (CPU, float32). The recording comes from
a seeded numpy generator, so a rerun with the same versions rewrites the same bytes.

The reference pipeline, step by step (torchaudio.load is replaced by the stdlib wave module: the
same int16 / 32768 float32 samples):
    wav [2, N] float32;  wav = wav.mean(0, keepdim=True)                    (stereo to mono)
    semantic: torchaudio.functional.resample(wav, 22050, 16000)            (CustomHubert.forward)
              -> HubertModel hidden_states[9] -> CustomTokenizer.get_token  (argmax of log_softmax)
    codes:    encodec.utils.convert_audio(wav, 22050, 24000, 1), i.e. mean of channels then
              torchaudio.transforms.Resample(22050, 24000) (kernel made in float64, kept as float32)
              -> EnCodec encode at 6 kbps -> codes [8, T]
    np.savez(semantic_prompt=tokens, coarse_prompt=codes[:2], fine_prompt=codes)

What it writes (tests/fixtures/clone/)
--------------------------------------
recording.wav    2.0 s, 2 channels, 22050 Hz, 16-bit PCM: voiced "syllables" (a gliding pitch with
                 harmonics under a syllable envelope) plus noise, the channels differing in gain and
                 noise
recording.flac   the same samples as FLAC (verbatim subframes, written below: no encoder is installed)
quantizer.pth    the quantizer of the pipeline (see e2e_quantizer: hubert-tiny's quantizer_v0 gives
                 one token for almost every frame of this recording, which would test little)
reference.npz    the prompt above (int64)
quantizer_wide.pth   a version-0 quantizer reading 24-wide features: one that does not fit the tiny HuBERT
The script checks that every quantizer decision leads by >= 1e-3 in the logits and every codec
decision by >= 1e-4 in squared distance, and that the other torchaudio resampler (functional vs
transforms, float32 vs float64 kernel) gives the same prompt, so a resampler within ~1e-6 of
torchaudio's gives the same tokens.
"""

import struct
import sys
import wave
import zipfile
from pathlib import Path

import numpy as np
import torch
import torchaudio
from transformers import BarkModel, HubertModel

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "clone"
sys.path.insert(0, str(ROOT / "scripts"))
from make_hubert_fixtures import Quantizer  # noqa: E402

RATE, SECONDS, CHANNELS = 22050, 2.0, 2


def recording():
    """int16 [2, N]: syllables of a voiced sound, each channel with its own gain and noise."""
    rng = np.random.default_rng(16)
    n = int(RATE * SECONDS)
    t = np.arange(n) / RATE
    f0 = 140.0 + 30.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 2
    out = []
    for gain in (0.5, 0.35):
        x = gain * envelope * voiced + 0.02 * rng.standard_normal(n)
        out.append(np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16))
    return np.stack(out)


def write_wav(path, pcm):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[0])
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.T.astype("<i2").tobytes())


def crc8(data):
    c = 0
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


def crc16(data):
    c = 0
    for b in data:
        c ^= b << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x8005) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    return c


def utf8_number(v):
    """FLAC's frame number coding (UTF-8 style, for numbers < 2^31)."""
    if v < 0x80:
        return bytes([v])
    out = []
    limit = 0x3F
    while v > limit or not out:
        out.insert(0, 0x80 | (v & 0x3F))
        v >>= 6
        limit >>= 1
    lead = (0xFF << (7 - len(out))) & 0xFF
    return bytes([lead | v] + out)


def write_flac(path, pcm, block=4096):
    """FLAC with independent channels and VERBATIM subframes: the simplest valid stream."""
    ch, n = pcm.shape
    info = struct.pack(">HH", block, block) + (0).to_bytes(3, "big") + (0).to_bytes(3, "big")
    packed = (RATE << 44) | ((ch - 1) << 41) | ((16 - 1) << 36) | n
    info += packed.to_bytes(8, "big") + bytes(16)  # MD5 0: not computed
    out = bytearray(b"fLaC")
    out += bytes([0x80]) + len(info).to_bytes(3, "big") + info  # last metadata block: STREAMINFO
    for k, start in enumerate(range(0, n, block)):
        size = min(block, n - start)
        # sync, fixed blocksize; block size code 7 (8-bit size-1 follows) or 6; rate from STREAMINFO (0);
        # channels ch-1 (independent); 16 bits (code 4)
        size_code = 6 if size <= 256 else 7
        head = bytearray([0xFF, 0xF8, (size_code << 4) | 0, ((ch - 1) << 4) | (4 << 1)])
        head += utf8_number(k)
        head += bytes([size - 1]) if size_code == 6 else (size - 1).to_bytes(2, "big")
        head.append(crc8(head))
        body = bytearray()
        for c in range(ch):
            body.append(0b00000010)  # VERBATIM, no wasted bits
            body += pcm[c, start:start + size].astype(">i2").tobytes()
        frame = head + body
        frame += crc16(frame).to_bytes(2, "big")
        out += frame
    path.write_bytes(bytes(out))


def codec_margin(codec, audio):
    """The smallest lead of a chosen codebook entry over the runner-up, over every RVQ stage."""
    residual = codec.encoder(audio)[0].T  # [T, D]
    worst = float("inf")
    for layer in codec.quantizer.layers[:8]:
        embed = layer.codebook.embed
        dist = (residual[:, None, :] - embed[None]).pow(2).sum(-1)
        two = dist.topk(2, dim=1, largest=False).values
        worst = min(worst, float((two[:, 1] - two[:, 0]).min()))
        residual = residual - embed[dist.argmin(1)]
    return worst


def e2e_quantizer(hubert, wav):
    """A version-0 quantizer (2-layer LSTM 32 -> 48, fc to 2048 classes, to stay small) that tells
    the recording's frames apart: the tiny HuBERT's layer-9 features vary little from frame to frame (std ~0.1 around
    values ~3), so the LSTM's input weights are scaled by 1/std and its input bias cancels the mean
    feature. Saved as quantizer.pth (torch.save of the state dict, plus the `.info` entry)."""
    gen = torch.Generator().manual_seed(22)
    model = Quantizer(hubert.config.hidden_size, 48, None, 2048).eval()
    with torch.no_grad():
        mono = torchaudio.functional.resample(wav.mean(0, keepdim=True), RATE, 16000)
        hidden = hubert(mono, output_hidden_states=True).hidden_states[9][0]
        mean, std = hidden.mean(0), hidden.std(0).mean()
        for name, t in model.named_parameters():
            fan_in = t.shape[1] if t.dim() == 2 else 48
            t.copy_(torch.randn(t.shape, generator=gen) / (fan_in ** 0.5))
        model.lstm.weight_ih_l0.div_(std)
        model.lstm.bias_ih_l0.sub_(model.lstm.weight_ih_l0 @ mean)
        model.fc.weight.mul_(4.0)
    path = OUT / "quantizer.pth"
    torch.save(model.state_dict(), path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(zipfile.ZipInfo(f"{path.stem}/.info", date_time=(1980, 1, 1, 0, 0, 0)),
                   '{"input_size": 32, "hidden_size": 48, "output_size": 2048, "version": 0}')
    return model


def prompt(wav, hubert, quantizer, codec, resample16, resample24):
    mono = wav.mean(0, keepdim=True)
    hidden = hubert(resample16(mono), output_hidden_states=True).hidden_states[9][0]
    logits = quantizer.logits(hidden)
    top2 = logits.topk(2, dim=1).values
    semantic = quantizer.get_token(hidden)
    audio = resample24(wav.mean(0, keepdim=True))[None]
    codes = codec.encode(audio, bandwidth=6.0).audio_codes[0][0]
    margins = (float((top2[:, 0] - top2[:, 1]).min()), codec_margin(codec, audio))
    return semantic, codes, margins


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    pcm = recording()
    write_wav(OUT / "recording.wav", pcm)
    write_flac(OUT / "recording.flac", pcm)
    wav = torch.from_numpy(pcm.astype(np.float32) / 32768.0)

    hubert = HubertModel.from_pretrained(ROOT / "tests/fixtures/hubert-tiny").eval()
    quantizer = e2e_quantizer(hubert, wav)
    codec = BarkModel.from_pretrained(ROOT / "tests/fixtures/tiny").codec_model.eval()

    functional16 = lambda x: torchaudio.functional.resample(x, RATE, 16000)  # noqa: E731
    transform24 = torchaudio.transforms.Resample(RATE, 24000)
    functional24 = lambda x: torchaudio.functional.resample(x, RATE, 24000)  # noqa: E731
    transform16 = torchaudio.transforms.Resample(RATE, 16000)
    with torch.no_grad():
        semantic, codes, (q_gap, c_gap) = prompt(wav, hubert, quantizer, codec, functional16, transform24)
        other = prompt(wav, hubert, quantizer, codec, transform16, functional24)
    assert q_gap >= 1e-3, f"a semantic token is decided by {q_gap} only; change the recording"
    assert c_gap >= 1e-4, f"a codec code is decided by {c_gap} only; change the recording"
    assert torch.equal(semantic, other[0]) and torch.equal(codes, other[1]), "the two torchaudio resamplers disagree"
    assert codes.shape[0] == 8
    assert len(set(semantic.tolist())) >= 20, f"only {len(set(semantic.tolist()))} distinct semantic tokens"
    np.savez(OUT / "reference.npz", semantic_prompt=semantic.numpy().astype(np.int64),
             coarse_prompt=codes[:2].numpy().astype(np.int64), fine_prompt=codes.numpy().astype(np.int64))

    # A quantizer for another HuBERT (24-wide features): small, and it must be refused.
    gen = torch.Generator().manual_seed(3)
    wide = Quantizer(24, 8, None, 16)
    with torch.no_grad():
        for t in wide.parameters():
            t.copy_(torch.randn(t.shape, generator=gen))
    path = OUT / "quantizer_wide.pth"
    torch.save(wide.state_dict(), path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(zipfile.ZipInfo(f"{path.stem}/.info", date_time=(1980, 1, 1, 0, 0, 0)),
                   '{"input_size": 24, "hidden_size": 8, "output_size": 16, "version": 0}')
    print(f"{len(set(semantic.tolist()))} distinct tokens; semantic {tuple(semantic.shape)}, codes {tuple(codes.shape)}, margins {q_gap:.2e} {c_gap:.2e}")
    for p in sorted(OUT.iterdir()):
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
