"""A learner-like consumer run as its own process by test_kafka_groups.py, then killed with SIGKILL.

It writes every event it processes to the lake (its "outputs", deduplicated on natural keys) and
commits offsets only for the first ``commit_upto`` events; after that it keeps processing without
committing, prints ``READY <processed> <committed>`` and waits to be killed: a crash between
checkpoint and commit.

    python tests/kafka/killed_consumer.py BOOTSTRAP GROUP TAG LAKE_DIR TOTAL COMMIT_UPTO
"""

from __future__ import annotations

import sys
import time

from continuum.config import KafkaConfig
from continuum.kafka_bus import KafkaBus
from continuum.lake import Lake


def main() -> None:
    bootstrap, group, tag, lake_dir, total, commit_upto = sys.argv[1:7]
    total_n, commit_n = int(total), int(commit_upto)
    cfg = KafkaConfig(bootstrap_servers=bootstrap, session_timeout_ms=3000, heartbeat_interval_ms=500)
    bus = KafkaBus(cfg, partitions=4, create_topics=False)
    c = bus.consumer(["market.trades"], group)
    lake = Lake(lake_dir)
    processed = committed = 0
    deadline = time.monotonic() + 60
    while processed < total_n and time.monotonic() < deadline:
        batch = c.poll(timeout_s=0.5, max_records=50)
        outputs = [m.event for m in batch if m.key.startswith(tag)]
        lake.append_events(outputs)  # the derived state is durable ...
        processed += len(outputs)
        if processed <= commit_n:
            c.commit()  # ... and only then is the offset committed
            committed = processed
    print(f"READY {processed} {committed}", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()
