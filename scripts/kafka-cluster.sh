#!/usr/bin/env bash
# Starts and stops an Apache Kafka cluster in KRaft mode on 127.0.0.1 for the
# replication tests: three broker-only nodes and one controller-only node. It
# reuses the functions of scripts/kafka.sh and needs what that script needs.
#
# The controller quorum runs apart from the brokers, so that killing two
# brokers leaves it running: the controller then fences them and shrinks
# each partition's in-sync replicas to the one broker left, whose leader
# rejects acks=all writes with NOT_ENOUGH_REPLICAS. A single controller is
# enough for a test cluster but is a single point of failure, so a real
# deployment runs three or five. NOTE: the quorum has one voter, so losing
# the controller node stops every metadata change until it returns.
#
# Usage: scripts/kafka-cluster.sh COMMAND [ARGS...]
#   up               start the nodes that do not run, wait until all three
#                    brokers are registered, and create the weblog topics
#                    with replication factor 3 and min.insync.replicas=2
#   down             stop every node (SIGTERM, then SIGKILL after 30 s),
#                    the brokers first and then the controller
#   status           print each node's state; exit status 0 when all four
#                    run, 3 when not
#   kill N           send SIGKILL to broker N (1, 2 or 3), as a crash would
#   start N          start broker N again and wait until it is registered
#   bootstrap        print the bootstrap address list of the three brokers
#   run CMD ARGS     run `up`, then CMD with KAFKA_CLUSTER_BOOTSTRAP set, then
#                    `down` if no node ran before; exit with CMD's status
#
# Ports: broker N listens for clients on KAFKA_CLUSTER_PORT + 2 * (N - 1),
# so 29092, 29094 and 29096 by default, and the controller on
# KAFKA_CLUSTER_PORT + 7, so 29099.
#
# Environment:
#   KAFKA_CLUSTER_PORT      client port of broker 1 (default 29092)
#   KAFKA_CLUSTER_HEAP_OPTS heap flags of each broker (default -Xms256m -Xmx512m)
#   KAFKA_CLUSTER_CONTROLLER_HEAP_OPTS
#                           heap flags of the controller (default -Xms64m -Xmx256m)
#   KAFKA_START_TIMEOUT     seconds `up` and `start` wait (default 90)
#   WEBLOG_KAFKA_CLUSTER_DIR  directory of the node configs, data, logs and
#                           pid files (default .cache/kafka-cluster-$KAFKA_CLUSTER_PORT
#                           in the repo)
#   WEBLOG_CACHE_DIR, WEBLOG_*_TOPIC, WEBLOG_*_PARTITIONS  as in kafka.sh

set -euo pipefail

CLUSTER_SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# kafka.sh reads KAFKA_BOOTSTRAP, which has no meaning for the cluster.
unset KAFKA_BOOTSTRAP
# shellcheck source=scripts/kafka.sh
source "$CLUSTER_SCRIPT_DIR/kafka.sh"

log() {
    echo "kafka-cluster.sh: $*" >&2
}

warn() {
    echo "kafka-cluster.sh: warning: $*" >&2
}

die() {
    echo "kafka-cluster.sh: error: $*" >&2
    exit 1
}

NODE_COUNT=3
REPLICATION_FACTOR=3
MIN_INSYNC_REPLICAS=2
# Node id of the controller. The brokers are nodes 1 to NODE_COUNT.
CONTROLLER_ID=0

CLUSTER_PORT=${KAFKA_CLUSTER_PORT:-29092}
require_port KAFKA_CLUSTER_PORT "$CLUSTER_PORT"
CONTROLLER_PORT=$((CLUSTER_PORT + 7))
require_port "KAFKA_CLUSTER_PORT + 7" "$CONTROLLER_PORT"
BROKER_HEAP_OPTS=${KAFKA_CLUSTER_HEAP_OPTS:--Xms256m -Xmx512m}
CONTROLLER_HEAP_OPTS=${KAFKA_CLUSTER_CONTROLLER_HEAP_OPTS:--Xms64m -Xmx256m}
CLUSTER_DIR=${WEBLOG_KAFKA_CLUSTER_DIR:-$REPO_ROOT/.cache/kafka-cluster-$CLUSTER_PORT}
CLUSTER_ID_FILE="$CLUSTER_DIR/cluster-id"
# format_storage_once of kafka.sh prints this when a format fails.
RESET_HINT="delete $CLUSTER_DIR and rerun 'scripts/kafka-cluster.sh up'"
QUORUM_VOTERS="$CONTROLLER_ID@127.0.0.1:$CONTROLLER_PORT"

