"""RosDomofon client errors, each inheriting the category that tells the caller what to do.

::

    RosDomofonError (IntegrationError)
    ├── RosDomofonTransientError (RetryLaterError)        5xx, timeouts, connection errors
    │   ├── RosDomofonTimeoutError                        connect timeout, or read timeout of a GET
    │   ├── RosDomofonConnectionError                     refused, reset, DNS, TLS, proxy
    │   └── RosDomofonRateLimitedError (RateLimitedError) 429; ``retry_after`` from Retry-After
    ├── RosDomofonAuthError (ReauthenticateError)          401 after one re-authentication; bad credentials
    ├── RosDomofonForbiddenError (DoNotRetryError)         403: the operator lacks access
    ├── RosDomofonInvalidRequestError (FixInputError)      400/422 and other 4xx, body message kept
    │   └── RosDomofonNotFoundError (NotFoundError)        404
    ├── RosDomofonAmbiguousWriteError (LookUpFirstError)   a write timed out after it was sent
    └── RosDomofonProtocolError (DoNotRetryError)          unusable response or request (bad JSON, bad URL)

:func:`clients.rosdomofon.transport.error_from_response` and
:func:`clients.rosdomofon.transport.error_from_exception` are the only places that create them.
"""

from __future__ import annotations

from clients.errors import (
    DoNotRetryError,
    FixInputError,
    IntegrationError,
    LookUpFirstError,
    NotFoundError,
    RateLimitedError,
    ReauthenticateError,
    RetryLaterError,
)


class RosDomofonError(IntegrationError):
    service = "rosdomofon"


class RosDomofonTransientError(RosDomofonError, RetryLaterError):
    """The same call may succeed later: 5xx, timeout, connection error."""


class RosDomofonTimeoutError(RosDomofonTransientError):
    """No answer in time, and the call was safe to repeat (not sent yet, or a read)."""


class RosDomofonConnectionError(RosDomofonTransientError):
    """The server could not be reached or dropped the connection."""


class RosDomofonRateLimitedError(RosDomofonTransientError, RateLimitedError):
    """429: wait ``retry_after`` seconds (when the server said) and repeat."""


class RosDomofonAuthError(RosDomofonError, ReauthenticateError):
    """Credentials rejected, or the API still said 401 after one fresh token."""


class RosDomofonForbiddenError(RosDomofonError, DoNotRetryError):
    """403: the operator account may not do this; a human must grant access."""


class RosDomofonInvalidRequestError(RosDomofonError, FixInputError):
    """400/422 (or another 4xx): the request is wrong; the server's message is kept."""


class RosDomofonNotFoundError(RosDomofonInvalidRequestError, NotFoundError):
    """404: the addressed account, flat, service, connection or sign-up does not exist."""


class RosDomofonAmbiguousWriteError(RosDomofonError, LookUpFirstError):
    """A write was sent but no answer came: it may have committed, so look the record up first."""


class RosDomofonProtocolError(RosDomofonError, DoNotRetryError):
    """The response could not be used (not JSON, wrong shape) or the request could not be built."""


__all__ = [
    "RosDomofonAmbiguousWriteError",
    "RosDomofonAuthError",
    "RosDomofonConnectionError",
    "RosDomofonError",
    "RosDomofonForbiddenError",
    "RosDomofonInvalidRequestError",
    "RosDomofonNotFoundError",
    "RosDomofonProtocolError",
    "RosDomofonRateLimitedError",
    "RosDomofonTimeoutError",
    "RosDomofonTransientError",
]
