"""``RosDomofonKafkaClient``: the upstream library's Kafka interface, for code that embeds it.

A handler set with :meth:`set_message_handler` receives validated :class:`KafkaIncomingMessage`s on a
background thread started by :meth:`start_consuming`. Replies go to ``MESSAGES_OUT_<company>`` in the
exact shape upstream sends, and return only once the broker confirmed them. The production ingest
worker (``tasks.ingest``) runs on the same :class:`GroupConsumer`, with dead letters and backpressure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import Message
from loguru import logger
from pydantic import SecretStr

from clients.kafka.config import KafkaConfig
from clients.kafka.consumer import GroupConsumer, run
from clients.kafka.errors import KafkaClientError, KafkaRecordError, PoisonRecordError
from clients.kafka.producer import ConfirmedProducer, Delivered
from clients.kafka.records import decode_incoming
from schemas.kafka import KafkaAbonentInfo, KafkaIncomingMessage, KafkaOutgoingMessage

MessageHandler = Callable[[KafkaIncomingMessage], Any]


class RosDomofonKafkaClient:
    """Consume subscriber messages and send replies for one company, as upstream's client did."""

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        company_short_name: str | None = None,
        group_id: str | None = None,
        username: str | None = None,
        password: str | SecretStr | None = None,
        ssl_ca_cert_path: str | None = None,
        *,
        config: KafkaConfig | None = None,
        consumer_extra: Mapping[str, Any] | None = None,
    ) -> None:
        if config is None:
            config = KafkaConfig(
                bootstrap_servers=bootstrap_servers or "",
                company_short_name=company_short_name or "",
                group_id=group_id,
                username=username,
                password=password,  # type: ignore[arg-type]
                ssl_ca_cert_path=ssl_ca_cert_path,
            )
        self.config = config
        self.topics = config.topics
        self._consumer_extra = dict(consumer_extra or {})
        self._handler: MessageHandler | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._producer: ConfirmedProducer | None = None
        self._producer_lock = threading.Lock()

    # --- consuming ------------------------------------------------------------------------------------
    def set_message_handler(self, handler: MessageHandler) -> None:
        self._handler = handler

    def start_consuming(self) -> None:
        """Start the background thread reading ``MESSAGES_IN_<company>`` (idempotent)."""
        if self._handler is None:
            raise RuntimeError("set_message_handler(handler) before start_consuming()")
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        consumer = GroupConsumer(self.config, [self.topics.messages_in], extra=self._consumer_extra)
        self._thread = threading.Thread(
            target=self._consume, args=(consumer,), name=f"kafka-{self.topics.messages_in}", daemon=True
        )
        self._thread.start()
        logger.info("consuming {} as group {}", self.topics.messages_in, consumer.group_id)

    def stop_consuming(self, timeout: float = 15.0) -> None:
        """Finish the message in hand, commit, leave the group; returns within about ``timeout``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("kafka consumer thread did not stop within {:g}s", timeout)
            self._thread = None

    @property
    def consuming(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _consume(self, consumer: GroupConsumer) -> None:
        def on_message(msg: Message) -> None:
            self._deliver(msg)
            consumer.store(msg)

        try:
            run(consumer, on_message, self._stop, poll_timeout=0.2)
        except KafkaClientError as exc:
            logger.error("kafka consumer stopped: {}", exc)
        finally:
            consumer.close()

    def _deliver(self, msg: Message) -> None:
        where = f"{msg.topic()}:{msg.partition()}:{msg.offset()}"
        try:
            message = decode_incoming(msg.value())
        except PoisonRecordError as exc:
            logger.error("skipping unreadable record {}: {}", where, exc)
            return
        assert self._handler is not None
        try:
            self._handler(message)
        except Exception:
            logger.exception("message handler failed on {}", where)

    # --- producing ------------------------------------------------------------------------------------
    @property
    def producer(self) -> ConfirmedProducer:
        with self._producer_lock:
            if self._producer is None:
                self._producer = ConfirmedProducer(self.config)
            return self._producer

    def send_message(
        self, to_abonent_id: int, to_abonent_phone: int | str, message: str, company_id: int | None = None
    ) -> Delivered:
        """One support message to one subscriber through ``MESSAGES_OUT_<company>``."""
        try:
            outgoing = KafkaOutgoingMessage.to_subscriber(
                to_abonent_id, to_abonent_phone, message, company_id=company_id
            )
        except ValueError as exc:
            raise KafkaRecordError(f"invalid recipient or text: {exc}", code="INVALID_RECIPIENTS") from None
        return self._send(outgoing)

    def send_message_to_multiple(self, to_abonents: Sequence[Mapping[str, Any]], message: str) -> Delivered:
        """One record addressed to several subscribers (``{"id", "phone", "companyId"?}`` each)."""
        try:
            recipients = [KafkaAbonentInfo.model_validate(dict(item)) for item in to_abonents]
            outgoing = KafkaOutgoingMessage(message=message, to_abonents=recipients)
        except ValueError as exc:
            raise KafkaRecordError(f"invalid recipients: {exc}", code="INVALID_RECIPIENTS") from None
        return self._send(outgoing)

    def _send(self, outgoing: KafkaOutgoingMessage) -> Delivered:
        delivered = self.producer.send(self.topics.messages_out, outgoing.to_json_bytes())
        logger.info(
            "sent message to {} subscriber(s) via {}:{}:{}",
            len(outgoing.to_abonents),
            delivered.topic,
            delivered.partition,
            delivered.offset,
        )
        return delivered

    # --- lifecycle ------------------------------------------------------------------------------------
    def close(self) -> None:
        self.stop_consuming()
        with self._producer_lock:
            if self._producer is not None:
                self._producer.close()
                self._producer = None

    def __enter__(self) -> RosDomofonKafkaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
