#!/usr/bin/env bash
# Builds the browser page into OUTDIR as static files (any static file server serves them):
# the web/ bindings compiled to wasm32, wrapped by wasm-bindgen, and web/index.html.
# Usage: scripts/build_web.sh OUTDIR [--debug] [--checks] (--checks: the page's self-checks,
# `check=kernels` and `check=attention`, which the browser leg of CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: build_web.sh OUTDIR [--debug] [--checks]"
out=${1:?$usage}
shift
profile=release
features=()
for arg in "$@"; do
    case $arg in
        --debug) profile=debug ;;
        --checks) features=(--features checks) ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
# The wasm-bindgen CLI must be the version web/Cargo.toml pins.
want=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' web/Cargo.toml)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    # A debug build: it installs in half the time (58 s against 128 s on 2 cores) and still
    # wraps a debug page in seconds.
    cargo install --quiet --debug wasm-bindgen-cli --version "$want"
fi
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
target="${CARGO_TARGET_DIR:-$PWD/target}"
flags=()
[ "$profile" = release ] && flags=(--release)
(cd web && CARGO_TARGET_DIR="$target" cargo build --quiet --target wasm32-unknown-unknown "${flags[@]}" "${features[@]}")
mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" "$target/wasm32-unknown-unknown/$profile/bark_wgpu_web.wasm"
cp web/index.html "$out/"
echo "built $out ($(du -sh "$out" | cut -f1))"
