"""Small builders of RosDomofon wire objects for the pure reconciliation tests."""

from __future__ import annotations

from typing import Any

from schemas.rosdomofon import Account, Connection


def account(
    account_id: int = 101,
    *,
    phone: Any = 79131234567,
    number: str | None = "0012345678",
    blocked: bool = False,
    block_reason: str | None = None,
    company: str = "SK_SB",
) -> Account:
    return Account.model_validate(
        {
            "id": account_id,
            "number": number,
            "blocked": blocked,
            "blockReason": block_reason,
            "owner": {"id": account_id + 5000, "phone": phone},
            "company": {"id": 7, "shortName": company},
            "isCompanyRecurringEnabled": False,
        }
    )


def connection(
    connection_id: int, account_id: int, *, service_id: int = 1, blocked: bool = False, name: str = "Домофон"
) -> Connection:
    return Connection.model_validate(
        {
            "id": connection_id,
            "blocked": blocked,
            "account": {
                "id": account_id,
                "owner": {"id": 1},
                "company": {"id": 7, "shortName": "SK_SB"},
                "isCompanyRecurringEnabled": False,
            },
            "flat": {"id": 900 + account_id, "accountId": account_id},
            "service": {"id": service_id, "name": name, "type": "HardwareIntercom"},
        }
    )
