"""Children that die with their parent, and SIGTERM/SIGHUP as a clean stop instead of an abrupt one.

Why: ``rdb24 up``, the benches and the test harness start their servers in sessions of their own (so
one ``killpg`` takes a worker's prefork children too). A session of its own also means that a
``kill -9`` of the parent, or a closed terminal, leaves every server running, holding ports and Redis
databases. Linux's ``PR_SET_PDEATHSIG`` asks the kernel to signal a process when its parent dies,
however it dies.

Two rules of the kernel shape the use: the request survives ``exec`` (so ``sh -c 'exec …'`` and
``sandbox.stack.gate`` keep it) but not ``fork``, so every level that forks asks again; and it fires when
the *thread* that forked the child ends, so start children from the main thread (or from a thread
that lives as long as they should).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

PR_SET_PDEATHSIG = 1
# Resolved once here, never after a fork: a preexec_fn must not load libraries in the child.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (no-op off Linux).

    ``parent`` is the pid the caller expects as parent: if it is already gone (it died between the
    fork and this call) the kernel would never signal, so the signal is raised here at once.
    """
    if _prctl is None:
        return
    if _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)


def parent_death_signal(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets ``sig`` when the calling process dies.

    SIGKILL for servers whose data dies with the run anyway (Valkey, Tansu, simulators); SIGTERM for
    our roles, which then shut down as they would on a container stop.
    """
    parent = os.getpid()

    def preexec() -> None:
        die_with_parent(sig, parent)

    return preexec


def stop_cleanly_on(*signals: int, raising: type[BaseException] = KeyboardInterrupt) -> dict[int, object]:
    """Turn ``signals`` (default SIGTERM and SIGHUP) into ``raising`` in the main thread.

    Python's default for both is to die on the spot, skipping every ``finally`` and fixture
    finaliser that would stop the servers; an exception unwinds through them like Ctrl-C does.
    Returns the previous handlers. Outside the main thread (where Python refuses handlers) nothing
    is installed.
    """
    chosen = signals or (signal.SIGTERM, signal.SIGHUP)

    def handler(signum: int, frame: FrameType | None) -> None:
        raise raising(f"{signal.Signals(signum).name} received")

    previous: dict[int, object] = {}
    try:
        for sig in chosen:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    return previous
