"""RosDomofon operator REST API models, spelled as the API spells them (see docs/rosdomofon-api.md §2).

Every model accepts the wire names (aliases) and the Python names and keeps unknown fields
(:class:`~schemas.common.WireModel`): the upstream models list only the minimum the API sends.
Responses carry phones as integers (:data:`~schemas.phone.Phone`); ``create_account`` wants an
11-digit string (:data:`~schemas.phone.PhoneStr`). Fields whose wire type is unknown (``createdAt``,
``messageDate``) accept both an int and a string rather than guessing.

Where the sources disagree we accept every version and, when the value is an identifier, hand on
one type. The upstream package's models (``rosdomofon`` 0.1.16.1) declare an intercom's ``index``
and a flat adapter's ``intercomIndex`` as strings, our simulator used to send ints, so both arrive
as :data:`IntAsStr`; a street's ``codeFias``/``codeKladr`` are strings there but null in the real
Kafka sign-up sample; a camera's ``address`` is an address object there and was a plain string in
our simulator; lists the upstream declares optional (``adapters``, ``delegations``, an entrance's
``cameras`` and ``services``) may come as null and read as empty.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field

from schemas.common import Page, WireModel
from schemas.phone import Phone, PhoneStr, phone_as_int


def _phone_or_zero(value: Any) -> int:
    # [DC] addresses subscribers with ``phone: 0`` when only the id is known; 0 also marks "system".
    if value in (0, "0"):
        return 0
    return phone_as_int(value)


def _as_str(value: Any) -> Any:
    # The API wants flat numbers and entrance ids as strings; callers naturally hold ints.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _null_as_empty(value: Any) -> Any:
    # The upstream models declare these lists Optional: the API may send null for "none".
    return [] if value is None else value


PhoneOrZero = Annotated[int, BeforeValidator(_phone_or_zero)]
IntAsStr = Annotated[str, BeforeValidator(_as_str)]
T = TypeVar("T")
ListOrNull = Annotated[list[T], BeforeValidator(_null_as_empty)]


# --- auth ---------------------------------------------------------------------------------------


class AuthResponse(WireModel):
    """``POST /authserver-service/oauth/token`` (password grant, ``client_id=machine``)."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    scope: str | None = None
    refresh_token: str | None = None


# --- people and companies -----------------------------------------------------------------------


class AbonentInfo(WireModel):
    """A subscriber reference ``{id, phone}`` as used by messages and delegations."""

    id: int
    phone: PhoneOrZero | None = None


class Owner(WireModel):
    id: int
    phone: Phone | None = None
    resolved: bool | None = None
    never_logged_in: bool | None = Field(default=None, alias="neverLoggedIn")


class Company(WireModel):
    id: int
    short_name: str = Field(alias="shortName")
    licensee_short: str | None = Field(default=None, alias="licenseeShort")
    name: str | None = None


class Account(WireModel):
    """An item of ``GET /accounts``; ``company.shortName`` names the Kafka topics."""

    id: int
    number: str | None = None
    billing_available: bool | None = Field(default=None, alias="billingAvailable")
    terms_of_use_link: str | None = Field(default=None, alias="termsOfUseLink")
    block_reason: str | None = Field(default=None, alias="blockReason")
    owner: Owner
    company: Company
    blocked: bool = False
    is_company_recurring_enabled: bool = Field(alias="isCompanyRecurringEnabled")


class CreateAccountRequest(WireModel):
    number: str
    phone: PhoneStr


class CreateAccountResponse(WireModel):
    id: int
    owner: Owner


# --- addresses ----------------------------------------------------------------------------------


class Country(WireModel):
    name: str | None = None
    short_name: str | None = Field(default=None, alias="shortName")


class FlatRange(WireModel):
    id: int | None = None
    flat_start: int = Field(alias="flatStart")
    flat_end: int = Field(alias="flatEnd")


