"""The one configuration object of the system, read from the environment and ``.env``.

Only the task layer reads it; clients get explicit config objects built from it. Secrets are
``SecretStr`` so they never print. Every field is documented in ``.env.example`` (a test checks).
Env names keep the upstream ``rosdomofon`` library's spelling where it had one
(``KAFKA_BOOTSTRAP_SERVERS``, ``COMPANY_SHORT_NAME``, ...).
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.validation import format_validation_errors
from tasks.errors import SettingsError

# Seconds. Generous because one reconciliation run is one task (a large portal at 2 requests per
# second); every other step takes seconds. Below the default VISIBILITY_TIMEOUT (7200 s).
DEFAULT_SOFT_TIME_LIMIT = 3000.0
DEFAULT_TIME_LIMIT = 3300.0
BRPOP_TIMEOUT = 1.0  # kombu's redis transport: BRPOP blocks this long server-side (brpop_timeout)


class ChatMode(StrEnum):
    """How subscriber messages reach operators in Bitrix24."""

    AUTO = "auto"  # Open Lines when an OAuth app is configured, else CRM-linked chat
    OPENLINES = "openlines"
    CRM_CHAT = "crm_chat"


class ReplyTransport(StrEnum):
    """How operator replies reach the subscriber."""

    REST = "rest"
    KAFKA = "kafka"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- Redis: Celery broker, result backend, locks, indexes, dead letters, rate limiter
    # redis://, rediss://, unix://, or sentinel://h1:26379;sentinel://h2:26379 (tasks/runtime/redis_target.py)
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", alias="REDIS_URL")
    redis_sentinel_master: str = Field(default="", alias="REDIS_SENTINEL_MASTER")  # for sentinel:// only

    # --- RosDomofon REST
    rosdomofon_base_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("https://rdba.rosdomofon.com"), alias="ROSDOMOFON_BASE_URL"
    )
    rosdomofon_username: str = Field(default="", alias="ROSDOMOFON_USERNAME")
    rosdomofon_password: SecretStr = Field(default=SecretStr(""), alias="ROSDOMOFON_PASSWORD")
    rosdomofon_timeout: float = Field(default=30.0, gt=0, alias="ROSDOMOFON_TIMEOUT")
    company_short_name: str = Field(default="", alias="COMPANY_SHORT_NAME")

    # --- Kafka (RosDomofon's broker in production: SASL_SSL + SCRAM-SHA-512)
    kafka_bootstrap_servers: str = Field(default="", alias="KAFKA_BOOTSTRAP_SERVERS")
    kafka_username: str = Field(default="", alias="KAFKA_USERNAME")
    kafka_password: SecretStr = Field(default=SecretStr(""), alias="KAFKA_PASSWORD")
    kafka_group_id: str = Field(default="", alias="KAFKA_GROUP_ID")
    kafka_ssl_ca_cert_path: str = Field(default="", alias="KAFKA_SSL_CA_CERT_PATH")
    # No CA file + this flag: TLS without certificate checks (upstream's behaviour), with a warning
    kafka_ssl_skip_verify: bool = Field(default=False, alias="KAFKA_SSL_SKIP_VERIFY")
    # auto = SASL_SSL when KAFKA_USERNAME/PASSWORD are set, else PLAINTEXT (a local broker)
    kafka_security_protocol: str = Field(default="auto", alias="KAFKA_SECURITY_PROTOCOL")
    kafka_sasl_mechanism: str = Field(default="SCRAM-SHA-512", alias="KAFKA_SASL_MECHANISM")
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000, alias="KAFKA_SESSION_TIMEOUT_MS")
    kafka_delivery_timeout: float = Field(default=10.0, gt=0, alias="KAFKA_DELIVERY_TIMEOUT")  # s per send
    kafka_dlq_suffix: str = Field(default=".DLQ", min_length=1, alias="KAFKA_DLQ_SUFFIX")  # <topic><suffix>

    # --- Kafka ingest worker (rdb24 ingest)
    # Pause consuming when the Celery flows queue holds more than this; resume below the lower mark
    ingest_pause_queue_depth: int = Field(default=5000, gt=0, alias="INGEST_PAUSE_QUEUE_DEPTH")
    ingest_resume_queue_depth: int = Field(default=1000, ge=0, alias="INGEST_RESUME_QUEUE_DEPTH")
    ingest_metrics_port: int = Field(default=9809, ge=0, lt=65536, alias="INGEST_METRICS_PORT")  # 0: off
    ingest_shutdown_timeout: float = Field(default=20.0, gt=0, alias="INGEST_SHUTDOWN_TIMEOUT")  # seconds
    ingest_retry_backoff_max: float = Field(default=30.0, gt=0, alias="INGEST_RETRY_BACKOFF_MAX")  # seconds
    ingest_stats_interval_ms: int = Field(default=5000, ge=0, alias="INGEST_STATS_INTERVAL_MS")  # lag stats
    # How often the flows queue depth is read (LLEN) for backpressure, seconds
    ingest_backpressure_interval: float = Field(default=0.5, gt=0, alias="INGEST_BACKPRESSURE_INTERVAL")
    # Celery queues whose summed depth is compared with the marks: the chain runs on flows AND bitrix24
    # (a Bitrix24 rate limit backs up only the latter), comma-separated
    ingest_backpressure_queues: str = Field(default="flows,bitrix24", alias="INGEST_BACKPRESSURE_QUEUES")
    # Offsets are committed only for settled messages (posted or dead-lettered; tasks/ingest/settlement.py):
    # how often the in-flight ledger is read for that, seconds
    ingest_settle_check_interval: float = Field(default=0.5, gt=0, alias="INGEST_SETTLE_CHECK_INTERVAL")
    # Seconds a settlement must be old before its offset is stored (above appendfsync everysec's 1 s)
    ingest_commit_grace: float = Field(default=2.0, ge=0, alias="INGEST_COMMIT_GRACE")
    # Records held per partition (enqueued, offset not yet committable) above which it is paused
    ingest_max_held: int = Field(default=20_000, gt=0, alias="INGEST_MAX_HELD")

    # --- Bitrix24: an incoming webhook, or an OAuth local app (needed for Open Lines)
    bitrix24_webhook_url: SecretStr = Field(default=SecretStr(""), alias="BITRIX24_WEBHOOK_URL")
    bitrix24_client_endpoint: str = Field(default="", alias="BITRIX24_CLIENT_ENDPOINT")
    bitrix24_client_id: str = Field(default="", alias="BITRIX24_CLIENT_ID")
    bitrix24_client_secret: SecretStr = Field(default=SecretStr(""), alias="BITRIX24_CLIENT_SECRET")
    # OAuth token server (its host is used for /oauth/token/); empty = https://oauth.bitrix.info
    bitrix24_server_endpoint: str = Field(default="", alias="BITRIX24_SERVER_ENDPOINT")
    bitrix24_access_token: SecretStr = Field(default=SecretStr(""), alias="BITRIX24_ACCESS_TOKEN")
    bitrix24_refresh_token: SecretStr = Field(default=SecretStr(""), alias="BITRIX24_REFRESH_TOKEN")
    bitrix24_application_token: SecretStr = Field(default=SecretStr(""), alias="BITRIX24_APPLICATION_TOKEN")
    bitrix24_rate: float = Field(default=2.0, gt=0, alias="BITRIX24_RATE")
    bitrix24_burst: int = Field(default=50, gt=0, alias="BITRIX24_BURST")
    bitrix24_timeout: float = Field(default=30.0, gt=0, alias="BITRIX24_TIMEOUT")

    # --- Chat
    chat_mode: ChatMode = Field(default=ChatMode.AUTO, alias="CHAT_MODE")
    openlines_connector_id: str = Field(default="rosdomofon", alias="OPENLINES_CONNECTOR_ID")
    openlines_line_id: str = Field(default="", alias="OPENLINES_LINE_ID")
    reply_transport: ReplyTransport = Field(default=ReplyTransport.REST, alias="REPLY_TRANSPORT")
    # Longest text one RosDomofon message carries (the app's limit is not documented): a longer
    # operator reply goes out as ordered parts "(1/3) ..." of at most this many characters.
    reply_max_length: int = Field(default=4000, ge=100, alias="REPLY_MAX_LENGTH")
    # Public URL of `rdb24 webhook` (e.g. https://b24.example.com); Open Lines setup binds
    # ONIMCONNECTORMESSAGEADD to <url>/bitrix24/events. Empty: operator replies are not bound.
    webhook_public_url: str = Field(default="", alias="WEBHOOK_PUBLIC_URL")
    webhook_host: str = Field(default="127.0.0.1", alias="WEBHOOK_HOST")  # `rdb24 webhook` bind address
    webhook_port: int = Field(default=8085, gt=0, lt=65536, alias="WEBHOOK_PORT")
    webhook_max_body: int = Field(default=262_144, gt=0, alias="WEBHOOK_MAX_BODY")  # bytes; larger -> 413
    # Where `rdb24 webhook` keeps each event (SQLite, fsynced) until Celery accepted it; one file per
    # process. Must survive a restart of the receiver (a volume in containers).
    webhook_spool_dir: str = Field(default="var/webhook-spool", alias="WEBHOOK_SPOOL_DIR")
    # Longest a reply waits for an earlier reply of the same dialog still being retried, seconds.
    reply_order_wait: float = Field(default=60.0, gt=0, alias="REPLY_ORDER_WAIT")
    # Poll Bitrix24's offline event queue (event.offline.get) from beat as a catch-up source for replies
    # the receiver never got. Off by default: whether connector events can be bound offline is undocumented.
    offline_events_enabled: bool = Field(default=False, alias="OFFLINE_EVENTS_ENABLED")
    offline_events_interval: float = Field(default=60.0, gt=0, alias="OFFLINE_EVENTS_INTERVAL")  # seconds
    # A phone missing from the phone->account index refreshes it at most once per this many seconds.
    accounts_index_min_refresh: float = Field(default=60.0, ge=0, alias="ACCOUNTS_INDEX_MIN_REFRESH")
    # How long "step done" markers are kept: longer than any redelivery or dead-letter replay window.
    effect_marker_ttl: int = Field(default=14 * 24 * 3600, gt=0, alias="EFFECT_MARKER_TTL")
    # Order per subscriber (tasks/state/order.py): a message whose predecessor (earlier Kafka record
    # timestamp, same subscriber) is not yet posted or dead-lettered waits for it at most this many
    # seconds, then is posted anyway (out of order). 0: never wait, the default until the open loss
    # under worker kills and Redis outages is fixed (README "Order per subscriber").
    order_wait_max: float = Field(default=0.0, ge=0, alias="ORDER_WAIT_MAX")

    # --- Logging
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    log_json: bool = Field(default=False, alias="LOG_JSON")

    # --- Celery reliability (tasks/runtime/app.py, tasks/runtime/operation.py)
    # A fetched-but-unacked message is redelivered after this many seconds. It must exceed the longest
    # retry countdown, or ETA retries held in worker memory are re-delivered in a loop (duplicates).
    visibility_timeout: int = Field(default=7200, gt=0, alias="VISIBILITY_TIMEOUT")
    # Seconds between the worker's sweeps that move unacked messages older than VISIBILITY_TIMEOUT back
    # to their queue (kombu's unacked_restore_interval, throttle 1): how soon after the timeout a message
    # held by a crashed worker, or left unacked during a Redis outage, runs again.
    redis_restore_interval: int = Field(default=60, gt=0, alias="REDIS_RESTORE_INTERVAL")
    result_expires: int = Field(default=86400, gt=0, alias="RESULT_EXPIRES")  # seconds results are kept
    max_retries: int = Field(default=8, ge=0, alias="MAX_RETRIES")  # transient-error retries per task
    # 429s are the server pacing us, not failing: counted apart with a larger cap
    max_rate_limit_retries: int = Field(default=50, ge=0, alias="MAX_RATE_LIMIT_RETRIES")
    retry_backoff_base: float = Field(default=2.0, gt=0, alias="RETRY_BACKOFF_BASE")  # first backoff, seconds
    retry_backoff_max: float = Field(default=600.0, gt=0, alias="RETRY_BACKOFF_MAX")  # backoff cap, seconds
    rate_limit_wait_max: float = Field(default=300.0, gt=0, alias="RATE_LIMIT_WAIT_MAX")  # Retry-After cap
    worker_soft_shutdown_timeout: float = Field(default=60.0, ge=0, alias="WORKER_SOFT_SHUTDOWN_TIMEOUT")
    dead_letter_max: int = Field(default=100_000, gt=0, alias="DEAD_LETTER_MAX")  # oldest trimmed beyond
    # Every wait has an end. A task past TASK_SOFT_TIME_LIMIT gets an exception and retries; past
    # TASK_TIME_LIMIT its process is killed and the message requeued (counted as a crash). Both below
    # VISIBILITY_TIMEOUT, so no task still runs when its message is handed to another worker. Unset:
    # 3000/3300 s, scaled down to 0.72/0.9 x VISIBILITY_TIMEOUT when that is shorter (time_limits).
    task_soft_time_limit: float | None = Field(default=None, gt=0, alias="TASK_SOFT_TIME_LIMIT")
    task_time_limit: float | None = Field(default=None, gt=0, alias="TASK_TIME_LIMIT")
    # A message whose task killed its worker process (OOM, segfault, hard time limit) this many times
    # in a row is dead-lettered ("worker_crashed") instead of being run again.
    max_worker_crashes: int = Field(default=3, ge=1, alias="MAX_WORKER_CRASHES")
    # Every Redis client (broker, result backend, state, metrics, the Bitrix24 client's): a command
    # without an answer for REDIS_SOCKET_TIMEOUT seconds fails instead of blocking forever on a
    # half-open connection; above kombu's BRPOP timeout (1 s), which blocks that long by design.
    redis_socket_timeout: float = Field(default=15.0, gt=0, alias="REDIS_SOCKET_TIMEOUT")
    redis_connect_timeout: float = Field(default=5.0, gt=0, alias="REDIS_CONNECT_TIMEOUT")
    # Seconds idle before a pooled connection is PINGed before use (and kombu checks BRPOP replies).
    redis_health_check_interval: int = Field(default=10, ge=0, alias="REDIS_HEALTH_CHECK_INTERVAL")

    # --- Flower and metrics
    flower_user: str = Field(default="admin", alias="FLOWER_USER")
    flower_password: SecretStr = Field(default=SecretStr(""), alias="FLOWER_PASSWORD")  # required by Flower
    flower_port: int = Field(default=5555, gt=0, lt=65536, alias="FLOWER_PORT")
    metrics_port: int = Field(default=9808, ge=0, lt=65536, alias="METRICS_PORT")  # 0 disables exporter

    # --- Reconciliation and beat (tasks/reconcile, tasks/runtime/schedule.py)
    # Seconds between reconciliation runs (ignored when RECONCILE_CRONTAB is set). Expiry ~1.5x this.
    reconcile_interval_seconds: float = Field(default=900.0, gt=0, alias="RECONCILE_INTERVAL_SECONDS")
    # Five-field crontab ("m h dom mon dow", UTC), e.g. "*/15 * * * *"; empty: use the interval.
    reconcile_crontab: str = Field(default="", alias="RECONCILE_CRONTAB")
    # Run lock TTL, seconds; kept alive by a heartbeat, so it only bounds how long a killed run blocks.
    reconcile_lock_ttl: float = Field(default=60.0, gt=0, alias="RECONCILE_LOCK_TTL")
    # RosDomofon GETs in flight at once while reading connections (per service); no rate limit is known.
    reconcile_read_concurrency: int = Field(default=8, ge=1, le=32, alias="RECONCILE_READ_CONCURRENCY")
    # The in-flight ledger (tasks/state/inflight.py): a subscriber message not posted (an operator reply not
    # delivered) this many seconds after it was enqueued is published again, checked every
    # STALLED_SWEEP_INTERVAL seconds.
    # Above VISIBILITY_TIMEOUT, so a crashed worker's messages come back the usual way first.
    stalled_message_after: float = Field(default=10800.0, gt=0, alias="STALLED_MESSAGE_AFTER")
    stalled_sweep_interval: float = Field(default=600.0, gt=0, alias="STALLED_SWEEP_INTERVAL")
    # RedBeat: a standby beat takes over this many seconds after the active one died.
    redbeat_lock_timeout: int = Field(default=300, gt=0, alias="REDBEAT_LOCK_TIMEOUT")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://", "sentinel://")):
            raise ValueError(
                f"REDIS_URL must start with redis://, rediss://, unix:// or sentinel://, got {value[:20]!r}"
            )
        return value

    @model_validator(mode="after")
    def _sentinel_needs_master(self) -> Settings:
        if self.redis_url.startswith("sentinel://") and not self.redis_sentinel_master:
            raise ValueError("REDIS_URL is sentinel://...: set REDIS_SENTINEL_MASTER to the master's name")
        return self

    @model_validator(mode="after")
    def _countdowns_below_visibility(self) -> Settings:
        longest = max(self.retry_backoff_max, self.rate_limit_wait_max)
        if longest >= self.visibility_timeout:
            raise ValueError(
                f"VISIBILITY_TIMEOUT ({self.visibility_timeout}s) must exceed RETRY_BACKOFF_MAX and "
                f"RATE_LIMIT_WAIT_MAX (longest {longest:g}s), else delayed retries are redelivered twice"
            )
        return self

    @model_validator(mode="after")
    def _time_limits_below_visibility(self) -> Settings:
        soft, hard = self.time_limits
        if not soft < hard < self.visibility_timeout:
            raise ValueError(
                f"TASK_SOFT_TIME_LIMIT ({soft:g}s) < TASK_TIME_LIMIT ({hard:g}s) < VISIBILITY_TIMEOUT "
                f"({self.visibility_timeout}s) must hold, else a task still runs when its message is "
                "redelivered to another worker"
            )
        if self.redis_socket_timeout <= BRPOP_TIMEOUT:
            raise ValueError(
                f"REDIS_SOCKET_TIMEOUT ({self.redis_socket_timeout:g}s) must exceed kombu's BRPOP "
                f"timeout ({BRPOP_TIMEOUT:g}s), else an idle worker's poll fails every time"
            )
        return self

    @property
    def time_limits(self) -> tuple[float, float]:
        """(soft, hard) task time limits in seconds, explicit or derived from VISIBILITY_TIMEOUT."""
        hard = self.task_time_limit or min(DEFAULT_TIME_LIMIT, 0.9 * self.visibility_timeout)
        derived = DEFAULT_SOFT_TIME_LIMIT if hard >= DEFAULT_TIME_LIMIT else 0.8 * hard
        soft = self.task_soft_time_limit or derived
        return soft, hard

    def redis_client_options(self) -> dict[str, Any]:
        """Timeouts and keepalive for every redis-py client we build (``Redis.from_url(**...)``)."""
        return {
            "socket_timeout": self.redis_socket_timeout,
            "socket_connect_timeout": self.redis_connect_timeout,
            "socket_keepalive": True,
            "health_check_interval": self.redis_health_check_interval,
        }

    @property
    def bitrix24_oauth_configured(self) -> bool:
        return bool(self.bitrix24_client_id and self.bitrix24_client_secret.get_secret_value())


def load_settings() -> Settings:
    """Build settings, turning a validation error into one message that names each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = format_validation_errors(exc, root="settings")
        raise SettingsError(f"invalid configuration: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
