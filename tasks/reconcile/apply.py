"""Writing the plan: ``batch`` requests of 50 commands, each inside the client's shared rate limiter.

What happens to a failure depends on whether the write may have happened (docs/bitrix24-api.md §5, §8):

* per-command error inside a batch answer: that command did not commit. Rate-limit and other
  "retry later" codes are retried in the next round; input/access errors fail that contact only;
* the whole batch refused for the rate limit (QUERY_LIMIT_EXCEEDED): nothing ran, send it again;
* the whole batch ambiguous (timeout, 5xx, broken answer): some commands may have committed, so it is
  NEVER re-sent as is. The affected contacts are read back (creates by ORIGIN_ID, adoptions by id)
  and re-planned: only what is still missing or different is written again;
* anything else (auth, access, overload block) stops the run: the task layer decides by category.

A contact's fingerprint is stored as soon as its write is confirmed, so a run killed halfway only
re-checks the accounts it had not confirmed yet.

Creates go through the message flow's gate (:class:`tasks.flows.contact.PhoneGate`): each create
batch is sent holding the per-phone locks the flow takes to find or create a subscriber's contact.
A phone whose lock is busy (a message of that owner is being handled) waits for the next round; a
phone the flow has a contact for is looked up again and re-planned (adopted or updated), never
created; what the batch created is cached for the flow. An owner who writes during a run therefore
gets one contact, whichever side comes first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from loguru import logger

from clients.bitrix24.errors import error_class
from clients.errors import LookUpFirstError, RateLimitedError, RetryLaterError
from schemas.bitrix24 import BatchResult
from tasks.flows.contact import PhoneGate
from tasks.reconcile.fingerprint import FingerprintStore, Stored
from tasks.reconcile.mapping import DesiredContact
from tasks.reconcile.plan import ContactWrite, ObservedContact, WriteKind, build_plan
from tasks.reconcile.portal import PortalReader
from tasks.reconcile.report import RunReport

BATCH_SIZE = 50
MAX_ROUNDS = 4


class WriterClient(Protocol):
    def batch(self, commands: Any, halt: bool = False) -> BatchResult: ...


def command(write: ContactWrite) -> tuple[str, dict[str, Any]]:
    if write.kind == WriteKind.CREATE:
        return "crm.contact.add", {"fields": write.fields, "params": {"REGISTER_SONET_EVENT": "N"}}
    return "crm.contact.update", {"id": write.contact_id, "fields": write.fields}


def command_id(write: ContactWrite) -> str:
    return f"a{write.account_id}"


_COUNTERS = {WriteKind.CREATE: "created", WriteKind.UPDATE: "updated", WriteKind.ADOPT: "adopted"}


class Applier:
    def __init__(
        self,
        client: WriterClient,
        reader: PortalReader,
        store: FingerprintStore,
        report: RunReport,
        desired: Mapping[int, DesiredContact],
        digests: Mapping[int, str],
        *,
        sleep: Callable[[float], None] = time.sleep,
        max_rounds: int = MAX_ROUNDS,
        gate: PhoneGate | None = None,
        fence: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.reader = reader
        self.store = store
        self.report = report
        self.desired = desired
        self.digests = digests
        self.sleep = sleep
        self.max_rounds = max_rounds
        self.gate = gate
        self.fence = fence  # raises when the run lock is lost: no batch is sent after that
        # The kind each account was first planned as: a create found committed on re-check counts
        # as created, not as unchanged.
        self._kind: dict[int, WriteKind] = {}
        self._confirmed: dict[int, int] = {}  # account id -> contact id, as confirmed by the portal
        # Creates re-checked because the flow knew a contact for the phone: if the re-check still
        # plans a create (that contact is another account's, or gone), it is not re-checked again.
        self._rechecked: set[int] = set()

    def apply(self, writes: Sequence[ContactWrite]) -> None:
        for write in writes:
            self._kind.setdefault(write.account_id, write.kind)
        pending = list(writes)
        recheck: list[ContactWrite] = []
        for round_no in range(1, self.max_rounds + 1):
            if recheck:
                try:
                    pending.extend(self._replan(recheck))
                    recheck = []
                except RetryLaterError as exc:
                    logger.warning("reconcile: re-check read failed ({}), trying again next round", exc)
            retry: list[ContactWrite] = []
            for start in range(0, len(pending), BATCH_SIZE):
                again, unsure = self._apply_chunk(pending[start : start + BATCH_SIZE])
                retry.extend(again)
                recheck.extend(unsure)
            pending = retry
            if not pending and not recheck:
                return
            delay = min(30.0, 2.0**round_no)
            logger.info(
                "reconcile: round {}: {} to retry, {} to re-check; next round in {:.0f}s",
                round_no,
                len(pending),
                len(recheck),
                delay,
            )
            self.sleep(delay)
        for write in [*pending, *recheck]:
            self.report.add_failure(write.account_id, write.kind.value, "still failing after retries")

    def _apply_chunk(self, chunk: Sequence[ContactWrite]) -> tuple[list[ContactWrite], list[ContactWrite]]:
        """Send one batch, its creates through the gate; returns (to send again, to re-check first)."""
        phones = {
            w.account_id: phone
            for w in chunk
            if w.kind == WriteKind.CREATE and (phone := self.desired[w.account_id].phone)
        }
        if self.gate is None or not phones:
            return self._send(chunk)
        with self.gate.claim(phones.values()) as claimed:
            known = self.gate.known(claimed)
            busy = [w for w in chunk if w.account_id in phones and phones[w.account_id] not in claimed]
            taken = [
                w for w in chunk if phones.get(w.account_id) in known and w.account_id not in self._rechecked
            ]
            self._rechecked.update(w.account_id for w in taken)
            if busy or taken:
                logger.info(
                    "reconcile: {} create(s) wait for a message's contact lookup, {} re-checked first",
                    len(busy), len(taken),
                )  # fmt: skip
            skip = {w.account_id for w in [*busy, *taken]}
            again, unsure = self._send([w for w in chunk if w.account_id not in skip])
            for write in chunk:
                stored = self._confirmed.get(write.account_id)
                if write.account_id in phones and stored is not None:
                    self.gate.remember(phones[write.account_id], stored)
        return [*again, *busy], [*unsure, *taken]

    def _send(self, chunk: Sequence[ContactWrite]) -> tuple[list[ContactWrite], list[ContactWrite]]:
        """Send one batch; returns (writes to send again, writes to re-check before any retry)."""
        if not chunk:
            return [], []
        commands = {command_id(w): command(w) for w in chunk}
        self.fence()
        try:
            outcome = self.client.batch(commands)
        except RateLimitedError as exc:
            logger.info("reconcile: batch refused by the rate limit, resending: {}", exc)
            self.sleep(exc.retry_after or 1.0)
            return list(chunk), []
        except (LookUpFirstError, RetryLaterError) as exc:
            logger.warning("reconcile: batch of {} ambiguous ({}); re-checking before retry", len(chunk), exc)
            return [], list(chunk)
        confirmed: dict[int, Stored] = {}
        retry: list[ContactWrite] = []
        unsure: list[ContactWrite] = []
        for write in chunk:
            cid = command_id(write)
            error = outcome.errors.get(cid)
            if error is None and cid in outcome.results:
                contact_id = write.contact_id or _as_id(outcome.results[cid])
                if contact_id is None:
                    unsure.append(write)
                    continue
                confirmed[write.account_id] = Stored(contact_id, self.digests[write.account_id])
                self._confirmed[write.account_id] = contact_id
                self._count(write.account_id)
                continue
            if error is None:
                unsure.append(write)  # neither result nor error: cannot tell whether it ran
                continue
            cls = error_class(error.error, None, error.error_description, write=True)
            if issubclass(cls, LookUpFirstError):
                unsure.append(write)
            elif issubclass(cls, RetryLaterError):
                retry.append(write)
            else:
                text = f"{error.error} {error.error_description}".strip()
                logger.error("reconcile: account {} {} failed: {}", write.account_id, write.kind.value, text)
                self.report.add_failure(write.account_id, write.kind.value, text)
        self.fence()
        self.store.save(confirmed)
        return retry, unsure

    def _replan(self, writes: Sequence[ContactWrite]) -> list[ContactWrite]:
        """Read the affected contacts back and plan again: only what did not land is written again."""
        accounts = [w.account_id for w in writes]
        ours = self.reader.by_origin_ids(accounts)
        adopt_ids = {w.account_id: w.contact_id for w in writes if w.kind == WriteKind.ADOPT and w.contact_id}
        adoptable: dict[int, ObservedContact] = {}
        if adopt_ids:
            by_id = {c.id: c for c in self.reader.by_ids(adopt_ids.values()) if not c.ours}
            adoptable = {a: by_id[cid] for a, cid in adopt_ids.items() if cid in by_id}
        adoptable.update(self._adoptable_for_creates(writes, ours))
        plan = build_plan([self.desired[a] for a in accounts], ours, adoptable)
        for write in plan.of_kind(WriteKind.ADOPT):  # a create that found someone's contact after all
            self._kind[write.account_id] = WriteKind.ADOPT
        confirmed = {a: Stored(cid, self.digests[a]) for a, cid in plan.unchanged.items()}
        for account_id in confirmed:
            self._count(account_id)
        self.fence()
        self.store.save(confirmed)
        logger.info(
            "reconcile: re-check of {}: {} landed, {} to write", len(writes), len(confirmed), len(plan.writes)
        )
        return plan.writes

    def _adoptable_for_creates(
        self, writes: Sequence[ContactWrite], ours: Sequence[ObservedContact]
    ) -> dict[int, ObservedContact]:
        """For creates that found no contact of ours: one made meanwhile by someone else (the
        message flow before it knew the account, an operator), matched by phone as on a first run."""
        if self.gate is None:
            return {}
        origins = {c.origin_id for c in ours if c.ours}
        homeless = {
            w.account_id: phone
            for w in writes
            if w.kind == WriteKind.CREATE
            and str(w.account_id) not in origins
            and (phone := self.desired[w.account_id].phone)
        }
        return self.reader.adoption_candidates(homeless)[0] if homeless else {}

    def _count(self, account_id: int) -> None:
        kind = self._kind.get(account_id, WriteKind.UPDATE)
        name = _COUNTERS[kind]
        setattr(self.report, name, getattr(self.report, name) + 1)


def _as_id(result: Any) -> int | None:
    try:
        return int(result)
    except (TypeError, ValueError):
        return None


__all__ = ["Applier", "command", "command_id"]
