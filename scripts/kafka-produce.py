#!/usr/bin/env python3
"""Produces records to Kafka with an independent client (confluent-kafka, its own librdkafka),
for tests that need what kcat cannot set: a chosen CreateTime, binary headers.

usage: kafka-produce.py BOOTSTRAP TOPIC < records.jsonl
Each line: {"key": str|null, "value": str, "headers": {name: str}, "timestamp": int|null,
            "partition": int|null}
Exits 0 once every record is acknowledged, 1 with the error otherwise."""
import json
import sys

from confluent_kafka import Producer


def main() -> int:
    bootstrap, topic = sys.argv[1], sys.argv[2]
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 4000000, "enable.idempotence": True})
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(str(err))

    for line in sys.stdin:
        if not line.strip():
            continue
        r = json.loads(line)
        kwargs = {"key": None if r.get("key") is None else r["key"].encode(), "value": r["value"].encode(),
                  "headers": [(k, v.encode()) for k, v in (r.get("headers") or {}).items()], "on_delivery": report}
        if r.get("timestamp") is not None:
            kwargs["timestamp"] = int(r["timestamp"])
        if r.get("partition") is not None:
            kwargs["partition"] = int(r["partition"])
        producer.produce(topic, **kwargs)
    left = producer.flush(30)
    if left or errors:
        print(f"not delivered: {left} left, errors {errors}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
