"""``python -m tests.faults.celery_entry worker ...``: ``celery -A tasks`` with a faster unacked sweep.

kombu's Redis transport moves a crashed worker's unacked messages back to their queue only in its
periodic sweep, every ``unacked_restore_interval`` (10 s) x ``unacked_restore_throttle`` (10) seconds,
and the product exposes no setting for it. Fault scenarios use a 10 s visibility timeout; a 100 s
sweep would make every recovery wait for it. ``FAULTS_RESTORE_INTERVAL`` (seconds) sets both class
defaults so the sweep runs that often; everything else is the product's own configuration.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    interval = os.environ.get("FAULTS_RESTORE_INTERVAL")
    if interval:
        from kombu.transport import redis as kombu_redis

        kombu_redis.Channel.unacked_restore_interval = int(interval)
        kombu_redis.Channel.unacked_restore_throttle = 1
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", "-A", "tasks", *sys.argv[1:]]
    sys.exit(celery_main())


if __name__ == "__main__":
    main()
