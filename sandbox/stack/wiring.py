"""Wire the stand-ins to each other and to our roles, and say when each role is healthy.

The simulators make up their credentials at start (a RosDomofon operator login, a Bitrix24 OAuth app
with its application token), so they are read from the simulators' control APIs once they answer and
handed to our roles through the gate's env file. Our own Open Lines setup binds the Bitrix24 event
handler to ``WEBHOOK_PUBLIC_URL`` on the first message, exactly as against a real portal.
"""

from __future__ import annotations

import redis
import requests

from sandbox.stack import probes
from sandbox.stack.plan import StackPlan

# Copies of tasks.state.keys (the simulators may not import tasks); tests/tasks/test_keys.py keeps them equal.
INGEST_STATUS_PREFIX = "rdb24:ingest:status:"  # tasks.state.keys.INGEST_STATUS_PREFIX
REDBEAT_LOCK_PATTERN = "*redbeat::lock"  # tasks.state.keys.REDBEAT_LOCK_PATTERN
DLQ_SUFFIX = ".DLQ"  # KAFKA_DLQ_SUFFIX default


class WiringError(RuntimeError):
    """A stand-in did not answer or refused to be wired."""


def wait_for_simulators(plan: StackPlan, timeout: float) -> None:
    for name, path in (("rosdomofon", "/_sandbox/info"), ("bitrix24", "/_sandbox/credentials")):
        if plan.embedded(name) and not probes.wait_until(probes.http_ok(plan.url(name) + path), timeout):
            raise WiringError(f"the {name} simulator did not answer on {plan.url(name)} within {timeout:g}s")


def _get(url: str) -> dict:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.json()


def wire(plan: StackPlan) -> dict[str, str]:
    """Environment for our roles learned from the running stand-ins (and Kafka topics created)."""
    env: dict[str, str] = {}
    if plan.embedded("rosdomofon"):
        info = _get(plan.url("rosdomofon") + "/_sandbox/info")
        env |= {
            "ROSDOMOFON_BASE_URL": plan.url("rosdomofon"),
            "ROSDOMOFON_USERNAME": str(info["username"]),
            "ROSDOMOFON_PASSWORD": str(info["password"]),
            "COMPANY_SHORT_NAME": str(info["company"]),
        }
    if plan.embedded("bitrix24"):
        creds = _get(plan.url("bitrix24") + "/_sandbox/credentials")
        oauth = creds["oauth"]
        # The OAuth app, not the inbound webhook: Open Lines (and so operator replies) need it.
        env |= {
            "BITRIX24_WEBHOOK_URL": "",
            "BITRIX24_CLIENT_ENDPOINT": oauth["client_endpoint"],
            "BITRIX24_SERVER_ENDPOINT": oauth["server_endpoint"],
            "BITRIX24_CLIENT_ID": oauth["client_id"],
            "BITRIX24_CLIENT_SECRET": oauth["client_secret"],
            "BITRIX24_ACCESS_TOKEN": oauth["access_token"],
            "BITRIX24_REFRESH_TOKEN": oauth["refresh_token"],
            "BITRIX24_APPLICATION_TOKEN": oauth["application_token"],
        }
    if plan.embedded("kafka"):
        company = env.get("COMPANY_SHORT_NAME") or plan.company
        create_topics(plan.env["KAFKA_BOOTSTRAP_SERVERS"], company)
    return env


def create_topics(bootstrap: str, company: str) -> None:
    """Tansu creates no topic on its own: the subscriber topics and the ingest dead-letter topic."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    names = [f"MESSAGES_IN_{company}", f"MESSAGES_OUT_{company}", f"MESSAGES_IN_{company}{DLQ_SUFFIX}"]
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})  # no INFO lines at broker stop
    futures = admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
    for name, future in futures.items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise WiringError(f"could not create Kafka topic {name}: {exc}") from exc


def _redis_key_probe(url: str, pattern: str) -> probes.Probe:
    def probe() -> bool:
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
            return any(True for _ in client.scan_iter(match=pattern, count=100))
        except (redis.RedisError, OSError):
            return False

    return probe


def role_probes(plan: StackPlan) -> dict[str, probes.Probe]:
    """What "healthy" means for each of our roles, in the order they are waited for."""
    from sandbox.stack.plan import WORKERS

    redis_url = plan.env["REDIS_URL"]
    return {
        "workers": probes.workers_ok(redis_url, {f"{name}@" for name in WORKERS}),
        "webhook": probes.http_ok(plan.url("webhook") + "/health"),
        "flower": probes.http_ok(plan.url("flower") + "/healthcheck"),
        "ingest": _redis_key_probe(redis_url, INGEST_STATUS_PREFIX + "*"),
        "beat": _redis_key_probe(redis_url, REDBEAT_LOCK_PATTERN),
    }


def urls(plan: StackPlan) -> dict[str, str]:
    out: dict[str, str] = {
        name: plan.url(name) for name in ("webhook", "flower", "rosdomofon", "bitrix24") if name in plan.ports
    }
    out["webhook_events"] = plan.webhook_url
    if "REDIS_URL" in plan.env:
        out["redis"] = plan.env["REDIS_URL"]
    if "KAFKA_BOOTSTRAP_SERVERS" in plan.env:
        out["kafka"] = plan.env["KAFKA_BOOTSTRAP_SERVERS"]
    return out
