"""``findings.md``: one draft bug report per deviation, ready to paste into an engine's tracker.

    >>> results = json.loads(Path("REPORT_DIR/results.json").read_text())  # doctest: +SKIP
    >>> drafts(results, None).splitlines()[0]                               # doctest: +SKIP
    '# Deviations of docker 20.10.24+dfsg1 (graphdriver, API 1.41): draft bug reports'

A deviation is every MUST or SHOULD ``fail`` and each property-phase finding; an
INFO fail never gates, so it only gets a line in a short list at the end. Each
section stands alone (a maintainer reads one, not the report): a factual title,
the engine's facts, the requirement with its level and the basis quoted at the
API version judged, observed against expected, how to reproduce it (the
reproducer bundle's command when the report has one, else a ``curl``), and which
other engines pass it according to their expectation files.

:func:`sections` gives each requirement's text on its own (report.html's "copy
as bug report" button copies exactly that); :func:`ci_findings` writes
``docs/findings.md``, every deviation of the engines CI judges.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine_conformance.base.versions import SPEC_VERSION, version_tuple
from engine_conformance.catalogue import expectations
from engine_conformance.catalogue.requirements import LEVELS, Basis
from engine_conformance.judge.reproducer import curl_for_evidence

FILE = "findings.md"
ENDPOINT = "POST /images/create"
TITLE_OBSERVED = 90  # characters of the observation a title keeps

# What only this run's lab makes (its address, its run prefix, whole digests) says
# nothing to a maintainer in a title; the body keeps the reason as it was.
_LAB = [
    (re.compile(r"(?:127\.0\.0\.1|localhost)(?::|%3A)\d+(?:/|%2F)"), ""),
    (re.compile(r"ectest-[0-9a-f]{8}(?:/|%2F|-)"), ""),
    (re.compile(r"sha256:([0-9a-f]{12})[0-9a-f]{52}"), r"sha256:\1…"),
]
# A case label before the observation ("no-header: …", "changes='RUN true': …").
_LABEL = re.compile(r"^(?:[\w./-]+|[\w-]+='[^']*'|[\w-]+=\S+)(?: \(\{[^}]*\}\))?: (?=\S)")
_ANSWERED = re.compile(r"^(?:POST|GET) \S+ answered (HTTP \d{3})")


def engine_label(target: Mapping[str, Any]) -> str:
    """``docker 20.10.24+dfsg1 (graphdriver)``: the engine as its maintainers name it."""
    store = f" ({target.get('image_store')})" if target.get("image_store") else ""
    return f"{target.get('engine')} {target.get('version')}{store}"


def engine_facts(target: Mapping[str, Any]) -> str:
    """One line: engine, version, image store, API version judged, OS/arch."""
    parts = [f"{target.get('engine')} {target.get('version')}"]
    if target.get("image_store"):
        driver = (
            f", storage driver {target['storage_driver']}" if target.get("storage_driver") else ""
        )
        parts.append(f"image store {target['image_store']}{driver}")
    maximum = (
        f" (engine maximum {target['max_api_version']})" if target.get("max_api_version") else ""
    )
    parts.append(f"judged at Engine API {target.get('api_version')}{maximum}")
    parts.append(f"{target.get('os')}/{target.get('arch')}")
    if target.get("operating_system"):
        parts.append(str(target["operating_system"]))
    if target.get("rootless"):
        parts.append("rootless")
    return " · ".join(parts)


def basis_line(basis: Mapping[str, Any], judged_at: str) -> str:
    """A basis quoted with the document version it was judged at.

    >>> basis_line({"kind": "document", "versions": ">=1.24", "at": "response 404",
    ...             "quote": "no read access"}, "1.41")
    'Engine API v1.41, response 404: "no read access"'
    """
    b = Basis(**{k: v for k, v in basis.items() if k != "level"})
    if b.kind == "document":
        return f'Engine API v{judged_at}, {b.at}: "{b.quote}"'
    if b.kind == "rfc":
        return f'{b.source} (an RFC on HTTP itself, not the Engine API document): "{b.quote}"'
    if b.kind == "registry-protocol":
        return f'{b.source} (the registry protocol, not the Engine API document): "{b.quote}"'
    if b.kind == "reference":
        return (
            f"what the reference engine does ({b.engines}), where the Engine API document "
            f"v{judged_at} is silent: {b.note}"
        )
    return f"an observation, not a requirement of any document: {b.note}"


def tidy(text: str) -> str:
    """``text`` without the run's lab address, prefix and whole digests (for titles)."""
    for pattern, repl in _LAB:
        text = pattern.sub(repl, text)
    return " ".join(text.split())


