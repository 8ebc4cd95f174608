"""One task per RosDomofon client method (``rosdomofon.<method>``), on the ``rosdomofon`` queue.

Thin bodies: the base task validates the payload and handles errors; each body calls the client and
wraps the answer. Writes with a natural key (create account, connect service) look the record up
first when they run as a retry, because the previous attempt may have committed before its answer
was lost (``LookUpFirstError``).
"""

from __future__ import annotations

from schemas.operations import NoPayload, OperationResult
from schemas.operations import rosdomofon as ops
from schemas.phone import normalize_phone
from schemas.rosdomofon import CreateAccountResponse, CreateConnectionResponse
from tasks.runtime.operation import current_attempt, operation
from tasks.runtime.queues import Queue
from tasks.runtime.resources import rosdomofon_api

Q = Queue.ROSDOMOFON


def _is_retry() -> bool:
    attempt = current_attempt()
    return attempt is not None and attempt.is_retry


@operation("rosdomofon.get_accounts", queue=Q, payload=NoPayload, result=ops.AccountsResult)
def get_accounts(payload: NoPayload) -> ops.AccountsResult:
    """Every account of the company."""
    return ops.AccountsResult(accounts=rosdomofon_api().get_accounts())


@operation("rosdomofon.get_account_by_phone", queue=Q, payload=ops.PhonePayload, result=ops.AccountResult)
def get_account_by_phone(payload: ops.PhonePayload) -> ops.AccountResult:
    """The account whose owner has this phone (a full scan: prefer the phone->account index)."""
    return ops.AccountResult(account=rosdomofon_api().get_account_by_phone(payload.phone))


@operation("rosdomofon.get_account_info", queue=Q, payload=ops.AccountIdPayload, result=ops.AccountInfoResult)
def get_account_info(payload: ops.AccountIdPayload) -> ops.AccountInfoResult:
    """Account details (balance, owner, blocked state)."""
    return ops.AccountInfoResult(account=rosdomofon_api().get_account_info(payload.account_id))


@operation("rosdomofon.get_account_flats", queue=Q, payload=ops.AccountIdPayload, result=ops.FlatsResult)
def get_account_flats(payload: ops.AccountIdPayload) -> ops.FlatsResult:
    """Flats of an account."""
    return ops.FlatsResult(flats=rosdomofon_api().get_account_flats(payload.account_id))


@operation(
    "rosdomofon.get_account_connections", queue=Q, payload=ops.AccountIdPayload, result=ops.ConnectionsResult
)
def get_account_connections(payload: ops.AccountIdPayload) -> ops.ConnectionsResult:
    """Service connections of an account."""
    return ops.ConnectionsResult(connections=rosdomofon_api().get_account_connections(payload.account_id))


@operation(
    "rosdomofon.create_account", queue=Q, payload=ops.CreateAccountPayload, result=ops.CreatedAccountResult
)
def create_account(payload: ops.CreateAccountPayload) -> ops.CreatedAccountResult:
    """Create an account (looked up by number and phone first when retried)."""
    api = rosdomofon_api()
    if _is_retry():
        phone = int(normalize_phone(payload.phone))
        for account in api.get_accounts():
            if account.number == payload.number and account.owner.phone == phone:
                found = CreateAccountResponse(id=account.id, owner=account.owner)
                return ops.CreatedAccountResult(account=found, existed=True)
    return ops.CreatedAccountResult(account=api.create_account(payload.number, payload.phone))


@operation("rosdomofon.block_account", queue=Q, payload=ops.AccountNumberPayload, result=OperationResult)
def block_account(payload: ops.AccountNumberPayload) -> OperationResult:
    """Block an account (idempotent on the server)."""
    return OperationResult(ok=rosdomofon_api().block_account(payload.account_number))


@operation("rosdomofon.unblock_account", queue=Q, payload=ops.AccountNumberPayload, result=OperationResult)
def unblock_account(payload: ops.AccountNumberPayload) -> OperationResult:
    """Unblock an account (idempotent on the server)."""
    return OperationResult(ok=rosdomofon_api().unblock_account(payload.account_number))


@operation("rosdomofon.create_flat", queue=Q, payload=ops.CreateFlatPayload, result=ops.CreatedFlatResult)
def create_flat(payload: ops.CreateFlatPayload) -> ops.CreatedFlatResult:
    """Create a flat (virtual or in an entrance) for an abonent."""
    flat = rosdomofon_api().create_flat(
        payload.flat_number, payload.entrance_id, payload.abonent_id, payload.virtual
    )
    return ops.CreatedFlatResult(flat=flat)


@operation(
    "rosdomofon.get_abonent_flats", queue=Q, payload=ops.AbonentIdPayload, result=ops.AbonentFlatsResult
)
def get_abonent_flats(payload: ops.AbonentIdPayload) -> ops.AbonentFlatsResult:
    """Flats of an abonent (subscriber)."""
    return ops.AbonentFlatsResult(flats=rosdomofon_api().get_abonent_flats(payload.abonent_id))


