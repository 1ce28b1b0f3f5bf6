#!/usr/bin/env bash
# Measures every pipeline side by side on the broker at KAFKA_BOOTSTRAP:
# the passthrough loop, weblog-host with the WASM plugin (at-least-once and
# --exactly-once), weblog-host with the parser compiled in, and the seed
# reconstruction in bench/seed. Writes results.json and results.md (the
# tables of BENCHMARKS.md) to the output directory and prints the tables.
#
# Usage: scripts/with-broker.sh scripts/bench-pipeline.sh [--smoke]
#
# --smoke runs a few thousand lines with the debug binaries, to check that
# the benchmark still works; its timings mean nothing.
#
# Environment (defaults for a full run / for --smoke):
#   KAFKA_BOOTSTRAP      broker address (required; with-broker.sh sets it)
#   BENCH_LINES          lines of the replay file (1000000 / 3000)
#   BENCH_SEED_LINES     lines the seed pipeline gets (100000 / 1000)
#   BENCH_RATE           offered rate of the latency runs, lines/s (20000 / 1000)
#   BENCH_SEED_RATE      offered rate of the seed's latency run (2000 / 200)
#   BENCH_LATENCY_SECS   duration of each latency run, s (10 / 2)
#   BENCH_BIN_DIR        binaries (target/release / target/debug)
#   BENCH_OUT            output directory (.cache/bench/run-<time> / .cache/bench/smoke-<time>)
#   BENCH_PYTHON         Python that creates the seed's venv (python3)
#
# A full run of 1,000,000 lines takes about 7 minutes on 2 cores, which
# keeps make bench under 15; BENCH_LINES=2000000 doubles it.
#
# The seed needs confluent-kafka from PyPI: the first run creates a venv in
# .cache/bench/venv and installs it there. The replay file is written to
# .cache/bench/ and reused while its line count stays the same.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cache="$root/.cache/bench"
corpora="$root/../shared/data/real"
target="${CARGO_TARGET_DIR:-$root/target}"
stamp=$(date -u +%Y%m%d-%H%M%S)

fail() {
    echo "bench-pipeline: $*" >&2
    exit 1
}

if [[ "${1:-}" == --smoke ]]; then
    lines=${BENCH_LINES:-3000}
    seed_lines=${BENCH_SEED_LINES:-1000}
    rate=${BENCH_RATE:-1000}
    seed_rate=${BENCH_SEED_RATE:-200}
    latency_secs=${BENCH_LATENCY_SECS:-2}
    bin_dir=${BENCH_BIN_DIR:-$target/debug}
    out=${BENCH_OUT:-$cache/smoke-$stamp}
elif [[ -z "${1:-}" ]]; then
    lines=${BENCH_LINES:-1000000}
    seed_lines=${BENCH_SEED_LINES:-100000}
    rate=${BENCH_RATE:-20000}
    seed_rate=${BENCH_SEED_RATE:-2000}
    latency_secs=${BENCH_LATENCY_SECS:-10}
    bin_dir=${BENCH_BIN_DIR:-$target/release}
    out=${BENCH_OUT:-$cache/run-$stamp}
else
    fail "unknown argument $1; usage: scripts/bench-pipeline.sh [--smoke]"
fi

[[ -n "${KAFKA_BOOTSTRAP:-}" ]] ||
    fail "KAFKA_BOOTSTRAP is not set; run through scripts/with-broker.sh (make bench does)"
for program in weblog-bench weblog-host weblog-shipper weblog-sink; do
    [[ -x "$bin_dir/$program" ]] ||
        fail "$bin_dir/$program not found; build the workspace first (make release, or make build for --smoke)"
done
plugin="$root/plugins/target/wasm32-wasip2/release/weblog_access_log.wasm"
[[ -f "$plugin" ]] || fail "plugin $plugin not found; run 'make plugin' first"
"$bin_dir/weblog-host" run --native-plugin --help >/dev/null 2>&1 ||
    fail "$bin_dir/weblog-host has no --native-plugin flag; build it with the workspace (its native-plugin feature comes from weblog-bench)"
ls "$corpora"/*.log >/dev/null 2>&1 || fail "no corpora in $corpora"
mkdir -p "$cache" "$out"

# The seed's Python environment, created once.
venv="$cache/venv"
if ! "$venv/bin/python" -c 'import confluent_kafka' >/dev/null 2>&1; then
    python=${BENCH_PYTHON:-python3}
    echo "bench-pipeline: creating $venv with confluent-kafka from PyPI"
    rm -rf "$venv"
    "$python" -m venv "$venv" ||
        fail "'$python -m venv' failed; install the venv module (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'confluent-kafka>=2.6,<3' ||
        fail "failed to install confluent-kafka from PyPI into $venv"
fi

replay="$cache/replay-$lines.log"
if [[ ! -f "$replay" ]]; then
    "$bin_dir/weblog-bench" replay --lines "$lines" --output "$replay.tmp" "$corpora"/*.log
    mv "$replay.tmp" "$replay"
fi

echo "bench-pipeline: $lines lines ($seed_lines for the seed) on $KAFKA_BOOTSTRAP, results in $out"
"$bin_dir/weblog-bench" run \
    --bootstrap-servers "$KAFKA_BOOTSTRAP" \
    --replay "$replay" \
    --seed-lines "$seed_lines" \
    --rate "$rate" \
    --seed-rate "$seed_rate" \
    --latency-secs "$latency_secs" \
    --bin-dir "$bin_dir" \
    --plugin "$plugin" \
    --python "$venv/bin/python" \
    --seed-dir "$root/bench/seed" \
    --out-dir "$out"
