"""RosDomofon operator REST client.

Public surface: :class:`RosDomofonAPI`, its Kafka settings :class:`RosDomofonKafkaConfig`, and the
error tree (drawn in :mod:`clients.rosdomofon.errors`)::

    RosDomofonError (IntegrationError)
    ├── RosDomofonTransientError (RetryLaterError)        5xx, timeouts, connection errors
    │   ├── RosDomofonTimeoutError
    │   ├── RosDomofonConnectionError
    │   └── RosDomofonRateLimitedError (RateLimitedError) 429 + ``retry_after``
    ├── RosDomofonAuthError (ReauthenticateError)          401 after one re-authentication
    ├── RosDomofonForbiddenError (DoNotRetryError)         403
    ├── RosDomofonInvalidRequestError (FixInputError)      400/422, body message kept
    │   └── RosDomofonNotFoundError (NotFoundError)        404
    ├── RosDomofonAmbiguousWriteError (LookUpFirstError)   write sent, no answer
    └── RosDomofonProtocolError (DoNotRetryError)          unusable response/request

Module map: ``api`` (operations), ``requestor`` (the one request path), ``auth`` (token),
``transport`` (session, retries, error mapping), ``config`` (Kafka settings), ``errors``.
"""

from __future__ import annotations

from clients.rosdomofon.api import DEFAULT_BASE_URL, RosDomofonAPI
from clients.rosdomofon.config import RosDomofonKafkaConfig
from clients.rosdomofon.errors import (
    RosDomofonAmbiguousWriteError,
    RosDomofonAuthError,
    RosDomofonConnectionError,
    RosDomofonError,
    RosDomofonForbiddenError,
    RosDomofonInvalidRequestError,
    RosDomofonNotFoundError,
    RosDomofonProtocolError,
    RosDomofonRateLimitedError,
    RosDomofonTimeoutError,
    RosDomofonTransientError,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "RosDomofonAPI",
    "RosDomofonAmbiguousWriteError",
    "RosDomofonAuthError",
    "RosDomofonConnectionError",
    "RosDomofonError",
    "RosDomofonForbiddenError",
    "RosDomofonInvalidRequestError",
    "RosDomofonKafkaConfig",
    "RosDomofonNotFoundError",
    "RosDomofonProtocolError",
    "RosDomofonRateLimitedError",
    "RosDomofonTimeoutError",
    "RosDomofonTransientError",
]
