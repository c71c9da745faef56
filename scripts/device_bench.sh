#!/usr/bin/env bash
# The speed suite on a GPU machine, ours and transformers' back to back (../shared/benchmarking.md).
#
# Prepare on the build machine (once per session; the GPU box has no Rust and no network):
#   echo /.gl/ >> .git/info/exclude; echo /.bin/ >> .git/info/exclude
#   (Vulkan loader debs into .gl/: see the device tool's README)
#   cargo bench --no-run --bench kernels --bench pipeline --bench memory --bench serve   # release bench binaries
#   cargo build --release
#   mkdir -p .bin && cp target/release/bark-wgpu .bin/ &&
#     for b in kernels pipeline memory serve; do cp "$(ls -t target/release/deps/$b-* | grep -v '\.d$' | head -1)" .bin/$b; done
#   cargo test --no-run --test gpu && cp "$(ls -t target/debug/deps/gpu-* | grep -v '\.d$' | head -1)" .bin/gpu &&
#     pwd > .bin/built_at   # the device test binary finds its fixtures at this checkout's path
# Then on the GPU box, from the repository root (carry .gl and .bin):
#   bash scripts/device_bench.sh "$OUT"            # all of it (about 10-20 minutes on an H100)
#   STEPS=pipeline bash scripts/device_bench.sh "$OUT"   # or some of: devices kernels memory pipeline
#                                                        # pipeline-split-norms profile transformers serve tests
# tests runs the device test binary on the GPU's driver (every kernel against its reference, the
# parity tests, the pipeline, the engine and the server), the driver matrix's real-GPU leg.
# Results: OUTDIR/{devices,kernels,memory,pipeline,...,transformers}.txt and the benches' JSON.
# pipeline-split-norms reruns bark-small at batch 1 with BARK_NORM_IN_GEMV=0 (the LayerNorms as
# passes of their own, the default on CPU adapters), to judge the GPU default against it.
# profile reruns bark-small f16 at batch 1 once with BARK_PROFILE=1: the GPU time of every kernel
# per stage (profile.txt; its speed row is not a figure, every step is waited for).
# serve: bark-small f16 behind the HTTP server, N concurrent clients at batch 1, 4, 16 (requests/s,
# time to first audio, occupancy).

set -uo pipefail
out=${1:?usage: device_bench.sh OUTDIR}
steps=${STEPS:-devices kernels memory pipeline pipeline-split-norms profile transformers}
mkdir -p "$out"

if ! ldconfig -p | grep -q libvulkan; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
fi
export CARGO_TARGET_DIR=$out   # where the benches write their JSON

for step in $steps; do
    echo "== $step ($(date -u +%H:%M:%S))"
    case $step in
        devices) .bin/bark-wgpu devices 2>&1 | tee "$out/devices.txt" ;;
        kernels) .bin/kernels --bench 2>&1 | tee "$out/kernels.txt" ;;
        memory) BENCH_MODEL=${BENCH_MODEL:-small,large} .bin/memory --bench 2>&1 | tee "$out/memory.txt" ;;
        pipeline)
            BENCH_MODEL=${BENCH_MODEL:-small,large} BENCH_BATCH=${BENCH_BATCH:-1,16} \
                BENCH_JSON=$out/pipeline.json .bin/pipeline --bench 2>&1 | tee "$out/pipeline.txt" ;;
        pipeline-split-norms)
            BARK_NORM_IN_GEMV=0 BENCH_MODEL=small BENCH_BATCH=1 BENCH_JSON=$out/pipeline-split-norms.json \
                .bin/pipeline --bench 2>&1 | tee "$out/pipeline-split-norms.txt" ;;
        profile)
            BARK_PROFILE=1 BENCH_MODEL=small BENCH_DTYPE=f16 BENCH_BATCH=1 BENCH_RUNS=1 \
                BENCH_JSON=$out/profile.json .bin/pipeline --bench 2>&1 | tee "$out/profile.txt" ;;
        serve) BENCH_MODEL=small BENCH_DTYPE=f16 .bin/serve --bench 2>&1 | tee "$out/serve.txt" ;;
        transformers)
            PYTHONUNBUFFERED=1 python3 scripts/bench_transformers.py --model "${BENCH_MODEL:-small,large}" \
                --batch "${BENCH_BATCH:-1,16}" --json "$out/transformers.json" 2>&1 | tee "$out/transformers.txt" ;;
        tests)
            # The binary looks for tests/fixtures where it was built (CARGO_MANIFEST_DIR).
            built=$(cat .bin/built_at)
            if [ ! -e "$built" ]; then mkdir -p "$(dirname "$built")" && ln -s "$PWD" "$built"; fi
            .bin/gpu --test-threads=4 2>&1 | tee "$out/tests.txt" ;;
        *) echo "unknown step $step" >&2; exit 2 ;;
    esac
done
