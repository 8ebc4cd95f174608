"""Every Redis key and key prefix the task layer uses, declared once and grouped by the module that owns it.

The strings are a contract, not a style: deployed Redis data, dashboards and the operators' scripts
read them, so a key is never renamed in passing (``tests/tasks/test_keys.py`` pins every string).
The owning modules import their keys from here; nothing else in ``tasks/`` spells ``rdb24:``.

A prefix names a family of keys: the owner appends ``:<part>`` (``DONE_PREFIX:<message id>:<step>``),
or appends directly when the prefix already ends in ``:`` (``METRICS_PREFIX<counter name>``), as it
always did. Each comment gives the Redis type and what the key holds; "expiring" means every write
sets a TTL.

The Bitrix24 client keeps its own keys (rate-limit bucket, operating time, OAuth pair, locks) under
``BITRIX24_NAMESPACE``, which ``tasks.runtime.resources`` passes in as ``Bitrix24Config.key_prefix``:
``clients/`` spells no namespace of ours.

Not Redis keys, so not here: the ``rdb24:<message id>`` tag hidden in CRM chat text
(``tasks.flows.chat.TAG_PREFIX``) and the test fixtures' database claim (``sandbox.stack.redis_db``).
"""

from __future__ import annotations

# --- tasks.state.effects: effect markers and leases
# string <prefix>:<message id>:<step>: the step's marker (started/done, result) as JSON, expiring
DONE_PREFIX = "rdb24:done"
# string <prefix>:<name>: a redis-py lock token, a lease renewed while held, expiring
LOCK_PREFIX = "rdb24:lock"

# --- tasks.state.inflight: chains enqueued and not yet settled
# zset: member = ledger key, score = when tracked or last resent
INFLIGHT_LEDGER = "rdb24:inflight"
# hash: ledger key -> {"kind": ..., "payload": ...} JSON, what to resend
INFLIGHT_MESSAGES = "rdb24:inflight:messages"

# --- tasks.state.dead_letters: the dead-letter store
# hash: dead-letter id -> DeadLetter JSON
DLQ_ITEMS = "rdb24:dlq:items"
# zset: dead-letter id, score = creation time (newest-first listing)
DLQ_INDEX = "rdb24:dlq:index"

# --- tasks.state.accounts_index: owner phone -> RosDomofon account
# hash: owner phone -> AccountRef JSON (rebuilt as <key>:building:<stamp>, then renamed over it)
ACCOUNTS_BY_PHONE = "rdb24:accounts:by_phone"
# string: Redis server time of the last rebuild
ACCOUNTS_REFRESHED_AT = "rdb24:accounts:refreshed_at"

# --- tasks.state.subscribers: what the message flow learned about a subscriber
# string <prefix>:<abonent id>: SubscriberRecord JSON, expiring
SUBSCRIBER_PREFIX = "rdb24:subscriber"

# --- tasks.flows.contact: phone -> Bitrix24 contact
# string <prefix>:<phone>: Bitrix24 contact id, expiring
CONTACT_BY_PHONE_PREFIX = "rdb24:contact:phone"

# --- tasks.state.outbox: subscriber messages waiting for a batched post (tasks.flows.post_batch)
# hash: message id -> OutboxItem JSON (the post step's payload and its failed attempts)
OUTBOX_ITEMS = "rdb24:outbox:items"
# zset <prefix>:<abonent id>: that subscriber's waiting message ids, score = arrival sequence
OUTBOX_SUBSCRIBER_PREFIX = "rdb24:outbox:subscriber"
# zset: abonent ids with waiting messages, score = arrival sequence of their oldest one
OUTBOX_READY = "rdb24:outbox:ready"
# string: the arrival counter (INCR)
OUTBOX_SEQ = "rdb24:outbox:seq"
# string: "1" while a flush is scheduled (so each window schedules one), expiring
OUTBOX_KICK = "rdb24:outbox:kick"

# --- tasks.flows.contact_batch: phones waiting for a batched contact look-up
# hash: phone -> crm.contact.add fields JSON
CONTACT_PENDING = "rdb24:contact:pending"

# --- tasks.flows.crm_chat: contact -> its CRM chat
# string <prefix>:<contact id>: Bitrix24 chat id, expiring
CRM_CHAT_PREFIX = "rdb24:crmchat:contact"

