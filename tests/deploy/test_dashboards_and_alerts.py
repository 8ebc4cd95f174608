"""The Grafana dashboard and the Prometheus alerts in deploy/ work against what we really export.

``promtool`` (Debian package ``prometheus``; ``make tools`` installs it) checks and unit-tests the
rules and lints our real ``/metrics`` output; the names a panel or rule uses are parsed out of the
expressions and must all be series our exporters serve. Locally a missing promtool skips these
tests; under ``CI=true`` it fails them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
import yaml
from prometheus_client import generate_latest

from sandbox.stack import embedded
from sandbox.stack.embedded import free_port
from tasks.ingest.metrics import IngestMetrics
from tasks.runtime import metrics
from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "rdb24.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
PROMETHEUS_BUILTIN = {"up"}  # written by Prometheus itself for every scrape target
SHOWN = (  # what issue 17 asks the dashboard and the alerts to cover, by the series that carry it
    "rdb24_messages_ingested_total",
    "rdb24_chat_posts_total",
    "rdb24_inflight_oldest_age_seconds",
    "rdb24_queue_depth",
    "rdb24_ingest_lag_records",
    "rdb24_dead_letters_total",
    "rdb24_messages_resent_total",
    "rdb24_rate_limit_wait_seconds_total",
    "rdb24_reconcile_runs_total",
    "rdb24_dead_letter_store_full",
    "rdb24_bitrix24_bucket_fill_ratio",
    "up",
)

# What is not a metric name in an expression: keywords, and words followed by "(" (functions and
# aggregations) are dropped by the parser below; strings, label matchers, ranges and numbers first.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, ...)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery selectors
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if not call and word not in KEYWORDS:
            names.add(word)
    return names


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        service_missing("promtool not installed (`make tools`: Debian package prometheus)")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def exported() -> Iterator[str]:
    """The worker exporter's real /metrics text, over HTTP, on a Valkey of its own.

    (Not a database of the shared Redis: its 15 indexes are scarce while parallel sessions run.)
    """
    import tasks.reconcile.report  # noqa: F401 - registers the reconciliation counters, as workers do

    try:
        server = embedded.valkey().start()
    except embedded.EmbeddedServiceError as exc:
        service_missing(f"bundled Valkey failed to start: {exc}")
    client = redis.Redis(host=server.host, port=server.port, decode_responses=True)
    metrics.use_redis(client)
    try:
        metrics.CHAT_POSTS.inc(mode="openlines")
        client.hset("rdb24:b24:bucket:portal.example", mapping={"level": "10", "ts": "0"})
        port = free_port()
        assert metrics.serve(port, addr="127.0.0.1")
        yield requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        metrics.use_redis(None)
        server.stop()


def exported_names(text: str) -> set[str]:
    """Every family (HELP line) and sample name in Prometheus text output."""
    names = set(re.findall(r"^# HELP (\S+)", text, flags=re.MULTILINE))
    names |= set(re.findall(r"^([a-zA-Z_:][\w:]*)", text, flags=re.MULTILINE))
    return names


def test_promtool_checks_the_rules(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_promtool_unit_tests_of_the_alerts_pass(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "test", "rules", ALERT_TESTS.name], cwd=ALERT_TESTS.parent, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    tested = {test["alertname"] for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
              for test in case["alert_rule_test"]}  # fmt: skip
    alerts = {
        rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    }
    assert tested == alerts, f"alerts without a unit test: {sorted(alerts - tested)}"


def test_promtool_lints_our_metrics_clean(promtool: str, exported: str) -> None:
    ingest = generate_latest(IngestMetrics().registry).decode()
    for name, text in (("worker exporter", exported), ("ingest exporter", ingest)):
        done = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
    assert "rdb24_dead_letter_store_full 0.0" in exported  # declared, 0 until the store fills
    assert 'rdb24_bitrix24_bucket_fill_ratio{bucket="portal.example"}' in exported


def test_every_metric_a_panel_or_rule_names_is_exported(exported: str) -> None:
    served = exported_names(exported) | exported_names(generate_latest(IngestMetrics().registry).decode())
    used = {expr: metric_names(expr) for expr in dashboard_expressions() + rule_expressions()}
    assert all(used.values()), [expr for expr, names in used.items() if not names]  # the parser finds names
    unknown = {expr: names - served - PROMETHEUS_BUILTIN for expr, names in used.items()}
    assert not any(unknown.values()), {expr: names for expr, names in unknown.items() if names}
    everything = set().union(*used.values())
    for topic in SHOWN:
        assert topic in everything, f"no panel or rule shows {topic}"


def test_the_name_parser_sees_through_promql() -> None:
    expr = 'sum by (queue) (max without (instance) (rate(foo_total{job="a",x=~"b|c"}[5m]))) > 0 or absent(up)'
    assert metric_names(expr) == {"foo_total", "up"}
    assert metric_names("time() - max(last_seen_seconds) > bool 60") == {"last_seen_seconds"}
