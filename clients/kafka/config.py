"""Kafka connection settings as one value object, turned into librdkafka config dicts.

The same object serves a local broker (plain TCP, no credentials) and RosDomofon's real one
(``kafka.rosdomofon.com:443``, ``SASL_SSL`` + ``SCRAM-SHA-512``, a CA file they issue). RosDomofon
authorizes per consumer group, not per topic, so every consumer we build uses the one ``group_id``.
"""

from __future__ import annotations

from typing import Any, Literal

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from clients.kafka.topics import Topics

SecurityProtocol = Literal["auto", "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]


class KafkaConfig(BaseModel):
    """Everything needed to talk to one Kafka cluster on behalf of one RosDomofon company."""

    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str = Field(min_length=1)
    company_short_name: str = Field(min_length=1)
    group_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    ssl_ca_cert_path: str | None = None
    # Upstream disables certificate checks when no CA file is given; we only do so when asked.
    ssl_skip_verify: bool = False
    security_protocol: SecurityProtocol = "auto"
    sasl_mechanism: str = "SCRAM-SHA-512"
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    delivery_timeout_s: float = Field(default=10.0, gt=0)
    statistics_interval_ms: int = Field(default=0, ge=0)
    client_id: str = "rdb24"

    @field_validator("username", "ssl_ca_cert_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None

    @field_validator("password", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: Any) -> Any:
        if isinstance(value, SecretStr) and not value.get_secret_value():
            return None
        return value or None

    @property
    def topics(self) -> Topics:
        return Topics.for_company(self.company_short_name)

    @property
    def effective_group_id(self) -> str:
        """Upstream default ``rosdomofon_<company>_group`` unless RosDomofon issued another."""
        return self.group_id or f"rosdomofon_{self.company_short_name}_group"

    @property
    def has_credentials(self) -> bool:
        return bool(self.username and self.password is not None)

    @property
    def effective_security_protocol(self) -> str:
        if self.security_protocol != "auto":
            return self.security_protocol
        return "SASL_SSL" if self.has_credentials else "PLAINTEXT"

    def common_config(self) -> dict[str, Any]:
        """Connection and security keys shared by producers, consumers and admin clients."""
        protocol = self.effective_security_protocol
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": protocol,
        }
        if protocol.startswith("SASL"):
            if not self.has_credentials:
                raise ValueError(f"security_protocol {protocol} needs username and password")
            assert self.password is not None
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.username
            conf["sasl.password"] = self.password.get_secret_value()
        if protocol.endswith("SSL"):
            conf.update(self._ssl_config())
        return conf

    def _ssl_config(self) -> dict[str, Any]:
        if self.ssl_ca_cert_path:
            return {"ssl.ca.location": self.ssl_ca_cert_path}
        if self.ssl_skip_verify:
            logger.warning(
                "Kafka TLS certificate verification is DISABLED (no CA file, ssl_skip_verify set); "
                "use only for a broker you trust on a network you trust"
            )
            return {
                "enable.ssl.certificate.verification": False,
                "ssl.endpoint.identification.algorithm": "none",
            }
        return {}  # the system CA store verifies the broker

    def producer_config(self) -> dict[str, Any]:
        """Upstream producer settings: ``acks=all``, a bounded wait for each delivery report."""
        return {
            **self.common_config(),
            "acks": "all",
            "message.timeout.ms": int(self.delivery_timeout_s * 1000),
            "socket.keepalive.enable": True,
        }

    def consumer_config(self, *, auto_offset_store: bool = False) -> dict[str, Any]:
        """At least once: offsets are stored by the application after processing, committed in the
        background (``enable.auto.commit``), so a crash replays at most the uncommitted tail."""
        conf: dict[str, Any] = {
            **self.common_config(),
            "group.id": self.effective_group_id,
            "enable.auto.commit": True,
            "enable.auto.offset.store": auto_offset_store,
            "auto.offset.reset": self.auto_offset_reset,
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": min(self.heartbeat_interval_ms, self.session_timeout_ms // 3),
            "socket.keepalive.enable": True,
        }
        if self.statistics_interval_ms:
            conf["statistics.interval.ms"] = self.statistics_interval_ms
        return conf

    def __repr__(self) -> str:
        return (
            f"KafkaConfig(bootstrap_servers={self.bootstrap_servers!r}, "
            f"company_short_name={self.company_short_name!r}, group_id={self.effective_group_id!r}, "
            f"security_protocol={self.effective_security_protocol!r})"
        )