class Entrance(WireModel):
    id: int
    number: str | None = None
    prefix: int | str | None = None
    flat_start: int | None = Field(default=None, alias="flatStart")
    flat_end: int | None = Field(default=None, alias="flatEnd")
    additional_flat_ranges: list[FlatRange] = Field(default_factory=list, alias="additionalFlatRanges")

    def has_flat(self, flat: int) -> bool:
        """Whether ``flat`` lies in the main range or any additional range (how [DC] matches)."""
        ranges = [(self.flat_start, self.flat_end)] + [
            (r.flat_start, r.flat_end) for r in self.additional_flat_ranges
        ]
        return any(lo is not None and hi is not None and lo <= flat <= hi for lo, hi in ranges)


class House(WireModel):
    id: int | None = None
    number: str | None = None
    block: str | None = None
    building: str | None = None
    housing: str | None = None
    code_fias: str | None = Field(default=None, alias="codeFias")
    type: str | None = None
    type_full: str | None = Field(default=None, alias="typeFull")
    geo_latitude: str | None = Field(default=None, alias="geoLatitude")
    geo_longitude: str | None = Field(default=None, alias="geoLongitude")
    geo_accuracy: str | None = Field(default=None, alias="geoAccuracy")


class Street(WireModel):
    id: int | None = None
    name: str | None = None
    code_fias: str | None = Field(default=None, alias="codeFias")
    code_kladr: str | None = Field(default=None, alias="codeKladr")
    type: str | None = None
    type_full: str | None = Field(default=None, alias="typeFull")
    universal_code: str | None = Field(default=None, alias="universalCode")


class CityObject(WireModel):
    id: int | None = None
    name: str | None = None
    code_fias: str | None = Field(default=None, alias="codeFias")
    type: str | None = None
    type_full: str | None = Field(default=None, alias="typeFull")


class Address(WireModel):
    city: str | None = None
    flat: int | None = None
    country: Country | None = None
    city_object: CityObject | None = Field(default=None, alias="cityObject")
    entrance: Entrance | None = None
    house: House | None = None
    street: Street | None = None


# --- flats --------------------------------------------------------------------------------------


class FlatOwner(WireModel):
    id: int


class CreateFlatRequest(WireModel):
    """``POST /flats``; ``entranceId`` and ``flatNumber`` go as strings, null fields are omitted."""

    abonent_id: int | None = Field(default=None, alias="abonentId")
    entrance_id: IntAsStr | None = Field(default=None, alias="entranceId")
    flat_number: IntAsStr = Field(alias="flatNumber")
    virtual: bool = False


class CreateFlatResponse(WireModel):
    id: int
    address: Address | None = None
    owner: FlatOwner | None = None
    virtual: bool | None = None


class AbonentFlat(WireModel):
    """An item of ``GET /abonents/{id}/flats``."""

    id: int
    address: Address | None = None
    owner: FlatOwner | None = None
    virtual: bool | None = None
    account_id: int | None = Field(default=None, alias="accountId")
    camera_id: int | None = Field(default=None, alias="cameraId")
    rda_uid: str | None = Field(default=None, alias="rdaUid")
    software_intercom_id: int | None = Field(default=None, alias="softwareIntercomId")
    hardware_intercom_id: int | None = Field(default=None, alias="hardwareIntercomId")


class Adapter(WireModel):
    """A flat's intercom adapter; ``intercomIndex`` is a string upstream, an int in older data."""

    rda_uid: str | None = Field(default=None, alias="rdaUid")
    intercom_index: IntAsStr | None = Field(default=None, alias="intercomIndex")
    camera_ids: ListOrNull[int] = Field(default_factory=list, alias="cameraIds")


class Delegation(WireModel):
    """``fromAbonent``/``toAbonent`` are ``{id, phone}`` objects (strings only before [DC] v0.1.16)."""

    id: int
    active: bool | None = None
    notification_success: bool | None = Field(default=None, alias="notificationSuccess")
    from_abonent: AbonentInfo | str | None = Field(default=None, alias="fromAbonent")
    to_abonent: AbonentInfo | str | None = Field(default=None, alias="toAbonent")


