#!/usr/bin/env bash
# Reads all 271 voice presets of Suno's bark 0.1.5 (PyPI, MIT) with bark-wgpu and compares each with
# NumPy's view of it (tests/fixtures/voices/suno/presets.json, made by scripts/make_preset_fixtures.py).
# Needs pip (PyPI) and cargo; run from anywhere: scripts/suno_presets_check.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet bark==0.1.5 --no-deps -d "$tmp"
python3 -m zipfile -e "$tmp"/bark-0.1.5-*.whl "$tmp/whl"
prompts="$tmp/whl/bark/assets/prompts"
echo "$(find "$prompts" -name '*.npz' | wc -l) presets in $prompts"
cd "$root"
BARK_SUNO_PRESETS="$prompts" cargo test --test host suno_presets_read_as_numpy_reads_them -- --nocapture