def observed(reason: str) -> str:
    """What the engine did, short enough for a title, from a verdict's reason.

    >>> observed("no-header: HTTP 500 before the stream, expected HTTP 404 (documented)")
    'HTTP 500 before the stream'
    """
    first = _LABEL.sub("", tidy(reason.split("; ")[0]), count=1)
    answered = _ANSWERED.match(first)
    if answered:
        return answered.group(1)
    first = re.split(r", expected |: b'|: b\"| \(\{| \('| \(b'", first, maxsplit=1)[0]
    first = first.replace(", error in the last of 1 stream lines", " with the error in the stream")
    if len(first) > TITLE_OBSERVED:  # asides go first, then a label before the observation
        while re.search(r" \([^()]*\)", first):
            first = re.sub(r" \([^()]*\)", "", first)
    if len(first) > TITLE_OBSERVED and ": " in first:
        label, rest = first.split(": ", 1)
        first = rest if len(label.split()) <= 4 else label  # "imported from a URL: …"
    if len(first) <= TITLE_OBSERVED:
        return first.rstrip(" ,.")
    status = re.search(r"HTTP \d{3}(?: before the stream| with no error line)?", first)
    if status:
        return status.group(0)
    return first[:TITLE_OBSERVED].rsplit(" ", 1)[0].rstrip(" ,.") + "…"


def _expected(reason: str) -> str:
    """The "expected …" part of a reason's first case, when it says one."""
    m = re.search(r"\bexpected ([^;]+)", reason.split("; ")[0])
    return m.group(1).strip().rstrip(".") if m else ""


def title(target: Mapping[str, Any], entry: Mapping[str, Any], what: str) -> str:
    words = str(entry.get("title", ""))
    first = words.split(" ", 1)[0]
    if first and not (len(first) > 1 and first.isupper()):  # HEALTHCHECK stays as written
        words = words[0].lower() + words[1:]
    return f"{engine_label(target)}: {what} — {ENDPOINT}: expected {words}"


def passing_engines(rid: str, directory: Path | None, exclude: str = "") -> list[str] | None:
    """Expectation keys that record ``pass`` for ``rid`` (None: no expectation files)."""
    if directory is None or not Path(directory).is_dir():
        return None
    return [
        p.stem
        for p in sorted(Path(directory).glob("*.yaml"))
        if p.stem != exclude and expectations.load(p).get(rid) == "pass"
    ]


def _passing_line(rid: str, directory: Path | None, exclude: str) -> list[str]:
    engines = passing_engines(rid, directory, exclude)
    if engines is None:
        return []
    return [f"Engines that pass (per their expectation files): {', '.join(engines) or 'none'}."]


def _indent(text: str) -> str:
    """A Markdown code block, however many lines the engine's answer had."""
    return "\n".join(f"    {line}" for line in text.splitlines())


def _evidence_line(ev: Mapping[str, Any]) -> str:
    said = ev.get("first_messages") or []
    answer = json.dumps(said[0]) if said else (ev.get("body") or "")
    answer = f": {str(answer)[:300]}" if answer else ""
    return _indent(f"{ev.get('request')}\n→ HTTP {ev.get('status')}{answer}")


def _head(target: Mapping[str, Any], entry: Mapping[str, Any], heading: str) -> list[str]:
    at = entry.get("judged_at") or target.get("api_version")
    lines = [
        f"## {heading}",
        "",
        f"- Engine: {engine_facts(target)}",
        f"- Requirement: {entry['id']} ({entry['level']} at Engine API {at}): {entry.get('title')}",
    ]
    lines += [f"- Basis: {basis_line(b, str(at))}" for b in entry.get("basis") or []]
    return lines


def _tail(entry: Mapping[str, Any], directory: Path | None, key: str) -> list[str]:
    lines = [""] + _passing_line(entry["id"], directory, key)
    also = _reference_also(entry, key)
    if also:
        lines.append(f"Docker, the reference engine, deviates here too ({', '.join(also)}).")
    return lines


def _reference_also(entry: Mapping[str, Any], key: str) -> list[str]:
    """Docker's expectation keys that record this fail, the engine's own left out."""
    return [k for k in entry.get("reference_deviates") or [] if k != key]