class OwnerDetailed(WireModel):
    id: int
    phone: Phone | None = None
    resolved: bool | None = None
    delegations: ListOrNull[Delegation] = Field(default_factory=list)
    fake_auth_on: bool | None = Field(default=None, alias="fakeAuthOn")
    for_test: bool | None = Field(default=None, alias="forTest")
    is_client: bool | None = Field(default=None, alias="isClient")
    never_logged_in: bool | None = Field(default=None, alias="neverLoggedIn")
    support_request_date: str | None = Field(default=None, alias="supportRequestDate")
    uid: str | None = None


class FlatDetailed(WireModel):
    """An item of ``GET /accounts/{id}/flats`` and ``GET /entrances/{id}/flats``."""

    id: int
    account_id: int | None = Field(default=None, alias="accountId")
    virtual: bool | None = None
    blocked: bool | None = None
    owner: OwnerDetailed | None = None
    adapters: ListOrNull[Adapter] = Field(default_factory=list)
    camera_id: int | None = Field(default=None, alias="cameraId")
    hardware_intercom_id: int | None = Field(default=None, alias="hardwareIntercomId")
    software_intercom_id: int | None = Field(default=None, alias="softwareIntercomId")
    rda_uid: str | None = Field(default=None, alias="rdaUid")
    translated: int | bool | None = None
    address: Address | None = None


# --- services and connections -------------------------------------------------------------------


class DelegationTunings(WireModel):
    limit: int | None = None


class Service(WireModel):
    """``{id, name, type}`` at least; ``type`` e.g. HouseChat, VideoSurveillance, Gate, ..."""

    id: int
    name: str
    type: str
    company_id: int | None = Field(default=None, alias="companyId")
    custom_name: str | None = Field(default=None, alias="customName")
    created_at: int | str | None = Field(default=None, alias="createdAt")
    delegation_tunings: DelegationTunings | None = Field(default=None, alias="delegationTunings")
    tariff: float | None = None


class ServicesResponse(Page[Service]):
    """``GET /services``."""


class CreateConnectionRequest(WireModel):
    """``POST /services/{id}/connections``; ``flatId`` must be a number (``[DC]`` v0.1.14)."""

    flat_id: int = Field(alias="flatId")
    account_id: int | None = Field(default=None, alias="accountId")


class CreateConnectionResponse(WireModel):
    id: int


class ConnectionFlat(WireModel):
    id: int
    account_id: int | None = Field(default=None, alias="accountId")
    address: Address | None = None
    virtual: bool | None = None


class Connection(WireModel):
    """An item of ``GET /accounts/{id}/connections`` and ``GET /services/{id}/connections``."""

    id: int
    blocked: bool = False
    currency: str | None = None
    tariff: float | None = None
    account: Account | None = None
    delegation_tunings: DelegationTunings | None = Field(default=None, alias="delegationTunings")
    flat: ConnectionFlat | None = None
    service: Service | None = None

    @property
    def active(self) -> bool:
        """[LP] skips a connection when it or its account is blocked."""
        return not self.blocked and not (self.account is not None and self.account.blocked)


# --- account info -------------------------------------------------------------------------------


class Balance(WireModel):
    account_id: int | None = Field(default=None, alias="accountId")
    balance: float | None = None
    balance_date: int | None = Field(default=None, alias="balanceDate")
    currency: str | None = None
    is_payment_available: bool | None = Field(default=None, alias="isPaymentAvailable")
    recommended_payment_date: int | str | None = Field(default=None, alias="recommendedPaymentDate")
    recommended_payment_sum: float | None = Field(default=None, alias="recommendedPaymentSum")
    show_banner: bool | None = Field(default=None, alias="showBanner")


class CompanyInfo(WireModel):
    id: int
    name: str | None = None
    short_name: str | None = Field(default=None, alias="shortName")
    licensee_short: str | None = Field(default=None, alias="licenseeShort")
    payment_link: str | None = Field(default=None, alias="paymentLink")
    personal_account_link: str | None = Field(default=None, alias="personalAccountLink")
    support_chat_enabled: bool | None = Field(default=None, alias="supportChatEnabled")
    support_phone: str | int | None = Field(default=None, alias="supportPhone")


