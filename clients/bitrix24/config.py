"""Connection settings for one Bitrix24 portal: an incoming webhook, or an OAuth local app."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from clients.bitrix24.redis_keys import RedisKeys

DEFAULT_OAUTH_SERVER = "https://oauth.bitrix.info/oauth/token/"


class Bitrix24Config(BaseModel):
    """Either ``webhook_url`` (``https://<portal>/rest/<user_id>/<secret>/``) or the OAuth fields.

    ``server_endpoint`` is the auth server as the last token answer named it (its host is used for
    ``/oauth/token/``); tests point it at the simulator. ``rate``/``burst`` mirror the portal's plan
    (2/50, Enterprise 5/250); ``limiter_key`` names the shared bucket (default: the portal host).
    ``key_prefix`` is the Redis namespace of everything the client shares between processes (see
    ``redis_keys``); required, because the deployment owns its Redis layout, not the client.
    """

    model_config = ConfigDict(frozen=True)

    key_prefix: str
    webhook_url: SecretStr | None = None
    client_endpoint: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    server_endpoint: str | None = None
    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    application_token: SecretStr | None = None
    rate: float = Field(default=2.0, gt=0)
    burst: int = Field(default=50, gt=0)
    burst_margin: int = Field(default=1, ge=0)
    timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    operation_time_limit: float = Field(default=480.0, gt=0)
    user_agent: str = "rosdomofon-bitrix24/0.1 (+requests)"
    limiter_key: str | None = None

    @field_validator("key_prefix")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not value or value.endswith(":") or any(c.isspace() for c in value):
            raise ValueError(
                f"key_prefix must be a Redis namespace like 'app:b24' (no spaces, no trailing ':'): {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> Bitrix24Config:
        has_webhook = self.webhook_url is not None and bool(self.webhook_url.get_secret_value())
        if not has_webhook and not (self.client_endpoint and self.client_id and self.client_secret):
            raise ValueError(
                "Bitrix24Config needs webhook_url, or client_endpoint + client_id + client_secret (OAuth)"
            )
        if has_webhook:
            url = self.webhook_url.get_secret_value()  # type: ignore[union-attr]
            if "/rest/" not in url:
                raise ValueError("webhook_url must look like https://<portal>/rest/<user_id>/<secret>/")
        return self

    @property
    def is_oauth(self) -> bool:
        return not (self.webhook_url is not None and self.webhook_url.get_secret_value())

    @property
    def portal_host(self) -> str:
        url = self.client_endpoint if self.is_oauth else self.webhook_url.get_secret_value()  # type: ignore[union-attr]
        return urlsplit(url or "").netloc

    @property
    def bucket_key(self) -> str:
        return self.limiter_key or self.portal_host

    @property
    def redis_keys(self) -> RedisKeys:
        """Every Redis key this portal's clients share, under ``key_prefix``."""
        return RedisKeys(self.key_prefix)


def token_url(server_endpoint: str | None) -> str:
    """The auth server's token URL: the host of the last ``server_endpoint``, else oauth.bitrix.info."""
    if not server_endpoint:
        return DEFAULT_OAUTH_SERVER
    if server_endpoint.rstrip("/").endswith("/oauth/token"):
        return server_endpoint.rstrip("/") + "/"
    parts = urlsplit(server_endpoint)
    return f"{parts.scheme}://{parts.netloc}/oauth/token/"
