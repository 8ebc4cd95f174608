"""Where the repository is, for the processes tests start (their working directory and PYTHONPATH)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
