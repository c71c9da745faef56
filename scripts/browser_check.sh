#!/usr/bin/env bash
# Bark in a real browser: builds the page (scripts/build_web.sh), opens it in headless Chromium
# with WebGPU on its bundled SwiftShader, and checks that the tiny fixture model, greedy, gives
# the native build's tokens and audio within 1e-4 (with and without a voice, under WebGPU's
# default limits, with f16 weights), that a second visit loads from the browser's cache, and
# that a bad model URL and a browser without WebGPU show a clear message; also that the browser
# accepts every kernel the library can choose there, and runs the rows attention right.
# Usage: scripts/browser_check.sh BARK_WGPU_BINARY OUTDIR
# Needs chromium, node and npm (.ci/run installs them); the native binary runs on the default
# adapter (CI gives it lavapipe).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: browser_check.sh BARK_WGPU_BINARY OUTDIR}
out=${2:?usage: browser_check.sh BARK_WGPU_BINARY OUTDIR}
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)

scripts/build_web.sh "$out/page" --debug --checks
(cd web && npm ci --silent --no-audit --no-fund)

model=tests/fixtures/tiny
voice=tests/fixtures/voices/numpy_savez.npz
page() { (cd web && node test/run_page.mjs "$out/page" "$@" --mount /models/tiny="../$model" --mount /voices=../tests/fixtures/voices); }
query() { printf 'model=/models/tiny&greedy=1&autorun=1&max_semantic_tokens=%s&text=%s%s' "$1" "$(node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$2")" "${3:-}"; }

echo "== every kernel the library can choose on this device, its module validated by the browser"
page "check=kernels"

echo "== the rows attention kernel (the CPU set's) against the tiled one, in the browser's compiler"
page "check=attention"

text="Hello, my name is Suno."
echo "== the page against the native build: \"$text\""
"$bin" say --model "$model" --greedy --max-semantic-tokens 24 --text "$text" --quiet \
    --out "$out/native.wav" --save-prompt "$out/native.npz"
page "$(query 24 "$text")" --expect-npz "$out/native.npz" --expect-wav "$out/native.wav" \
    --shot "$out/page.png" --again
echo "screenshot: $out/page.png"

text="Bonjour, Élodie!"
echo "== with a voice prompt: \"$text\""
"$bin" say --model "$model" --greedy --max-semantic-tokens 16 --voice "$voice" --text "$text" --quiet \
    --out "$out/voiced.wav" --save-prompt "$out/voiced.npz"
page "$(query 16 "$text" "&voice=/voices/$(basename "$voice")")" --expect-npz "$out/voiced.npz" --expect-wav "$out/voiced.wav"
echo "== the model and the voice picked from disk instead of fetched"
page "$(query 16 "$text" | sed 's#model=/models/tiny&##; s#autorun=1&##')" --pick-model "$PWD/$model" \
    --pick-voice "$PWD/$voice" --expect-npz "$out/voiced.npz" --expect-wav "$out/voiced.wav"
echo "== the same under WebGPU's default limits (128 MiB bindings, 16 KiB of workgroup memory)"
page "$(query 16 "$text" "&voice=/voices/$(basename "$voice")&webgpu_limits=1")" --expect-npz "$out/voiced.npz" \
    --expect-wav "$out/voiced.wav" --expect-adapter "128 MiB bindings"

echo "== f16 weights and caches (halves in 32-bit words: no shader-f16 needed)"
"$bin" say --model "$model" --greedy --f16 --max-semantic-tokens 16 --voice "$voice" --text "$text" --quiet \
    --out "$out/f16.wav" --save-prompt "$out/f16.npz"
page "$(query 16 "$text" "&voice=/voices/$(basename "$voice")&f16=1")" --expect-npz "$out/f16.npz" --expect-wav "$out/f16.wav"

echo "== a bad model URL"
page "$(query 8 "Hi." | sed 's#model=/models/tiny#model=/models/none#')" --expect-error "could not fetch .*/models/none/config.json: HTTP 404"
echo "== a browser without WebGPU"
page "$(query 8 "Hi.")" --no-webgpu --expect-error "no WebGPU"
