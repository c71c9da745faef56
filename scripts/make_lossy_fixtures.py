"""Lossy copies of the clone fixture recording, and another decoder's reading of them.

libsndfile part: tests/fixtures/clone/recording.mp3 and recording.ogg (libsndfile's encoders,
through the `soundfile` wheel) from recording.wav, and tests/fixtures/clone/lossy_reference.safetensors:
what libsndfile (mpg123, libvorbis) decodes each to, as [channel, frame] f32, for
tests/host/decode.rs to hold our decoder (symphonia) against.

ffmpeg part, recordings as phones and browsers make them (the first second of recording.wav, mono):
  recording.m4a            AAC-LC at 44.1 kHz, 64 kb/s in MP4, as phones' voice memos are
  m4a_reference.safetensors "m4a": ffmpeg's own decoding of it, [1, frame] f32, and in its
                           metadata the track's duration ffprobe reports (duration_ts, samples)
  recording.opus           Opus in Ogg (WhatsApp, Firefox's recorder): no decoder here, an error
  recording.webm           Opus in WebM (Chrome's recorder): not read here, an error
Made with ffmpeg 5.1.9 (Debian 12, native aac encoder and decoder, libopus).

Run: python scripts/make_lossy_fixtures.py [libsndfile] [ffmpeg]   (both when none is named;
pip install soundfile numpy safetensors; apt-get install ffmpeg)
"""

import json
import os
import subprocess
import sys

import numpy as np
from safetensors.numpy import save_file

here = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "clone")


def libsndfile():
    import soundfile as sf  # only this part needs it
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


def ffmpeg_fixtures():
    wav = os.path.join(here, "recording.wav")
    run = lambda *args: subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
                                       check=True, capture_output=True).stdout
    # -fflags +bitexact and -map_metadata -1 keep the encoder's version string out of the files.
    common = ["-i", wav, "-t", "1", "-ac", "1", "-map_metadata", "-1", "-fflags", "+bitexact"]
    m4a = os.path.join(here, "recording.m4a")
    run(*common, "-ar", "44100", "-c:a", "aac", "-b:a", "64k", m4a)
    for ext in ["opus", "webm"]:
        run(*common, "-c:a", "libopus", "-b:a", "16k", os.path.join(here, f"recording.{ext}"))
    decoded = np.frombuffer(run("-i", m4a, "-f", "f32le", "-"), dtype="<f4")
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", m4a],
                                      check=True, capture_output=True).stdout)["streams"][0]
    version = subprocess.run(["ffmpeg", "-version"], check=True, capture_output=True, text=True).stdout.split()[2]
    save_file({"m4a": np.ascontiguousarray(decoded[None, :])}, os.path.join(here, "m4a_reference.safetensors"),
              metadata={"ffmpeg": version, "duration_ts": str(probe["duration_ts"]),
                        "sample_rate": str(probe["sample_rate"]), "profile": probe["profile"]})
    print(f"{m4a}: {os.path.getsize(m4a)} bytes, {probe['profile']}, duration_ts {probe['duration_ts']}, "
          f"ffmpeg {version} decodes {decoded.size} samples")


def main():
    parts = sys.argv[1:] or ["libsndfile", "ffmpeg"]
    if "libsndfile" in parts:
        libsndfile()
    if "ffmpeg" in parts:
        ffmpeg_fixtures()


if __name__ == "__main__":
    main()
