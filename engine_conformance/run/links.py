"""From a requirement to its code: the checks that judge it and the rows that prove them.

    >>> links = where("ERRORS-005")                              # doctest: +SKIP
    >>> links["checks"][0]                                       # doctest: +SKIP
    {'file': 'suites/test_errors.py', 'line': 80, 'name': 'test_neither_source'}

Both links are structural. A check is whatever pytest collects with the
``requirement(ID)`` marker (the plugin writes them with ``--links-out`` and
refuses a marker naming no catalogue requirement); a deviant row is a
``deviant_proxy.cases.Case``, which records the file and line it is written at.
Deviant rows live in the repository's ``tests/deviants``; an installed package
has none, and says so.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from engine_conformance.base.paths import ROOT, SUITES
from engine_conformance.catalogue.requirements import Requirement, cite
from engine_conformance.run.runner import child_environment, child_pytest

DEVIANTS = ROOT / "tests" / "deviants"


def checks() -> dict[str, list[dict[str, Any]]]:
    """Per requirement, its checks as collected (file, line, name); nothing is run."""
    with tempfile.TemporaryDirectory(prefix="ec-links-") as tmp:
        out = Path(tmp) / "links.json"
        cmd = [
            *child_pytest([str(SUITES)]),
            "--collect-only",
            "-q",
            "--links-out",
            str(out),
            "--report-dir",
            tmp,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, env=child_environment()
        )
        if not out.is_file():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"collecting the checks failed: {tail[0]}")
        links: dict[str, list[dict[str, Any]]] = json.loads(out.read_text())
        return links


def deviant_rows() -> dict[str, list[dict[str, str]]] | None:
    """Per requirement, its deviant rows (None: no ``tests/deviants`` here)."""
    if not DEVIANTS.is_dir():
        return None
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the rows import deviant_proxy from the checkout
    rows: dict[str, list[dict[str, str]]] = {}
    for path in sorted(DEVIANTS.glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"_links_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for case in getattr(module, "CASES", []):
            rows.setdefault(case.requirement, []).append(
                {
                    "where": case.where,
                    "expect": case.expect,
                    "deviations": "+".join(d.name for d in case.deviations) or "none",
                    "reason": case.reason,
                }
            )
    return rows


def where(req: Requirement) -> dict[str, Any]:
    """The requirement with its levels per version range, checks and deviant rows."""
    rows = deviant_rows()
    return req.to_dict() | {
        "checks": checks().get(req.id, []),
        "deviant_rows": rows.get(req.id, []) if rows is not None else None,
    }


def where_lines(found: dict[str, Any]) -> list[str]:
    """``where``'s answer as a person reads it."""
    out = [
        f"{found['id']}  {found['title']}",
        f"applies to API {found['versions']}",
        "level and basis per API version range:",
    ]
    for span in found["levels"]:
        basis = span["basis"]
        out.append(f"  {span['versions']:10} {span['level']:6} {_cite(basis[0])}")
        out += [f"  {'':10} {'':6} {_cite(b)}" for b in basis[1:]]
    out.append("check:" if len(found["checks"]) == 1 else "checks:")
    out += [f"  {c['file']}:{c['line']}  {c['name']}" for c in found["checks"]] or ["  none"]
    if found["deviant_rows"] is None:
        out.append("deviant rows: in the repository's tests/deviants (not installed here)")
    else:
        out.append("deviant rows:")
        out += [
            f"  {r['where']}  {r['expect']:5} {r['deviations']}"
            + (f"  (reason: {r['reason']})" if r["reason"] else "")
            for r in found["deviant_rows"]
        ] or ["  none"]
    out.append(found["spec"])
    return out


def _cite(basis: dict[str, str]) -> str:
    return cite({"basis": [basis]})[0]
