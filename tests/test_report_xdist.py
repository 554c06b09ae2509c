"""Under pytest-xdist (-n 2) a run gives the verdicts a serial run gives, in one report."""

from __future__ import annotations

import json
import subprocess
import sys

from engine_conformance.reports.report import validate
from engine_conformance.run.runner import ROOT

# Pull checks read the engine's whole image list (they must run alone); imports and
# errors run side by side with them; ERRORS-005 fails on Docker 20.10.
PICKED = (
    "PULL-001",
    "PULL-006",
    "PULL-013",
    "PULL-014",
    "IMPORT-001",
    "IMPORT-003",
    "ERRORS-003",
    "ERRORS-005",
    "AUTH-002",
)


def _run(target: str, report_dir, *extra: str) -> dict:
    args = [a for rid in PICKED for a in ("--requirement", rid)]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine_conformance",
            "run",
            "--target",
            target,
            *args,
            "--report-dir",
            str(report_dir),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads((report_dir / "results.json").read_text())


def test_two_workers_give_the_serial_verdicts(docker, tmp_path, look):
    serial = _run(docker.target, tmp_path / "serial")
    parallel = _run(docker.target, tmp_path / "n2", "-n", "2")
    validate(parallel)
    verdicts = {r["id"]: r["verdict"] for r in serial["requirements"]}
    assert {r["id"]: r["verdict"] for r in parallel["requirements"]} == verdicts
    assert set(verdicts) == set(PICKED)
    # Each worker cleaned up under its own prefix: nothing is left behind.
    _, leftovers = look(docker.target)
    assert leftovers == []
