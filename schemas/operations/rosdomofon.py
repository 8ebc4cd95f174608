"""Payloads and results of the ``rosdomofon.*`` tasks, one pair per RosDomofon client method."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.operations import OperationPayload
from schemas.phone import PhoneStr
from schemas.rosdomofon import (
    AbonentFlat,
    Account,
    AccountInfo,
    Connection,
    CreateAccountResponse,
    CreateConnectionResponse,
    CreateFlatResponse,
    EntranceDetail,
    EntrancesResponse,
    FlatDetailed,
    MessageRecipient,
    MessagesResponse,
    SendMessageResult,
    Service,
    SignUpStatus,
)

Id = int  # RosDomofon ids are positive integers
EntranceId = int | str


class AccountIdPayload(OperationPayload):
    account_id: Id = Field(gt=0)


class AccountNumberPayload(OperationPayload):
    account_number: str | int = Field(description="the account (billing) number in the URL")


class PhonePayload(OperationPayload):
    phone: PhoneStr


class CreateAccountPayload(OperationPayload):
    number: str = Field(min_length=1)
    phone: PhoneStr


class CreateFlatPayload(OperationPayload):
    flat_number: str | int
    entrance_id: EntranceId | None = None
    abonent_id: Id | None = None
    virtual: bool = False


class EntranceIdPayload(OperationPayload):
    entrance_id: EntranceId


class ServiceIdPayload(OperationPayload):
    service_id: Id = Field(gt=0)


class ConnectServicePayload(OperationPayload):
    service_id: Id = Field(gt=0)
    flat_id: Id = Field(gt=0)
    account_id: Id | None = None


class ConnectionIdPayload(OperationPayload):
    connection_id: Id = Field(gt=0)


class AbonentIdPayload(OperationPayload):
    abonent_id: Id = Field(gt=0)


class SendMessagePayload(OperationPayload):
    to_abonents: list[Id | MessageRecipient] = Field(min_length=1)
    channel: str = "support"
    message: str = Field(min_length=1)
    broadcast: bool = False


class SendMessageToAbonentPayload(OperationPayload):
    abonent_id: Id = Field(gt=0)
    channel: str = "support"
    message: str = Field(min_length=1)


class AbonentMessagesPayload(OperationPayload):
    abonent_id: Id = Field(gt=0)
    channel: str | None = None
    page: int = Field(default=0, ge=0)
    size: int = Field(default=20, gt=0, le=1000)


class EntrancesPayload(OperationPayload):
    address: str | None = None
    page: int = Field(default=0, ge=0)
    size: int = Field(default=20, gt=0, le=1000)
    all: bool = False


class UpdateSignupPayload(OperationPayload):
    signup_id: Id = Field(gt=0)
    status: SignUpStatus | None = None
    is_virtual: bool | None = None
    rejected_reason: str | None = None


class AccountsResult(BaseModel):
    accounts: list[Account]


class AccountResult(BaseModel):
    account: Account | None  # None: no account has that phone


class AccountInfoResult(BaseModel):
    account: AccountInfo


class CreatedAccountResult(BaseModel):
    account: CreateAccountResponse
    existed: bool = False  # found by a look-up after an ambiguous create, not created by this call


class CreatedFlatResult(BaseModel):
    flat: CreateFlatResponse


class FlatsResult(BaseModel):
    flats: list[FlatDetailed]


class AbonentFlatsResult(BaseModel):
    flats: list[AbonentFlat]


class ServicesResult(BaseModel):
    services: list[Service]


class ConnectionResult(BaseModel):
    connection: CreateConnectionResponse
    existed: bool = False


class ConnectionsResult(BaseModel):
    connections: list[Connection]


class SendMessageResults(BaseModel):
    results: list[SendMessageResult]


class MessagesResult(BaseModel):
    messages: MessagesResponse


class EntrancesResult(BaseModel):
    entrances: EntrancesResponse


class EntranceResult(BaseModel):
    entrance: EntranceDetail
