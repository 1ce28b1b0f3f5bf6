"""Ships an access log to Kafka, one record per line.

Part of the reconstruction of the seed prototype that weblog replaced (see
README.md here). The seed slept 50 ms after each line; this copy does not,
so that it runs as fast as it can.
"""

import argparse
import json
import sys

from confluent_kafka import Producer


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="web-logs-raw")
    parser.add_argument("--file", required=True)
    args = parser.parse_args()

    producer = Producer({"bootstrap.servers": args.bootstrap_servers})
    sent = 0
    with open(args.file, "rb") as log:
        for line in log:
            line = line.rstrip(b"\n")
            while True:
                try:
                    producer.produce(args.topic, value=line)
                    break
                except BufferError:
                    # Without the sleep the local queue fills up; wait for
                    # deliveries to make room.
                    producer.poll(0.1)
            producer.poll(0)
            sent += 1
    left = producer.flush(30)
    if left:
        print(f"{left} lines not delivered", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"sent": sent}))


if __name__ == "__main__":
    main()
