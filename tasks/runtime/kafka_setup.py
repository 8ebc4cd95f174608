"""Settings -> :class:`clients.kafka.KafkaConfig`, and the per-process Kafka client for tasks.

Prefork children must not share a librdkafka handle created in the parent, so the client is built
lazily per process id.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from clients.kafka import KafkaConfig, RosDomofonKafkaClient
from tasks.errors import KafkaNotConfigured
from tasks.settings import Settings, get_settings


def kafka_config(settings: Settings | None = None, **overrides: Any) -> KafkaConfig:
    settings = settings or get_settings()
    if not settings.kafka_bootstrap_servers or not settings.company_short_name:
        raise KafkaNotConfigured("set KAFKA_BOOTSTRAP_SERVERS and COMPANY_SHORT_NAME to use Kafka")
    values: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "company_short_name": settings.company_short_name,
        "group_id": settings.kafka_group_id or None,
        "username": settings.kafka_username or None,
        "password": settings.kafka_password,
        "ssl_ca_cert_path": settings.kafka_ssl_ca_cert_path or None,
        "ssl_skip_verify": settings.kafka_ssl_skip_verify,
        "security_protocol": settings.kafka_security_protocol,
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "delivery_timeout_s": settings.kafka_delivery_timeout,
    }
    values.update(overrides)
    return KafkaConfig(**values)


_lock = threading.Lock()
_client: tuple[int, RosDomofonKafkaClient] | None = None


def kafka_client() -> RosDomofonKafkaClient:
    """This process's client (producing only; the ingest worker owns consumption)."""
    global _client
    with _lock:
        if _client is None or _client[0] != os.getpid():
            _client = (os.getpid(), RosDomofonKafkaClient(config=kafka_config()))
        return _client[1]
