"""What a person reads first: the verdict table for the terminal and ``summary.md``.

Both are built from ``results.json`` alone, so the CLI, a plain ``pytest`` run
and CI's job summary show the same thing.

    >>> lines = terminal_lines(json.loads(Path("results.json").read_text()))  # doctest: +SKIP
    >>> lines[0]                                                            # doctest: +SKIP
    ('target: docker 20.10.24+dfsg1 (graphdriver, API 1.41) at unix:///…', False)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine_conformance.catalogue.requirements import LEVELS, VERDICTS, reference_note

REPORT_FILES = ("report.html", "findings.md", "summary.md", "results.json", "junit.xml")
LOG_FILE = "pytest.log"  # the pytest detail (tracebacks) of a CLI run


def percent(score: float | None) -> str:
    """A score as every report shows it: ``97.6%``, or ``n/a`` when nothing was judged."""
    return "n/a" if score is None else f"{score * 100:.1f}%"


def score_line(results: Mapping[str, Any]) -> str:
    """``MUST 95.0% (57/60) · SHOULD …``: the share of applicable requirements that pass."""
    parts = []
    for level in LEVELS:
        c = results["summary"]["by_level"][level]
        judged = c["pass"] + c["fail"] + c["error"]
        parts.append(
            f"{level} {percent(results['summary']['score'][level])} ({c['pass']}/{judged})"
        )
    return " · ".join(parts)


def totals_line(results: Mapping[str, Any]) -> str:
    s = results["summary"]
    n = sum(s[v] for v in VERDICTS)
    return (
        f"{n} requirements: {s['pass']} pass, {s['fail']} fail, {s['error']} error, "
        f"{s['skip']} skip"
    )


def target_line(results: Mapping[str, Any]) -> str:
    t = results["target"]
    store = f"{t.get('image_store')}, " if t.get("image_store") else ""
    return (
        f"{t.get('engine')} {t.get('version')} ({store}API {t.get('api_version')}) "
        f"at {t.get('url')}"
    )


def gate_lines(results: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """The release gate's outcome: ``(line, is_bad)``."""
    exp = results.get("expectations")
    if not exp:
        return []
    if "passed" not in exp:
        updated = exp.get("updated")
        return [
            (
                f"expectations written to {exp['file']}"
                if updated
                else f"{exp['file']} left as it was (an interrupted run or a failed preflight)",
                not updated,
            )
        ]
    out = []
    verdict = "passed" if exp["passed"] else "FAILED"
    out.append(
        (
            f"gate {verdict} against {exp['file']}" + (" (--strict)" if exp.get("strict") else ""),
            not exp["passed"],
        )
    )
    for line in exp.get("regressions", []):
        out.append((f"  regression: {line}", True))
    for line in exp.get("changed", []):
        out.append((f"  changed: {line}", True))
    for line in exp.get("fixed", []):
        out.append((f"  fixed: update the expectations: {line}", bool(exp.get("strict"))))
    return out


