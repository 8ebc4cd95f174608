"""Scenarios 14a, 14b, 14h (issue 14.1) and 14i (14.2): operator replies are stored before the receiver
answers, so nothing Bitrix24 was told "200" about is lost, whatever happens to Redis or the receiver
afterwards; and a retried reply is recognised by id, not by its text.

Bitrix24 never sends an event twice. Each scenario first lets a few subscribers write (so their Open
Lines dialogs exist and our receiver is bound), then operators reply through the portal simulator,
which POSTs each event to the receiver once. Counted in the RosDomofon simulator: each reply the
receiver accepted must reach the subscriber's history exactly once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from sandbox.stack.embedded import free_port, wait_for_port
from tasks.state import inflight
from tests.faults import report, tally
from tests.faults.conftest import StackFactory
from tests.faults.harness import Stack, StackOptions
from tests.faults.procs import ManagedProcess
from tests.faults.scenario import now

REPLIES = 20
SUBSCRIBERS = 5
OUTAGE_SECONDS = 4.0


class Replies:
    """Operator replies sent through the portal simulator, and what the receiver answered to each."""

    def __init__(self, stack: Stack, subscribers: list[tuple[int, str]]) -> None:
        self.stack = stack
        self.subscribers = subscribers
        self.accepted: list[str] = []  # markers of replies answered 200
        self.refused: list[str] = []  # markers of replies the receiver could not be reached for
        self._lock = threading.Lock()

    def send(self, count: int, pause: float = 0.0) -> None:
        assert self.stack.sims is not None
        for _ in range(count):
            with self._lock:
                index = len(self.accepted) + len(self.refused)
            abonent_id, _ = self.subscribers[index % len(self.subscribers)]
            mark = tally.marker(self.stack.run, 10_000 + index)
            outcome = self.stack.sims.bitrix24.operator_reply(
                f"{mark} ответ оператора", external_chat_id=f"abonent-{abonent_id}"
            )
            statuses = [d.get("status") for d in outcome["deliveries"]]
            with self._lock:
                (self.accepted if statuses == [200] else self.refused).append(mark)
            time.sleep(pause)

    def seen(self) -> Counter[str]:
        """Markers of every reply in the subscribers' RosDomofon histories."""
        assert self.stack.sims is not None
        world = self.stack.sims.rosdomofon.world
        with world.lock:
            texts = [m.text for m in world.messages if not m.incoming]
        return tally.count_markers(self.stack.run, texts)


def _stack(stack_factory: StackFactory) -> tuple[Stack, ManagedProcess, list[tuple[int, str]]]:
    port = free_port()
    stack = stack_factory(StackOptions(env={"WEBHOOK_PUBLIC_URL": f"http://127.0.0.1:{port}"}))
    stack.worker("worker1", concurrency=2)
    stack.ingest()
    webhook = stack.webhook(port)
    subscribers = stack.subscribers(SUBSCRIBERS)
    stack.send(SUBSCRIBERS, subscribers)  # one message each: their dialogs exist, the handler is bound
    stack.wait_delivered(90)
    stack.wait_settled()
    return stack, webhook, subscribers


def _finish(stack: Stack, replies: Replies, scenario: str, *, fault_ended_at: float) -> None:
    recovery: float | None = None
    error: AssertionError | None = None
    try:
        stack.wait_until(
            lambda: all(replies.seen()[m] >= 1 for m in replies.accepted), 120, "every accepted reply sent"
        )
        recovery = max(0.0, now() - fault_ended_at)
        stack.wait_settled()
        time.sleep(1.0)  # a late duplicate would show by now
    except AssertionError as exc:
        error = exc
    seen = replies.seen()
    result = tally.tally(replies.accepted, seen)
    refused_twice = [m for m in replies.refused if seen[m] > 1]
    report.record(
        report.ScenarioOutcome(
            scenario=scenario,
            messages=len(replies.accepted),
            lost=len(result.lost),
            duplicated=result.extra + len(refused_twice),
            dead_lettered=len(stack.dead_letters()),
            recovery_s=recovery,
        )
    )
    if error is not None:
        raise error
    assert result.exact, result.describe("operator replies") + "\n" + stack.diagnostics()
    assert not refused_twice, refused_twice
    assert not stack.dead_letters()
    assert not inflight.stalled(stack.redis(), older_than=0)


