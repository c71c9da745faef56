#!/usr/bin/env bash
# The campaign FUZZING.md asks of each target: 10 million executions or one hour, whichever comes
# first, under a 2 GiB memory limit and a 10 s limit per input, continuing the corpus in
# fuzz/corpus/<target>/ (fuzz/seeds.py makes it). Prints one Markdown row per target for
# FUZZING.md's results and keeps each log under $OUT (default fuzz/campaign-logs/).
# Usage: fuzz/campaign.sh TARGET... (CARGO_TARGET_DIR as for the build; JOBS targets at once,
# default 1; MAX_TIME seconds per target, default 3600: a shorter run is a partial campaign.)
set -euo pipefail
cd "$(dirname "$0")"
out=${OUT:-campaign-logs}
mkdir -p "$out"
[ $# -gt 0 ] || { echo "usage: fuzz/campaign.sh TARGET..." >&2; exit 2; }
cargo +nightly fuzz build -s none -a >/dev/null

run_one() {
    local t=$1 log="$out/$1.log"
    local found_before
    found_before=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
    mkdir -p "corpus/$t"
    local start=$SECONDS rc=0
    cargo +nightly fuzz run -s none -a "$t" "corpus/$t" -- -runs=10000000 -max_total_time="${MAX_TIME:-3600}" \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1 || rc=$?
    local secs=$((SECONDS - start))
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    local done_line cov ft corp
    done_line=$(grep -E '^#[0-9]+\s+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$done_line")
    local found_after findings="none"
    found_after=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
    if [ "$rc" -ne 0 ] || [ "$found_after" -gt "$found_before" ]; then
        findings="**exit $rc, $((found_after - found_before)) new artifact(s): see $log**"
    fi
    printf '| `%s` | %s | %s s | %s | %s | %s | %s | %s MB | %s s | %s |\n' "$t" \
        "$(stat number_of_executed_units)" "$secs" "$(stat average_exec_per_sec)" "$cov" "$ft" "$corp" \
        "$(stat peak_rss_mb)" "$(stat slowest_unit_time_sec)" "$findings"
}

echo "| target | runs | time | exec/s | cov | ft | corpus | peak RSS | slowest unit | findings |"
echo "|---|---:|---:|---:|---:|---:|---|---:|---:|---|"
jobs=${JOBS:-1}
for t in "$@"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n
    done
    run_one "$t" &
done
wait
