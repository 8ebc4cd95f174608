"""A producer whose ``send`` returns only once the broker confirmed the record (or raises why not).

Upstream waits 10 s for each send result; we do the same through ``message.timeout.ms`` so librdkafka
always reports the outcome itself before our wait ends, and translate a refusal into our error tree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from clients.kafka.config import KafkaConfig
from clients.kafka.errors import KafkaUnavailableError, translate

Headers = Sequence[tuple[str, str | bytes]]


@dataclass(frozen=True)
class Delivered:
    """Where the broker stored a record."""

    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, msg: Message) -> Delivered:
        """Where ``msg`` is stored: set on every record the broker reports or hands out; only an error
        event (``msg.error()``) lacks it, and such an event is never a record to process."""
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or partition is None or offset is None:
            raise ValueError(f"not a stored record: {msg.error()}")
        return cls(topic, partition, offset)


class _Report:
    """Collects the delivery reports of one ``send_many`` call."""

    def __init__(self, expected: int) -> None:
        self.remaining = expected
        self.results: list[Delivered | KafkaError | None] = [None] * expected
        self.done = threading.Event()
        self._lock = threading.Lock()

    def callback(self, index: int) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            with self._lock:
                self.results[index] = err if err is not None else Delivered.of(msg)
                self.remaining -= 1
                if self.remaining == 0:
                    self.done.set()

        return on_delivery


class ConfirmedProducer:
    """Thread-safe; one per process is enough (create lazily after a fork)."""

    def __init__(self, config: KafkaConfig, *, extra: dict | None = None) -> None:
        self._config = config
        self._producer = Producer({**config.producer_config(), **(extra or {})})

    def send(self, topic: str, value: bytes, *, headers: Headers | None = None) -> Delivered:
        return self.send_many(topic, [value], headers=headers)[0]

    def send_many(
        self, topic: str, values: Sequence[bytes], *, headers: Headers | None = None
    ) -> list[Delivered]:
        """Produce every value, wait for every report; raise the first refusal (others may have landed)."""
        report = _Report(len(values))
        for index, value in enumerate(values):
            try:
                self._producer.produce(
                    topic, value, headers=list(headers or []), on_delivery=report.callback(index)
                )
            except BufferError:
                self._producer.poll(1.0)
                try:
                    self._producer.produce(
                        topic, value, headers=list(headers or []), on_delivery=report.callback(index)
                    )
                except Exception as exc:
                    raise translate(exc, context=f"produce to {topic}") from exc
            except Exception as exc:
                raise translate(exc, context=f"produce to {topic}") from exc
        self._wait(report, topic)
        delivered: list[Delivered] = []
        for result in report.results:
            if isinstance(result, KafkaError):
                raise translate(result, context=f"delivery to {topic}")
            assert result is not None
            delivered.append(result)
        return delivered

    def _wait(self, report: _Report, topic: str) -> None:
        # message.timeout.ms bounds librdkafka; the margin only guards against a wedged client.
        deadline = time.monotonic() + self._config.delivery_timeout_s + 5.0
        while not report.done.is_set():
            if time.monotonic() > deadline:
                raise KafkaUnavailableError(f"no delivery report from {topic} in time", code="_TIMED_OUT")
            self._producer.poll(0.05)

    def flush(self, timeout: float = 10.0) -> int:
        return self._producer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
