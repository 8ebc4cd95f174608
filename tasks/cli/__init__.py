"""The ``rdb24`` command line (console script ``tasks.cli:main``) and what only it needs: the status
report, the demo, the settings of a running local stack. The one room allowed to import ``sandbox``."""

from __future__ import annotations

from tasks.cli.main import main

__all__ = ["main"]
