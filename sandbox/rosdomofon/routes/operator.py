"""The operator REST API (docs/rosdomofon-api.md §1-2) put together: the token endpoint, then every
``/abonents-service`` and ``/rdas-service`` route behind the bearer check.

Request bodies are checked the way the facts say the server does: ``flatId`` must be a number,
``flatNumber``/``entranceId`` and the ``create_account`` phone strings, sign-up statuses lower-case,
REST ``deliveryMethod`` lower-case ``push``. Wrong types answer 400; well-typed but unusable
values (unknown flat, phone not ``7XXXXXXXXXX``, duplicate account number) answer 422.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from sandbox.rosdomofon.routes import accounts, auth, entrances, flats, messages, services, signups
from sandbox.rosdomofon.routes.inputs import V1

router = APIRouter()
router.include_router(auth.router)

_bearer = [Depends(auth.authorized)]
for resource in (accounts.router, flats.router, services.router, entrances.router, messages.router):
    router.include_router(resource, prefix=V1, dependencies=_bearer)
router.include_router(signups.router, dependencies=_bearer)
router.include_router(entrances.rdas_router, dependencies=_bearer)


__all__ = ["router"]
