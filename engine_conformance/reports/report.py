"""What a run writes, with secrets scrubbed: ``results.json`` (its schema is
``spec/results.schema.json``), ``junit.xml``, ``summary.md``, ``report.html`` and
``findings.md`` (:mod:`.findings`), none naming a directory of the machine that ran it.

    >>> scrub({"h": "Basic c2VjcmV0"}, {"c2VjcmV0"})
    {'h': 'Basic <redacted>'}
    >>> portable({"file": "/home/u/ec/x.yaml"}, Path("/tmp/r"), cwd=Path("/home/u/ec"))
    {'file': 'x.yaml'}

Both files hold one entry per requirement (not per pytest item), so a CI
dashboard shows requirement IDs and verdicts directly.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from engine_conformance.base import paths
from engine_conformance.catalogue.requirements import cite, reference_note
from engine_conformance.reports.summary import REPORT_FILES

SCHEMA = paths.SPEC / "results.schema.json"
"""The published JSON Schema of ``results.json``."""


def validate(results: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``results`` follows :data:`SCHEMA`."""
    import jsonschema

    jsonschema.validate(
        results, json.loads(SCHEMA.read_text()), format_checker=jsonschema.FormatChecker()
    )


# The engine's own words stay as it said them, paths included: they are evidence.
_ENGINE_WORDS = frozenset(
    {"target", "evidence", "first_messages", "last_message", "answer", "body", "headers", "detail"}
)
# Options whose value names a path, and what a report calls it when no better name is known.
_PATH_OPTIONS = {"--report-dir": "REPORT_DIR", "--tls-dir": "TLS_DIR", "--expectations": ""}


def _given(command_line: list[str]) -> dict[str, str]:
    """Path options as the user wrote them (``--opt VALUE`` or ``--opt=VALUE``)."""
    out = {}
    for i, arg in enumerate(command_line):
        opt, eq, value = str(arg).partition("=")
        if opt in _PATH_OPTIONS:
            value = value if eq else (command_line[i + 1] if i + 1 < len(command_line) else "")
            out[opt] = str(value)
    return out


def _bases(cwd: Path | None) -> list[tuple[Path, str]]:
    """Directories a path is named relative to: the user's, the checkout's, then home ``~``."""
    found = [cwd] if cwd is not None else [Path.cwd(), Path(os.environ.get("PWD") or ".")]
    out = [(p.resolve(), "") for p in found] + [(paths.ROOT, "")]
    out.append((Path.home(), "~"))
    # "/" (or a one-level directory) as a base would rename every absolute path.
    return [(p, n) for p, n in out if p.is_absolute() and len(p.parts) > 2 - bool(n)]


def _name(path: Path, given: str, fallback: str, bases: list[tuple[Path, str]]) -> str:
    if given and not Path(given).is_absolute() and given != "auto":
        return given.rstrip("/")
    for base, name in bases:
        if path == base or base in path.parents:
            rel = path.relative_to(base).as_posix()
            return f"{name}/{rel}".strip("/") if name else rel
    return fallback or path.name


def portable(results: Any, report_dir: Path, cwd: Path | None = None) -> Any:
    """A copy of ``results`` whose paths are named as the user named them, not absolutely.

    The report directory, the expectation file and the TLS directory get the name
    given on the command line when it was relative, else their name relative to
    the directory the run was started from (``cwd``; default: this process's and
    ``$PWD``, the shell's), the checkout, or ``~``; failing that ``REPORT_DIR``,
    ``TLS_DIR`` or the file's own name. The engine's words (the target's facts and the
    evidence) are left as they were, but for a managed engine's private directory (its
    socket's), which is ``$ENGINE_DIR`` everywhere.
    """
    report_dir = Path(report_dir).resolve()
    run = (results.get("run") or {}) if isinstance(results, dict) else {}
    given = _given(list(run.get("command_line") or []))
    bases = _bases(cwd)
    names: dict[Path, str] = {
        report_dir: _name(report_dir, given.get("--report-dir", ""), "REPORT_DIR", bases)
    }
    other = Path(given.get("--report-dir") or ".")
    if other.is_absolute() and other.resolve() != report_dir:  # one API version's sub-run
        names[other.resolve()] = _name(other.resolve(), "", "REPORT_DIR", bases)
    gate_file = str((results.get("expectations") or {}).get("file") or "")
    if Path(gate_file).is_absolute():
        names[Path(gate_file)] = _name(Path(gate_file), given.get("--expectations", ""), "", bases)
    if given.get("--tls-dir"):
        tls = Path(given["--tls-dir"]).expanduser()
        tls = tls if tls.is_absolute() else (bases[0][0] if bases else Path.cwd()) / tls
        names[tls] = _name(tls, given["--tls-dir"], "TLS_DIR", bases)
    names |= {base: name for base, name in bases if base not in names}
    table = sorted(((str(p), n) for p, n in names.items()), key=lambda x: -len(x[0]))
    # A path starts after a quote, space, "=", "@", ":" or the start; never inside a URL.
    pattern = re.compile(
        r"(?<![\w.\-/~])(" + "|".join(re.escape(p) for p, _ in table) + r")(?=/|$|[^\w.\-])(/?)"
    )
    lookup = dict(table)

    def rename(match: re.Match[str]) -> str:
        name, slash = lookup[match.group(1)], match.group(2)
        if name:
            return name + slash
        return "" if slash else "."

    def walk(value: Any, key: str = "") -> Any:
        if key in _ENGINE_WORDS:
            return value
        if isinstance(value, str):
            return pattern.sub(rename, value)
        if isinstance(value, dict):
            return {k: walk(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    target = (results.get("target") or {}) if isinstance(results, dict) else {}
    return paths.without_engine_dir(walk(results), str(target.get("url") or ""))


def write_reports(report_dir: Path, results: dict[str, Any]) -> list[Path]:
    """Every report of a run into ``report_dir``; ``summary.md`` also to $GITHUB_STEP_SUMMARY."""
    from engine_conformance.reports import findings
    from engine_conformance.reports.report_html import write_html
    from engine_conformance.reports.summary import markdown

    report_dir = Path(report_dir)
    results = portable(results, report_dir)
    write_results(report_dir / "results.json", results)
    write_junit(report_dir / "junit.xml", results)
    summary = markdown(results)
    (report_dir / "summary.md").write_text(summary)
    write_html(report_dir / "report.html", results)
    findings.write(report_dir, results)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as out:
            out.write(summary + "\n")
    return [report_dir / n for n in REPORT_FILES]


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")


def write_junit(path: Path, results: dict[str, Any]) -> None:
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


def _detail(r: dict[str, Any]) -> str:
    at = f" at API {r['judged_at']}" if r.get("judged_at") else ""
    lines = [
        f"{r['level']}{at}, applies to API {r['versions']}: {r['verdict']}",
        *(f"basis: {line}" for line in cite(r)),
        r["spec"],
    ]
    if reference_note(r):
        lines.append(reference_note(r))
    if r.get("reason"):
        lines.append(f"reason: {r['reason']}")
    for ev in r.get("evidence", [])[:3]:
        lines.append(f"> {ev.get('request')} -> {ev.get('status')}")
    return "\n".join(lines)