class AccountConnection(WireModel):
    id: int
    blocked: bool = False
    currency: str | None = None
    tariff: float | None = None
    delegation_tunings: DelegationTunings | None = Field(default=None, alias="delegationTunings")
    flat: FlatDetailed | None = None
    service: Service | None = None


class Invoice(WireModel):
    amount: float | None = None
    currency: str | None = None
    date_begin: str | None = Field(default=None, alias="dateBegin")
    reminder_needed: bool | None = Field(default=None, alias="reminderNeeded")
    uid: str | None = None


class RecurringPaymentStatus(StrEnum):
    NEW = "NEW"
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


class RecurringPayment(WireModel):
    amount: float | None = None
    currency: str | None = None
    date: int | None = None
    reason: str | None = None
    status: str | None = None  # NEW/PENDING/SUCCESS/FAILED per a code comment; kept open


class AccountInfo(WireModel):
    """``GET /accounts/{accountId}``."""

    id: int
    number: str | None = None
    blocked: bool = False
    billing_available: bool | None = Field(default=None, alias="billingAvailable")
    is_company_recurring_enabled: bool | None = Field(default=None, alias="isCompanyRecurringEnabled")
    terms_of_use_link: str | None = Field(default=None, alias="termsOfUseLink")
    block_reason: str | None = Field(default=None, alias="blockReason")
    paid_until: str | None = Field(default=None, alias="paidUntil")
    balance: Balance | None = None
    company: CompanyInfo | None = None
    owner: OwnerDetailed | None = None
    connections: list[AccountConnection] = Field(default_factory=list)
    invoice: Invoice | None = None
    recurring_payment: RecurringPayment | None = Field(default=None, alias="recurringPayment")


# --- entrances ----------------------------------------------------------------------------------


class Camera(WireModel):
    """``address`` is an address object upstream; a plain string (the address line) is kept as is."""

    id: int | None = None
    uid: int | str | None = None
    uri: str | None = None
    active: bool | None = None
    address: Address | str | None = None
    configuration: str | None = None
    private: bool | None = None
    rdva_id: int | None = Field(default=None, alias="rdvaId")


class IntercomLocation(WireModel):
    id: int | None = None
    name: str | None = None


class Intercom(WireModel):
    """``index`` is a string upstream, an int in older data; read as a string."""

    id: int
    index: IntAsStr | None = None
    location: IntercomLocation | None = None


class Rda(WireModel):
    id: int
    uid: str | None = None
    active: bool | None = None
    intercoms: ListOrNull[Intercom] = Field(default_factory=list)


class DependantService(WireModel):
    """An item of a service's ``dependantServices``; every field is optional upstream."""

    id: int | None = None
    name: str | None = None
    type: str | None = None
    company_id: int | None = Field(default=None, alias="companyId")
    custom_name: str | None = Field(default=None, alias="customName")
    created_at: int | str | None = Field(default=None, alias="createdAt")
    delegation_tunings: DelegationTunings | None = Field(default=None, alias="delegationTunings")
    accounts: ListOrNull[Any] = Field(default_factory=list)


class EntranceService(Service):
    """A service as listed under an entrance (with its equipment)."""

    autoconnection_enabled: bool | None = Field(default=None, alias="autoconnectionEnabled")
    status: str | None = None
    company: Any = None
    cameras: ListOrNull[Camera] = Field(default_factory=list)
    rdas: ListOrNull[Rda] = Field(default_factory=list)
    dependant_services: ListOrNull[DependantService] = Field(default_factory=list, alias="dependantServices")


class EntranceWithServices(WireModel):
    """An item of the ``GET /entrances`` page."""

    id: int
    address_string: str | None = Field(default=None, alias="addressString")
    address: Address | None = None
    services: ListOrNull[EntranceService] = Field(default_factory=list)


class EntrancesResponse(Page[EntranceWithServices]):
    """``GET /entrances?page=&size=&address=``."""


