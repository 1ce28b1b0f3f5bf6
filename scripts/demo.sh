#!/usr/bin/env bash
# Runs the whole pipeline once on an access log and prints a summary.
#
# Usage: scripts/demo.sh [LOG]   (default examples/sample-access.log)
#
# Starts the local Kafka broker unless one runs (or KAFKA_BOOTSTRAP names
# one), starts weblog-host and weblog-sink, ships LOG with weblog-shipper,
# waits until the host and the sink have committed everything, stops what
# it started and prints shipped, enriched and dead-lettered counts. The
# enriched records stay in demo-output/ for you to read. Expects release
# binaries and the plugin to be built (`make demo` does that first).

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
kafka="$here/kafka.sh"
log_file=${1:-$root/examples/sample-access.log}
bin="${CARGO_TARGET_DIR:-$root/target}/release"
plugin="$root/plugins/target/wasm32-wasip2/release/weblog_access_log.wasm"
raw_topic=${WEBLOG_RAW_TOPIC:-web-logs-raw}
enriched_topic=${WEBLOG_ENRICHED_TOPIC:-web-logs-enriched}
dlq_topic=${WEBLOG_DLQ_TOPIC:-web-logs-dlq}
host_group=weblog-host
sink_group=weblog-sink
drain_timeout=${WEBLOG_DEMO_TIMEOUT:-600}

fail() {
    echo "demo: $*" >&2
    exit 1
}

[[ -f "$log_file" ]] || fail "log file not found: $log_file (pass LOG=path to make demo)"
for program in weblog-host weblog-shipper weblog-sink; do
    [[ -x "$bin/$program" ]] || fail "$bin/$program not found; run 'make release' first"
done
[[ -f "$plugin" ]] || fail "plugin $plugin not found; run 'make plugin' first"

started_at=$(date +%s.%N)
out_dir="$root/demo-output"
mkdir -p "$out_dir"
output="$out_dir/enriched-$(date +%Y%m%d-%H%M%S).jsonl"

started_broker=0
if [[ -z "${KAFKA_BOOTSTRAP:-}" ]] && ! "$kafka" status >/dev/null 2>&1; then
    started_broker=1
fi
host_pid=""
sink_pid=""
cleanup() {
    for pid in $host_pid $sink_pid; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $host_pid $sink_pid; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ "$started_broker" == 1 ]]; then
        "$kafka" down
    fi
}
trap cleanup EXIT

"$kafka" up
bootstrap=$("$kafka" bootstrap)

# Sum of the end offsets of a topic's partitions.
end_offsets() {
    "$kafka" tool get-offsets --topic "$1" --time -1 | awk -F: '{ sum += $NF } END { print sum + 0 }'
}

# Total lag of a consumer group on a topic, or "unknown" while the group
# has no partitions. A partition without a commit counts in full, so an
# empty one counts 0.
group_lag() {
    "$kafka" tool consumer-groups --describe --group "$1" 2>/dev/null | awk -v topic="$2" '
        $2 == topic {
            rows++
            if ($6 ~ /^[0-9]+$/) lag += $6
            else if ($5 ~ /^[0-9]+$/) lag += $5
            else unknown = 1
        }
        END { if (rows == 0 || unknown) print "unknown"; else print lag }'
}

# Records still waiting for the host from earlier runs go to this run's
# output too, so they are counted.
raw_end_before=$(end_offsets "$raw_topic")
host_backlog=$(group_lag "$host_group" "$raw_topic")
if [[ "$host_backlog" == unknown ]]; then
    host_backlog=$raw_end_before
fi
dlq_before=$(end_offsets "$dlq_topic")

echo "demo: starting weblog-host and weblog-sink (logs in $out_dir)"
"$bin/weblog-host" run --bootstrap-servers "$bootstrap" --plugin "$plugin" \
    --input-topic "$raw_topic" --output-topic "$enriched_topic" --dlq-topic "$dlq_topic" \
    --group-id "$host_group" 2>"$out_dir/host.log" &
host_pid=$!
"$bin/weblog-sink" --bootstrap-servers "$bootstrap" --topic "$enriched_topic" \
    --dlq-topic "$dlq_topic" --group-id "$sink_group" --output "$output" \
    >"$out_dir/sink.out" 2>"$out_dir/sink.log" &
sink_pid=$!

echo "demo: shipping $log_file"
shipper_output=$("$bin/weblog-shipper" --bootstrap-servers "$bootstrap" \
    --topic "$raw_topic" --file "$log_file")
echo "$shipper_output"
shipped=$(sed -n 's/^sent \([0-9]*\) lines.*/\1/p' <<<"$shipper_output")
[[ -n "$shipped" ]] || fail "could not read the line count from the shipper output"

echo "demo: waiting for the host and the sink to commit everything"
deadline=$(($(date +%s) + drain_timeout))
for group_topic in "$host_group $raw_topic" "$sink_group $enriched_topic"; do
    read -r group topic <<<"$group_topic"
    while true; do
        kill -0 "$host_pid" 2>/dev/null || fail "weblog-host exited; see $out_dir/host.log"
        kill -0 "$sink_pid" 2>/dev/null || fail "weblog-sink exited; see $out_dir/sink.log"
        lag=$(group_lag "$group" "$topic")
        [[ "$lag" == 0 ]] && break
        (($(date +%s) < deadline)) || fail "timed out after ${drain_timeout} s: $group lag on $topic is $lag"
        echo "demo:   $group lag on $topic: $lag"
        sleep 2
    done
done

kill -TERM "$host_pid" "$sink_pid"
wait "$host_pid" || fail "weblog-host exited with $?; see $out_dir/host.log"
wait "$sink_pid" || fail "weblog-sink exited with $?; see $out_dir/sink.log"
host_pid=""
sink_pid=""

enriched=$(wc -l <"$output" 2>/dev/null || echo 0)
dead_lettered=$(($(end_offsets "$dlq_topic") - dlq_before))
elapsed=$(awk -v start="$started_at" -v end="$(date +%s.%N)" 'BEGIN { printf "%.1f", end - start }')

echo
echo "shipped:        $shipped lines from $log_file"
if [[ "$host_backlog" != 0 ]]; then
    echo "backlog:        $host_backlog records left in $raw_topic by earlier runs"
fi
echo "enriched:       $enriched records in $output"
echo "dead-lettered:  $dead_lettered records in topic $dlq_topic"
echo "wall time:      $elapsed s"

accounted=$((enriched + dead_lettered))
expected=$((shipped + host_backlog))
if [[ "$accounted" != "$expected" ]]; then
    fail "enriched + dead-lettered = $accounted, but $expected lines were to be accounted for"
fi
