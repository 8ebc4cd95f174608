"""The message headers our tasks carry from attempt to attempt, declared once.

Headers, not payload fields, because other services enqueue our tasks by name with payloads they
own; what the task layer adds travels beside them and survives retries, chains and replays.
"""

from __future__ import annotations

RETRIES_HEADER = "rdb24_retries"  # {cause: count} carried from attempt to attempt
MESSAGE_HEADER = "rdb24_message_id"  # id of the subscriber message or operator reply a task serves
REPLAY_HEADER = "rdb24_replay_of"  # dead-letter id when the run is a replay
