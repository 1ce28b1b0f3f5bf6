#!/usr/bin/env bash
# Fetches, configures, starts and stops a single-node Apache Kafka broker in
# KRaft mode (broker and controller in one JVM) for the weblog demo and tests.
# Needs bash 4.1 or later, Java 17 or later, Maven, and flock and setsid
# from util-linux.
#
# Usage: scripts/kafka.sh COMMAND [ARGS...]
#   fetch            copy the Kafka jars listed in scripts/kafka/pom.xml into
#                    the cache with Maven, unless the copy is complete
#   up               start the broker on 127.0.0.1, or reuse the one already
#                    running, and create the topics. With KAFKA_BOOTSTRAP
#                    set, start nothing: check that broker and create the
#                    topics there
#   down             stop the broker that `up` started (SIGTERM, then SIGKILL
#                    after 30 s)
#   topics           create the weblog topics that do not exist yet
#   tool NAME ARGS   run a Kafka command-line tool, adding --bootstrap-server
#                    with the active bootstrap address unless ARGS has one.
#                    NAME is one of: topics, consumer-groups, get-offsets,
#                    console-consumer, console-producer, configs,
#                    broker-api-versions, metadata-quorum
#   bootstrap        print the active bootstrap address
#   status           print whether the local broker runs; exit status 0 when
#                    it runs, 3 when it does not
#
# Environment:
#   KAFKA_PORT              client listener port (default 9092)
#   KAFKA_CONTROLLER_PORT   KRaft controller port (default KAFKA_PORT + 1)
#   KAFKA_BOOTSTRAP         host:port list of an existing broker to use
#                           instead of starting one
#   KAFKA_HEAP_OPTS         broker heap flags (default -Xms256m -Xmx768m)
#   KAFKA_START_TIMEOUT     seconds `up` waits for the broker (default 90)
#   WEBLOG_CACHE_DIR        jar cache (default $HOME/.cache/weblog)
#   WEBLOG_KAFKA_RUN_DIR    directory of the broker config, data, log and pid
#                           file (default .cache/kafka-$KAFKA_PORT in the repo)
#   WEBLOG_RAW_TOPIC, WEBLOG_ENRICHED_TOPIC, WEBLOG_DLQ_TOPIC
#                           topic names (default web-logs-raw,
#                           web-logs-enriched, web-logs-dlq)
#   WEBLOG_RAW_PARTITIONS, WEBLOG_ENRICHED_PARTITIONS, WEBLOG_DLQ_PARTITIONS
#                           partition counts (default 3 each)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
KAFKA_CONF_DIR="$SCRIPT_DIR/kafka"
POM_FILE="$KAFKA_CONF_DIR/pom.xml"

KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT_SECONDS=30

RAW_TOPIC=${WEBLOG_RAW_TOPIC:-web-logs-raw}
ENRICHED_TOPIC=${WEBLOG_ENRICHED_TOPIC:-web-logs-enriched}
DLQ_TOPIC=${WEBLOG_DLQ_TOPIC:-web-logs-dlq}
RAW_PARTITIONS=${WEBLOG_RAW_PARTITIONS:-3}
ENRICHED_PARTITIONS=${WEBLOG_ENRICHED_PARTITIONS:-3}
DLQ_PARTITIONS=${WEBLOG_DLQ_PARTITIONS:-3}

log() {
    echo "kafka.sh: $*" >&2
}

warn() {
    echo "kafka.sh: warning: $*" >&2
}

die() {
    echo "kafka.sh: error: $*" >&2
    exit 1
}

