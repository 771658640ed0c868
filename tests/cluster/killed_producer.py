"""Child process of test_transactions: opens a transaction, produces, says READY, waits to be killed.

argv: bootstrap_servers topic transactional_id partitions(comma-separated)
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import Producer


def main() -> None:
    servers, topic, txid, parts = sys.argv[1:5]
    p = Producer(
        {
            "bootstrap.servers": servers,
            "transactional.id": txid,
            "enable.idempotence": True,
            "acks": "all",
            "transaction.timeout.ms": 2000,
        }
    )
    p.init_transactions(10)
    p.begin_transaction()
    for part in parts.split(","):
        p.produce(topic, value=b"killed", partition=int(part), headers=[("kind", b"data")])
    p.flush(10)
    print("READY", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    main()
