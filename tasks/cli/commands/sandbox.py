"""``rdb24 sandbox rosdomofon|bitrix24``: one simulator alone, in the foreground."""

from __future__ import annotations

from typing import ClassVar

import click


class _LazySimulators(click.Group):
    """Imports a simulator only when its command runs, so ``rdb24`` starts fast."""

    _targets: ClassVar[dict[str, str]] = {"rosdomofon": "sandbox.rosdomofon", "bitrix24": "sandbox.bitrix24"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._targets)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._targets.get(cmd_name)
        if target is None:
            return None
        import importlib

        return importlib.import_module(target).cli


@click.group(cls=_LazySimulators)
def sandbox() -> None:
    """Run a local simulator of RosDomofon or Bitrix24."""


def register(main: click.Group) -> None:
    main.add_command(sandbox)
