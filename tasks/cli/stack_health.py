"""One look at a local ``rdb24 up`` stack (or the configured environment), for ``status`` and ``demo``.

Kept apart from ``tasks.cli.status_report`` because it reads the stack's state file, which lives with
the simulators (``sandbox``), and the report itself must run in the production image without them.
"""

from __future__ import annotations

from pathlib import Path

from tasks.cli.stack_settings import stack_settings
from tasks.cli.status_report import Report, Section, collect_status


def look(run_dir: Path, ping_timeout: float = 1.0, *, require_stack: bool = False) -> Report:
    """The report for the stack in ``run_dir``, or for the configured environment when none runs.

    A stack that is still starting gets an unhealthy "Stack" section of its own (its workers may
    already answer while the wiring is not done); ``require_stack`` makes a missing stack unhealthy
    too instead of falling back to the configured environment (``rdb24 demo`` needs the stack).
    """
    settings, state = stack_settings(run_dir)
    if state is None:
        if require_stack:
            missing = Section(
                title="Stack",
                key="stack",
                rows=[("rdb24 up", "not running", f"no stack state in {run_dir}")],
                healthy=False,
            )
            return Report(where=f"local stack in {run_dir}", sections=[missing])
        return Report(where="configured environment", sections=collect_status(settings, ping_timeout))
    sections = collect_status(settings, ping_timeout)
    if not state.ready:
        starting = Section(
            title="Stack",
            key="stack",
            rows=[("rdb24 up", "starting", f"pid {state.pid}: not every service is healthy yet")],
            healthy=False,
        )
        sections.insert(0, starting)
    return Report(where=f"local stack (pid {state.pid}, {state.run_dir})", sections=sections)
