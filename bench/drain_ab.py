"""Drains one raw topic with several enrichers in turn, to compare them.

Each label names an enricher: `pass` is `weblog-bench passthrough`, any
other label is a `weblog-host` binary given as LABEL=PATH. The script
ships the replay file once into a 3-partition topic. Each round then
drains it with every enricher, each in a group and output topics of its
own. The order is reversed every other round, so that a drift of the
machine's load does not favour one side. A drain's clock starts at its group's
first commit, so start-up and the group join are left out, and stops
when the commits cover every record. CPU time is utime + stime from
/proc over the same span, for the enricher and, with --broker-pid, for
the broker.

Run with the venv that scripts/bench-pipeline.sh creates:

    scripts/with-broker.sh .cache/bench/venv/bin/python bench/drain_ab.py \\
        --host old=/tmp/old/weblog-host --host new=target/release/weblog-host
"""

import argparse
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 3
POLL_SECONDS = 0.05


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", action="append", default=[], metavar="LABEL=PATH",
                        help="a weblog-host binary to compare; repeat for several")
    parser.add_argument("--no-passthrough", action="store_true",
                        help="leave out the passthrough loop")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--replay", type=Path,
                        default=ROOT / ".cache/bench/replay-1000000.log")
    parser.add_argument("--bin-dir", type=Path, default=ROOT / "target/release",
                        help="weblog-shipper and weblog-bench")
    parser.add_argument("--plugin", type=Path, default=ROOT /
                        "plugins/target/wasm32-wasip2/release/weblog_access_log.wasm")
    parser.add_argument("--broker-pid", type=int, default=0,
                        help="PID of the broker, to count its CPU time too")
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/drain-ab"))
    args = parser.parse_args()
    hosts = {}
    for item in args.host:
        label, sep, path = item.partition("=")
        if not sep or not label or label == "pass":
            parser.error(f"invalid --host {item!r}: expected LABEL=PATH, LABEL not 'pass'")
        hosts[label] = Path(path)
    if not hosts and args.no_passthrough:
        parser.error("nothing to compare: give --host, or drop --no-passthrough")
    if not args.replay.is_file():
        parser.error(f"replay file {args.replay} not found; run scripts/bench-pipeline.sh once")
    return args, hosts


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


class Cluster:
    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def create(self, *topics):
        futures = self.admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
        for future in futures.values():
            future.result()

    def end_offsets(self, topic):
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "drain-ab-probe"})
        try:
            return sum(consumer.get_watermark_offsets(TopicPartition(topic, p))[1]
                       for p in range(PARTITIONS))
        finally:
            consumer.close()

    def committed(self, group, topic):
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            offsets = consumer.committed(
                [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=5)
            return sum(max(tp.offset, 0) for tp in offsets)
        finally:
            consumer.close()


def drain(args, cluster, hosts, label, raw, records, name):
    cluster.create(f"{name}-out", f"{name}-dlq")
    if label == "pass":
        command = [args.bin_dir / "weblog-bench", "passthrough"]
    else:
        command = [hosts[label], "run", "--plugin", args.plugin, "--dlq-topic", f"{name}-dlq",
                   "--component-cache", args.out_dir / "components"]
    command += ["--bootstrap-servers", cluster.bootstrap, "--input-topic", raw,
                "--output-topic", f"{name}-out", "--group-id", name]
    with open(args.out_dir / f"{name}.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log,
                                   env={**os.environ, "RUST_LOG": "info"})
        try:
            while (first := cluster.committed(name, raw)) == 0:
                if process.poll() is not None:
                    raise SystemExit(
                        f"{label} exited with status {process.returncode} before its first "
                        f"commit; see {log.name}")
                time.sleep(POLL_SECONDS)
            start, cpu, broker = time.monotonic(), cpu_seconds(process.pid), 0.0
            if args.broker_pid:
                broker = cpu_seconds(args.broker_pid)
            while cluster.committed(name, raw) < records:
                time.sleep(POLL_SECONDS)
            seconds = time.monotonic() - start
            cpu = cpu_seconds(process.pid) - cpu
            if args.broker_pid:
                broker = cpu_seconds(args.broker_pid) - broker
            rss = peak_rss_mib(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait()
    measured = records - first
    return {
        "rate": measured / seconds,
        "cpu": cpu / measured * 1e6,
        "broker": broker / measured * 1e6,
        "rss": rss,
    }


def main():
    args, hosts = parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    stamp = str(int(time.time()))
    raw = f"drain-ab-raw-{stamp}"
    cluster.create(raw)
    subprocess.run([args.bin_dir / "weblog-shipper", "--bootstrap-servers", cluster.bootstrap,
                    "--file", args.replay, "--topic", raw, "--progress", "off"], check=True)
    records = cluster.end_offsets(raw)
    labels = ([] if args.no_passthrough else ["pass"]) + list(hosts)
    results = {label: [] for label in labels}
    for round_ in range(args.rounds):
        for label in labels if round_ % 2 == 0 else labels[::-1]:
            name = f"drain-ab-{label}-{round_}-{stamp}"
            result = drain(args, cluster, hosts, label, raw, records, name)
            results[label].append(result)
            print(f"round {round_} {label}: {result['rate']:,.0f} records/s, "
                  f"{result['cpu']:.2f} CPU s per M records, broker {result['broker']:.2f}, "
                  f"peak RSS {result['rss']} MiB", flush=True)
    print(f"\n{records:,} records, {args.rounds} rounds; medians:")
    print("| enricher | records/s | CPU s per M records | broker CPU s per M records "
          "| peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for label, rows in results.items():
        median = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        print(f"| {label} | {median['rate']:,.0f} | {median['cpu']:.2f} | "
              f"{median['broker']:.2f} | {median['rss']:.0f} |")


if __name__ == "__main__":
    main()
