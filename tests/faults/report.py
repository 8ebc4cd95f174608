"""Per-scenario outcomes, collected during the session and printed as one table at its end.

A scenario records its outcome before asserting, so a failing scenario still shows its counts in
the table (the numbers are what one needs to diagnose it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScenarioOutcome:
    scenario: str
    messages: int
    lost: int
    duplicated: int
    dead_lettered: int
    recovery_s: float | None  # from the fault's end to the last expected effect; None: never recovered

    def row(self) -> list[str]:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f}s"
        return [
            self.scenario,
            str(self.messages),
            str(self.lost),
            str(self.duplicated),
            str(self.dead_lettered),
            recovery,
        ]


HEADER = ["scenario", "messages", "lost", "duplicated", "dead-lettered", "recovery"]
OUTCOMES: list[ScenarioOutcome] = []


def record(outcome: ScenarioOutcome) -> ScenarioOutcome:
    OUTCOMES.append(outcome)
    return outcome


def table(outcomes: list[ScenarioOutcome]) -> str:
    """A plain-text table (pytest's terminal writer, CI logs and copy-paste all show it intact)."""
    rows = [HEADER, *(o.row() for o in outcomes)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = ["HEADER", "OUTCOMES", "ScenarioOutcome", "record", "table"]