def _fail_section(
    target: Mapping[str, Any], entry: Mapping[str, Any], directory: Path | None
) -> str:
    reason = str(entry.get("reason") or "")
    lines = _head(target, entry, title(target, entry, observed(reason)))
    expected = _expected(reason)
    lines += ["", f"**Observed**: {reason}", "", f"**Expected**: {expected or entry.get('title')}."]
    evidence = entry.get("evidence") or []
    if evidence:
        lines += ["", "The requests and the engine's answers (first line of the answer):", ""]
        lines += [_evidence_line(ev) for ev in evidence[:3]]
    bundles = entry.get("reproducers") or []
    lines.append("")
    if bundles:
        lines += [
            "**Reproduce** (from the report directory; each bundle serves its own "
            "registry content and needs only the engine, `$DOCKER_HOST` or the "
            "socket as argument):",
            "",
        ]
        lines += [f"    {b['command']}    # {b.get('case', '')}".rstrip(" #") for b in bundles]
    elif evidence:
        lines += [
            "**Reproduce** (the request again; the report has no bundle):",
            "",
            f"    {curl_for_evidence(str(target.get('url', '')), evidence[-1])}",
        ]
    return "\n".join(lines + _tail(entry, directory, str(target.get("engine_key", ""))))


def _finding_section(
    target: Mapping[str, Any],
    entry: Mapping[str, Any],
    finding: Mapping[str, Any],
    directory: Path | None,
) -> str:
    shape = tidy(str(finding.get("shape", "")))
    lines = _head(target, entry, title(target, entry, shape))
    lines += [
        "",
        f"**Observed** (property phase, {finding.get('requests')} drawn requests "
        f"gave this answer; shrunk to one): {finding.get('detail') or shape}",
        "",
        _indent(
            f"{finding.get('request')}\n→ HTTP {finding.get('status')}"
            + (f": {str(finding['answer'])[:300].strip()}" if finding.get("answer") else "")
        ),
        "",
        f"**Expected**: {entry.get('title')}.",
        "",
    ]
    if finding.get("bundle"):
        lines += [
            "**Reproduce** (from the report directory; needs only the engine):",
            "",
            f"    sh {finding['bundle']}/reproduce.sh",
        ]
    elif finding.get("reproducer"):
        lines += ["**Reproduce**:", "", f"    {finding['reproducer']}"]
    return "\n".join(lines + _tail(entry, directory, str(target.get("engine_key", ""))))


def _default(directory: Path | None) -> Path | None:
    if directory is not None:
        return Path(directory)
    return expectations.EXPECTATIONS_DIR if expectations.EXPECTATIONS_DIR.is_dir() else None


def sections(results: Mapping[str, Any], expectations_dir: Path | None = None) -> dict[str, str]:
    """Per requirement with a deviation (MUST/SHOULD fail, property finding), its draft(s).

    A requirement with several property findings has one section for each, joined.
    """
    directory = _default(expectations_dir)
    target = results["target"]
    out: dict[str, str] = {}
    for entry in _ordered(results["requirements"]):
        if entry["level"] == "INFO":
            continue
        findings = (entry.get("observations") or {}).get("findings") or []
        if findings:
            out[entry["id"]] = "\n\n".join(
                _finding_section(target, entry, f, directory) for f in findings
            )
        elif entry["verdict"] == "fail":
            out[entry["id"]] = _fail_section(target, entry, directory)
    return out


