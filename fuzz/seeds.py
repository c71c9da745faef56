"""Fills fuzz/corpus/<target>/ with seeds taken from tests/fixtures (Python 3 standard library
only; the corpus itself is not committed).

    python3 fuzz/seeds.py            # from the repository root or fuzz/

Most seeds are fixture files copied as they are. Two targets read a small envelope around the
file (see fuzz/src/run.rs), which this script writes: `audio` takes one leading byte choosing the
extension hint, and `torch_pickle` takes `[n][(key u8, len u32 LE) x n][byteorder][data.pkl]`,
derived here from the torch.save fixtures' zip entries.
"""

import pathlib
import shutil
import struct
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
CORPUS = ROOT / "fuzz" / "corpus"

COPIES = {
    "checkpoint": [
        "hubert-tiny/model.safetensors",
        "hubert-tiny/pytorch_model.bin",
        "clone/quantizer_wide.pth",
        "tiny/generation.safetensors",
        "voices/suno/parity.safetensors",
    ],
    "quantizer": ["clone/quantizer_wide.pth", "hubert-tiny/quantizer_v1.pth"],
    "config": [
        "tiny/config.json",
        "tiny-bias/config.json",
        "hubert-tiny/config.json",
        "checkpoints/configs/minimal.json",
        "checkpoints/configs/transformers-4.31.json",
        "checkpoints/f16/config.json",
    ],
    "voice_npz": [
        "voices/numpy_savez.npz",
        "voices/numpy_savez_compressed.npz",
        "voices/suno/en_speaker_6.npz",
        "voices/numpy/object_coarse.npz",
        "clone/reference.npz",
    ],
    "tokenizer": ["tokenizer/tokenizer.json"],
}

# The extension byte (index into run.rs's list: none, wav, flac, mp3, ogg, m4a) for each recording.
RECORDINGS = {"wav": 1, "flac": 2, "mp3": 3, "ogg": 4, "m4a": 5, "opus": 0, "webm": 0}

SPEECH_BODIES = [
    b'{"model":"bark","input":"Hello there.","voice":"alloy"}',
    b'{"model":"bark","input":"Hi","voice":"v2/en_speaker_6","response_format":"pcm","stream_format":"sse",'
    b'"seed":7,"greedy":true,"top_k":50,"top_p":0.9,"min_eos_p":0.2,"max_semantic_tokens":100}',
    b'{"model":"bark","input":"x","voice":"nova","response_format":"flac","speed":1.0,"text_temp":0.7,'
    b'"waveform_temp":0.7,"fine_temp":0.5}',
]

VOICE_MAPS = [
    b'{"alloy": "v2/en_speaker_3", "narrator": "my_clone"}',
    b'{"echo": null, "x": "v2/de_speaker_1"}',
    b"{}",
]


def write(target, name, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def torch_envelope(path):
    """The torch_pickle input that rebuilds `path`'s pickle and storages (first 15 storages)."""
    z = zipfile.ZipFile(path)
    pkl = next(i for i in z.infolist() if i.filename.endswith("/data.pkl"))
    prefix = pkl.filename[: -len("data.pkl")]
    storages = [
        (int(i.filename[len(prefix) + 5 :]), i.file_size)
        for i in z.infolist()
        if i.filename.startswith(prefix + "data/") and i.filename[len(prefix) + 5 :].isdigit()
    ][:15]
    out = bytes([len(storages)])
    for key, size in storages:
        out += bytes([key % 256]) + struct.pack("<I", size)
    return out + b"\x01" + z.read(pkl)


def main():
    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    for target, files in COPIES.items():
        for f in files:
            write(target, f.replace("/", "_"), (FIX / f).read_bytes())
    for f in sorted((FIX / "voices").rglob("*.npy")):
        write("npy", f.name, f.read_bytes())
    for ext, hint in RECORDINGS.items():
        write("audio", f"recording.{ext}", bytes([hint]) + (FIX / "clone" / f"recording.{ext}").read_bytes())
    for f in ["clone/quantizer_wide.pth", "hubert-tiny/quantizer_v1.pth"]:
        write("torch_pickle", f.replace("/", "_"), torch_envelope(FIX / f))
    # A few tables: two F32 tensors, a weight-norm pair, and a tied head, drawn as run.rs reads them.
    write("safetensors_table", "two_f32", bytes([2, 250, 0, 2, 3, 4, 2, 251, 0, 1, 5, 2, 1]))
    write("safetensors_table", "weight_norm", bytes([2, 0, 0, 3, 2, 1, 1, 2, 1, 0, 3, 2, 3, 3, 2, 1]))
    write("safetensors_table", "tied", bytes([2, 4, 1, 2, 4, 3, 2, 5, 1, 2, 4, 3, 2, 1]))
    for i, body in enumerate(SPEECH_BODIES):
        write("speech_body", f"body{i}.json", body)
    for i, body in enumerate(VOICE_MAPS):
        write("voice_map", f"map{i}.json", body)
    for target in sorted(p.name for p in CORPUS.iterdir()):
        files = list((CORPUS / target).iterdir())
        print(f"{target}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
