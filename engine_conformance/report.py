"""What a run writes, with secrets scrubbed: ``results.json`` (its schema is
``spec/results.schema.json``), ``junit.xml``, ``summary.md`` and ``report.html``.

    >>> scrub({"h": "Basic c2VjcmV0"}, {"c2VjcmV0"})
    {'h': 'Basic <redacted>'}

Both files hold one entry per requirement (not per pytest item), so a CI
dashboard shows requirement IDs and verdicts directly.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import paths
from .requirements import cite, reference_note
from .target import REDACTED

SCHEMA = paths.SPEC / "results.schema.json"
"""The published JSON Schema of ``results.json``."""


def validate(results: dict) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``results`` follows :data:`SCHEMA`."""
    import jsonschema

    jsonschema.validate(results, json.loads(SCHEMA.read_text()),
                        format_checker=jsonschema.FormatChecker())


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


def write_reports(report_dir: Path, results: dict) -> list[Path]:
    """Every report of a run into ``report_dir``; ``summary.md`` also to $GITHUB_STEP_SUMMARY."""
    from .report_html import write_html
    from .summary import markdown

    report_dir = Path(report_dir)
    write_results(report_dir / "results.json", results)
    write_junit(report_dir / "junit.xml", results)
    summary = markdown(results)
    (report_dir / "summary.md").write_text(summary)
    write_html(report_dir / "report.html", results)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as out:
            out.write(summary + "\n")
    return [report_dir / n for n in ("report.html", "summary.md", "results.json", "junit.xml")]


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
        props = ET.SubElement(case, "properties")
        for name in ("id", "level", "suite", "versions", "verdict"):
            key = "requirement" if name == "id" else name
            ET.SubElement(props, "property", name=key, value=str(r.get(name, "")))
        for line in cite(r):
            ET.SubElement(props, "property", name="basis", value=line)
        if reference_note(r):
            ET.SubElement(props, "property", name="reference", value=reference_note(r))
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
    at = f" at API {r['judged_at']}" if r.get("judged_at") else ""
    lines = [f"{r['level']}{at}, applies to API {r['versions']}: {r['verdict']}",
             *(f"basis: {line}" for line in cite(r)), r["spec"]]
    if reference_note(r):
        lines.append(reference_note(r))
    if r.get("reason"):
        lines.append(f"reason: {r['reason']}")
    for ev in r.get("evidence", [])[:3]:
        lines.append(f"> {ev.get('request')} -> {ev.get('status')}")
    return "\n".join(lines)
