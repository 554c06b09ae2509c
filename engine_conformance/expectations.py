"""Expectation files: the verdicts an engine is known to get.

``suites/expectations/<engine>-<major.minor>.yaml``::

    engine: docker 20.10.24+dfsg1
    api_version: "1.41"
    verdicts:
      ERRORS-005: fail    # real Docker answers 500
      IMPORT-001: pass

A run checked against such a file fails when any verdict differs, in either
direction: a new deviation, or one that has gone away.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from . import paths

EXPECTATIONS_DIR = paths.SUITES / "expectations"


def path_for(engine_key: str) -> Path:
    return EXPECTATIONS_DIR / f"{engine_key}.yaml"


def load(path: Path) -> dict[str, str]:
    data = yaml.safe_load(Path(path).read_text()) or {}
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
        lines += [f"{rid}: expected {want}, did not run" for rid, want in expected.items()
                  if rid not in verdicts]
    return lines


def write(path: Path, target: dict, verdicts: dict[str, str], reasons: dict[str, str],
          prefix: str = "") -> None:
    """Record a run's verdicts; deviations carry their reason as a comment."""
    lines = [
        "# Verdicts this suite gives the engine below; the test command fails when a run differs.",
        "# Regenerate: engine-conformance run --managed ENGINE --expectations auto"
        " --update-expectations",
        f"engine: {target.get('engine')} {target.get('version')}",
        f"api_version: \"{target.get('api_version')}\"",
        "verdicts:",
    ]
    for rid in sorted(verdicts):
        verdict = verdicts[rid]
        note = reasons.get(rid, "") if verdict != "pass" else ""
        note = " ".join(note.replace(prefix, "<prefix>").split())[:150] if prefix else note[:150]
        lines.append(f"  {rid}: {verdict}" + (f"  # {note}" if note else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