def terminal_lines(
    results: Mapping[str, Any], report_dir: Path | None = None
) -> list[tuple[str, bool]]:
    """The verdict table grouped by area (suite) and level, totals, gate and report paths."""
    out: list[tuple[str, bool]] = [(f"target: {target_line(results)}", False)]
    if not results["run"].get("complete", True):
        what = "interrupted" if results["run"].get("interrupted") else "a selection"
        out.append((f"partial run ({what}): not the whole catalogue was judged", False))
    reqs = results["requirements"]
    out.append((f"{'area':10} {'level':6} {'pass':>5} {'fail':>5} {'error':>5} {'skip':>5}", False))
    for suite in results["summary"]["by_suite"]:
        first = True
        for level in LEVELS:
            rows = [r for r in reqs if r["suite"] == suite and r["level"] == level]
            if not rows:
                continue
            c = {v: sum(1 for r in rows if r["verdict"] == v) for v in VERDICTS}
            area = suite if first else ""
            first = False
            out.append(
                (
                    f"{area:10} {level:6} {c['pass']:5} {c['fail']:5} {c['error']:5} {c['skip']:5}",
                    bool(c["fail"] and level != "INFO") or bool(c["error"]),
                )
            )
    bad = [r for r in reqs if r["verdict"] in ("fail", "error")]
    if bad:
        out.append(("not passing:", False))
        for r in sorted(bad, key=lambda r: (r["verdict"], LEVELS.index(r["level"]), r["id"])):
            reason = (r.get("reason") or "").splitlines()[0][:140] if r.get("reason") else ""
            if reference_note(r):
                reason = f"[{reference_note(r)}] {reason}"
            out.append(
                (
                    f"  {r['verdict'].upper():5} {r['id']:12} {r['level']:6} {r['title']}"
                    + (f" -- {reason}" if reason else ""),
                    r["verdict"] == "error" or r["level"] != "INFO",
                )
            )
    out += version_lines(results)
    out.append((f"totals: {totals_line(results)}", False))
    out.append((f"score: {score_line(results)}", False))
    for probe in (results["run"].get("preflight") or {}).values():
        if probe.get("status") == "failed":
            out.append((probe.get("reason", "preflight failed"), True))
    out += gate_lines(results)
    if report_dir is not None:
        files = [n for n in (*REPORT_FILES, LOG_FILE) if (report_dir / n).exists()]
        out.append((f"reports: {report_dir}/ ({', '.join(files)})", False))
    return out


def version_lines(results: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """With several API versions judged: the requirements whose verdict changes with it."""
    versions = results["run"].get("api_versions") or []
    if len(versions) < 2:
        return []
    out = [(f"API versions judged: {', '.join(versions)} (the table above: {versions[-1]})", False)]
    for r in results["requirements"]:
        judged = r.get("versions_judged") or {}
        if len(set(judged.values())) > 1:
            spans, start = [], versions[0]
            for prev, ver in zip(versions, versions[1:], strict=False):
                if judged.get(ver) != judged.get(prev):
                    spans.append(
                        f"{start}-{prev} {judged.get(prev)}"
                        if start != prev
                        else f"{prev} {judged.get(prev)}"
                    )
                    start = ver
            last = versions[-1]
            spans.append(
                f"{start}-{last} {judged.get(last)}"
                if start != last
                else f"{last} {judged.get(last)}"
            )
            out.append((f"  {r['id']:12} {'; '.join(spans)}", False))
    return out


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown(results: Mapping[str, Any], title: str | None = None) -> str:
    """``summary.md``: a CI job summary (GitHub renders it on the run's page)."""
    s = results["summary"]
    lines = [f"## {title or 'images/create conformance'}: {_cell(target_line(results))}", ""]
    if not results["run"].get("complete", True):
        lines += [
            "**Partial run**: "
            + ("interrupted." if results["run"].get("interrupted") else "a selection."),
            "",
        ]
    lines += ["| level | score | pass | fail | error | skip |", "|---|---|---|---|---|---|"]
    for level in LEVELS:
        c = s["by_level"][level]
        lines.append(
            f"| {level} | {percent(s['score'][level])} | {c['pass']} | {c['fail']} "
            f"| {c['error']} | {c['skip']} |"
        )
    lines += ["", f"**{totals_line(results)}**", ""]
    gate = gate_lines(results)
    if gate:
        lines += [
            ("❌ " if bad else "✅ ") + _cell(text) if i == 0 else f"- {_cell(text)}"
            for i, (text, bad) in enumerate(gate)
        ]
        lines.append("")
    bad = [r for r in results["requirements"] if r["verdict"] in ("fail", "error")]
    if bad:
        lines += ["| verdict | requirement | level | suite | reason |", "|---|---|---|---|---|"]
        for r in sorted(bad, key=lambda r: (r["verdict"], LEVELS.index(r["level"]), r["id"])):
            note = f"_{reference_note(r)}_ — " if reference_note(r) else ""
            lines.append(
                f"| {r['verdict']} | {r['id']} {_cell(r['title'])} | {r['level']} "
                f"| {r['suite']} | {note}{_cell((r.get('reason') or '')[:200])} |"
            )
        lines.append("")
    lines.append(
        f"_{results['tool']['name']} {results['tool']['version']}, "
        f"{results['run']['started']}, {results['run']['duration']:.1f} s_"
    )
    return "\n".join(lines) + "\n"
