"""How long a publish to the broker may wait for Redis, by who is publishing.

Kept apart from ``tasks.runtime.app`` so the flows can import the policies without importing the app.
"""

from __future__ import annotations

from typing import Any

# Workers: ride out a short Redis restart (~60 s of attempts) rather than drop a chain's next step.
PUBLISH_RETRY_POLICY: dict[str, Any] = {
    "max_retries": 60,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}

# The ingest worker: Celery's own short default (~0.6 s). It must hear about an outage at once, as
# it keeps polling Kafka, pauses the partition and retries the record itself (offset not stored).
QUICK_PUBLISH_RETRY_POLICY: dict[str, Any] = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
