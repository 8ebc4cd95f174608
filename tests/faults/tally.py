"""Counting in the simulators: did every subscriber message become exactly one chat post, and every
subscriber exactly one contact?

Each produced message carries a marker ``<run>-<index>`` in its text; a chat post is attributed to a
message by finding that marker in the posted text (the flow may decorate the text, it must not drop
it). Contacts are attributed by phone, normalised, so ``+7 913...`` and ``7913...`` count as one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from schemas.phone import InvalidPhoneError, normalize_phone


def marker(run: str, index: int) -> str:
    return f"{run}-{index:05d}"


def count_markers(run: str, texts: Iterable[str]) -> Counter[str]:
    """How many posted texts carry each marker of ``run``."""
    pattern = re.compile(rf"{re.escape(run)}-\d{{5}}")
    found: Counter[str] = Counter()
    for text in texts:
        found.update(set(pattern.findall(text)))
    return found


def count_phones(phones_per_contact: Iterable[Iterable[str]]) -> Counter[str]:
    """How many contacts carry each (normalised) phone; a contact counts once per distinct phone."""
    found: Counter[str] = Counter()
    for phones in phones_per_contact:
        normalised = set()
        for raw in phones:
            try:
                normalised.add(normalize_phone(raw))
            except (InvalidPhoneError, ValueError):
                continue
        found.update(normalised)
    return found


@dataclass(frozen=True)
class Tally:
    """Expected keys against what the simulator shows: ``lost`` have none, ``duplicated`` extras."""

    expected: int
    lost: list[str]
    duplicated: dict[str, int]

    @property
    def extra(self) -> int:
        return sum(n - 1 for n in self.duplicated.values())

    @property
    def exact(self) -> bool:
        return not self.lost and not self.duplicated

    def describe(self, what: str) -> str:
        return (
            f"{what}: expected {self.expected}, lost {len(self.lost)} {self.lost[:10]}, "
            f"duplicated {self.extra} {dict(list(self.duplicated.items())[:10])}"
        )


def tally(expected: Iterable[str], seen: Counter[str]) -> Tally:
    keys = list(expected)
    return Tally(
        expected=len(keys),
        lost=[k for k in keys if seen.get(k, 0) == 0],
        duplicated={k: seen[k] for k in keys if seen.get(k, 0) > 1},
    )


__all__ = ["Tally", "count_markers", "count_phones", "marker", "tally"]
