"""Reference outputs of torchaudio's resampler for tests/host/audio.rs.

torchaudio.functional.resample with its defaults (sinc_interp_hann, lowpass_filter_width 6,
rolloff 0.99) is what the voice-cloning references run before HuBERT (to 16 kHz) and EnCodec
(convert_audio, to 24 kHz). This writes one deterministic test signal per input rate and
torchaudio's output for each rate pair, computed in f32 and in f64, to
tests/fixtures/resample/torchaudio.safetensors.

Run: PYTHONPATH=DIR_WITH_TORCHAUDIO python scripts/make_resample_fixtures.py
(torchaudio's resample is pure Python over torch; torchaudio 2.11 unpacked with
`pip install --no-deps --target DIR torchaudio==2.11.1` works with newer torch.)
"""

import os

import numpy as np
import torch
import torchaudio
from safetensors.numpy import save_file

PAIRS = [(44100, 24000), (44100, 16000), (24000, 16000), (16000, 24000), (22050, 16000), (48000, 24000),
         (8000, 24000), (48000, 16000)]
SECONDS = 0.25


def signal(rate):
    """Sines across the band (one above 8 kHz), a chirp and seeded noise; deterministic."""
    n = int(rate * SECONDS) + 7  # an odd length, so the last frame is partial
    t = np.arange(n, dtype=np.float64) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t + 0.5)
    x += 0.1 * np.sin(2 * np.pi * min(9000, 0.45 * rate) * t)
    x += 0.1 * np.sin(2 * np.pi * (100 + 4000 * t) * t)
    x += 0.05 * np.random.default_rng(rate).standard_normal(n)
    return x.astype(np.float32)


def main():
    out = {}
    for rate in sorted({r for pair in PAIRS for r in pair}):
        out[f"input.{rate}"] = signal(rate)
    for src, dst in PAIRS:
        x = torch.from_numpy(out[f"input.{src}"])[None]
        # In f32 (as the references call it: the kernel too is computed in f32) and in f64.
        out[f"output.{src}.{dst}"] = torchaudio.functional.resample(x, src, dst)[0].numpy()
        out[f"output64.{src}.{dst}"] = torchaudio.functional.resample(x.double(), src, dst)[0].float().numpy()
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "resample", "torchaudio.safetensors")
    save_file(out, path, metadata={"torchaudio": torchaudio.__version__, "torch": torch.__version__})
    print(f"wrote {path}: torchaudio {torchaudio.__version__}, {len(PAIRS)} pairs")


if __name__ == "__main__":
    main()
