"""Consumes raw access-log lines, parses them with a regular expression,
adds the service and produces JSON records.

Part of the reconstruction of the seed prototype that weblog replaced (see
README.md here). Lines that do not match are skipped with a message on
stderr. Each record keeps the input's key. On SIGTERM or SIGINT it stops,
flushes and prints its totals as one JSON line.
"""

import argparse
import json
import re
import signal
import sys

from confluent_kafka import Consumer, Producer

# Combined Log Format; the referrer and user agent are optional (Common Log
# Format).
LOG_LINE = re.compile(
    r'(?P<remote_addr>\S+) (?P<ident>\S+) (?P<remote_user>\S+) '
    r'\[(?P<time_local>[^\]]+)\] '
    r'"(?P<method>\S+) (?P<path>\S+)(?: (?P<protocol>[^"]*))?" '
    r'(?P<status>\d{3}) (?P<body_bytes_sent>\S+)'
    r'(?: "(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)")?'
)

SERVICES = {
    "/api/orders": "orders-api",
}
DEFAULT_SERVICE = "web"

running = True


def stop(signum, frame):
    global running
    running = False


def service_for(path):
    for prefix, service in SERVICES.items():
        if path.startswith(prefix):
            return service
    return DEFAULT_SERVICE


def enrich(line):
    match = LOG_LINE.match(line)
    if not match:
        return None
    record = match.groupdict()
    record["status"] = int(record["status"])
    size = record["body_bytes_sent"]
    record["body_bytes_sent"] = 0 if size == "-" else int(size)
    record["service"] = service_for(record["path"])
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--input-topic", default="web-logs-raw")
    parser.add_argument("--output-topic", default="web-logs-enriched")
    parser.add_argument("--group-id", default="seed-enricher")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap_servers,
        "group.id": args.group_id,
        "auto.offset.reset": "earliest",
    })
    producer = Producer({"bootstrap.servers": args.bootstrap_servers})
    consumer.subscribe([args.input_topic])

    consumed = produced = skipped = 0
    while running:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            print(f"consumer error: {msg.error()}", file=sys.stderr)
            continue
        consumed += 1
        line = msg.value().decode("utf-8", errors="replace")
        record = enrich(line)
        if record is None:
            skipped += 1
            print(f"skipping unparsable line: {line[:200]}", file=sys.stderr)
            continue
        while True:
            try:
                producer.produce(args.output_topic, key=msg.key(), value=json.dumps(record))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        produced += 1

    producer.flush(30)
    consumer.close()
    print(json.dumps({"consumed": consumed, "produced": produced, "skipped": skipped}))


if __name__ == "__main__":
    main()
