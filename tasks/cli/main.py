"""``rdb24``: the command line. Each command group lives in its own module under ``tasks.cli.commands``.

A module there exposes ``register(main: click.Group) -> None``; they are discovered at start so
adding a command never means editing this file.
"""

from __future__ import annotations

import importlib
import pkgutil

import click

from tasks.cli import commands
from tasks.runtime import log


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """rosdomofon-bitrix24: RosDomofon subscribers and accounts in Bitrix24."""


# Before any command runs: no traceback of this process prints local variables (see log.console).
log.console()


def _register_commands() -> None:
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(main)


_register_commands()
