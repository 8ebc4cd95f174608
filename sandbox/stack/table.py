"""The one table ``rdb24 up`` prints at start: every service, where it is, how to log in.

Credentials of the local stand-ins (simulator logins, a generated Flower password) are shown in
full, because the operator needs them to click around; the operator's own configured secrets are
never shown, only the variable that holds them.
"""

from __future__ import annotations

from urllib.parse import urlparse

from rich.table import Table

from sandbox.stack.plan import WORKERS, Source, StackPlan
from sandbox.stack.state import ServiceRow


def _redis_display(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        host = parsed.hostname or ""
        port = f":{parsed.port}" if parsed.port else ""
        return parsed._replace(netloc=f"***@{host}{port}").geturl()
    return url


def _secret(plan: StackPlan, name: str, generated: bool) -> str:
    return plan.env.get(name, "") if generated else f"(${name})"


def service_rows(plan: StackPlan) -> list[ServiceRow]:
    env, src = plan.env, plan.sources
    rows = [
        ServiceRow(
            name="redis", source=src["redis"], url=_redis_display(env.get("REDIS_URL", "(REDIS_URL)"))
        ),
        ServiceRow(
            name="kafka",
            source=src["kafka"],
            url=env.get("KAFKA_BOOTSTRAP_SERVERS", "(KAFKA_BOOTSTRAP_SERVERS)"),
            credentials="" if plan.embedded("kafka") else "($KAFKA_USERNAME / $KAFKA_PASSWORD)",
        ),
    ]
    if plan.embedded("rosdomofon"):
        login = f"{env.get('ROSDOMOFON_USERNAME', '')} / {env.get('ROSDOMOFON_PASSWORD', '')}"
        rows.append(
            ServiceRow(
                name="rosdomofon",
                source=src["rosdomofon"],
                url=plan.url("rosdomofon"),
                credentials=f"operator login {login}; company {plan.company}",
            )
        )
    else:
        rows.append(
            ServiceRow(
                name="rosdomofon",
                source=src["rosdomofon"],
                url="($ROSDOMOFON_BASE_URL)",
                credentials="($ROSDOMOFON_USERNAME / $ROSDOMOFON_PASSWORD)",
            )
        )
    if plan.embedded("bitrix24"):
        rows.append(
            ServiceRow(
                name="bitrix24",
                source=src["bitrix24"],
                url=plan.url("bitrix24"),
                credentials=_bitrix24_credentials(plan),
            )
        )
    else:
        rows.append(
            ServiceRow(
                name="bitrix24",
                source=src["bitrix24"],
                url="(your portal)",
                credentials="($BITRIX24_WEBHOOK_URL or $BITRIX24_CLIENT_ID/SECRET)",
            )
        )
    token_note = (
        f"application_token {env.get('BITRIX24_APPLICATION_TOKEN', '')}"
        if plan.embedded("bitrix24")
        else "($BITRIX24_APPLICATION_TOKEN)"
    )
    rows.append(
        ServiceRow(name="webhook receiver", source="ours", url=plan.webhook_url, credentials=token_note)
    )
    password = _secret(plan, "FLOWER_PASSWORD", generated="FLOWER_PASSWORD" in env)
    rows.append(
        ServiceRow(
            name="flower",
            source="ours",
            url=plan.url("flower"),
            credentials=f"{plan.flower_user} / {password}",
        )
    )
    if "METRICS_PORT" in env:
        rows.append(ServiceRow(name="metrics", source="ours", url=f"{plan.url('metrics')}/metrics"))
    for name, (queues, concurrency) in WORKERS.items():
        rows.append(
            ServiceRow(name=name, source="ours", url=f"queues {queues}", credentials=f"-c {concurrency}")
        )
    rows.append(ServiceRow(name="beat", source="ours", url="RedBeat scheduler (one active)"))
    rows.append(ServiceRow(name="ingest", source="ours", url=f"MESSAGES_IN_{plan.company}"))
    return rows


def _bitrix24_credentials(plan: StackPlan) -> str:
    env = plan.env
    parts = []
    if env.get("BITRIX24_WEBHOOK_URL"):
        parts.append(f"webhook {env['BITRIX24_WEBHOOK_URL']}")
    if env.get("BITRIX24_CLIENT_ID"):
        parts.append(f"OAuth app {env['BITRIX24_CLIENT_ID']} / {env.get('BITRIX24_CLIENT_SECRET', '')}")
    return "; ".join(parts)


def services_table(rows: list[ServiceRow]) -> Table:
    table = Table(title="rosdomofon-bitrix24 stack", title_style="bold", show_lines=False)
    table.add_column("service", style="bold cyan", no_wrap=True)
    table.add_column("source")
    table.add_column("URL", overflow="fold")
    table.add_column("credentials", overflow="fold")
    styles = {Source.EMBEDDED: "yellow", Source.CONFIGURED: "green", Source.LOCAL: "green"}
    for row in rows:
        style = styles.get(Source(row.source), "") if row.source in set(Source) else ""
        table.add_row(
            row.name, f"[{style}]{row.source}[/]" if style else row.source, row.url, row.credentials
        )
    return table
