"""MP3 and Ogg/Vorbis copies of the clone fixture recording, and another decoder's reading of them.

Writes tests/fixtures/clone/recording.mp3 and recording.ogg (libsndfile's encoders, through the
`soundfile` wheel) from recording.wav, and tests/fixtures/clone/lossy_reference.safetensors:
what libsndfile (mpg123, libvorbis) decodes each to, as [channel, frame] f32, for
tests/host/decode.rs to hold our decoder (symphonia) against.

Run: python scripts/make_lossy_fixtures.py   (pip install soundfile numpy safetensors)
"""

import os

import numpy as np
import soundfile as sf
from safetensors.numpy import save_file

here = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "clone")


def main():
    wav, rate = sf.read(os.path.join(here, "recording.wav"), dtype="float32", always_2d=True)
    out = {}
    for ext, fmt, sub in [("mp3", "MP3", "MPEG_LAYER_III"), ("ogg", "OGG", "VORBIS")]:
        path = os.path.join(here, f"recording.{ext}")
        sf.write(path, wav, rate, format=fmt, subtype=sub)
        decoded, r = sf.read(path, dtype="float32", always_2d=True)
        assert r == rate
        out[ext] = np.ascontiguousarray(decoded.T)
        print(f"{path}: {os.path.getsize(path)} bytes, decodes to {decoded.shape[0]} frames (wav {wav.shape[0]})")
    save_file(out, os.path.join(here, "lossy_reference.safetensors"), metadata={"libsndfile": sf.__libsndfile_version__})


if __name__ == "__main__":
    main()
