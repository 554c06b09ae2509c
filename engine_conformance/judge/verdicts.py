"""Verdicts: what a check's outcome means, decided without pytest.

    >>> from engine_conformance.judge.verdicts import precondition
    >>> precondition(journal.blob_requests, "the engine never fetched the layer")  # doctest: +SKIP

A check raises ``AssertionError`` only for the engine's deviation (``fail``).
When something the check relies on did not hold (the engine never reached the
lab registry, an image expected to be absent was there already, the lab
registry itself broke) it calls :func:`precondition`, and the verdict is
``error``, never ``fail`` and never ``pass``.

The pytest plugin only wires this in: it hands :func:`classify` each phase's
outcome as plain data, folds the phases of one item with :func:`merge`, and
builds ``results.json`` with :func:`build_results`.

    >>> classify("call", "failed", AssertionError, "pulled 2 tags, not 1")
    ('fail', 'pulled 2 tags, not 1')
    >>> classify("setup", "failed", Precondition, "the engine cannot reach the lab registry")
    ('error', 'the engine cannot reach the lab registry')
    >>> classify("call", "failed", KeyError, "'Id'")
    ('error', "KeyError: 'Id'")
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine_conformance import __version__
from engine_conformance.catalogue.requirements import LEVELS, VERDICTS

if TYPE_CHECKING:
    from engine_conformance.catalogue.requirements import Requirement

#: Worst first: a requirement's verdict is the worst of its items', and an item's the
#: worst of its phases' (a teardown error never hides a fail, nor a fail a teardown error).
RANK = ("fail", "error", "pass", "skip")
PHASES = ("setup", "call", "teardown")
REASON_LIMIT = 2000


class Precondition(Exception):
    """A check's precondition did not hold: the verdict is ``error``, with this reason."""


def precondition(condition: object, reason: str) -> None:
    """Raise :class:`Precondition` with ``reason`` unless ``condition`` is true."""
    if not condition:
        raise Precondition(reason)


@dataclass
class Record:
    """The verdict of one check (one pytest item), over its phases.

    ``teardown_error`` keeps a clean-up failure that came after a worse verdict
    (a ``fail`` stays a fail: the engine deviated whether or not clean-up worked).
    """

    nodeid: str
    verdict: str
    reason: str = ""
    duration: float = 0.0
    engine_wait: float = 0.0  # seconds of ``duration`` spent waiting on the engine's answers
    evidence: list[dict[str, Any]] = field(default_factory=list)
    observations: dict[str, Any] = field(default_factory=dict)
    teardown_error: str = ""
    reproducer: str = ""  # its bundle, relative to the report directory (a fail's)

    def case(self) -> dict[str, str]:
        """This item as listed under its requirement in ``results.json``."""
        out = {"nodeid": self.nodeid, "verdict": self.verdict, "reason": self.reason}
        if self.teardown_error:
            out["teardown_error"] = self.teardown_error
        if self.reproducer and self.verdict == "fail":
            out["reproducer"] = self.reproducer
        return out


def classify(
    phase: str, outcome: str, exc_type: type[BaseException] | None = None, message: str = ""
) -> tuple[str | None, str]:
    """The verdict one phase of a check gives, and its reason; ``(None, "")``: none.

    ``outcome`` is ``passed``, ``failed`` or ``skipped``; ``exc_type`` and
    ``message`` describe what was raised (for a skip, ``message`` is its reason).
    An explicit test failure (``pytest.fail``) is passed as ``AssertionError``.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    if outcome == "passed":
        return ("pass", "") if phase == "call" else (None, "")
    if outcome == "skipped":
        return ("skip", _clip(message)) if phase != "teardown" else (None, "")
    if exc_type is not None and issubclass(exc_type, Precondition):
        return "error", _clip(message)
    if exc_type is not None and issubclass(exc_type, AssertionError):
        # Only the check's own assertion judges the engine; one in a fixture is the harness's.
        text = _clip(message.split("\nassert ")[0])
        return ("fail", text) if phase == "call" else ("error", f"{phase}: {text}")
    name = exc_type.__name__ if exc_type is not None else "unknown harness error"
    text = f"{name}: {message}" if message else name
    return "error", _clip(text if phase == "call" else f"{phase}: {text}")


def merge(previous: Record | None, new: Record) -> Record:
    """One item's record after another of its phases reported: the worse verdict stays.

    A later phase no longer replaces an earlier one: a teardown error after a
    ``fail`` (or an ``error``) is kept beside it in ``teardown_error``.
    """
    if previous is None:
        return new
    if _rank(new.verdict) < _rank(previous.verdict):
        new.duration += previous.duration
        new.engine_wait += previous.engine_wait
        return new
    previous.duration += new.duration
    previous.engine_wait += new.engine_wait
    if new.verdict == "error":
        previous.teardown_error = new.reason
    return previous


def _reproducers(items: Iterable[Record]) -> dict[str, list[dict[str, str]]]:
    found = [
        {
            "path": r.reproducer,
            "case": r.nodeid.split("::")[-1],
            "command": f"sh {r.reproducer}/reproduce.sh",
        }
        for r in items
        if r.reproducer and r.verdict == "fail"
    ]
    return {"reproducers": found} if found else {}


def aggregate(records: Iterable[Record]) -> tuple[str, str]:
    """A requirement's verdict from its items: fail > error > pass > skip."""
    records = list(records)
    for verdict in RANK[:-1]:
        hits = [r for r in records if r.verdict == verdict]
        if hits:
            return verdict, _join(r.reason for r in hits)
    return "skip", _join(r.reason for r in records)


