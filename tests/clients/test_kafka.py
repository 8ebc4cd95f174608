"""clients.kafka against the bundled Tansu broker and the RosDomofon simulator's Kafka side."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from loguru import logger
from pydantic import SecretStr

from clients import errors as categories
from clients.kafka import (
    KafkaConfig,
    KafkaRecordError,
    KafkaUnavailableError,
    PoisonRecordError,
    RosDomofonKafkaClient,
    Topics,
    decode_incoming,
    translate,
)
from clients.kafka.delegation import KafkaNotConfiguredError
from clients.kafka.errors import AUTH_CODES, RECORD_CODES, UNAVAILABLE_CODES, KafkaAuthError
from sandbox.rosdomofon import RosDomofonSimulator
from schemas.kafka import KafkaIncomingMessage

CATEGORIES = (
    categories.RetryLaterError,
    categories.ReauthenticateError,
    categories.FixInputError,
    categories.LookUpFirstError,
    categories.DoNotRetryError,
)
REAL_SAMPLE = (
    '{"fromAbonent":{"id":1574870,"phone":79308312222,"companyId":1292,"restrictionPushTokenIds":[]},'
    '"channel":"support","message":null,"deliveryMethod":null,"toAbonents":null,"broadcast":false,'
    '"waitResponse":true,"localizedPush":{"message":"Здравствуйте, не работает домофон",'
    '"messageKey":null,"messageArgs":null}}'
)


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout}s")


# --- error translation -------------------------------------------------------------------------------


def _all_codes() -> dict[str, int]:
    return {n: getattr(KafkaError, n) for n in dir(KafkaError) if n.lstrip("_").isupper()}


def test_every_kafka_error_code_maps_to_exactly_one_category() -> None:
    for name, code in _all_codes().items():
        if not isinstance(code, int):
            continue
        error = translate(KafkaError(code))
        matched = [c for c in CATEGORIES if isinstance(error, c)]
        assert len(matched) == 1, f"{name} -> {type(error).__name__} has categories {matched}"
        assert error.code == name


@pytest.mark.parametrize(
    ("codes", "category"),
    [
        (UNAVAILABLE_CODES, categories.RetryLaterError),
        (AUTH_CODES, categories.DoNotRetryError),
        (RECORD_CODES, categories.FixInputError),
    ],
)
def test_codes_we_rely_on_map_to_their_category(codes: frozenset[int], category: type) -> None:
    assert codes, "empty code table"
    for code in codes:
        assert isinstance(translate(KafkaError(code)), category), KafkaError(code).name()


def test_named_cases_and_foreign_exceptions() -> None:
    assert isinstance(translate(KafkaError(KafkaError._TRANSPORT)), KafkaUnavailableError)
    assert isinstance(translate(KafkaError(KafkaError._MSG_TIMED_OUT)), categories.RetryLaterError)
    assert isinstance(translate(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)), KafkaAuthError)
    assert isinstance(translate(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED)), KafkaAuthError)
    assert isinstance(translate(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)), KafkaRecordError)
    assert isinstance(translate(BufferError("full")), KafkaUnavailableError)
    assert isinstance(translate(ValueError("bad")), KafkaRecordError)
    fatal = KafkaError(KafkaError._FATAL, fatal=True)
    assert isinstance(translate(fatal), categories.DoNotRetryError)


# --- configuration -----------------------------------------------------------------------------------


def test_local_broker_config_is_plaintext_with_manual_offset_store() -> None:
    config = KafkaConfig(bootstrap_servers="127.0.0.1:9092", company_short_name="SK_SB")
    consumer = config.consumer_config()
    assert consumer["security.protocol"] == "PLAINTEXT"
    assert consumer["group.id"] == "rosdomofon_SK_SB_group"
    assert consumer["enable.auto.offset.store"] is False
    assert consumer["enable.auto.commit"] is True
    assert consumer["auto.offset.reset"] == "earliest"
    assert "sasl.username" not in consumer
    producer = config.producer_config()
    assert producer["acks"] == "all"
    assert producer["message.timeout.ms"] == 10_000


def test_rosdomofon_broker_config_uses_sasl_ssl_scram_and_ca_file() -> None:
    config = KafkaConfig(
        bootstrap_servers="kafka.rosdomofon.com:443",
        company_short_name="SK_SB",
        group_id="issued_group",
        username="sk_sb",
        password=SecretStr("s3cret-pass"),
        ssl_ca_cert_path="/etc/rdb24/kafka-ca.crt",
    )
    for conf in (config.consumer_config(), config.producer_config()):
        assert conf["security.protocol"] == "SASL_SSL"
        assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
        assert conf["sasl.username"] == "sk_sb"
        assert conf["sasl.password"] == "s3cret-pass"
        assert conf["ssl.ca.location"] == "/etc/rdb24/kafka-ca.crt"
    assert config.consumer_config()["group.id"] == "issued_group"
    assert "s3cret-pass" not in repr(config) and "s3cret-pass" not in str(config)


def test_no_ca_file_verifies_with_system_store_unless_skip_is_explicit() -> None:
    base = {
        "bootstrap_servers": "kafka.rosdomofon.com:443",
        "company_short_name": "SK_SB",
        "username": "u",
        "password": "p",
    }
    verified = KafkaConfig(**base).common_config()
    assert "enable.ssl.certificate.verification" not in verified
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        skipped = KafkaConfig(**base, ssl_skip_verify=True).common_config()
    finally:
        logger.remove(sink)
    assert skipped["enable.ssl.certificate.verification"] is False
    assert any("verification is DISABLED" in m for m in messages)


def test_topic_names_from_company_short_name() -> None:
    topics = Topics.for_company("Video_SB")
    assert (topics.messages_in, topics.messages_out, topics.sign_ups) == (
        "MESSAGES_IN_Video_SB",
        "MESSAGES_OUT_Video_SB",
        "SIGN_UPS_Video_SB",
    )
    assert Topics.dead_letters(topics.messages_in) == "MESSAGES_IN_Video_SB.DLQ"
    with pytest.raises(ValueError, match="short name"):
        Topics.for_company("")


# --- decoding ----------------------------------------------------------------------------------------


def test_decode_real_sample_reads_text_from_localized_push() -> None:
    message = decode_incoming(REAL_SAMPLE.encode())
    assert message.text == "Здравствуйте, не работает домофон"
    assert (message.from_abonent.id, message.from_abonent.phone) == (1574870, 79308312222)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"\xff\xfe not utf8", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "wrong shape"),
        (b'{"channel": "support"}', "fromAbonent"),
        (REAL_SAMPLE.replace("79308312222", "0").encode(), "no sender phone"),
        (REAL_SAMPLE.replace('"id":1574870', '"id":0').encode(), "no sender id"),
        (b"", "empty"),
    ],
)
def test_decode_poison_names_the_problem(value: bytes, problem: str) -> None:
    with pytest.raises(PoisonRecordError, match=problem):
        decode_incoming(value)


def test_delivered_of_reads_a_records_coordinates_and_refuses_an_error_event() -> None:
    from confluent_kafka import Message

    from clients.kafka import Delivered

    assert Delivered.of(Message(topic="t", partition=1, offset=7)) == Delivered("t", 1, 7)
    event = Message(error=KafkaError(KafkaError._PARTITION_EOF))
    with pytest.raises(ValueError, match="not a stored record"):
        Delivered.of(event)


# --- against the broker and the simulator ------------------------------------------------------------


@pytest.fixture
def sim(kafka_bootstrap: str, unique: str) -> Iterator[RosDomofonSimulator]:
    simulator = RosDomofonSimulator(accounts=5, company=f"C{unique}", kafka_bootstrap=kafka_bootstrap)
    simulator.start()
    yield simulator
    simulator.stop()


def _config(bootstrap: str, company: str, **extra: Any) -> KafkaConfig:
    return KafkaConfig(
        bootstrap_servers=bootstrap,
        company_short_name=company,
        group_id=f"g-{company}",
        session_timeout_ms=6000,
        **extra,
    )


def _out_history(sim: RosDomofonSimulator, abonent_id: int, text: str) -> list[Any]:
    return [m for m in sim.history(abonent_id) if m.text == text and not m.incoming]


def test_send_message_reaches_subscriber_history_in_exact_shape(
    sim: RosDomofonSimulator, kafka_bootstrap: str
) -> None:
    abonent = next(iter(sim.world.abonents.values()))
    with RosDomofonKafkaClient(config=_config(kafka_bootstrap, sim.company)) as client:
        delivered = client.send_message(abonent.id, abonent.phone, "Ваша заявка принята", company_id=7)
    assert delivered.topic == f"MESSAGES_OUT_{sim.company}"
    wait_until(lambda: _out_history(sim, abonent.id, "Ваша заявка принята"), what="reply in history")
    assert sim.kafka is not None
    record = next(r for r in sim.kafka.out_records if r["offset"] == delivered.offset)
    assert record["payload"] == {
        "channel": "support",
        "deliveryMethod": "PUSH",
        "fromAbonent": {"id": 0, "phone": 0, "companyId": None, "restrictionPushTokenIds": []},
        "message": "Ваша заявка принята",
        "toAbonents": [{"companyId": 7, "id": abonent.id, "phone": abonent.phone}],
        "localizedPush": None,
    }


def test_send_message_to_multiple_is_one_record_for_all(
    sim: RosDomofonSimulator, kafka_bootstrap: str
) -> None:
    first, second = list(sim.world.abonents.values())[:2]
    with RosDomofonKafkaClient(config=_config(kafka_bootstrap, sim.company)) as client:
        client.send_message_to_multiple(
            [
                {"id": first.id, "phone": first.phone},
                {"id": second.id, "phone": second.phone, "companyId": 1},
            ],
            "Плановые работы",
        )
        with pytest.raises(KafkaRecordError, match="recipients"):
            client.send_message_to_multiple([{"id": first.id}], "no phone")
    for abonent in (first, second):
        wait_until(lambda a=abonent: _out_history(sim, a.id, "Плановые работы"), what="broadcast delivered")


def test_send_to_unreachable_broker_is_retry_later(unique: str) -> None:
    from sandbox.stack.embedded import free_port

    config = KafkaConfig(
        bootstrap_servers=f"127.0.0.1:{free_port()}", company_short_name=f"C{unique}", delivery_timeout_s=1.5
    )
    client = RosDomofonKafkaClient(config=config)
    started = time.monotonic()
    with pytest.raises(categories.RetryLaterError):
        client.send_message(1, 79131234567, "hello")
    assert time.monotonic() - started < 10
    client.close()


def test_handler_receives_subscriber_message_in_its_thread_and_stop_leaves_group(
    sim: RosDomofonSimulator, kafka_bootstrap: str
) -> None:
    config = _config(kafka_bootstrap, sim.company)
    received: list[tuple[KafkaIncomingMessage, str]] = []
    client = RosDomofonKafkaClient(config=config)
    client.set_message_handler(lambda m: received.append((m, threading.current_thread().name)))
    client.start_consuming()
    abonent = next(iter(sim.world.abonents.values()))
    sim.send_from_subscriber(abonent.id, "Открывается дверь сама")
    wait_until(lambda: received, timeout=30, what="handler called")
    message, thread_name = received[0]
    assert message.text == "Открывается дверь сама"
    assert message.from_abonent.id == abonent.id
    assert thread_name != threading.main_thread().name

    started = time.monotonic()
    client.stop_consuming()
    client.close()
    assert time.monotonic() - started < 5, "stop/close must return promptly"
    assert not client.consuming

    # It left the group and committed: a new member gets the partition at once and nothing is re-read.
    rejoined = Consumer({**config.consumer_config(), "session.timeout.ms": 6000})
    assigned = threading.Event()
    rejoined.subscribe([config.topics.messages_in], on_assign=lambda c, p: assigned.set())
    try:
        started = time.monotonic()
        reread = []
        while time.monotonic() - started < 15 and not assigned.is_set():
            msg = rejoined.poll(0.2)
            if msg is not None and msg.error() is None:
                reread.append(msg)
        assert assigned.is_set(), "the old member still held the partition"
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            msg = rejoined.poll(0.2)
            if msg is not None and msg.error() is None:
                reread.append(msg)
        assert reread == [], "committed offsets were not kept"
    finally:
        rejoined.close()


def test_poison_record_does_not_stop_the_handler_thread(
    sim: RosDomofonSimulator, kafka_bootstrap: str
) -> None:
    from confluent_kafka import Producer

    config = _config(kafka_bootstrap, sim.company)
    received: list[KafkaIncomingMessage] = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(config.topics.messages_in, b"{garbage")
    producer.flush(10)
    with RosDomofonKafkaClient(config=config) as client:
        client.set_message_handler(received.append)
        client.start_consuming()
        abonent = next(iter(sim.world.abonents.values()))
        sim.send_from_subscriber(abonent.id, "после мусора")
        wait_until(lambda: received, timeout=30, what="message after poison")
    assert [m.text for m in received] == ["после мусора"]


def test_rosdomofon_api_delegates_kafka_methods(sim: RosDomofonSimulator, kafka_bootstrap: str) -> None:
    from clients.rosdomofon import RosDomofonAPI

    api = RosDomofonAPI(
        sim.username,
        sim.password,
        base_url=sim.url,
        kafka_bootstrap_servers=kafka_bootstrap,
        company_short_name=sim.company,
        kafka_group_id=f"api-{sim.company}",
    )
    abonent = next(iter(sim.world.abonents.values()))
    received: list[KafkaIncomingMessage] = []
    try:
        api.set_kafka_message_handler(received.append)
        api.start_kafka_consumer()
        api.send_kafka_message(abonent.id, abonent.phone, "через API")
        api.send_kafka_message_to_multiple([{"id": abonent.id, "phone": abonent.phone}], "через API всем")
        sim.send_from_subscriber(abonent.id, "вопрос")
        wait_until(lambda: received, timeout=30, what="delegated handler called")
        wait_until(lambda: _out_history(sim, abonent.id, "через API всем"), what="delegated send")
        api.stop_kafka_consumer()
    finally:
        api.close()
    assert received[0].text == "вопрос"
    with pytest.raises(KafkaNotConfiguredError):
        RosDomofonAPI("u", "p", base_url=sim.url).send_kafka_message(1, 79131234567, "x")


def test_raw_record_value_is_utf8_json_without_key(sim: RosDomofonSimulator, kafka_bootstrap: str) -> None:
    config = _config(kafka_bootstrap, sim.company)
    with RosDomofonKafkaClient(config=config) as client:
        delivered = client.send_message(1, 79131234567, "ключ")
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"raw-{sim.company}"})
    from confluent_kafka import TopicPartition

    reader.assign([TopicPartition(delivered.topic, delivered.partition, delivered.offset)])
    try:
        msg = wait_until(lambda: _poll_value(reader), what="raw record")
    finally:
        reader.close()
    assert msg.key() is None
    assert "ключ" in msg.value().decode("utf-8")
    assert json.loads(msg.value())["message"] == "ключ"


def _poll_value(consumer: Consumer) -> Any:
    msg = consumer.poll(0.2)
    return msg if msg is not None and msg.error() is None else None


def test_group_consumer_stores_in_order_and_never_for_a_partition_it_lost(
    kafka_bootstrap: str, unique: str
) -> None:
    from confluent_kafka import Producer

    from clients.kafka import GroupConsumer
    from tests.conftest import create_topics

    config = _config(kafka_bootstrap, f"G{unique}")
    topic = config.topics.messages_in
    create_topics(kafka_bootstrap, topic, partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(4):
        producer.produce(topic, REAL_SAMPLE.encode(), partition=i % 2)
    producer.flush(10)

    first = GroupConsumer(config, [topic])
    got: dict[int, list[Any]] = {0: [], 1: []}
    try:

        def polled_all() -> bool:
            msg = first.poll(0.2)
            if msg is not None:
                got[msg.partition()].append(msg)
            return all(len(v) == 2 for v in got.values())

        wait_until(polled_all, 30, "both partitions read")
        assert first.store(got[0][1]) is True
        assert first.store(got[0][0]) is False, "stored offsets must never go backwards"

        second = Consumer({**config.consumer_config(), "session.timeout.ms": 6000})
        second_parts: list[int] = []
        second.subscribe([topic], on_assign=lambda c, parts: second_parts.extend(p.partition for p in parts))
        try:

            def rebalanced() -> bool:
                first.poll(0.1)
                second.poll(0.1)
                return len(first.assignment) == 1 and bool(second_parts)

            wait_until(rebalanced, 40, "the group split the partitions")
            lost = second_parts[0]
            assert first.store(got[lost][1]) is False, "stored an offset for a partition another member owns"
            kept = 1 - lost
            first.store(got[kept][1])
            first.commit()
            committed = {
                tp.partition: tp.offset for tp in second.committed([TopicPartition(topic, kept)], 10)
            }
            assert committed[kept] == got[kept][1].offset() + 1
        finally:
            second.close()
    finally:
        first.close()