# Fails unless $2 is an integer from 1 to 65535. $1 is the variable name.
require_port() {
    local name=$1 value=$2
    if ! [[ $value =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
        die "invalid $name=$value: expected a TCP port from 1 to 65535"
    fi
}

require_positive_integer() {
    local name=$1 value=$2
    if ! [[ $value =~ ^[1-9][0-9]*$ ]]; then
        die "invalid $name=$value: expected a positive integer"
    fi
}

require_port KAFKA_PORT "$KAFKA_PORT"
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
require_port KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
if ((KAFKA_CONTROLLER_PORT == KAFKA_PORT)); then
    die "KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT equals KAFKA_PORT; set it to another port or unset it to use KAFKA_PORT + 1"
fi
require_positive_integer KAFKA_START_TIMEOUT "$KAFKA_START_TIMEOUT"

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM_FILE")
[[ -n $KAFKA_VERSION ]] || die "no <kafka.version> property found in $POM_FILE"

CACHE_DIR=${WEBLOG_CACHE_DIR:-$HOME/.cache/weblog}
DIST_DIR="$CACHE_DIR/kafka-$KAFKA_VERSION"
LIBS_DIR="$DIST_DIR/libs"
# Written after a successful copy. It contains the checksum of the pom, so
# editing the pom triggers a new copy.
FETCH_MARKER="$DIST_DIR/fetch-complete"

RUN_DIR=${WEBLOG_KAFKA_RUN_DIR:-$REPO_ROOT/.cache/kafka-$KAFKA_PORT}
CONFIG_FILE="$RUN_DIR/server.properties"
DATA_DIR="$RUN_DIR/data"
LOG_FILE="$RUN_DIR/broker.log"
PID_FILE="$RUN_DIR/broker.pid"

LOCAL_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
# What to do when the storage format fails.
RESET_HINT="delete $RUN_DIR and rerun 'scripts/kafka.sh up'"
ACTIVE_BOOTSTRAP=${KAFKA_BOOTSTRAP:-$LOCAL_BOOTSTRAP}

# ---------------------------------------------------------------------------
# Jars

pom_checksum() {
    cksum <"$POM_FILE"
}

jars_are_complete() {
    [[ -f $FETCH_MARKER && "$(cat "$FETCH_MARKER")" == "$(pom_checksum)" ]]
}

cmd_fetch() {
    if jars_are_complete; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found on PATH; install Maven (Debian: apt-get install -y maven)"

    mkdir -p "$DIST_DIR"
    # Two `up` runs on different ports may fetch at the same time, so the
    # lock makes the second one wait and then find the copy complete.
    local lock_fd
    exec {lock_fd}>"$DIST_DIR/fetch.lock"
    flock "$lock_fd"
    if jars_are_complete; then
        exec {lock_fd}>&-
        return 0
    fi

    local partial_dir="$DIST_DIR/libs.partial"
    rm -rf "$partial_dir"
    local mvn_log="$DIST_DIR/mvn.log"
    local -a mvn_command=(mvn -q -B -f "$POM_FILE"
        dependency:copy-dependencies "-DoutputDirectory=$partial_dir")
    log "copying Kafka $KAFKA_VERSION jars into $LIBS_DIR"
    # Maven 3.8.7 of Debian prints colour reset codes even with -q -B, so its
    # output is shown only on failure, with escape sequences removed.
    if ! "${mvn_command[@]}" >"$mvn_log" 2>&1; then
        sed 's/\x1b\[[0-9;]*m//g' "$mvn_log" >&2
        rm -rf "$partial_dir"
        die "failed to download the Kafka jars: '${mvn_command[*]}' exited with an error (Maven output above); check network access to Maven Central and rerun 'scripts/kafka.sh fetch'"
    fi
    if ! compgen -G "$partial_dir/kafka_*.jar" >/dev/null; then
        die "'${mvn_command[*]}' succeeded but copied no kafka_*.jar into $partial_dir; check the dependencies in $POM_FILE"
    fi

    rm -rf "$LIBS_DIR"
    mv "$partial_dir" "$LIBS_DIR"
    pom_checksum >"$FETCH_MARKER"
    exec {lock_fd}>&-
    log "copied $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars into $LIBS_DIR"
}

# Fails unless java is Java 17 or later, the minimum of the Kafka 4.x broker.
require_java() {
    command -v java >/dev/null || die "java not found on PATH; install Java 17 or later (Debian: apt-get install -y openjdk-17-jre-headless)"
    local version_line major
    version_line=$(java -version 2>&1 | head -n 1)
    # The line reads 'openjdk version "17.0.15" ...'. Java 8 and older
    # report "1.8.0_...".
    major=$(sed -n 's/^[^"]*"\([0-9]*\).*/\1/p' <<<"$version_line")
    if [[ $major == 1 ]]; then
        major=$(sed -n 's/^[^"]*"1\.\([0-9]*\).*/\1/p' <<<"$version_line")
    fi
    if [[ -z $major ]] || ((major < 17)); then
        die "Kafka $KAFKA_VERSION needs Java 17 or later, but java reports: $version_line"
    fi
}

# Runs the Kafka command-line tool with main class $1 and arguments $2...
# from the cached jars, logging only warnings and errors, on stderr.
# TieredStopAtLevel=1 skips the optimizing JIT compiler, which cuts about 1 s
# from each short tool run (2.1 s to 1.2 s for 'topics --list', measured with
# OpenJDK 17 on a 2-core machine).
run_tool_class() {
    local main_class=$1
    shift
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Djava.awt.headless=true \
        "-Dlog4j2.configurationFile=$KAFKA_CONF_DIR/log4j2-tools.yaml" \
        -cp "$LIBS_DIR/*" "$main_class" "$@"
}

# ---------------------------------------------------------------------------
# Broker process

# Prints the PID from the pid file when that process is the broker started
# with our config file. Removes a pid file whose process is gone or is some
# other program that reuses the PID.
read_broker_pid() {
    [[ -f $PID_FILE ]] || return 1
    local pid
    pid=$(<"$PID_FILE")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        local command_line
        if [[ -r /proc/$pid/cmdline ]]; then
            command_line=$(tr '\0' ' ' <"/proc/$pid/cmdline")
        else
            command_line=$(ps -o args= -p "$pid" 2>/dev/null || true)
        fi
        if [[ $command_line == *kafka.Kafka*"$CONFIG_FILE"* ]]; then
            echo "$pid"
            return 0
        fi
    fi
    warn "removing stale pid file $PID_FILE: process ${pid:-?} is not running or is not the broker of this run directory"
    rm -f "$PID_FILE"
    return 1
}

# Succeeds when something accepts TCP connections on 127.0.0.1:$1.
port_accepts_connections() {
    local port=$1
    # shellcheck disable=SC2016 # $1 expands in the inner shell.
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$port" 2>/dev/null
}

# Prints the topic names at bootstrap address $1, one per line. Fails after
# about 8 s when no broker responds.
list_topics() {
    local bootstrap=$1
    run_tool_class org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$bootstrap" --list \
        --command-config "$KAFKA_CONF_DIR/admin-client.properties"
}

broker_responds() {
    list_topics "$1" >/dev/null 2>&1
}

write_config() {
    mkdir -p "$DATA_DIR"
    cat >"$CONFIG_FILE" <<EOF
# Written by scripts/kafka.sh on every start, so edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR

# A single broker can hold only one replica of each internal topic.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Consumer groups start at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
# Producing to or fetching from a missing topic does not create it, so a
# typo in a topic name fails instead of creating a new topic.
auto.create.topics.enable=false
EOF
}

# Formats DATA_DIR for the node configured in CONFIG_FILE unless it
# contains meta.properties, which a format writes. With $1 empty the format
# picks a new cluster id. Else the id comes from file $1, written by the
# first format, so that the nodes of a cluster share it.
# scripts/kafka-cluster.sh calls this for each of its nodes, with its own
# RESET_HINT.
format_storage_once() {
    local cluster_id_file=$1
    if [[ -f $DATA_DIR/meta.properties ]]; then
        return 0
    fi
    local cluster_id
    if [[ -z $cluster_id_file ]]; then
        cluster_id=$(run_tool_class kafka.tools.StorageTool random-uuid)
    else
        if [[ ! -s $cluster_id_file ]]; then
            run_tool_class kafka.tools.StorageTool random-uuid >"$cluster_id_file"
        fi
        cluster_id=$(<"$cluster_id_file")
    fi
    log "formatting $DATA_DIR with cluster id $cluster_id"
    # The static quorum of controller.quorum.voters needs no --standalone,
    # and the controller port can change between runs without a reformat.
    if ! run_tool_class kafka.tools.StorageTool format \
        --config "$CONFIG_FILE" --cluster-id "$cluster_id" >>"$LOG_FILE" 2>&1; then
        tail -n 40 "$LOG_FILE" >&2
        die "failed to format the Kafka storage in $DATA_DIR (output above, full log in $LOG_FILE); $RESET_HINT"
    fi
}

# Starts the broker in its own session, so Ctrl-C in the calling terminal
# or make does not reach it, and writes its PID to the pid file. The broker
# must not inherit the lock of start_local_broker, or the next `up` would
# wait for the lock as long as the broker runs.
start_broker_process() {
    # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS holds several flags.
    setsid java $KAFKA_HEAP_OPTS \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        "-Dlog4j2.configurationFile=$KAFKA_CONF_DIR/log4j2-broker.yaml" \
        -cp "$LIBS_DIR/*" kafka.Kafka "$CONFIG_FILE" \
        </dev/null >>"$LOG_FILE" 2>&1 {UP_LOCK_FD}>&- &
    echo "$!" >"$PID_FILE"
}

# Waits up to $2 seconds for process $1 to exit; fails if it still runs.
wait_for_exit() {
    local pid=$1 seconds=$2
    # Counts 0.2 s sleeps, because SECONDS would round the wait down.
    local ticks=0
    while kill -0 "$pid" 2>/dev/null; do
        if ((ticks >= seconds * 5)); then
            return 1
        fi
        sleep 0.2
        ticks=$((ticks + 1))
    done
}

# Sends SIGTERM to the broker, waits for it to exit, and sends SIGKILL after
# STOP_TIMEOUT_SECONDS.
stop_broker_process() {
    local pid=$1
    log "stopping the broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for_exit "$pid" "$STOP_TIMEOUT_SECONDS"; then
        warn "broker (pid $pid) still running $STOP_TIMEOUT_SECONDS s after SIGTERM; sending SIGKILL (see $LOG_FILE)"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for_exit "$pid" 5 || warn "broker (pid $pid) still running 5 s after SIGKILL"
    fi
    rm -f "$PID_FILE"
}

# Waits until the broker with PID $1 serves requests, for at most
# KAFKA_START_TIMEOUT seconds.
wait_until_broker_responds() {
    local pid=$1
    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while true; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            tail -n 40 "$LOG_FILE" >&2
            die "the broker (pid $pid) exited during start-up; the last 40 lines of $LOG_FILE are above"
        fi
        # The port check is cheap but the admin request starts a JVM, so the
        # request waits until the port is open.
        if port_accepts_connections "$KAFKA_PORT" && broker_responds "$LOCAL_BOOTSTRAP"; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            tail -n 40 "$LOG_FILE" >&2
            stop_broker_process "$pid"
            die "timed out after $KAFKA_START_TIMEOUT s waiting for the broker at $LOCAL_BOOTSTRAP; the last 40 lines of $LOG_FILE are above. The broker was stopped; set KAFKA_START_TIMEOUT to wait longer"
        fi
        sleep 0.5
    done
}

start_local_broker() {
    mkdir -p "$RUN_DIR"
    # Serializes concurrent `up` runs on the same run directory.
    exec {UP_LOCK_FD}>"$RUN_DIR/up.lock"
    flock "$UP_LOCK_FD"

    local pid
    if pid=$(read_broker_pid); then
        log "broker already running (pid $pid) at $LOCAL_BOOTSTRAP"
        exec {UP_LOCK_FD}>&-
        return 0
    fi

    local port suggested_port=$((KAFKA_PORT == 19092 ? 29092 : 19092))
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_accepts_connections "$port"; then
            die "port $port on 127.0.0.1 is already in use by another process (find it with 'ss -ltnp | grep :$port'); stop that process or pick other ports, for example KAFKA_PORT=$suggested_port (the controller uses KAFKA_PORT + 1 unless KAFKA_CONTROLLER_PORT is set)"
        fi
    done

    cmd_fetch
    # Keeps the log of the previous run as broker.log.1.
    if [[ -f $LOG_FILE ]]; then
        mv "$LOG_FILE" "$LOG_FILE.1"
    fi
    write_config
    format_storage_once ""

    local started_at=$SECONDS
    start_broker_process
    pid=$(<"$PID_FILE")
    log "starting the broker (pid $pid) at $LOCAL_BOOTSTRAP, controller 127.0.0.1:$KAFKA_CONTROLLER_PORT, log $LOG_FILE"
    wait_until_broker_responds "$pid"
    log "broker ready at $LOCAL_BOOTSTRAP after $((SECONDS - started_at)) s"
    exec {UP_LOCK_FD}>&-
}

# ---------------------------------------------------------------------------
# Commands

cmd_up() {
    require_java
    if [[ -n $KAFKA_BOOTSTRAP ]]; then
        cmd_fetch
        log "KAFKA_BOOTSTRAP is set; checking the broker at $KAFKA_BOOTSTRAP instead of starting one"
        if ! broker_responds "$KAFKA_BOOTSTRAP"; then
            die "no Kafka broker responded at KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP; start that broker, correct the address, or unset KAFKA_BOOTSTRAP to start a local broker"
        fi
    else
        start_local_broker
    fi
    cmd_topics
}

cmd_down() {
    local pid
    if pid=$(read_broker_pid); then
        stop_broker_process "$pid"
        log "broker stopped"
        return 0
    fi
    if [[ -n $KAFKA_BOOTSTRAP ]]; then
        log "KAFKA_BOOTSTRAP is set and no local broker runs; nothing to stop"
        return 0
    fi
    log "no broker running from $PID_FILE; nothing to stop"
    if port_accepts_connections "$KAFKA_PORT"; then
        warn "port $KAFKA_PORT still accepts connections, but $PID_FILE names no running broker, so nothing is stopped; find the process with 'ss -ltnp | grep :$KAFKA_PORT'"
    fi
}

cmd_topics() {
    require_positive_integer WEBLOG_RAW_PARTITIONS "$RAW_PARTITIONS"
    require_positive_integer WEBLOG_ENRICHED_PARTITIONS "$ENRICHED_PARTITIONS"
    require_positive_integer WEBLOG_DLQ_PARTITIONS "$DLQ_PARTITIONS"
    if [[ -z $KAFKA_BOOTSTRAP ]] && ! port_accepts_connections "$KAFKA_PORT"; then
        die "no broker listens at $LOCAL_BOOTSTRAP; start one with 'scripts/kafka.sh up', or set KAFKA_BOOTSTRAP or KAFKA_PORT to reach another"
    fi
    require_java
    cmd_fetch

    # Each tool run starts a JVM (about 1 s), so one listing replaces three
    # create requests when the topics exist, the usual case of `up`.
    local existing_topics
    if ! existing_topics=$(list_topics "$ACTIVE_BOOTSTRAP"); then
        die "failed to list the topics at $ACTIVE_BOOTSTRAP (tool output above); check that the broker runs ('scripts/kafka.sh status')"
    fi
    # NOTE: an existing topic is kept as it is, even when its partition count
    # differs from the one requested here.
    create_topic "$RAW_TOPIC" "$RAW_PARTITIONS" "$existing_topics"
    create_topic "$ENRICHED_TOPIC" "$ENRICHED_PARTITIONS" "$existing_topics"
    create_topic "$DLQ_TOPIC" "$DLQ_PARTITIONS" "$existing_topics"
}

# Creates topic $1 with $2 partitions unless it is in the list $3.
create_topic() {
    local topic=$1 partitions=$2 existing_topics=$3
    if grep -qxF -- "$topic" <<<"$existing_topics"; then
        log "topic $topic already exists"
        return 0
    fi
    # --if-not-exists covers a topic created by someone else since the listing.
    if ! run_tool_class org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$ACTIVE_BOOTSTRAP" --create --if-not-exists \
        --topic "$topic" --partitions "$partitions" --replication-factor 1 \
        >&2; then
        die "failed to create topic '$topic' at $ACTIVE_BOOTSTRAP (tool output above); check the topic name and partition count, and that the broker runs"
    fi
    log "topic $topic created with $partitions partitions"
}

# Prints the main class of the Kafka tool NAME. Each class is in the Kafka
# 4.1.1 jars (kafka-tools, or kafka_2.13 for ConfigCommand).
tool_main_class() {
    case $1 in
        topics) echo org.apache.kafka.tools.TopicCommand ;;
        consumer-groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
        get-offsets) echo org.apache.kafka.tools.GetOffsetShell ;;
        console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
        console-producer) echo org.apache.kafka.tools.ConsoleProducer ;;
        configs) echo kafka.admin.ConfigCommand ;;
        broker-api-versions) echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
        metadata-quorum) echo org.apache.kafka.tools.MetadataQuorumCommand ;;
        *) return 1 ;;
    esac
}