def tolerated(verdict: str, *, gating: bool, expected: str | None, checking: bool) -> str | None:
    """Why a ``fail``/``error`` does not fail the test session, or None if it does.

    With an expectation file (``checking``), a verdict equal to the expected one
    is a known deviation; without one, an INFO requirement never fails.
    """
    if verdict not in ("fail", "error"):
        return None
    if checking:
        return "expected-deviation" if expected == verdict else None
    if verdict == "fail" and not gating:
        return "observation"
    return None


def build_results(
    catalogue: Mapping[str, Requirement],
    records: Mapping[str, list[Record]],
    target: dict[str, Any],
    run: dict[str, Any],
    started: float,
    reference: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The content of ``results.json``: per requirement its verdict, reason and evidence.

    ``reference`` names, per requirement, the reference engine's runs known to fail
    it (:func:`expectations.reference_deviations`): kept beside each verdict.
    """
    reqs = []
    for rid, req in catalogue.items():
        items = records.get(rid)
        if not items:
            continue
        verdict, reason = aggregate(items)
        reqs.append(
            req.to_dict()
            | {
                "verdict": verdict,
                "reason": reason,
                "duration": round(sum(r.duration for r in items), 3),
                "engine_wait": round(sum(r.engine_wait for r in items), 3),
                "evidence": [e for r in items for e in r.evidence][:8],
                "observations": {k: v for r in items for k, v in r.observations.items()},
                "cases": [r.case() for r in items],
            }
            | _reproducers(items)
            | (
                {"reference_deviates": list(reference[rid])}
                if reference and reference.get(rid)
                else {}
            )
        )
    summary: dict[str, Any] = counts(reqs)
    summary["gating_failures"] = sum(
        1 for r in reqs if r["verdict"] == "fail" and r["level"] != "INFO"
    )
    summary["engine_wait"] = round(sum(r["engine_wait"] for r in reqs), 3)
    summary["by_level"] = {lv: counts([r for r in reqs if r["level"] == lv]) for lv in LEVELS}
    suites = dict.fromkeys(r["suite"] for r in reqs)
    summary["by_suite"] = {s: counts([r for r in reqs if r["suite"] == s]) for s in suites}
    summary["score"] = scores(reqs)
    seed = next((r["observations"]["seed"] for r in reqs if "seed" in r["observations"]), None)
    return {
        "tool": {"name": "engine-conformance", "version": __version__},
        "run": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration": round(time.time() - started, 3),
            "python": sys.version.split()[0],
            "suite_version": __version__,
            "seed": seed,
            "command_line": list(sys.argv),
        }
        | run,
        "target": target,
        "summary": summary,
        "requirements": reqs,
    }


def counts(reqs: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many of ``reqs`` got each verdict."""
    reqs = list(reqs)
    return {v: sum(1 for r in reqs if r["verdict"] == v) for v in VERDICTS}


def scores(reqs: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """Per level, the share of applicable requirements that pass (None: none applied).

    A ``skip`` did not apply; an ``error`` did apply and was not shown to pass.

    >>> scores([{"level": "MUST", "verdict": "pass"}, {"level": "MUST", "verdict": "error"},
    ...         {"level": "MUST", "verdict": "skip"}])
    {'MUST': 0.5, 'SHOULD': None, 'INFO': None}
    """
    reqs = list(reqs)
    out: dict[str, float | None] = {}
    for level in LEVELS:
        judged = [r for r in reqs if r["level"] == level and r["verdict"] != "skip"]
        passed = sum(1 for r in judged if r["verdict"] == "pass")
        out[level] = round(passed / len(judged), 4) if judged else None
    return out


def _rank(verdict: str) -> int:
    return RANK.index(verdict)


def _clip(text: str) -> str:
    return text.strip()[:REASON_LIMIT]


def _join(reasons: Iterable[str]) -> str:
    return "; ".join(dict.fromkeys(r for r in reasons if r))[:REASON_LIMIT]
