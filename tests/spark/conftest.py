"""Spark tests run only under `make test-spark` (RICKHOUSE_TEST_SPARK=1, pyspark installed):
pyspark is ~0.5 GB and a JVM, so `make test` does not even collect them."""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("RICKHOUSE_TEST_SPARK") == "1" else ["test_*.py"]