node_port() {
    echo $((CLUSTER_PORT + 2 * ($1 - 1)))
}

cluster_bootstrap() {
    local node addresses=()
    for ((node = 1; node <= NODE_COUNT; node++)); do
        addresses+=("127.0.0.1:$(node_port "$node")")
    done
    local IFS=,
    echo "${addresses[*]}"
}

CLUSTER_BOOTSTRAP=$(cluster_bootstrap)

# Points the globals of kafka.sh (KAFKA_PORT, KAFKA_HEAP_OPTS, RUN_DIR,
# CONFIG_FILE, ...) at node $1, a broker number or CONTROLLER_ID, so that
# its process functions act on that node.
select_node() {
    NODE_ID=$1
    if ((NODE_ID == CONTROLLER_ID)); then
        NODE_NAME=controller
        KAFKA_PORT=$CONTROLLER_PORT
        KAFKA_HEAP_OPTS=$CONTROLLER_HEAP_OPTS
        RUN_DIR="$CLUSTER_DIR/controller"
    else
        NODE_NAME="broker $NODE_ID"
        KAFKA_PORT=$(node_port "$NODE_ID")
        KAFKA_HEAP_OPTS=$BROKER_HEAP_OPTS
        RUN_DIR="$CLUSTER_DIR/node-$NODE_ID"
    fi
    LOCAL_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
    CONFIG_FILE="$RUN_DIR/server.properties"
    DATA_DIR="$RUN_DIR/data"
    LOG_FILE="$RUN_DIR/broker.log"
    PID_FILE="$RUN_DIR/broker.pid"
}

require_node_id() {
    if ! [[ ${1:-} =~ ^[1-9][0-9]*$ ]] || (($1 > NODE_COUNT)); then
        die "invalid broker '${1:-}': expected a broker number from 1 to $NODE_COUNT"
    fi
}

# Serializes the commands that start or stop nodes. start_broker_process of
# kafka.sh closes UP_LOCK_FD in the broker, so that the lock ends with us.
lock_cluster() {
    mkdir -p "$CLUSTER_DIR"
    exec {UP_LOCK_FD}>"$CLUSTER_DIR/cluster.lock"
    flock "$UP_LOCK_FD"
}

write_node_config() {
    mkdir -p "$DATA_DIR"
    {
        cat <<END
# Written by scripts/kafka-cluster.sh on every start, so edits are overwritten.
node.id=$NODE_ID
controller.quorum.voters=$QUORUM_VOTERS
controller.listener.names=CONTROLLER
log.dirs=$DATA_DIR
END
        if ((NODE_ID == CONTROLLER_ID)); then
            echo "process.roles=controller"
            echo "listeners=CONTROLLER://127.0.0.1:$KAFKA_PORT"
            echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT"
        else
            echo "process.roles=broker"
            echo "listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT"
            echo "advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT"
            echo "inter.broker.listener.name=PLAINTEXT"
            echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        fi
        # In KRaft mode the controller applies the topic defaults when it
        # creates a topic, and the brokers when they create an internal
        # topic or check a write, so both roles get them.
        cat <<END

# Every partition, internal ones included, has a replica on each broker,
# and a write with acks=all needs two of them in sync.
default.replication.factor=$REPLICATION_FACTOR
min.insync.replicas=$MIN_INSYNC_REPLICAS
offsets.topic.replication.factor=$REPLICATION_FACTOR
transaction.state.log.replication.factor=$REPLICATION_FACTOR
transaction.state.log.min.isr=$MIN_INSYNC_REPLICAS
share.coordinator.state.topic.replication.factor=$REPLICATION_FACTOR
share.coordinator.state.topic.min.isr=$MIN_INSYNC_REPLICAS

group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
END
    } >"$CONFIG_FILE"
}

# Starts the selected node unless it runs. Fails when its port is taken by
# another process.
start_node_process() {
    local pid
    if pid=$(read_broker_pid); then
        log "$NODE_NAME already running (pid $pid) at $LOCAL_BOOTSTRAP"
        return 0
    fi
    if port_accepts_connections "$KAFKA_PORT"; then
        die "port $KAFKA_PORT of the $NODE_NAME on 127.0.0.1 is already in use by another process (find it with 'ss -ltnp | grep :$KAFKA_PORT'); stop it or set KAFKA_CLUSTER_PORT to another base port"
    fi
    if [[ -f $LOG_FILE ]]; then
        mv "$LOG_FILE" "$LOG_FILE.1"
    fi
    write_node_config
    format_storage_once "$CLUSTER_ID_FILE"
    start_broker_process
    log "starting the $NODE_NAME (pid $(<"$PID_FILE")) at $LOCAL_BOOTSTRAP, log $LOG_FILE"
}

