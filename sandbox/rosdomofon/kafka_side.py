"""The subscriber-app stand-in on Kafka (docs/rosdomofon-api.md §4).

- :meth:`SubscriberApp.send_from_subscriber` produces to ``MESSAGES_IN_<company>`` exactly the real
  sample's shape: text in ``localizedPush.message``, ``message`` null, no key, UTF-8 JSON.
- A consumer thread reads ``MESSAGES_OUT_<company>`` (from its end at start-up) and records each
  accepted message in the recipients' history; a record in the wrong shape is kept in
  :attr:`SubscriberApp.out_records` with the reason instead of being delivered.
- :meth:`SubscriberApp.publish_signup` produces a sign-up event to ``SIGN_UPS_<company>`` and
  ``SIGN_UPS_ALL``.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from loguru import logger

from sandbox.rosdomofon.state import Abonent, SignUp, World


class KafkaSideError(RuntimeError):
    """The broker refused or did not confirm a record."""


def incoming_payload(
    abonent: Abonent, text: str, channel: str = "support", image_url: str | None = None
) -> dict[str, Any]:
    """A MESSAGES_IN record value as RosDomofon sends it (the §4 real sample, field for field).

    ``image_url``: a picture the subscriber sent, in the optional ``imageUrl`` field (§4 lists it
    among the model's optional fields; the real sample has none, so it is left out unless given).
    """
    picture = {"imageUrl": image_url} if image_url else {}
    return {
        "fromAbonent": {
            "id": abonent.id,
            "phone": abonent.phone,
            "companyId": abonent.company_id,
            "restrictionPushTokenIds": [],
        },
        "channel": channel,
        "message": None,
        "deliveryMethod": None,
        "toAbonents": None,
        "broadcast": False,
        "waitResponse": True,
        "localizedPush": {"message": text, "messageKey": None, "messageArgs": None},
        **picture,
    }


class SubscriberApp:
    def __init__(self, bootstrap: str, company: str, world: World, *, group_id: str | None = None) -> None:
        self.bootstrap = bootstrap
        self.company = company
        self.world = world
        self.topic_in = f"MESSAGES_IN_{company}"
        self.topic_out = f"MESSAGES_OUT_{company}"
        self.topic_signups = f"SIGN_UPS_{company}"
        self.group_id = group_id or f"rosdomofon-sandbox-{company}-{uuid.uuid4().hex[:8]}"
        self.out_records: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None
        self._assigned = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        self._create_topics(timeout)
        self._producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        self._thread = threading.Thread(target=self._consume, name="rosdomofon-sim-out", daemon=True)
        self._thread.start()
        if not self._assigned.wait(timeout):
            logger.warning("rosdomofon sandbox: MESSAGES_OUT consumer not assigned after {}s", timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None

    def _create_topics(self, timeout: float) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        names = [self.topic_in, self.topic_out, self.topic_signups, "SIGN_UPS_ALL"]
        futures = admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
        for future in futures.values():
            try:
                future.result(timeout=timeout)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise

    # --- producing ---------------------------------------------------------------------------

    def send_from_subscriber(
        self, abonent_id: int, text: str, channel: str = "support", image_url: str | None = None
    ) -> dict[str, Any]:
        """Produce a subscriber message (``image_url``: with a picture) and record it (incoming) in
        the history; returns the record."""
        with self.world.lock:
            abonent = self.world.abonents.get(abonent_id)
            if abonent is None:
                raise KeyError(f"abonent {abonent_id} not found")
        payload = incoming_payload(abonent, text, channel, image_url)
        record = self._produce(self.topic_in, payload)
        with self.world.lock:
            message = self.world.record_message(abonent_id, channel, text, incoming=True, source="kafka-in")
        return {**record, "messageId": message.id, "payload": payload}

    def publish_signup(self, signup: SignUp) -> list[dict[str, Any]]:
        with self.world.lock:
            payload = signup_payload(self.world, signup)
        return [self._produce(topic, payload) for topic in (self.topic_signups, "SIGN_UPS_ALL")]

    def _produce(self, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self._producer is None:
            raise KafkaSideError("the Kafka side is not started")
        delivered: dict[str, Any] = {}

        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                delivered["error"] = str(err)
            else:
                delivered.update(topic=msg.topic(), partition=msg.partition(), offset=msg.offset())

        value = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._producer.produce(topic, value=value, on_delivery=on_delivery)
        self._producer.flush(10)
        if "error" in delivered or "offset" not in delivered:
            raise KafkaSideError(f"record to {topic} not confirmed: {delivered.get('error', 'timeout')}")
        logger.info(
            "rosdomofon sandbox: produced to {} [{}] @{}", topic, delivered["partition"], delivered["offset"]
        )
        return delivered

    # --- consuming MESSAGES_OUT --------------------------------------------------------------

    def _consume(self) -> None:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": self.group_id, "enable.auto.commit": False,
        })  # fmt: skip
        try:
            # Start at the current end of every partition: this simulator delivers what is produced
            # after it started, never an earlier simulator's records (ids repeat with the same seed).
            topic = consumer.list_topics(self.topic_out, timeout=10).topics[self.topic_out]
            start = []
            for partition in topic.partitions:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic_out, partition), timeout=10
                )
                start.append(TopicPartition(self.topic_out, partition, high))
            consumer.assign(start)
            self._assigned.set()
            while not self._stop.is_set():
                msg = consumer.poll(0.3)
                if msg is None:
                    continue
                if msg.error() is not None:
                    logger.warning("rosdomofon sandbox: MESSAGES_OUT error {}", msg.error())
                    continue
                self._deliver(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.value())
        finally:
            consumer.close()

    def _deliver(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        entry: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset, "delivered_to": []}
        try:
            payload = json.loads(value or b"")
            entry["payload"] = payload
            recipients = check_outgoing(payload)
        except ValueError as exc:
            entry["rejected"] = str(exc)
            logger.warning("rosdomofon sandbox: MESSAGES_OUT record rejected: {}", exc)
            self.out_records.append(entry)
            return
        with self.world.lock:
            for item in recipients:
                abonent_id = item.get("id")
                if abonent_id not in self.world.abonents:
                    entry.setdefault("unknown_recipients", []).append(abonent_id)
                    continue
                self.world.record_message(
                    abonent_id, payload.get("channel") or "support", payload["message"],
                    incoming=False, source="kafka-out",
                )  # fmt: skip
                entry["delivered_to"].append(abonent_id)
        self.out_records.append(entry)


def check_outgoing(payload: Any) -> list[dict[str, Any]]:
    """The §4 MESSAGES_OUT shape: ``PUSH`` upper-case, text in ``message``, ``{id, phone}`` recipients.

    Returns the recipients; raises ``ValueError`` naming what is wrong. Public because the contract
    test feeds it what the upstream package's Kafka client produces.
    """
    if not isinstance(payload, dict):
        raise ValueError("record value is not a JSON object")
    if payload.get("deliveryMethod") != "PUSH":
        raise ValueError(f"deliveryMethod {payload.get('deliveryMethod')!r} is not 'PUSH'")
    if not isinstance(payload.get("message"), str) or not payload["message"]:
        raise ValueError("message text missing")
    sender = payload.get("fromAbonent")
    if sender is not None and not (isinstance(sender, dict) and "id" in sender and "phone" in sender):
        raise ValueError("fromAbonent must be null or {id, phone, ...}")
    recipients = payload.get("toAbonents")
    if not isinstance(recipients, list) or not recipients:
        raise ValueError("toAbonents must be a non-empty list")
    for item in recipients:
        if not (
            isinstance(item, dict) and isinstance(item.get("id"), int) and isinstance(item.get("phone"), int)
        ):
            raise ValueError(f"toAbonents item {item!r} must be {{companyId, id: int, phone: int}}")
    return recipients


def signup_payload(world: World, signup: SignUp) -> dict[str, Any]:
    """A SIGN_UPS record as in the §4 real sample (no entrance id; ``flat`` only when known)."""
    abonent = world.abonents[signup.abonent_id]
    entrance = world.entrances[signup.entrance_id]
    address: dict[str, Any] = {
        "country": {"shortName": "RU", "name": "Россия"},
        "city": entrance.city,
        "street": {"id": entrance.street_id, "name": entrance.street, "codeKladr": None, "codeFias": None},
        "house": {"id": entrance.house_id, "number": entrance.house, "block": None, "building": None,
                  "housing": None},
    }  # fmt: skip
    if signup.flat is not None:
        address["flat"] = signup.flat
    return {
        "id": signup.id,
        "abonent": {"id": abonent.id, "phone": abonent.phone},
        "address": address,
        "application": {"id": 1, "name": "rd_android", "provider": "google", "companyId": abonent.company_id},
        "virtual": signup.virtual,
        "timeZone": "Europe/Moscow +03:00",
        "offerSigned": True,
        "contractNumber": None,
        "status": signup.status,
        "createdAt": signup.created_at,
        "uid": signup.uid,
    }


__all__ = ["KafkaSideError", "SubscriberApp", "check_outgoing", "incoming_payload", "signup_payload"]
