"""What a run writes: ``results.json`` and ``junit.xml``, with secrets scrubbed.

    >>> scrub({"h": "Basic c2VjcmV0"}, {"c2VjcmV0"})
    {'h': 'Basic <redacted>'}

Both files hold one entry per requirement (not per pytest item), so a CI
dashboard shows requirement IDs and verdicts directly.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .target import REDACTED


def scrub(obj: Any, secrets: Iterable[str]) -> Any:
    """A copy of ``obj`` in which every occurrence of a secret string is redacted."""
    secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)
    if not secrets:
        return obj

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return walk(obj)


def write_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")


def write_junit(path: Path, results: dict) -> None:
    """One ``testcase`` per requirement; fail/error/skip as JUnit understands them."""
    reqs = results["requirements"]
    counts = results["summary"]
    suite = ET.Element(
        "testsuite",
        name=f"images-create conformance: {results['target'].get('engine_key', 'target')}",
        tests=str(len(reqs)),
        failures=str(sum(1 for r in reqs if r["verdict"] == "fail" and r["level"] != "INFO")),
        errors=str(counts.get("error", 0)),
        skipped=str(counts.get("skip", 0)),
        time=f"{results['run'].get('duration', 0):.3f}",
    )
    for r in reqs:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{r['suite']}.{r['level']}",
            name=f"{r['id']} {r['title']}",
            time=f"{r.get('duration', 0):.3f}",
        )
        reason = r.get("reason") or ""
        if r["verdict"] == "fail" and r["level"] != "INFO":
            ET.SubElement(case, "failure", message=reason[:500]).text = _detail(r)
        elif r["verdict"] == "error":
            ET.SubElement(case, "error", message=reason[:500]).text = _detail(r)
        elif r["verdict"] == "skip":
            ET.SubElement(case, "skipped", message=reason[:500])
        ET.SubElement(case, "system-out").text = _detail(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def _detail(r: dict) -> str:
    lines = [f"{r['level']} ({r['basis']}), API {r['versions']}: {r['verdict']}", r["spec"]]
    if r.get("reason"):
        lines.append(f"reason: {r['reason']}")
    for ev in r.get("evidence", [])[:3]:
        lines.append(f"> {ev.get('request')} -> {ev.get('status')}")
    return "\n".join(lines)
