"""pytest-xdist under a suite run: which worker this is, its lab port, which checks run
alone, and the controller's merge of what the workers judged.

A suite run is distributed only when asked (``engine-conformance run -n N``). Each
worker connects on its own and names what it creates under a prefix of its own;
checks that read the engine's whole image list run alone (:func:`exclusive`, a file
lock); the controller connects to nothing and writes the reports from the workers'
records (:func:`merge_workers`).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine_conformance.catalogue import expectations
from engine_conformance.judge.verdicts import Record
from engine_conformance.run.session import SERVICES, Run

WORKER_OUTPUT = "engine_conformance"  # a pytest-xdist worker's records, for the controller


def worker_id(config: pytest.Config) -> str | None:
    """``gw0``… in a pytest-xdist worker, else None."""
    workerinput = getattr(config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else None


def registry_port(config: pytest.Config) -> int:
    """The lab registry's port: under pytest-xdist, each worker's own from --registry-ports."""
    worker = worker_id(config)
    if worker is None:
        port: int = config.getoption("registry_port")
        return port
    index = int(worker.removeprefix("gw"))
    ports = [int(p) for p in (config.getoption("registry_ports") or "").split(",") if p]
    if index < len(ports):
        return ports[index]
    first: int = config.getoption("registry_port") if index == 0 else 0
    return first


ENGINE_WIDE = frozenset({"image_ids", "list_images"})
"""Names a check reads the engine's whole image list through: under pytest-xdist such a
check must not overlap another (it would see the other's images as its own)."""


def exclusive(item: pytest.Item) -> bool:
    """Whether ``item`` must run while no other check runs (pytest-xdist).

    A check says so with ``@pytest.mark.exclusive``; one that reads the engine's whole
    image list (directly or through a helper of its module) is exclusive as well.
    """
    if item.get_closest_marker("exclusive"):
        return True
    function = getattr(item, "function", None)
    if function is None:
        return False
    return _reads_engine_wide(function.__code__, getattr(function, "__globals__", {}), set())


def _reads_engine_wide(code: Any, module: dict[str, Any], seen: set[str]) -> bool:
    if code in seen:
        return False
    seen.add(code)
    if ENGINE_WIDE & set(code.co_names):
        return True
    for const in code.co_consts:  # nested functions and lambdas
        if hasattr(const, "co_names") and _reads_engine_wide(const, module, seen):
            return True
    for name in code.co_names:
        helper = module.get(name)
        if (
            callable(helper)
            and hasattr(helper, "__code__")
            and getattr(helper, "__module__", None) == module.get("__name__")
            and _reads_engine_wide(helper.__code__, module, seen)
        ):
            return True
    return False


@contextmanager
def turn(item: pytest.Item, lock_dir: Path) -> Iterator[None]:
    """Hold ``item``'s turn: alone if it is :func:`exclusive`, else beside the others."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".xdist.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive(item) else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def suite_counts(ids: list[str]) -> dict[str, int]:
    """Checks per suite from a worker's collected node IDs."""
    per_suite: dict[str, int] = {}
    for nodeid in ids:
        # The suites' files are named for their catalogue file: suites/test_<suite>.py.
        stem = nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        name = stem.removeprefix("test_")
        per_suite[name] = per_suite.get(name, 0) + 1
    return per_suite


def merge_workers(
    run: Run, config: pytest.Config
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[Any], bool]:
    """What the pytest-xdist workers judged, as one run (the controller connects to nothing)."""
    outputs = [v for k, v in sorted(run.workers.items()) if k != "collected"]
    records: dict[str, list[Record]] = {}
    for out in outputs:
        for rid, recs in out["records"].items():
            records.setdefault(rid, []).extend(Record(**r) for r in recs)
    preflight = {}
    for name in SERVICES:
        seen = [o["preflight"][name] for o in outputs]
        preflight[name] = (
            next((p for p in seen if p.get("status") == "failed"), None)
            or next((p for p in seen if p.get("status") == "ok"), None)
            or {"status": "not needed"}
        )
    expect = next((o["expectations"] for o in outputs if o["expectations"]), "")
    if expect:
        run.expectations_path = Path(expect)
        if not config.getoption("update_expectations") and run.expectations_path.is_file():
            run.expected = expectations.load(run.expectations_path)
    removed = [ref for o in outputs for ref in o["removed"]]
    # The scheduler spreads one collection over the workers: complete only if all finished.
    workers = getattr(config.option, "numprocesses", None)
    expected = workers if isinstance(workers, int) else len(outputs)
    complete = all(o["complete"] for o in outputs) and len(outputs) >= expected
    return records, outputs[0]["target"], preflight, removed, complete


__all__ = [
    "WORKER_OUTPUT",
    "exclusive",
    "merge_workers",
    "registry_port",
    "suite_counts",
    "turn",
    "worker_id",
]
