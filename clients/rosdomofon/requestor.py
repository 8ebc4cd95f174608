"""The one request path: auth header, 401 → new token → one retry, error mapping, model validation."""

from __future__ import annotations

import functools
import time
from typing import Any, TypeVar

import requests
from loguru import logger
from pydantic import BaseModel, TypeAdapter, ValidationError

from clients.rosdomofon.auth import TOKEN_PATH, TokenManager
from clients.rosdomofon.errors import RosDomofonProtocolError
from clients.rosdomofon.transport import build_session, error_from_exception, error_from_response, scrub

M = TypeVar("M")

API_V1 = "/abonents-service/api/v1"
API_V2 = "/abonents-service/api/v2"
RDAS_V1 = "/rdas-service/api/v1"


@functools.lru_cache(maxsize=64)
def _adapter(model: Any) -> TypeAdapter[Any]:
    # Building a TypeAdapter compiles a validator; do it once per type, not per response.
    return TypeAdapter(model)


class Requestor:
    """Sends one logical operation; the only code that touches the session or maps errors."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: tuple[float, float],
        read_retries: int,
        retry_backoff: float,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or build_session(read_retries=read_retries, backoff=retry_backoff)
        self.tokens = TokenManager(
            self.session, self.base_url + TOKEN_PATH, username, password, timeout=timeout
        )

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> requests.Response:
        """Send with a valid token; on 401 renew the token once and resend with the new one."""
        started = time.monotonic()
        token = self.tokens.token()
        response = self._send(method, path, token, operation=operation, json=json, params=params)
        if response.status_code == 401:
            logger.info("rosdomofon {}: 401, re-authenticating once", operation)
            token = self.tokens.renew(token)
            response = self._send(method, path, token, operation=operation, json=json, params=params)
        elapsed = time.monotonic() - started
        if not response.ok:
            err = error_from_response(response, operation=operation, secrets=self.tokens.secrets)
            logger.error("rosdomofon {} {} {} failed in {:.3f}s: {}", operation, method, path, elapsed, err)
            raise err
        logger.info("rosdomofon {} ok ({} in {:.3f}s)", operation, response.status_code, elapsed)
        return response

    def _send(
        self,
        method: str,
        path: str,
        token: str,
        *,
        operation: str,
        json: Any,
        params: dict[str, Any] | None,
    ) -> requests.Response:
        url = self.base_url + path
        logger.debug("rosdomofon {}: {} {} params={} body={}", operation, method, path, params, json)
        try:
            return self.session.request(
                method,
                url,
                json=json,
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            err = error_from_exception(exc, operation=operation, method=method, secrets=self.tokens.secrets)
            logger.error("rosdomofon {} {} {} failed: {}", operation, method, path, err)
            raise err from exc

    def parse(self, response: requests.Response, model: type[M] | Any, *, operation: str) -> M:
        """Validate the JSON body into ``model`` (a model class or a type such as ``list[Account]``)."""
        try:
            data = response.json()
        except ValueError:
            raise RosDomofonProtocolError(
                f"rosdomofon {operation}: response is not JSON", status=response.status_code
            ) from None
        try:
            if isinstance(model, type) and issubclass(model, BaseModel):
                return model.model_validate(data)  # type: ignore[return-value]
            return _adapter(model).validate_python(data)
        except ValidationError as exc:
            detail = scrub(str(exc), self.tokens.secrets)[:1000]
            logger.error("rosdomofon {}: response does not match the model: {}", operation, detail)
            raise RosDomofonProtocolError(
                f"rosdomofon {operation}: unexpected response shape: {detail}", status=response.status_code
            ) from None


__all__ = ["API_V1", "API_V2", "RDAS_V1", "Requestor"]
