"""Rows of deviant tests: a requirement, how the engine is bent, the verdict due.

    >>> Case("ERRORS-001", "fail", (TEXT_ERRORS,))             # doctest: +SKIP

A row expecting ``fail`` shows that the check can fail; a row expecting
``pass`` shows that it passes on a conforming engine (no deviations: Docker
itself; or a proxy that makes Docker conform where it does not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine_conformance.runner import Outcome

from .proxy import Deviation


@dataclass(frozen=True)
class Case:
    requirement: str
    expect: str
    deviations: tuple[Deviation, ...] = field(default=())
    api_version: str | None = None

    def __str__(self) -> str:
        how = "+".join(d.name for d in self.deviations) or "docker"
        return f"{self.requirement}-{self.expect}-{how}".replace(" ", "_")


def check(case: Case, outcome: Outcome) -> None:
    """The suite's verdict for the row's requirement is the expected one."""
    got = outcome.requirement(case.requirement)
    assert got["verdict"] == case.expect, (
        f"{case.requirement} judged {got['verdict']} ({got['reason'][:300]}), "
        f"expected {case.expect}"
    )