# Starts the controller unless it runs.
ensure_controller() {
    select_node "$CONTROLLER_ID"
    if ! read_broker_pid >/dev/null 2>&1; then
        start_node_process
    fi
}

# Fails when the brokers' data directories were formatted by an earlier
# version of this script, whose nodes were broker and controller at once:
# their metadata belongs to a quorum that no longer exists.
check_layout() {
    select_node "$CONTROLLER_ID"
    [[ -f $DATA_DIR/meta.properties ]] && return 0
    local node
    for ((node = 1; node <= NODE_COUNT; node++)); do
        select_node "$node"
        if [[ -f $DATA_DIR/meta.properties ]]; then
            die "$DATA_DIR was formatted without the dedicated controller this script now runs; delete $CLUSTER_DIR and rerun 'scripts/kafka-cluster.sh up'"
        fi
    done
}

# Prints the ids of the brokers that the cluster metadata lists, which
# leaves out fenced brokers, one per line. Prints nothing when no broker
# responds.
registered_broker_ids() {
    run_tool_class org.apache.kafka.tools.BrokerApiVersionsCommand \
        --bootstrap-server "$CLUSTER_BOOTSTRAP" \
        --command-config "$KAFKA_CONF_DIR/admin-client.properties" 2>/dev/null |
        sed -n 's/^[^ ]* (id: \([0-9]*\) .*/\1/p' | sort -u || true
}

# Fails with the end of its log when one of the nodes $@ has a pid file but
# its process has exited.
check_nodes_alive() {
    local node
    for node in "$@"; do
        select_node "$node"
        if [[ -f $PID_FILE ]] && ! kill -0 "$(<"$PID_FILE")" 2>/dev/null; then
            rm -f "$PID_FILE"
            tail -n 40 "$LOG_FILE" >&2
            die "the $NODE_NAME exited during start-up; the last 40 lines of $LOG_FILE are above"
        fi
    done
}

