"""A fingerprint per account in Redis, so an unchanged account costs no Bitrix24 request at all.

The hash ``rdb24:reconcile:fingerprints`` maps account id -> ``"<contact id>:<digest>"``, written
only AFTER the portal confirmed the contact holds exactly the desired fields. An account whose
desired contact hashes to the stored digest is skipped without reading the portal; one with no
entry (new, or its write never confirmed because the run died) is re-checked against the portal,
which is what makes a killed run safe to restart. ``--full`` ignores the stored digests (an operator
may have edited our fields in Bitrix24) but still uses the stored contact ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis
from redis.typing import EncodableT

from tasks.reconcile.mapping import DesiredContact
from tasks.state import keys

FINGERPRINTS_KEY = keys.RECONCILE_FINGERPRINTS
# Bump when the mapping changes shape: every account is then re-checked once.
MAPPING_VERSION = 1


def fingerprint(desired: DesiredContact) -> str:
    """A short stable digest of what we would write (phone and owned fields)."""
    body = json.dumps(
        {"v": MAPPING_VERSION, "phone": desired.phone, "fields": desired.fields},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Stored:
    contact_id: int
    digest: str


class FingerprintStore:
    """Reads all fingerprints in one HGETALL and writes them in pipelined HSETs."""

    def __init__(self, client: redis.Redis, key: str = FINGERPRINTS_KEY) -> None:
        self.client = client
        self.key = key

    def load(self) -> dict[int, Stored]:
        stored: dict[int, Stored] = {}
        for raw_account, raw_value in self.client.hgetall(self.key).items():
            account = raw_account.decode() if isinstance(raw_account, bytes) else raw_account
            value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
            contact, _, digest = value.partition(":")
            stored[int(account)] = Stored(contact_id=int(contact), digest=digest)
        return stored

    def save(self, entries: Mapping[int, Stored]) -> None:
        if entries:
            mapping: dict[EncodableT, EncodableT] = {
                str(account): f"{s.contact_id}:{s.digest}" for account, s in entries.items()
            }
            self.client.hset(self.key, mapping=mapping)

    def forget(self, account_ids: Iterable[int]) -> None:
        ids = [str(a) for a in account_ids]
        if ids:
            self.client.hdel(self.key, *ids)

    def clear(self) -> None:
        self.client.delete(self.key)


__all__ = ["FINGERPRINTS_KEY", "FingerprintStore", "Stored", "fingerprint"]
