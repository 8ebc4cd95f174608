"""``rdb24 sandbox rosdomofon``: one RosDomofon simulator in the foreground until Ctrl-C."""

from __future__ import annotations

import threading

import click


@click.command(name="rosdomofon")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8081, show_default=True, type=int)
@click.option("--accounts", default=20, show_default=True, type=int, help="generated accounts")
@click.option("--seed", default=1, show_default=True, type=int, help="generator seed (same seed, same data)")
@click.option("--kafka", "kafka", default=None, help="bootstrap servers for the subscriber-app stand-in")
@click.option("--company", default="SK_SB", show_default=True, help="company short name (Kafka topics)")
@click.option("--token-lifetime", default=3600, show_default=True, type=int, help="expires_in, seconds")
def cli(
    host: str, port: int, accounts: int, seed: int, kafka: str | None, company: str, token_lifetime: int
) -> None:
    """Serve a stateful RosDomofon operator API simulator (control API under /_sandbox)."""
    from sandbox.rosdomofon.server import RosDomofonSimulator

    sim = RosDomofonSimulator(
        accounts=accounts, seed=seed, company=company, kafka_bootstrap=kafka,
        token_lifetime=token_lifetime, host=host, port=port,
    )  # fmt: skip
    sim.start()
    click.echo(f"RosDomofon sandbox: {sim.url}")
    click.echo(f"  ROSDOMOFON_BASE_URL={sim.url}")
    click.echo(f"  ROSDOMOFON_USERNAME={sim.username}")
    click.echo(f"  ROSDOMOFON_PASSWORD={sim.password}")
    click.echo(f"  COMPANY_SHORT_NAME={sim.company}")
    if kafka:
        click.echo(f"  KAFKA_BOOTSTRAP_SERVERS={kafka} (MESSAGES_IN_{company} / MESSAGES_OUT_{company})")
    click.echo(f"  control API: {sim.url}/_sandbox/info  (docs: {sim.url}/_sandbox/docs)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


__all__ = ["cli"]
