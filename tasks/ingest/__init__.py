"""``rdb24 ingest``: the Kafka ingest worker (MESSAGES_IN_<company> -> incoming-message chains).

Run one process per partition at most (they share one consumer group, so each partition is read by
exactly one of them). See :mod:`tasks.ingest.worker` for the delivery rules.
"""

from __future__ import annotations

from tasks.ingest.runner import build_worker, run_ingest
from tasks.ingest.worker import IngestWorker

__all__ = ["IngestWorker", "build_worker", "run_ingest"]