class EntranceDetail(WireModel):
    """``GET /rdas-service/api/v1/entrances/{id}/`` (EntranceDetailResponse)."""

    id: int
    address: Address | None = None
    address_string: str | None = Field(default=None, alias="addressString")
    cameras: ListOrNull[Camera] = Field(default_factory=list)
    rda: Rda | None = None
    services: ListOrNull[EntranceService] = Field(default_factory=list)


# --- messages -----------------------------------------------------------------------------------


class DeliveryMethod(StrEnum):
    PUSH = "push"  # REST spells it lower-case; Kafka upper-case (see schemas.kafka)


class Channel(StrEnum):
    SUPPORT = "support"
    NOTIFICATION = "notification"


class MessageRecipient(WireModel):
    """A ``toAbonents`` item: ``{id, phone}`` ([DC], phone may be 0) or ``{phone: "+7..."}`` ([LP])."""

    id: int | None = None
    phone: int | str | None = None


class SendMessageRequest(WireModel):
    """``POST /messages``."""

    to_abonents: list[MessageRecipient] = Field(alias="toAbonents", min_length=1)
    channel: str = Channel.SUPPORT.value
    message: str
    delivery_method: str = Field(default=DeliveryMethod.PUSH.value, alias="deliveryMethod")
    broadcast: bool = False


class SendMessageResult(WireModel):
    """An item of the ``POST /messages`` response ([LP]): ``success: false`` is a delivery failure."""

    id: int | None = None
    success: bool = True
    result: Any = None


class Message(WireModel):
    abonent: AbonentInfo | None = None
    channel: str | None = None
    id: int
    incoming: bool
    message: str | None = None
    message_date: int | str | None = Field(default=None, alias="messageDate")


class MessagesResponse(Page[Message]):
    """``GET /abonents/{abonentId}/messages?page=&size=&channel=``."""


# --- sign-ups -----------------------------------------------------------------------------------


class SignUpStatus(StrEnum):
    UNPROCESSED = "unprocessed"
    PROCESSED = "processed"
    CONNECTED = "connected"
    DELEGATED = "delegated"
    REJECTED = "rejected"


def _lower(value: Any) -> Any:
    # Kafka shows "UNPROCESSED"; REST wants lower case ([DC] allows only the five lowercase values).
    return value.lower() if isinstance(value, str) else value


class SignUpStatusUpdate(WireModel):
    """``PATCH /abonents-service/api/v2/sign_ups/{signupId}``; null fields are omitted."""

    status: Annotated[SignUpStatus, BeforeValidator(_lower)] | None = None
    is_virtual: bool | None = Field(default=None, alias="isVirtual")
    rejected_reason: str | None = Field(default=None, alias="rejectedReason")


__all__ = [
    "AbonentFlat",
    "AbonentInfo",
    "Account",
    "AccountConnection",
    "AccountInfo",
    "Adapter",
    "Address",
    "AuthResponse",
    "Balance",
    "Camera",
    "Channel",
    "CityObject",
    "Company",
    "CompanyInfo",
    "Connection",
    "ConnectionFlat",
    "Country",
    "CreateAccountRequest",
    "CreateAccountResponse",
    "CreateConnectionRequest",
    "CreateConnectionResponse",
    "CreateFlatRequest",
    "CreateFlatResponse",
    "Delegation",
    "DelegationTunings",
    "DeliveryMethod",
    "DependantService",
    "Entrance",
    "EntranceDetail",
    "EntranceService",
    "EntranceWithServices",
    "EntrancesResponse",
    "FlatDetailed",
    "FlatOwner",
    "FlatRange",
    "House",
    "IntAsStr",
    "Intercom",
    "Invoice",
    "ListOrNull",
    "Message",
    "MessageRecipient",
    "MessagesResponse",
    "Owner",
    "OwnerDetailed",
    "PhoneOrZero",
    "Rda",
    "RecurringPayment",
    "RecurringPaymentStatus",
    "SendMessageRequest",
    "SendMessageResult",
    "Service",
    "ServicesResponse",
    "SignUpStatus",
    "SignUpStatusUpdate",
    "Street",
]