cmd_tool() {
    local names="topics, consumer-groups, get-offsets, console-consumer, console-producer, configs, broker-api-versions, metadata-quorum"
    (($# >= 1)) || die "missing tool name; usage: scripts/kafka.sh tool NAME [ARGS...] with NAME one of: $names"
    local name=$1
    shift
    local main_class
    main_class=$(tool_main_class "$name") || die "unknown tool '$name'; expected one of: $names"
    require_java
    cmd_fetch

    local arg
    for arg in "$@"; do
        case $arg in
            --bootstrap-server | --bootstrap-server=* | --bootstrap-controller | --bootstrap-controller=*)
                run_tool_class "$main_class" "$@"
                return
                ;;
        esac
    done
    # The option goes first because metadata-quorum accepts it only before
    # its subcommand, and the other tools accept it anywhere.
    run_tool_class "$main_class" --bootstrap-server "$ACTIVE_BOOTSTRAP" "$@"
}

cmd_bootstrap() {
    echo "$ACTIVE_BOOTSTRAP"
}

cmd_status() {
    if [[ -n $KAFKA_BOOTSTRAP ]]; then
        echo "KAFKA_BOOTSTRAP is set: clients use the broker at $KAFKA_BOOTSTRAP"
    fi
    local pid
    if pid=$(read_broker_pid); then
        echo "local broker running: pid $pid, bootstrap $LOCAL_BOOTSTRAP, controller 127.0.0.1:$KAFKA_CONTROLLER_PORT, run directory $RUN_DIR"
        return 0
    fi
    echo "local broker not running (run directory $RUN_DIR)"
    return 3
}

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

main() {
    local command=${1:-}
    (($# == 0)) || shift
    case $command in
        fetch) cmd_fetch ;;
        up) cmd_up ;;
        down) cmd_down ;;
        topics) cmd_topics ;;
        tool) cmd_tool "$@" ;;
        bootstrap) cmd_bootstrap ;;
        status) cmd_status ;;
        -h | --help | help) usage ;;
        "")
            usage >&2
            exit 2
            ;;
        *)
            usage >&2
            die "unknown command '$command'"
            ;;
    esac
}

# scripts/kafka-cluster.sh sources this file for its functions and runs
# commands of its own.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
