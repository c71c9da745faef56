#!/usr/bin/env bash
# Speaks to `bark-wgpu serve` with the official `openai` Python package (installed into a
# throwaway venv) and checks its audio against `bark-wgpu say --stream`, then stops the server
# with SIGTERM and checks it exits 0. Usage: scripts/openai_client_check.sh [BARK_WGPU_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/debug/bark-wgpu}"
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check openai

model=tests/fixtures/tiny
text="Hello, my name is Suno. And, uh, I like pizza!"
"$bin" say --model "$model" --text "$text" --stream --greedy --max-semantic-tokens 6 --min-eos-p 0 --quiet \
    >"$work/expected.pcm"

"$bin" serve --model "$model" --port 0 --api-key sesame --max-batch 2 --model-name bark-tiny 2>"$work/serve.log" &
pid=$!
url=""
for _ in $(seq 1 600); do
    url=$(grep -o 'http://[0-9.]*:[0-9]*' "$work/serve.log" | head -1 || true)
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { echo "the server never said where it listens" >&2; cat "$work/serve.log" >&2; exit 1; }

"$work/venv/bin/python" scripts/openai_client_check.py "$url" "$work/expected.pcm" "$text"

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
[ "$status" -eq 0 ] || { echo "serve exited with $status after SIGTERM" >&2; cat "$work/serve.log" >&2; exit 1; }
echo "serve stopped on SIGTERM with status 0"
