"""Rows of deviant tests: a requirement, how the engine is bent, the verdict due.

    >>> Case("ERRORS-001", "fail", (TEXT_ERRORS,), reason="not an ErrorResponse")  # doctest: +SKIP

A row expecting ``fail`` shows that the check can fail, and names the reason it
must fail for (a substring of the verdict's reason): a row cannot pass by
failing for another cause. A row expecting ``pass`` shows that it passes on a
conforming engine (no deviations: Docker itself; or a proxy that makes Docker
conform where it does not). A row expecting ``error`` shows that the check
does not blame the engine for what it could not judge.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from engine_conformance.base.paths import ROOT
from engine_conformance.run.runner import Outcome

from .proxy import Deviation


@dataclass(frozen=True)
class Case:
    requirement: str
    expect: str
    deviations: tuple[Deviation, ...] = field(default=())
    api_version: str | None = None
    reason: str = ""
    where: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        # The row records the file:line it is written at: `requirements --where` lists it.
        if not self.where:
            caller = sys._getframe(2)
            path = Path(caller.f_code.co_filename)
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            object.__setattr__(self, "where", f"{shown}:{caller.f_lineno}")

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
    assert case.expect != "fail" or case.reason, (
        f"{case}: a fail row names its reason (this one failed for {got['reason'][:500]!r})"
    )
    assert case.reason in got["reason"], (
        f"{case.requirement} judged {got['verdict']} as expected, but for another reason: "
        f"{got['reason'][:500]!r} does not say {case.reason!r}"
    )
