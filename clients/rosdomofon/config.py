"""Kafka connection settings the upstream client accepted; stored for the Kafka side (issue 5)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RosDomofonKafkaConfig:
    """What is needed to reach RosDomofon's broker; ``password`` is hidden from ``repr``."""

    bootstrap_servers: str
    company_short_name: str | None = None
    group_id: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_ca_cert_path: str | None = None

    @property
    def effective_group_id(self) -> str | None:
        """``KAFKA_GROUP_ID``, else upstream's default ``rosdomofon_<company>_group``."""
        if self.group_id:
            return self.group_id
        return f"rosdomofon_{self.company_short_name}_group" if self.company_short_name else None

    @property
    def messages_in_topic(self) -> str | None:
        return f"MESSAGES_IN_{self.company_short_name}" if self.company_short_name else None

    @property
    def messages_out_topic(self) -> str | None:
        return f"MESSAGES_OUT_{self.company_short_name}" if self.company_short_name else None


__all__ = ["RosDomofonKafkaConfig"]
