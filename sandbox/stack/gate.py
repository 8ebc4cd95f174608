"""``python -m sandbox.stack.gate READY_FILE -- CMD ...``: wait until the stack is wired, then become CMD.

Honcho starts every process at once and has no dependencies between them; our roles must not start
before the stand-ins they talk to exist (topics created, event handler bound). The runner writes the
ready file when wiring is done: ``KEY=VALUE`` lines (credentials the wiring learned from the
simulators). This gate waits for it, adds those variables to the environment and ``exec``s the real
command, so the pid, process group and signals stay those honcho supervises.
"""

from __future__ import annotations

import os
import sys
import time

TIMEOUT_SECONDS = 300.0


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m sandbox.stack.gate READY_FILE -- CMD [ARGS...]", file=sys.stderr)
        return 2
    ready_file, command = argv[0], argv[2:]
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not os.path.exists(ready_file):
        if time.monotonic() > deadline:
            print(f"gate: {ready_file} did not appear within {TIMEOUT_SECONDS:g}s", file=sys.stderr)
            return 1
        time.sleep(0.1)
    with open(ready_file, encoding="utf-8") as handle:
        for line in handle:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep and key:
                os.environ[key] = value
    os.execvp(command[0], command)
    return 0  # pragma: no cover - exec does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
