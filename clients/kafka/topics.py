"""RosDomofon topic names, derived from the company short name (``company.shortName``)."""

from __future__ import annotations

from dataclasses import dataclass

SIGN_UPS_ALL = "SIGN_UPS_ALL"


@dataclass(frozen=True)
class Topics:
    messages_in: str
    messages_out: str
    sign_ups: str

    @classmethod
    def for_company(cls, company_short_name: str) -> Topics:
        if not company_short_name or any(ch.isspace() for ch in company_short_name):
            raise ValueError(
                f"company short name must be non-empty without spaces, got {company_short_name!r}"
            )
        return cls(
            messages_in=f"MESSAGES_IN_{company_short_name}",
            messages_out=f"MESSAGES_OUT_{company_short_name}",
            sign_ups=f"SIGN_UPS_{company_short_name}",
        )

    @staticmethod
    def dead_letters(topic: str, suffix: str = ".DLQ") -> str:
        return f"{topic}{suffix}"