def test_replies_arriving_while_redis_is_stopped_are_all_sent_once_it_returns(
    stack_factory: StackFactory,
) -> None:
    stack, _, subscribers = _stack(stack_factory)
    assert stack.redis_server is not None
    replies = Replies(stack, subscribers)
    replies.send(3)
    # Stopped with no task running: a worker whose task loses Redis mid-run can hang (issue 14.5, its
    # own scenario); this one is about the receiver taking the replies that arrive meanwhile.
    stack.wait_until(lambda: all(replies.seen()[m] for m in replies.accepted), 60, "the first replies sent")
    stack.wait_settled()
    stack.redis_server.stop()
    replies.send(REPLIES)  # every one answered 200 from the spool, none can be published yet
    assert len(replies.accepted) == REPLIES + 3, f"refused while Redis was down: {replies.refused}"
    time.sleep(OUTAGE_SECONDS)
    stack.redis_server.start()
    _finish(stack, replies, "14a redis stopped, 20 replies", fault_ended_at=now())


def test_receiver_killed_mid_stream_and_restarted_loses_no_accepted_reply(
    stack_factory: StackFactory,
) -> None:
    stack, webhook, subscribers = _stack(stack_factory)
    replies = Replies(stack, subscribers)
    stream = threading.Thread(target=replies.send, args=(REPLIES // 2 + 4, 0.05), daemon=True)
    stream.start()
    stack.wait_until(lambda: len(replies.accepted) >= REPLIES // 4, 60, "a quarter of the replies accepted")
    webhook.kill()  # kill -9 mid-stream: no shutdown code, whatever the drain thread was doing
    stream.join(60)  # the stream's last replies find no receiver (Bitrix24 gives up on those)
    webhook.start()
    wait_for_port("127.0.0.1", port_of(webhook), timeout=30, proc=webhook.process)
    replies.send(REPLIES - len(replies.accepted))
    assert len(replies.accepted) >= REPLIES, replies.refused
    _finish(stack, replies, "14b receiver kill -9 mid-stream", fault_ended_at=now())


def port_of(process: ManagedProcess) -> int:
    return int(process.argv[process.argv.index("--port") + 1])


def test_receiver_killed_with_replies_still_spooled_hands_them_to_its_successor(
    stack_factory: StackFactory,
) -> None:
    """The receiver dies while Redis is down, its spool full: the next receiver (a new pid, so a new
    spool file) adopts the dead one's file and forwards every row once Redis is back."""
    stack, webhook, subscribers = _stack(stack_factory)
    assert stack.redis_server is not None
    replies = Replies(stack, subscribers)
    stack.redis_server.stop()
    replies.send(10)
    assert len(replies.accepted) == 10, replies.refused
    webhook.kill()
    webhook.start()
    stack.redis_server.start()
    _finish(stack, replies, "14h receiver kill -9 with a full spool", fault_ended_at=now())


SEND_PATH = "/abonents-service/api/v1/messages"  # RosDomofon POST /messages, not the history GET


def test_same_reply_text_twice_with_a_503_on_the_second_send_delivers_both(
    stack_factory: StackFactory,
) -> None:
    """Scenario 14i (issue 14.2): operators answer "Спасибо" twice; the second send gets a 503 and is retried.
    The retry must not take the first "Спасибо" in the history for its own send."""
    stack, _, subscribers = _stack(stack_factory)
    assert stack.sims is not None
    rosdomofon, bitrix24 = stack.sims.rosdomofon, stack.sims.bitrix24
    texts = {abonent_id: f"{stack.run}-S{abonent_id} Спасибо" for abonent_id, _ in subscribers}

    def seen(abonent_id: int) -> int:
        return sum(
            1 for m in rosdomofon.history(abonent_id) if not m.incoming and texts[abonent_id] in m.text
        )

    for abonent_id, _ in subscribers:
        assert bitrix24.operator_reply(texts[abonent_id], external_chat_id=f"abonent-{abonent_id}")[
            "deliveries"
        ]
        stack.wait_until(lambda a=abonent_id: seen(a) == 1, 60, "the first reply sent")
        rosdomofon.faults.update(path_prefix=SEND_PATH, fail_next=1, fail_status=503)
        assert bitrix24.operator_reply(texts[abonent_id], external_chat_id=f"abonent-{abonent_id}")[
            "deliveries"
        ]
        stack.wait_until(lambda: rosdomofon.faults.settings.fail_next == 0, 60, "the 503 served")
    rosdomofon.faults.clear()
    fault_ended_at = now()
    recovery: float | None = None
    try:
        stack.wait_until(lambda: all(seen(a) >= 2 for a, _ in subscribers), 90, "every second reply sent")
        recovery = now() - fault_ended_at
        stack.wait_settled()
        time.sleep(1.0)
    finally:
        counts = [seen(a) for a, _ in subscribers]
        report.record(
            report.ScenarioOutcome(
                scenario="14i same reply text twice, 503 on the second",
                messages=2 * len(subscribers),
                lost=sum(max(0, 2 - c) for c in counts),
                duplicated=sum(max(0, c - 2) for c in counts),
                dead_lettered=len(stack.dead_letters()),
                recovery_s=recovery,
            )
        )
    assert counts == [2] * len(subscribers), counts
    assert not stack.dead_letters()
