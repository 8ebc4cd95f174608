"""``RosDomofonAPI``: one thin method per operator REST operation, each returning schema models.

Method names and positional parameters follow the upstream ``rosdomofon`` package
(``RosDomofonAPI(username, password)``), so code written against it ports unchanged. All the
plumbing (auth, retries, error mapping, validation) lives in :class:`~.requestor.Requestor`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

from loguru import logger

from clients.kafka.delegation import KafkaDelegationMixin
from clients.rosdomofon.config import RosDomofonKafkaConfig
from clients.rosdomofon.requestor import API_V1, API_V2, RDAS_V1, Requestor
from schemas.phone import normalize_phone
from schemas.rosdomofon import (
    AbonentFlat,
    AbonentInfo,
    Account,
    AccountInfo,
    AuthResponse,
    Connection,
    CreateAccountRequest,
    CreateAccountResponse,
    CreateConnectionRequest,
    CreateConnectionResponse,
    CreateFlatRequest,
    CreateFlatResponse,
    EntranceDetail,
    EntrancesResponse,
    EntranceWithServices,
    FlatDetailed,
    MessageRecipient,
    MessagesResponse,
    SendMessageRequest,
    SendMessageResult,
    Service,
    ServicesResponse,
    SignUpStatus,
    SignUpStatusUpdate,
)

DEFAULT_BASE_URL = "https://rdba.rosdomofon.com"
Recipient = int | dict[str, Any] | AbonentInfo | MessageRecipient


class RosDomofonAPI(KafkaDelegationMixin):
    """The RosDomofon operator ("machine") REST API; Kafka methods come from the mixin when configured."""

    def __init__(
        self,
        username: str,
        password: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: tuple[float, float] = (5.0, 30.0),
        read_retries: int = 2,
        retry_backoff: float = 0.2,
        kafka_bootstrap_servers: str | None = None,
        company_short_name: str | None = None,
        kafka_group_id: str | None = None,
        kafka_username: str | None = None,
        kafka_password: str | None = None,
        kafka_ssl_ca_cert_path: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.company_short_name = company_short_name
        self._http = Requestor(
            self.base_url,
            username,
            password,
            timeout=timeout,
            read_retries=read_retries,
            retry_backoff=retry_backoff,
        )
        self.kafka: RosDomofonKafkaConfig | None = None
        if kafka_bootstrap_servers:
            self.kafka = RosDomofonKafkaConfig(
                bootstrap_servers=kafka_bootstrap_servers,
                company_short_name=company_short_name,
                group_id=kafka_group_id,
                username=kafka_username,
                password=kafka_password,
                ssl_ca_cert_path=kafka_ssl_ca_cert_path,
            )

    def __repr__(self) -> str:
        return f"RosDomofonAPI(username={self.username!r}, base_url={self.base_url!r})"

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self.close_kafka()
        self._http.close()

    def __enter__(self) -> RosDomofonAPI:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def authenticate(self) -> AuthResponse:
        """Run the password grant now (otherwise it happens on first use and before expiry)."""
        return self._http.tokens.authenticate()

    # --- plumbing ----------------------------------------------------------------------------

    def _call(self, method: str, path: str, model: Any, *, operation: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, operation=operation, **kwargs)
        return self._http.parse(response, model, operation=operation)

    def _ok(self, method: str, path: str, *, operation: str, **kwargs: Any) -> bool:
        self._http.request(method, path, operation=operation, **kwargs)
        return True

    # --- accounts ----------------------------------------------------------------------------

    def get_accounts(self) -> list[Account]:
        return self._call("GET", f"{API_V1}/accounts", list[Account], operation="get_accounts")

    def get_account_by_phone(self, phone: int | str) -> Account | None:
        """No server-side lookup exists: scan ``GET /accounts`` for ``owner.phone``."""
        wanted = int(normalize_phone(phone))
        for account in self.get_accounts():
            if account.owner.phone == wanted:
                return account
        logger.info("rosdomofon get_account_by_phone: no account for the phone")
        return None

    def get_account_info(self, account_id: int) -> AccountInfo:
        return self._call("GET", f"{API_V1}/accounts/{account_id}", AccountInfo, operation="get_account_info")

    def get_account_flats(self, account_id: int) -> list[FlatDetailed]:
        path = f"{API_V1}/accounts/{account_id}/flats"
        return self._call("GET", path, list[FlatDetailed], operation="get_account_flats")

    def get_account_connections(self, account_id: int) -> list[Connection]:
        path = f"{API_V1}/accounts/{account_id}/connections"
        return self._call("GET", path, list[Connection], operation="get_account_connections")

    def create_account(self, number: str, phone: int | str) -> CreateAccountResponse:
        # model_validate: the phone is normalised by the model, from whichever form the caller holds.
        body = CreateAccountRequest.model_validate({"number": number, "phone": phone}).to_wire()
        return self._call(
            "POST", f"{API_V1}/accounts", CreateAccountResponse, operation="create_account", json=body
        )

    def block_account(self, account_number: str | int) -> bool:
        """``{x}`` is the billing account number per upstream, in the account id's place; unclear which."""
        return self._ok("PUT", f"{API_V1}/accounts/{account_number}/block", operation="block_account")

    def unblock_account(self, account_number: str | int) -> bool:
        return self._ok("DELETE", f"{API_V1}/accounts/{account_number}/block", operation="unblock_account")

    # --- flats -------------------------------------------------------------------------------

    def create_flat(
        self,
        flat_number: str | int,
        entrance_id: str | int | None = None,
        abonent_id: int | None = None,
        virtual: bool = False,
    ) -> CreateFlatResponse:
        # model_validate: the model turns int flat numbers and entrance ids into the strings the API wants.
        body = CreateFlatRequest.model_validate(
            {
                "flat_number": flat_number,
                "entrance_id": entrance_id,
                "abonent_id": abonent_id,
                "virtual": virtual,
            }
        ).to_wire()
        return self._call("POST", f"{API_V1}/flats", CreateFlatResponse, operation="create_flat", json=body)

    def get_abonent_flats(self, abonent_id: int) -> list[AbonentFlat]:
        """Upstream calls this unreliable ("works every other time"); GET retries absorb that."""
        path = f"{API_V1}/abonents/{abonent_id}/flats"
        return self._call("GET", path, list[AbonentFlat], operation="get_abonent_flats")

    def get_entrance_flats(self, entrance_id: int | str) -> list[FlatDetailed]:
        path = f"{API_V1}/entrances/{entrance_id}/flats"
        return self._call("GET", path, list[FlatDetailed], operation="get_entrance_flats")

    # --- services and connections ------------------------------------------------------------

    def get_entrance_services(self, entrance_id: int | str) -> list[Service]:
        path = f"{API_V1}/entrances/{entrance_id}/services"
        return self._call("GET", path, list[Service], operation="get_entrance_services")

    def get_all_services(self, page: int = 0, size: int = 1000) -> ServicesResponse:
        params = {"page": page, "size": size}
        return self._call(
            "GET", f"{API_V1}/services", ServicesResponse, operation="get_all_services", params=params
        )

    def connect_service(
        self, service_id: int, flat_id: int, account_id: int | None = None
    ) -> CreateConnectionResponse:
        body = CreateConnectionRequest(flat_id=flat_id, account_id=account_id).to_wire()
        path = f"{API_V1}/services/{service_id}/connections"
        return self._call("POST", path, CreateConnectionResponse, operation="connect_service", json=body)

    def get_service_connections(self, service_id: int) -> list[Connection]:
        path = f"{API_V1}/services/{service_id}/connections"
        return self._call("GET", path, list[Connection], operation="get_service_connections")

    def block_connection(self, connection_id: int) -> bool:
        path = f"{API_V1}/services_connections/{connection_id}/block"
        return self._ok("PUT", path, operation="block_connection")

    def unblock_connection(self, connection_id: int) -> bool:
        path = f"{API_V1}/services_connections/{connection_id}/block"
        return self._ok("DELETE", path, operation="unblock_connection")

    # --- entrances ---------------------------------------------------------------------------

    def get_entrances(
        self, address: str | None = None, page: int = 0, size: int = 20, all: bool = False
    ) -> EntrancesResponse:
        """One page, or with ``all=True`` every page merged into one response (``last`` is true)."""
        if not all:
            return self._entrances_page(address, page, size)
        items = list(self.iter_entrances(address, size=size))
        return EntrancesResponse(
            content=items, number=0, size=len(items), total_elements=len(items), total_pages=1,
            number_of_elements=len(items), first=True, last=True, empty=not items,
        )  # fmt: skip

    def iter_entrances(
        self, address: str | None = None, *, size: int = 100
    ) -> Iterator[EntranceWithServices]:
        """Every entrance, page by page, stopping at ``last`` or an empty page (as upstream does)."""
        page = 0
        while True:
            result = self._entrances_page(address, page, size)
            yield from result.content
            if result.last or not result.content:
                return
            page += 1

    def _entrances_page(self, address: str | None, page: int, size: int) -> EntrancesResponse:
        params = {"address": address, "page": page, "size": size}
        return self._call(
            "GET", f"{API_V1}/entrances", EntrancesResponse, operation="get_entrances", params=params
        )

    def get_entrance(self, entrance_id: int | str) -> EntranceDetail:
        path = f"{RDAS_V1}/entrances/{entrance_id}/"  # the trailing slash is part of the path
        return self._call("GET", path, EntranceDetail, operation="get_entrance")

    # --- messages ----------------------------------------------------------------------------

    def send_message(
        self,
        to_abonents: Sequence[Recipient],
        channel: str = "support",
        message: str = "",
        broadcast: bool = False,
    ) -> list[SendMessageResult]:
        """Send over REST; recipients as ids, ``{"id", "phone"}`` dicts or models (phone 0 if unknown)."""
        recipients = [_recipient(r) for r in to_abonents]
        body = SendMessageRequest(
            to_abonents=recipients, channel=channel, message=message, broadcast=broadcast
        ).to_wire()
        results = self._call(
            "POST", f"{API_V1}/messages", list[SendMessageResult], operation="send_message", json=body
        )
        failed = [r for r in results if not r.success]
        if failed:
            logger.error("rosdomofon send_message: {} of {} not delivered", len(failed), len(results))
        return results

    def send_message_to_abonent(self, abonent_id: int, channel: str, message: str) -> list[SendMessageResult]:
        return self.send_message([{"id": abonent_id, "phone": 0}], channel=channel, message=message)

    def get_abonent_messages(
        self, abonent_id: int, channel: str | None = None, page: int = 0, size: int = 20
    ) -> MessagesResponse:
        params = {"channel": channel, "page": page, "size": size}
        path = f"{API_V1}/abonents/{abonent_id}/messages"
        return self._call("GET", path, MessagesResponse, operation="get_abonent_messages", params=params)

    # --- sign-ups ----------------------------------------------------------------------------

    def update_signup(
        self,
        signup_id: int,
        status: SignUpStatus | str | None = None,
        is_virtual: bool | None = None,
        rejected_reason: str | None = None,
    ) -> bool:
        # model_validate: the model lower-cases a status given as text ("UNPROCESSED" as Kafka spells it).
        body = SignUpStatusUpdate.model_validate(
            {"status": status, "is_virtual": is_virtual, "rejected_reason": rejected_reason}
        )
        path = f"{API_V2}/sign_ups/{signup_id}"
        return self._ok("PATCH", path, operation="update_signup", json=body.to_wire())


def _recipient(value: Recipient) -> MessageRecipient:
    if isinstance(value, MessageRecipient):
        return value
    if isinstance(value, AbonentInfo):
        return MessageRecipient(id=value.id, phone=value.phone or 0)
    if isinstance(value, int) and not isinstance(value, bool):
        return MessageRecipient(id=value, phone=0)
    if isinstance(value, dict):
        return MessageRecipient.model_validate({"phone": 0, **value} if "id" in value else value)
    raise TypeError(f"recipient {value!r} must be an abonent id, a dict or an AbonentInfo")


__all__ = ["DEFAULT_BASE_URL", "RosDomofonAPI"]
