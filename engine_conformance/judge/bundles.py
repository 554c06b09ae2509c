"""Reproducer bundles: what replays one failing case after the run has gone.

    >>> bundle = write_case(report_dir, case, exchanges, files=file_server)   # doctest: +SKIP
    >>> bundle.relative_to(report_dir)                                        # doctest: +SKIP
    PosixPath('reproducers/AUTH-003-1')

A bundle is a directory ``REPORT_DIR/reproducers/<ID>-<n>/``:

``case.json``
    the requirement (level, basis, API version judged), the case (its pytest
    node and the check's reason: expected vs observed), the engine's facts, and
    the requests in the order sent, each with its headers, its body (a file
    under ``bodies/``), the lab content in force when it was sent (``lab-K.json``)
    and the answer the engine gave then.
``lab-K.json`` and ``blobs/``
    the lab registry's content (:mod:`lab_registry.content`): the standard
    catalogue by prefix, what the check added (small blobs, large images as a
    seed), its auth rules, token users and faults. The lab's test credentials are
    written in full: they are the lab's, never the user's.
``files/``
    what the file server served for ``fromSrc=<URL>`` imports.
``reproduce.sh``
    brings the lab up with that content, sends the requests again to the engine
    (``$DOCKER_HOST`` or the first argument), prints each answer beside the
    recorded one, removes what the replay created, and then judges: the suite's
    own check for the case, run again alone (a property-phase finding is judged
    on the replayed answer itself). It prints ``still deviates`` (exit 1) or
    ``no longer deviates`` (exit 0); anything that stops it from judging is exit 3.

No absolute path of the machine that ran the suite is written: the target is
given to ``reproduce.sh``, never recorded.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine_conformance.base import paths
from engine_conformance.base.redact import scrub
from engine_conformance.engine.target import Exchange

FORMAT = 1
DIRECTORY = "reproducers"
#: The most requests a bundle keeps (a check's first ones: what set the case up).
MOST_REQUESTS = 60
#: Requests a replay does not send again: it removes what it created itself, and
#: deleting by a recorded name could reach an image the replay did not make.
NOT_REPLAYED = frozenset({"DELETE"})

SCRIPT = """\
#!/bin/sh
# {title}
# Recorded against {engine}, API {api}.
# Usage: sh reproduce.sh [TARGET]   TARGET: unix:///path/docker.sock, tcp://HOST:PORT, or a
#        socket path; default $DOCKER_HOST. Exit 1: still deviates; 0: no longer deviates;
#        3: could not judge. Set PYTHON to the interpreter that has engine-conformance.
here=$(cd "$(dirname "$0")" && pwd)
exec "${{PYTHON:-python3}}" -m engine_conformance.run.replay "$here" "$@"
"""


@dataclass
class Case:
    """What the run knew of one failing check, for its bundle."""

    requirement: str
    title: str
    level: str
    judged_at: str
    basis: list[dict[str, Any]]
    nodeid: str
    reason: str
    engine: dict[str, Any]
    prefix: str
    run_options: list[str] = field(default_factory=list)  # what `run` needs to judge it again
    seed: int | None = None

    @property
    def name(self) -> str:
        """The pytest case name (``test_refused_pull[no-header]``)."""
        return self.nodeid.split("::")[-1]


def new_directory(report_dir: Path, requirement: str) -> Path:
    """``reproducers/<ID>-<n>`` with the first free ``n`` (safe under pytest-xdist workers)."""
    parent = Path(report_dir) / DIRECTORY
    parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        path = parent / f"{requirement}-{n}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def command(bundle: Path, report_dir: Path) -> str:
    """The line that replays ``bundle``, relative to the report directory."""
    return f"sh {shlex.quote(str(bundle.relative_to(report_dir)))}/reproduce.sh"


def write_case(
    report_dir: Path,
    case: Case,
    exchanges: Sequence[Exchange],
    *,
    files: Any = None,
    withheld: Iterable[str] = (),
    target_url: str = "",
) -> Path:
    """Write the bundle of one failing case; returns its directory.

    ``files`` is the run's file server (its ``files`` and ``base_url``), if it served
    any; ``withheld`` are the user's own secrets, which are replaced by ``<redacted>``
    (the lab's credentials are not among them: a replay needs them). ``target_url``:
    a managed engine's directory in it is written ``$ENGINE_DIR``.
    """
    bundle = new_directory(report_dir, case.requirement)
    record = {
        "format": FORMAT,
        "kind": "case",
        "requirement": {
            "id": case.requirement,
            "title": case.title,
            "level": case.level,
            "judged_at": case.judged_at,
            "basis": case.basis,
        },
        "case": case.nodeid,
        "reason": case.reason,
        "engine": case.engine,
        "prefix": case.prefix,
        "run_options": case.run_options,
        "seed": case.seed,
    }
    record |= _requests(bundle, exchanges, files, withheld)
    _finish(
        bundle,
        record,
        f"{case.requirement} ({case.level}) {case.title}: {case.name}",
        case.engine,
        target_url,
    )
    return bundle


def write_finding(
    report_dir: Path,
    requirement: str,
    finding: Mapping[str, Any],
    draft: Mapping[str, Any],
    exchange: Exchange,
    engine: dict[str, Any],
    prefix: str,
    *,
    files: Any = None,
    withheld: Iterable[str] = (),
    target_url: str = "",
) -> Path:
    """Write the bundle of one property-phase finding (one request, judged on its answer)."""
    bundle = new_directory(report_dir, requirement)
    record = {
        "format": FORMAT,
        "kind": "finding",
        "requirement": {"id": requirement},
        "finding": {k: finding[k] for k in ("shape", "detail") if k in finding},
        "draft": dict(draft),
        "reason": f"{finding.get('shape', '')}: {finding.get('detail', '')}",
        "engine": engine,
        "prefix": prefix,
    }
    record |= _requests(bundle, [exchange], files, withheld)
    _finish(
        bundle, record, f"{requirement} finding: {finding.get('shape', '')}", engine, target_url
    )
    return bundle


def load(bundle: Path) -> dict[str, Any]:
    """``case.json`` of a bundle."""
    case: dict[str, Any] = json.loads((Path(bundle) / "case.json").read_text())
    return case


# -- writing ------------------------------------------------------------------------------


def _requests(
    bundle: Path, exchanges: Sequence[Exchange], files: Any, withheld: Iterable[str]
) -> dict[str, Any]:
    requests: list[dict[str, Any]] = []
    labs: list[tuple[Any, str]] = []  # (snapshot, file name): equal snapshots share a file
    served: dict[str, str] = {}
    withheld = set(withheld)
    for n, ex in enumerate(exchanges[:MOST_REQUESTS], 1):
        entry: dict[str, Any] = {
            "method": ex.method,
            "path": ex.path,
            "params": [list(p) for p in ex.params],
            "headers": scrub(dict(ex.request_headers), withheld),
            "answer": ex.evidence(max_messages=8),
        }
        if ex.method in NOT_REPLAYED:
            entry["replay"] = False
        if ex.request_body is not None:
            name = f"bodies/{n}.bin"
            (bundle / "bodies").mkdir(exist_ok=True)
            (bundle / name).write_bytes(ex.request_body)
            entry["body"] = name
        elif ex.request_body_size:
            entry["body_not_kept"] = ex.request_body_size
        snap = ex.context.get("lab")
        if snap is not None:
            entry["lab"] = _lab_file(bundle, snap, labs)
        if files is not None:
            for key, value in ex.params:
                if key == "fromSrc" and value.startswith(files.base_url):
                    path = value[len(files.base_url) :]
                    if path in files.files and path not in served:
                        served[path] = _served_file(bundle, path, files.files[path], len(served))
        requests.append(entry)
    out: dict[str, Any] = {"requests": requests}
    if len(exchanges) > MOST_REQUESTS:
        out["requests_left_out"] = len(exchanges) - MOST_REQUESTS
    if files is not None and served:
        parts = urlsplit(files.base_url)
        out["file_server"] = {
            "host": parts.hostname,
            "port": parts.port,
            "tls": parts.scheme == "https",
            "files": served,
        }
    return out


def _lab_file(bundle: Path, snap: Any, labs: list[tuple[Any, str]]) -> str:
    from lab_registry import content

    for known, name in labs:
        if known == snap:
            return name
    name = f"lab-{len(labs) + 1}.json"
    description = content.write(snap, bundle)
    (bundle / name).write_text(json.dumps(description, indent=1, sort_keys=True) + "\n")
    labs.append((snap, name))
    return name


def _served_file(bundle: Path, path: str, data: bytes, index: int) -> str:
    (bundle / "files").mkdir(exist_ok=True)
    name = f"files/{index + 1}-{os.path.basename(path) or 'file'}"
    (bundle / name).write_bytes(data)
    return name


def _finish(
    bundle: Path, record: dict[str, Any], title: str, engine: Mapping[str, Any], target_url: str
) -> None:
    record = paths.without_engine_dir(record, target_url)
    (bundle / "case.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    label = " ".join(str(engine.get(k, "")) for k in ("engine", "version")).strip() or "an engine"
    if engine.get("image_store"):
        label += f" ({engine['image_store']} store)"
    script = bundle / "reproduce.sh"
    script.write_text(
        SCRIPT.format(
            title=title.replace("\n", " "), engine=label, api=engine.get("api_version", "?")
        )
    )
    script.chmod(0o755)
