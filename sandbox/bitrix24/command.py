"""``rdb24 sandbox bitrix24``: the portal simulator in the foreground."""

from __future__ import annotations

import time

import click


@click.command("bitrix24")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8082, show_default=True, type=int)
@click.option("--rate", default=2.0, show_default=True, type=float, help="Leaky bucket drain, requests/s.")
@click.option("--burst", default=50, show_default=True, type=int, help="Leaky bucket size.")
@click.option("--no-rate-limit", is_flag=True, help="Never answer 503 QUERY_LIMIT_EXCEEDED.")
@click.option(
    "--access-ttl", default=3600.0, show_default=True, type=float, help="OAuth access token life, s."
)
def cli(host: str, port: int, rate: float, burst: int, no_rate_limit: bool, access_ttl: float) -> None:
    """Run a simulated Bitrix24 portal (REST, OAuth, Open Lines, control API under /_sandbox)."""
    from sandbox.bitrix24.server import Bitrix24Simulator

    sim = Bitrix24Simulator(
        rate=rate, burst=burst, rate_limit=not no_rate_limit, host=host, port=port, access_ttl=access_ttl
    ).start()
    creds = sim.oauth
    click.echo(f"Bitrix24 simulator on {sim.url}")
    click.echo(f"  webhook URL:        {sim.webhook_url}")
    click.echo(f"  OAuth client_id:    {creds.client_id}")
    click.echo(f"  OAuth client_secret:{creds.client_secret}")
    click.echo(f"  client_endpoint:    {creds.client_endpoint}")
    click.echo(f"  token URL:          {creds.token_url}")
    click.echo(f"  access_token:       {creds.access_token}")
    click.echo(f"  refresh_token:      {creds.refresh_token}")
    click.echo(f"  application_token:  {creds.application_token}")
    click.echo(
        f"  control API:        {sim.url}/_sandbox/  "
        f"(rate {rate}/s, burst {burst}, limit {'off' if no_rate_limit else 'on'})"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