@operation(
    "rosdomofon.get_entrance_services", queue=Q, payload=ops.EntranceIdPayload, result=ops.ServicesResult
)
def get_entrance_services(payload: ops.EntranceIdPayload) -> ops.ServicesResult:
    """Services available in an entrance."""
    return ops.ServicesResult(services=rosdomofon_api().get_entrance_services(payload.entrance_id))


@operation(
    "rosdomofon.connect_service", queue=Q, payload=ops.ConnectServicePayload, result=ops.ConnectionResult
)
def connect_service(payload: ops.ConnectServicePayload) -> ops.ConnectionResult:
    """Connect a service to a flat (looked up among the service's connections first when retried)."""
    api = rosdomofon_api()
    if _is_retry():
        for connection in api.get_service_connections(payload.service_id):
            if connection.flat is not None and connection.flat.id == payload.flat_id:
                existing = CreateConnectionResponse(id=connection.id)
                return ops.ConnectionResult(connection=existing, existed=True)
    created = api.connect_service(payload.service_id, payload.flat_id, payload.account_id)
    return ops.ConnectionResult(connection=created)


@operation(
    "rosdomofon.get_service_connections", queue=Q, payload=ops.ServiceIdPayload, result=ops.ConnectionsResult
)
def get_service_connections(payload: ops.ServiceIdPayload) -> ops.ConnectionsResult:
    """Connections of a service."""
    return ops.ConnectionsResult(connections=rosdomofon_api().get_service_connections(payload.service_id))


@operation("rosdomofon.block_connection", queue=Q, payload=ops.ConnectionIdPayload, result=OperationResult)
def block_connection(payload: ops.ConnectionIdPayload) -> OperationResult:
    """Block one service connection."""
    return OperationResult(ok=rosdomofon_api().block_connection(payload.connection_id))


@operation("rosdomofon.unblock_connection", queue=Q, payload=ops.ConnectionIdPayload, result=OperationResult)
def unblock_connection(payload: ops.ConnectionIdPayload) -> OperationResult:
    """Unblock one service connection."""
    return OperationResult(ok=rosdomofon_api().unblock_connection(payload.connection_id))


@operation("rosdomofon.send_message", queue=Q, payload=ops.SendMessagePayload, result=ops.SendMessageResults)
def send_message(payload: ops.SendMessagePayload) -> ops.SendMessageResults:
    """Send a message to abonents' apps over REST (not looked up on retry: the API has no message key)."""
    results = rosdomofon_api().send_message(
        list(payload.to_abonents),
        channel=payload.channel,
        message=payload.message,
        broadcast=payload.broadcast,
    )
    return ops.SendMessageResults(results=results)


@operation(
    "rosdomofon.send_message_to_abonent",
    queue=Q,
    payload=ops.SendMessageToAbonentPayload,
    result=ops.SendMessageResults,
)
def send_message_to_abonent(payload: ops.SendMessageToAbonentPayload) -> ops.SendMessageResults:
    """Send a message to one abonent."""
    results = rosdomofon_api().send_message_to_abonent(payload.abonent_id, payload.channel, payload.message)
    return ops.SendMessageResults(results=results)


@operation(
    "rosdomofon.get_abonent_messages", queue=Q, payload=ops.AbonentMessagesPayload, result=ops.MessagesResult
)
def get_abonent_messages(payload: ops.AbonentMessagesPayload) -> ops.MessagesResult:
    """One page of an abonent's message history."""
    messages = rosdomofon_api().get_abonent_messages(
        payload.abonent_id, payload.channel, payload.page, payload.size
    )
    return ops.MessagesResult(messages=messages)


@operation("rosdomofon.get_entrances", queue=Q, payload=ops.EntrancesPayload, result=ops.EntrancesResult)
def get_entrances(payload: ops.EntrancesPayload) -> ops.EntrancesResult:
    """Entrances (one page, or all pages with ``all``)."""
    entrances = rosdomofon_api().get_entrances(payload.address, payload.page, payload.size, payload.all)
    return ops.EntrancesResult(entrances=entrances)


@operation("rosdomofon.get_entrance", queue=Q, payload=ops.EntranceIdPayload, result=ops.EntranceResult)
def get_entrance(payload: ops.EntranceIdPayload) -> ops.EntranceResult:
    """One entrance with its address and cameras."""
    return ops.EntranceResult(entrance=rosdomofon_api().get_entrance(payload.entrance_id))


@operation("rosdomofon.update_signup", queue=Q, payload=ops.UpdateSignupPayload, result=OperationResult)
def update_signup(payload: ops.UpdateSignupPayload) -> OperationResult:
    """Set a sign-up request's status."""
    ok = rosdomofon_api().update_signup(
        payload.signup_id, payload.status, payload.is_virtual, payload.rejected_reason
    )
    return OperationResult(ok=ok)