# Waits up to KAFKA_START_TIMEOUT seconds until the brokers $@ are
# registered with the controller.
wait_until_registered() {
    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    local node registered missing
    while true; do
        check_nodes_alive "$CONTROLLER_ID" "$@"
        registered=$(registered_broker_ids)
        missing=()
        for node in "$@"; do
            grep -qx "$node" <<<"$registered" || missing+=("$node")
        done
        if ((${#missing[@]} == 0)); then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            die "timed out after $KAFKA_START_TIMEOUT s waiting for broker(s) ${missing[*]} to register at $CLUSTER_BOOTSTRAP (registered: ${registered//$'\n'/ }); see the broker.log files under $CLUSTER_DIR. Set KAFKA_START_TIMEOUT to wait longer"
        fi
        sleep 1
    done
}

create_cluster_topics() {
    require_positive_integer WEBLOG_RAW_PARTITIONS "$RAW_PARTITIONS"
    require_positive_integer WEBLOG_ENRICHED_PARTITIONS "$ENRICHED_PARTITIONS"
    require_positive_integer WEBLOG_DLQ_PARTITIONS "$DLQ_PARTITIONS"
    local existing_topics
    if ! existing_topics=$(list_topics "$CLUSTER_BOOTSTRAP"); then
        die "failed to list the topics at $CLUSTER_BOOTSTRAP (tool output above); check the nodes with 'scripts/kafka-cluster.sh status'"
    fi
    local topic partitions
    for topic in "$RAW_TOPIC:$RAW_PARTITIONS" "$ENRICHED_TOPIC:$ENRICHED_PARTITIONS" "$DLQ_TOPIC:$DLQ_PARTITIONS"; do
        partitions=${topic##*:}
        topic=${topic%:*}
        if grep -qxF -- "$topic" <<<"$existing_topics"; then
            log "topic $topic already exists"
            continue
        fi
        if ! run_tool_class org.apache.kafka.tools.TopicCommand \
            --bootstrap-server "$CLUSTER_BOOTSTRAP" --create --if-not-exists \
            --topic "$topic" --partitions "$partitions" \
            --replication-factor "$REPLICATION_FACTOR" \
            --config "min.insync.replicas=$MIN_INSYNC_REPLICAS" >&2; then
            die "failed to create topic '$topic' at $CLUSTER_BOOTSTRAP (tool output above)"
        fi
        log "topic $topic created with $partitions partitions, replication factor $REPLICATION_FACTOR, min.insync.replicas=$MIN_INSYNC_REPLICAS"
    done
}

# Prints the ids of the nodes whose process runs, the controller's
# included, one per line.
running_nodes() {
    local node
    for ((node = CONTROLLER_ID; node <= NODE_COUNT; node++)); do
        select_node "$node"
        if read_broker_pid >/dev/null 2>&1; then
            echo "$node"
        fi
    done
}

# ---------------------------------------------------------------------------
# Commands

cluster_up() {
    require_java
    cmd_fetch
    lock_cluster
    check_layout
    local started_at=$SECONDS node nodes=()
    # The brokers register with the controller, so it starts first.
    ensure_controller
    for ((node = 1; node <= NODE_COUNT; node++)); do
        select_node "$node"
        start_node_process
        nodes+=("$node")
    done
    wait_until_registered "${nodes[@]}"
    log "all $NODE_COUNT brokers registered at $CLUSTER_BOOTSTRAP after $((SECONDS - started_at)) s"
    create_cluster_topics
    exec {UP_LOCK_FD}>&-
}

cluster_down() {
    lock_cluster
    local node pid stopping=()
    # SIGTERM goes to all brokers first, so that they shut down together.
    # The controller stops last, because a broker's controlled shutdown
    # waits for it.
    for ((node = 1; node <= NODE_COUNT; node++)); do
        select_node "$node"
        if pid=$(read_broker_pid); then
            log "stopping broker $node (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            stopping+=("$node:$pid")
        fi
    done
    local entry
    for entry in "${stopping[@]}"; do
        select_node "${entry%%:*}"
        stop_broker_process "${entry#*:}"
    done
    select_node "$CONTROLLER_ID"
    if pid=$(read_broker_pid); then
        stop_broker_process "$pid"
        stopping+=("$CONTROLLER_ID:$pid")
    fi
    if ((${#stopping[@]} == 0)); then
        log "no node running under $CLUSTER_DIR; nothing to stop"
    else
        log "stopped ${#stopping[@]} node(s)"
    fi
    exec {UP_LOCK_FD}>&-
}

cluster_status() {
    local node pid running=0
    echo "bootstrap $CLUSTER_BOOTSTRAP, run directory $CLUSTER_DIR"
    for ((node = CONTROLLER_ID; node <= NODE_COUNT; node++)); do
        select_node "$node"
        if pid=$(read_broker_pid 2>/dev/null); then
            echo "$NODE_NAME running: pid $pid, port $KAFKA_PORT"
            running=$((running + 1))
        else
            echo "$NODE_NAME not running"
        fi
    done
    ((running == NODE_COUNT + 1)) || return 3
}

cluster_kill() {
    require_node_id "${1:-}"
    lock_cluster
    select_node "$1"
    local pid
    if ! pid=$(read_broker_pid); then
        log "broker $1 is not running; nothing to kill"
        return 0
    fi
    kill -KILL "$pid"
    wait_for_exit "$pid" 10 || die "broker $1 (pid $pid) still runs 10 s after SIGKILL"
    rm -f "$PID_FILE"
    log "killed broker $1 (pid $pid)"
    exec {UP_LOCK_FD}>&-
}

cluster_start() {
    require_node_id "${1:-}"
    require_java
    cmd_fetch
    lock_cluster
    local started_at=$SECONDS
    ensure_controller
    select_node "$1"
    start_node_process
    wait_until_registered "$1"
    log "broker $1 registered after $((SECONDS - started_at)) s"
    exec {UP_LOCK_FD}>&-
}

cluster_run() {
    (($# >= 1)) || die "missing command; usage: scripts/kafka-cluster.sh run COMMAND [ARGS...]"
    local started_nodes=1
    if [[ -n $(running_nodes) ]]; then
        started_nodes=0
    fi
    if ((started_nodes)); then
        trap cluster_down EXIT
    fi
    cluster_up
    KAFKA_CLUSTER_BOOTSTRAP=$CLUSTER_BOOTSTRAP "$@"
}

cluster_usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

cluster_main() {
    local command=${1:-}
    (($# == 0)) || shift
    case $command in
        up) cluster_up ;;
        down) cluster_down ;;
        status) cluster_status ;;
        kill) cluster_kill "$@" ;;
        start) cluster_start "$@" ;;
        bootstrap) echo "$CLUSTER_BOOTSTRAP" ;;
        run) cluster_run "$@" ;;
        -h | --help | help) cluster_usage ;;
        "")
            cluster_usage >&2
            exit 2
            ;;
        *)
            cluster_usage >&2
            die "unknown command '$command'"
            ;;
    esac
}

cluster_main "$@"
