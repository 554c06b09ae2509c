"""Under pytest-xdist, the six full runs are made once, by the controller.

The workers collect; the first that finishes tells the controller which full runs
the session reads (:func:`tell_needed`). The controller starts those engines of its
own, makes the runs side by side while the workers judge everything else, and
writes them to a directory every worker knows (``EC_TEST_SHARED``, set before the
workers start). A worker that reads a run waits on a lock the controller holds from
its start until the runs are written (:func:`wait_for_runs`): no polling, and a
controller that died releases it (the worker then makes the run itself).

Every other engine a test uses is its worker's own, so checks that read an
engine's whole image list never see another worker's images.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SHARED = "EC_TEST_SHARED"
"""Environment variable: the controller's directory for the full runs it makes."""

_LOCK, _RUNS = "runs.lock", "runs.json"


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput") and bool(os.environ.get(SHARED))


def is_controller(config: pytest.Config) -> bool:
    return getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput")


def tell_needed(config: pytest.Config, needed: set[str]) -> None:
    """A worker: write the full runs its collection reads, for the controller."""
    worker = config.workerinput["workerid"]  # type: ignore[attr-defined]
    path = Path(os.environ[SHARED]) / f"needed-{worker}.json"
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(sorted(needed)))
    scratch.rename(path)  # whole or absent


def wait_for_runs(config: pytest.Config) -> dict[str, dict] | None:
    """A worker: the runs the controller made (waiting for them), or None if it made none."""
    shared = Path(os.environ[SHARED])
    with open(shared / _LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # released by the controller once runs.json is whole
    runs = shared / _RUNS
    return json.loads(runs.read_text()) if runs.is_file() else None


class Controller:
    """The controller's side: the lock, the thread that makes the runs, the engines."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ec-tests-"))
        os.environ[SHARED] = str(self.dir)  # inherited by the workers, started after this
        self._lock = open(self.dir / _LOCK, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._thread: threading.Thread | None = None
        self.stops: list[Callable[[], None]] = []

    def start(self, worker: str, make: Callable[[set[str]], dict[str, Any]]) -> None:
        """On the first worker's collection: make the runs it named, in the background."""
        if self._thread is not None:
            return
        told = self.dir / f"needed-{worker}.json"
        needed = set(json.loads(told.read_text())) if told.is_file() else set()
        self._thread = threading.Thread(target=self._make, args=(make, needed), daemon=True)
        self._thread.start()

    def _make(self, make: Callable[[set[str]], dict[str, Any]], needed: set[str]) -> None:
        try:
            made = make(needed) if needed else {}
        except BaseException as exc:  # noqa: BLE001 - every run reads as this error
            made = {
                name: {"error": f"the controller's full runs broke: {exc!r}"} for name in needed
            }
        try:
            scratch = self.dir / "runs.tmp"
            scratch.write_text(json.dumps(made))
            scratch.rename(self.dir / _RUNS)
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def finish(self) -> None:
        """At the end of the session: the engines stopped, the directory gone."""
        self.join()
        for stop in reversed(self.stops):
            stop()
        self._lock.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.environ.pop(SHARED, None)