def _ordered(reqs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(reqs, key=lambda r: (LEVELS.index(r["level"]), r["id"]))


def _info_fails(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        r
        for r in _ordered(results["requirements"])
        if r["level"] == "INFO" and r["verdict"] == "fail"
    ]


def drafts(results: Mapping[str, Any], expectations_dir: Path | None = None) -> str:
    """``findings.md`` of one run: a draft bug report per deviation, INFO fails listed last.

    ``expectations_dir`` (default ``suites/expectations/`` when present) names the
    engines that pass each requirement.
    """
    t = results["target"]
    head = (
        f"{t.get('engine')} {t.get('version')} ("
        + (f"{t['image_store']}, " if t.get("image_store") else "")
        + f"API {t.get('api_version')})"
    )
    found = sections(results, expectations_dir)
    lines = [
        f"# Deviations of {head}: draft bug reports",
        "",
        f"{len(found)} requirement{'s' if len(found) != 1 else ''} with a deviation "
        f"(MUST or SHOULD), each section a draft to file on its own. "
        "Reproducer paths are relative to this report's directory: attach the bundle "
        "directory with the report.",
        "",
    ]
    if not found:
        lines += ["No MUST or SHOULD requirement deviates.", ""]
    lines += [text + "\n" for text in found.values()]
    info = _info_fails(results)
    if info:
        lines += ["## Observations that do not gate (INFO)", ""]
        lines += [f"- {r['id']} {r['title']}: {observed(str(r.get('reason') or ''))}" for r in info]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def write(report_dir: Path, results: Mapping[str, Any]) -> Path:
    """``REPORT_DIR/findings.md``."""
    path = Path(report_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(drafts(results, None), encoding="utf-8")
    return path


def _run_command(kind: str, target: Mapping[str, Any], rid: str) -> str:
    """The ``run`` that judges ``rid`` again on the managed engine ``kind``."""
    api = str(target.get("api_version") or "")
    top = str(target.get("max_api_version") or SPEC_VERSION)
    default = min(SPEC_VERSION, top, key=version_tuple)
    pin = f" --api-version {api}" if api and version_tuple(api) != version_tuple(default) else ""
    return (
        f"engine-conformance run --managed {kind}{pin} --requirement {rid} --report-dir REPORT_DIR"
    )


def _bundle_lines(entry: Mapping[str, Any]) -> list[str]:
    """The bundles a run of ``entry`` leaves, by name when results.json says them."""
    rid = entry["id"]
    named = [(b["path"], b.get("case", "")) for b in entry.get("reproducers") or []]
    named += [
        (f["bundle"], f"finding: {tidy(str(f.get('shape', '')))}")
        for f in (entry.get("observations") or {}).get("findings") or []
        if f.get("bundle")
    ]
    if named:
        return [
            f"sh REPORT_DIR/{path}/reproduce.sh    # {note}".rstrip(" #")
            for path, note in sorted(named)
        ]
    # An older report does not name its bundles: one per failing case and per finding.
    n = (
        sum(1 for c in entry.get("cases") or [] if c.get("verdict") == "fail")
        + len((entry.get("observations") or {}).get("findings") or [])
    ) or 1
    more = f"    # one bundle per failing case or finding: {rid}-1 … {rid}-{n}" if n > 1 else ""
    return [f"sh REPORT_DIR/reproducers/{rid}-1/reproduce.sh{more}"]


def ci_findings(
    runs: Sequence[tuple[str, Mapping[str, Any]]],
    expectations_dir: Path | None = None,
    title: str = "Deviations of the engines CI judges",
) -> str:
    """``docs/findings.md``: every fail of each ``(managed kind, results)``, by engine.

    Each with the commands that rebuild its reproducer bundle and replay it.
    """
    directory = _default(expectations_dir)
    lines = [
        f"# {title}",
        "",
        "Every requirement each engine fails, grouped by engine, then by requirement "
        "(MUST and SHOULD first; INFO never gates). Each gives the run that makes its "
        "reproducer bundle (`REPORT_DIR` is any new directory) and the commands that "
        "replay it. A report's own `findings.md` holds the full draft bug report of "
        "each. Regenerated by `scripts/update-matrix` from `reports/ci/<engine>/`; "
        "`tests/test_findings.py` fails when it is stale against "
        "`suites/expectations/`.",
        "",
    ]
    lines += ["| engine | judged | MUST | SHOULD | INFO |", "|---|---|---|---|---|"]
    for _kind, results in runs:
        t, fails = results["target"], [r for r in results["requirements"] if r["verdict"] == "fail"]
        counts = " | ".join(str(sum(1 for r in fails if r["level"] == lv)) for lv in LEVELS)
        lines.append(
            f"| [{t.get('engine_key')}](#{_anchor(str(t.get('engine_key')))}) "
            f"| {engine_label(t)}, API {t.get('api_version')} | {counts} |"
        )
    lines.append("")
    for kind, results in runs:
        t = results["target"]
        key = str(t.get("engine_key"))
        lines += [f"## {key}", "", f"{engine_facts(t)}; `--managed {kind}`.", ""]
        for entry in _ordered([r for r in results["requirements"] if r["verdict"] == "fail"]):
            rid, at = entry["id"], str(entry.get("judged_at") or t.get("api_version"))
            findings = (entry.get("observations") or {}).get("findings") or []
            what = (
                "; ".join(tidy(str(f.get("shape", ""))) for f in findings)
                if findings
                else observed(str(entry.get("reason") or ""))
            )
            lines += [f"### {rid} ({entry['level']}): {entry['title']}", "", f"- Observed: {what}"]
            lines += [f"- Basis: {basis_line(b, at)}" for b in entry.get("basis") or []]
            passing = passing_engines(rid, directory, key)
            if passing is not None:
                lines.append(
                    "- Engines that pass (per their expectation files): "
                    f"{', '.join(passing) or 'none'}"
                )
            also = _reference_also(entry, key)
            if also:
                lines.append(
                    "- Docker, the reference engine, deviates here too: " + ", ".join(also)
                )
            lines += [
                "",
                "```sh",
                _run_command(kind, t, rid),
                *_bundle_lines(entry),
                f"engine-conformance reproduce REPORT_DIR {rid}",
                "```",
                "",
            ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` dropped."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def listed(text: str) -> set[tuple[str, str]]:
    """``(engine key, requirement)`` of each deviation a :func:`ci_findings` text lists."""
    out, key = set(), ""
    for line in text.splitlines():
        if line.startswith("## "):
            key = line[3:].strip()
        elif line.startswith("### ") and key:
            out.add((key, line[4:].split()[0]))
    return out
