"""Kafka connection settings the upstream client accepted; stored for the Kafka side (issue 5)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RosDomofonKafkaConfig:
    """What is needed to reach RosDomofon's broker; ``password`` is hidden from ``repr``.

    Only stored: topic names and the default group id are :class:`clients.kafka.KafkaConfig`'s, which
    the Kafka methods (``clients.kafka.delegation``) build from this.
    """

    bootstrap_servers: str
    company_short_name: str | None = None
    group_id: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_ca_cert_path: str | None = None


__all__ = ["RosDomofonKafkaConfig"]
