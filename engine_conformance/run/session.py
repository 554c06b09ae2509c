"""A suite run without pytest: connect and identify, then finish into results.

    >>> run = Run(Catalogue.load(), "ectest-1a2b3c4d", Path("reports/x"))   # doctest: +SKIP
    >>> connect(run, option)          # the client, the engine's identity, its expectations
    >>> results, code = finish(run, option, records, target, preflight, removed, complete)

``option(name)`` reads a run option (:mod:`engine_conformance.run.options`): the plugin
passes pytest's ``config.getoption``. What does not hold is a :class:`Refusal` with the
child's exit status; the plugin turns it into pytest's exit. Everything that decides a
verdict stays in :mod:`engine_conformance.judge`; this module only carries a run.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine_conformance.base.exits import (
    CHILD_SUITE_UNREACHABLE,
    CHILD_TARGET_UNREACHABLE,
    CHILD_USAGE,
    Refusal,
    UsageError,
)
from engine_conformance.base.redact import scrub
from engine_conformance.base.versions import api_version_problem
from engine_conformance.catalogue import expectations
from engine_conformance.catalogue.requirements import Catalogue
from engine_conformance.engine.identity import describe_target
from engine_conformance.engine.target import Client, Target, TargetError, Timeouts
from engine_conformance.judge.cleanup import record_preexisting
from engine_conformance.judge.preflight import Probe
from engine_conformance.judge.verdicts import Record, build_results
from engine_conformance.run.lane import Lane
from engine_conformance.run.runner import COMMAND_LINE, PROGRESS_FD

SERVICES = ("registry", "file_server")  # what a preflight proves the engine reaches

Option = Callable[[str], Any]
"""Reads one run option by its name (``request_timeout``)."""


@dataclass
class Run:
    """Per-session state, kept on ``config.stash``."""

    catalogue: Catalogue
    prefix: str
    report_dir: Path
    client: Client | None = None
    target_info: dict[str, Any] = field(default_factory=dict)
    records: dict[str, list[Record]] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)
    preexisting: frozenset[str] = frozenset()  # image IDs before the run: never deleted
    expected: dict[str, str] | None = None
    expectations_path: Path | None = None
    started: float = field(default_factory=time.time)
    complete: bool = True
    mismatches: list[str] = field(default_factory=list)
    gate: expectations.Gate | None = None
    results: dict[str, Any] | None = None
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    preflight: dict[str, Probe] = field(default_factory=dict)
    progress: Any = None  # the CLI's progress channel (a text file), when it gave one
    workers: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # pytest-xdist: what each reported
    files: Any = None  # the file server, once started
    engine: dict[str, Any] | None = (
        None  # /version and /info as the command read them (--run-config)
    )
    lane: Lane | None = None  # the run's lane (run/lane.py), started once collected
    clock: float = field(default_factory=time.monotonic)  # when the run began, for waited()
    left_behind: list[dict[str, Any]] = field(default_factory=list)  # the end-of-run backstop

    @property
    def unreachable(self) -> list[Probe]:
        """The preflights that failed: the suite could not judge what needs those services."""
        return [p for p in self.preflight.values() if not p.ok]


def progress_channel() -> Any:
    fd = os.environ.get(PROGRESS_FD)
    if not fd:
        return None
    try:
        return os.fdopen(int(fd), "w", buffering=1, closefd=False)
    except (OSError, ValueError):
        return None


def emit(run: Run | None, **event: Any) -> None:
    """One progress event for the CLI (which shows progress and refusals, not pytest's log)."""
    if run is None or run.progress is None:
        return
    try:
        run.progress.write(json.dumps(event, default=str) + "\n")
    except (OSError, ValueError):
        run.progress = None  # the CLI went away; the run goes on and writes its reports


def connect(run: Run, option: Option) -> None:
    """Connect to the target, settle the API version (or adopt the command's), identify
    the engine, and load its expectations; raises :class:`Refusal`."""
    try:
        spec = option("target")
        target = Target.parse(spec) if spec else Target.default()
        if target is None:
            raise Refusal(
                "no target: give --target or set DOCKER_HOST "
                "(or use `engine-conformance run`, which can start one)",
                CHILD_USAGE,
            )
        client = Client(
            target,
            api_version=option("api_version") or os.environ.get("DOCKER_API_VERSION"),
            timeouts=Timeouts(read=option("request_timeout"), stream=option("stream_timeout")),
        )
        if run.engine is not None:  # the command asked already: the child is told, not asking
            client.adopt(run.engine["version"])
            info = run.engine["info"]
        else:
            client.negotiate()
            info = client.info()
        preexisting = record_preexisting(client)
    except UsageError as exc:
        raise Refusal(f"bad target: {exc}", CHILD_USAGE) from None
    except TargetError as exc:
        raise Refusal(str(exc), CHILD_TARGET_UNREACHABLE) from None
    if client.pinned:
        problem = api_version_problem(
            client.pinned,
            client.version_info.get("MinAPIVersion"),
            client.version_info.get("ApiVersion"),
        )
        if problem:
            client.close()
            raise Refusal(problem, CHILD_USAGE)
    run.client = client
    # Levels follow the basis in force at the API version judged (v1.48 documents
    # what v1.44 leaves to the reference engine, say).
    run.catalogue = run.catalogue.at(client.api_version)
    run.preexisting = preexisting
    run.target_info = describe_target(client, info)
    expect = option("expectations")
    if expect:
        path = (
            expectations.path_for(run.target_info["engine_key"])
            if expect == "auto"
            else Path(expect)
        )
        run.expectations_path = path
        if not option("update_expectations"):
            if not path.is_file():
                raise Refusal(
                    f"no expectation file {path}"
                    + (f" for {run.target_info['engine_key']}" if expect == "auto" else ""),
                    CHILD_USAGE,
                )
            run.expected = expectations.load(path)


def finish(
    run: Run,
    option: Option,
    records: Mapping[str, list[Record]],
    target_info: dict[str, Any],
    preflight: dict[str, Any],
    removed: list[Any],
    complete: bool,
    interrupted: bool,
) -> tuple[dict[str, Any], int | None]:
    """The run's results (secrets scrubbed; the expectations written or gated) and the
    exit status they call for: ``CHILD_SUITE_UNREACHABLE``, 1 for a failed gate, or None."""
    # An interrupted run judged only part of what it meant to: it is never complete.
    complete = complete and not interrupted
    results = build_results(
        run.catalogue,
        dict(records),
        target_info,
        {
            "prefix": run.prefix,
            "complete": complete,
            "interrupted": interrupted,
            **(
                {"command_line": json.loads(os.environ[COMMAND_LINE])}
                if os.environ.get(COMMAND_LINE)
                else {}
            ),
            "cleanup_removed": removed,
            "preflight": preflight,
            **({"lane": run.lane.describe()} if run.lane is not None else {}),
            "left_behind": run.left_behind,
        },
        run.started,
        reference=expectations.reference_deviations(),
    )
    if run.client is not None:
        # The run's own figure: every request in flight, a check's or the lane's, counted
        # once (checks overlap the lane, so the per-requirement figures do not add up).
        sent = [*run.client.exchanges, *(run.lane.exchanges() if run.lane is not None else [])]
        results["summary"]["engine_wait"] = round(waited(sent, run.clock), 3)
    code: int | None = None
    unreachable = [p for p in preflight.values() if p.get("status") == "failed"]
    verdicts = {r["id"]: r["verdict"] for r in results["requirements"]}
    reasons = {r["id"]: r["reason"] for r in results["requirements"]}
    if option("update_expectations") and run.expectations_path:
        # Verdicts of a run that could not reach its own services describe the setup,
        # not the engine: they must not become its expectations.
        updated = not interrupted and not unreachable
        if updated:
            expectations.write(
                run.expectations_path, target_info, verdicts, reasons, prefix=run.prefix
            )
        results["expectations"] = {"file": str(run.expectations_path), "updated": updated}
    elif run.expected is not None:
        run.gate = expectations.gate(verdicts, run.expected, complete, strict=option("strict_gate"))
        run.mismatches = run.gate.mismatches
        results["expectations"] = {
            "file": str(run.expectations_path),
            "mismatches": run.mismatches,
        } | run.gate.as_dict()
        if not run.gate.passed:
            code = 1
    if unreachable and not interrupted:
        code = CHILD_SUITE_UNREACHABLE
    run.results = scrub(results, run.secrets)
    return run.results, code


def waited(exchanges: list[Any], since: float) -> float:
    """Seconds since ``since`` in which some request of ``exchanges`` awaited the engine.

    Exchanges a check cites from earlier (a module fixture's) are clipped to its own
    window, and requests in flight together count once.
    """
    now = time.monotonic()
    spans = sorted(
        (max(ex.started, since), min(ex.finished or now, now)) for ex in exchanges if ex.started
    )
    total, end = 0.0, since
    for start, finish in spans:
        start = max(start, end)
        if finish > start:
            total += finish - start
            end = finish
    return total
