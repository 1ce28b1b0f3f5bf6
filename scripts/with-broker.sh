#!/usr/bin/env bash
# Runs a command with a Kafka broker available at KAFKA_BOOTSTRAP.
#
# Usage: scripts/with-broker.sh COMMAND [ARGS...]
#
# With KAFKA_BOOTSTRAP already set, the command runs against that broker.
# Otherwise the local broker is started with scripts/kafka.sh if it is not
# running, and stopped again afterwards only if this script started it.
# The exit status is the command's.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kafka="$here/kafka.sh"

started=0
if [[ -z "${KAFKA_BOOTSTRAP:-}" ]] && ! "$kafka" status >/dev/null 2>&1; then
    started=1
fi
stop_broker() {
    if [[ "$started" == 1 ]]; then
        "$kafka" down
    fi
}
trap stop_broker EXIT

"$kafka" up
KAFKA_BOOTSTRAP=$("$kafka" bootstrap)
export KAFKA_BOOTSTRAP
"$@"