# --- tasks.flows.openlines: the Open Lines connector setup
# string <prefix>:<connector>:<line>: "1" once registered, bound and activated, expiring
OPENLINES_READY_PREFIX = "rdb24:openlines:ready"
# string: the line id picked when OPENLINES_LINE_ID is empty, expiring
OPENLINES_LINE = "rdb24:openlines:line"

# --- tasks.webhook.receiver: operator replies already enqueued
# string <prefix>:<task id>: "1" while the reply is enqueued (duplicate events are dropped), expiring
REPLY_ENQUEUED_PREFIX = "rdb24:reply:enqueued"

# --- tasks.ingest.metrics: live ingest processes
# string <prefix><host>-<pid>: the process's status snapshot JSON, expiring
INGEST_STATUS_PREFIX = "rdb24:ingest:status:"

# --- tasks.reconcile: reconciliation runs
# string: the running reconciliation's redis-py lock token, expiring (kept alive by a heartbeat)
RECONCILE_RUN_LOCK = "rdb24:lock:reconcile"
# string: the latest finished run's RunReport JSON
RECONCILE_LAST_REPORT = "rdb24:reconcile:last_report"
# list: the last RunReport JSONs, newest first
RECONCILE_REPORTS = "rdb24:reconcile:reports"
# hash: RosDomofon account id -> "<contact id>:<digest>" of what was last written
RECONCILE_FINGERPRINTS = "rdb24:reconcile:fingerprints"
# string: digest of the user-field specs last ensured on the portal
RECONCILE_USERFIELDS = "rdb24:reconcile:userfields"

# --- tasks.runtime.metrics: product counters shared by every process
# hash <prefix><counter name>: JSON list of label values -> float total
METRICS_PREFIX = "rdb24:metrics:"

# --- tasks.runtime.schedule: RedBeat, so only one beat schedules
# RedBeat's redbeat_key_prefix: a hash per entry, zset <prefix>:schedule, and the lock below
REDBEAT_PREFIX = "rdb24:redbeat:"
# string: the active beat's lock token, expiring
REDBEAT_LOCK = REDBEAT_PREFIX + ":lock"
# SCAN pattern that finds the beat lock (``rdb24 status``)
REDBEAT_LOCK_PATTERN = "*redbeat::lock"

# --- clients.bitrix24: its namespace, passed in as Bitrix24Config.key_prefix
# prefix of every key the client keeps: bucket, operating time, OAuth pair, refresh and create locks
BITRIX24_NAMESPACE = "rdb24:b24"
# hash <prefix><limiter key>: the portal's leaky bucket (level, ts), expiring
BITRIX24_BUCKET_PREFIX = BITRIX24_NAMESPACE + ":bucket:"
# SCAN pattern that finds every portal's bucket (``rdb24 status``)
BITRIX24_BUCKET_PATTERN = BITRIX24_BUCKET_PREFIX + "*"

__all__ = [
    "ACCOUNTS_BY_PHONE",
    "ACCOUNTS_REFRESHED_AT",
    "BITRIX24_BUCKET_PATTERN",
    "BITRIX24_BUCKET_PREFIX",
    "BITRIX24_NAMESPACE",
    "CONTACT_BY_PHONE_PREFIX",
    "CONTACT_PENDING",
    "CRM_CHAT_PREFIX",
    "DLQ_INDEX",
    "DLQ_ITEMS",
    "DONE_PREFIX",
    "INFLIGHT_LEDGER",
    "INFLIGHT_MESSAGES",
    "INGEST_STATUS_PREFIX",
    "LOCK_PREFIX",
    "METRICS_PREFIX",
    "OPENLINES_LINE",
    "OPENLINES_READY_PREFIX",
    "OUTBOX_ITEMS",
    "OUTBOX_KICK",
    "OUTBOX_READY",
    "OUTBOX_SEQ",
    "OUTBOX_SUBSCRIBER_PREFIX",
    "RECONCILE_FINGERPRINTS",
    "RECONCILE_LAST_REPORT",
    "RECONCILE_REPORTS",
    "RECONCILE_RUN_LOCK",
    "RECONCILE_USERFIELDS",
    "REDBEAT_LOCK",
    "REDBEAT_LOCK_PATTERN",
    "REDBEAT_PREFIX",
    "REPLY_ENQUEUED_PREFIX",
    "SUBSCRIBER_PREFIX",
]
