"""Expectation files: the verdicts an engine is known to get.

``suites/expectations/<engine>-<major.minor>.yaml``::

    engine: docker 20.10.24+dfsg1
    api_version: "1.41"
    verdicts:
      ERRORS-005: fail    # real Docker answers 500
      IMPORT-001: pass

The release gate (:func:`gate`) checked against such a file:

- a requirement expected to ``pass`` that does not is a **regression**: the gate fails;
- one that now passes where a deviation was expected is **fixed**: reported as
  "fixed: update the expectations", and fails the gate only when ``strict``;
- any other difference (``fail`` became ``error``, a requirement the file does not
  know, one the file expects that did not run in a complete run) is a **change**:
  the gate fails, since the file no longer describes the engine.

    >>> g = gate({"A-001": "fail", "B-001": "pass"}, {"A-001": "pass", "B-001": "fail"}, True)
    >>> (g.passed, g.regressions, g.fixed)
    (False, ['A-001: expected pass, got fail'], ['B-001: expected fail, got pass'])
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine_conformance.base import paths, yamls

EXPECTATIONS_DIR = paths.SUITES / "expectations"


def path_for(engine_key: str) -> Path:
    return EXPECTATIONS_DIR / f"{engine_key}.yaml"


REFERENCE_ENGINE = "docker"
"""Expectation files of the reference engine are named ``docker-<major.minor>[-store].yaml``."""


def reference_deviations(directory: Path = EXPECTATIONS_DIR) -> dict[str, list[str]]:
    """Per requirement, the reference engine's expectation keys that record a ``fail``.

    A maintainer of another engine who gets a ``fail`` sees at once whether
    Docker itself deviates from the document there.
    """
    out: dict[str, list[str]] = {}
    for path in sorted(directory.glob(f"{REFERENCE_ENGINE}-*.yaml")):
        for rid, verdict in load(path).items():
            if verdict == "fail":
                out.setdefault(rid, []).append(path.stem)
    return out


def load(path: Path) -> dict[str, str]:
    """The verdicts an expectation file records (``{"PULL-001": "pass", ...}``)."""
    stat = Path(path).stat()
    return dict(_verdicts(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=64)
def _verdicts(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    # Keyed on the file's state: a report reads every engine's file once per failing
    # requirement, and a rewritten file is read afresh.
    data = yamls.load(Path(path).read_text()) or {}
    return {str(k): str(v) for k, v in (data.get("verdicts") or {}).items()}


def compare(verdicts: dict[str, str], expected: dict[str, str], complete: bool) -> list[str]:
    """Differences as lines; ``complete`` says the whole catalogue ran."""
    lines = []
    for rid, verdict in verdicts.items():
        want = expected.get(rid)
        if want is None:
            lines.append(f"{rid}: {verdict}, not in the expectation file")
        elif want != verdict:
            lines.append(f"{rid}: expected {want}, got {verdict}")
    if complete:
        lines += [
            f"{rid}: expected {want}, did not run"
            for rid, want in expected.items()
            if rid not in verdicts
        ]
    return lines


@dataclass
class Gate:
    """The release gate's outcome for one run against one expectation file."""

    regressions: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    strict: bool = False

    @property
    def passed(self) -> bool:
        return not (self.regressions or self.changed or (self.strict and self.fixed))

    @property
    def mismatches(self) -> list[str]:
        """Every difference, as :func:`compare` lists them."""
        return self.regressions + self.fixed + self.changed

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "strict": self.strict,
            "regressions": self.regressions,
            "fixed": self.fixed,
            "changed": self.changed,
        }

    def lines(self) -> list[str]:
        """What a person reads: each difference with what it means for the gate."""
        out = [f"regression: {line}" for line in self.regressions]
        out += [f"changed: {line}" for line in self.changed]
        out += [f"fixed: update the expectations: {line}" for line in self.fixed]
        return out


def gate(
    verdicts: dict[str, str], expected: dict[str, str], complete: bool, strict: bool = False
) -> Gate:
    """Judge a run's verdicts against the expected ones (rules in the module docstring)."""
    result = Gate(strict=strict)
    for line, rid in zip(
        compare(verdicts, expected, complete), _ids(verdicts, expected, complete), strict=True
    ):
        want, got = expected.get(rid), verdicts.get(rid)
        if want == "pass" and got is not None:
            result.regressions.append(line)
        elif got == "pass" and want is not None:
            result.fixed.append(line)
        else:
            result.changed.append(line)
    return result


def _ids(verdicts: dict[str, str], expected: dict[str, str], complete: bool) -> list[str]:
    """The requirement of each line :func:`compare` gives, in the same order."""
    ids = [rid for rid, v in verdicts.items() if expected.get(rid) != v]
    if complete:
        ids += [rid for rid in expected if rid not in verdicts]
    return ids


def write(
    path: Path,
    target: dict[str, Any],
    verdicts: dict[str, str],
    reasons: dict[str, str],
    prefix: str = "",
) -> None:
    """Record a run's verdicts; deviations carry their reason as a comment."""
    lines = [
        "# Verdicts this suite gives the engine below; the test command fails when a run differs.",
        "# Regenerate: engine-conformance run --managed ENGINE --expectations auto"
        " --update-expectations",
        f"engine: {target.get('engine')} {target.get('version')}",
        f'api_version: "{target.get("api_version")}"',
        "verdicts:",
    ]
    for rid in sorted(verdicts):
        verdict = verdicts[rid]
        note = reasons.get(rid, "") if verdict != "pass" else ""
        note = " ".join(note.replace(prefix, "<prefix>").split())[:150] if prefix else note[:150]
        lines.append(f"  {rid}: {verdict}" + (f"  # {note}" if note else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
