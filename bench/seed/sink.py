"""Consumes enriched JSON records and appends them to a JSON Lines file.

Part of the reconstruction of the seed prototype that weblog replaced (see
README.md here). Offsets are committed automatically every 5 s, whether or
not the lines reached the disk. On SIGTERM or SIGINT it stops and closes
the file.
"""

import argparse
import signal
import sys

from confluent_kafka import Consumer

running = True


def stop(signum, frame):
    global running
    running = False


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="web-logs-enriched")
    parser.add_argument("--group-id", default="seed-sink")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap_servers,
        "group.id": args.group_id,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([args.topic])
    written = 0
    with open(args.output, "a") as out:
        while running:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                print(f"consumer error: {msg.error()}", file=sys.stderr)
                continue
            out.write(msg.value().decode("utf-8") + "\n")
            # So that `tail -f` shows each record as it arrives.
            out.flush()
            written += 1
    consumer.close()
    print(f"wrote {written} records", file=sys.stderr)


if __name__ == "__main__":
    main()
