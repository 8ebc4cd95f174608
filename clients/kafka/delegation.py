"""The upstream ``RosDomofonAPI`` Kafka methods, mixed into :class:`clients.rosdomofon.RosDomofonAPI`.

The REST client stores the Kafka settings it was built with in ``self.kafka``; this mixin turns them
into one lazily built :class:`RosDomofonKafkaClient` and delegates to it, as upstream did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clients.errors import FixInputError
from clients.kafka.client import MessageHandler, RosDomofonKafkaClient
from clients.kafka.config import KafkaConfig
from clients.kafka.errors import KafkaClientError
from clients.kafka.producer import Delivered


class KafkaNotConfiguredError(KafkaClientError, FixInputError):
    """A Kafka method was called on a client built without ``kafka_bootstrap_servers``."""


class KafkaDelegationMixin:
    kafka: Any  # clients.rosdomofon.RosDomofonKafkaConfig | None, set by the REST client
    _kafka_client: RosDomofonKafkaClient | None = None

    @property
    def kafka_client(self) -> RosDomofonKafkaClient:
        if self._kafka_client is None:
            settings = getattr(self, "kafka", None)
            if settings is None:
                raise KafkaNotConfiguredError(
                    "built without Kafka settings: pass kafka_bootstrap_servers and company_short_name"
                )
            config = KafkaConfig(
                bootstrap_servers=settings.bootstrap_servers,
                company_short_name=settings.company_short_name or "",
                group_id=settings.group_id,
                username=settings.username,
                password=settings.password,
                ssl_ca_cert_path=settings.ssl_ca_cert_path,
            )
            self._kafka_client = RosDomofonKafkaClient(config=config)
        return self._kafka_client

    def set_kafka_message_handler(self, handler: MessageHandler) -> None:
        self.kafka_client.set_message_handler(handler)

    def start_kafka_consumer(self) -> None:
        self.kafka_client.start_consuming()

    def stop_kafka_consumer(self) -> None:
        if self._kafka_client is not None:
            self._kafka_client.stop_consuming()

    def send_kafka_message(
        self, to_abonent_id: int, to_abonent_phone: int | str, message: str, company_id: int | None = None
    ) -> Delivered:
        return self.kafka_client.send_message(to_abonent_id, to_abonent_phone, message, company_id)

    def send_kafka_message_to_multiple(
        self, to_abonents: Sequence[Mapping[str, Any]], message: str
    ) -> Delivered:
        return self.kafka_client.send_message_to_multiple(to_abonents, message)

    def close_kafka(self) -> None:
        if self._kafka_client is not None:
            self._kafka_client.close()
            self._kafka_client = None
