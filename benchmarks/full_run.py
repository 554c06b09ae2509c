"""Wall time of a full run, serially and under pytest-xdist, and where the time goes.

    python benchmarks/full_run.py --target unix:///tmp/ec-docker-XXXX/docker.sock
    python benchmarks/full_run.py --target URL --workers 2 --repeats 1

Runs the whole catalogue through ``engine-conformance run`` (as a user does)
serially and with ``-n WORKERS``, and prints the wall times, the time the
checks spent waiting on the engine (``summary.engine_wait`` in results.json:
the union of each check's requests in flight), the slowest requirements, and
whether both runs gave the same verdicts. The last line printed is always::

    overhead share: X.XX

the share of a serial run's wall time not spent waiting on the engine
(interpreter starts, collection, the suite's own work between requests, its
observation calls and clean-up, the reports), the median over ``--repeats`` runs.
A measured figure, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine_conformance.catalogue import expectations

ROOT = Path(__file__).resolve().parents[1]


def run(target: str, report_dir: Path, workers: int) -> tuple[float, dict]:
    cmd = [
        sys.executable,
        "-m",
        "engine_conformance",
        "run",
        "--target",
        target,
        "--report-dir",
        str(report_dir),
        *(["-n", str(workers)] if workers > 1 else []),
    ]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"full_run: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall, json.loads((report_dir / "results.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="engine URL (unix://, tcp://, https://)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each kind (median)")
    parser.add_argument("--slowest", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ec-bench-") as tmp:
        serial, parallel = [], []
        for i in range(args.repeats):
            serial.append(run(args.target, Path(tmp) / f"serial-{i}", 1))
            parallel.append(run(args.target, Path(tmp) / f"n{args.workers}-{i}", args.workers))
    s_wall = statistics.median(w for w, _ in serial)
    p_wall = statistics.median(w for w, _ in parallel)
    results = serial[-1][1]
    waited = statistics.median(r["summary"]["engine_wait"] for _, r in serial)
    t = results["target"]
    print(f"target: {t['engine']} {t['version']} ({t['image_store']}, API {t['api_version']})")
    print(f"serial wall: {s_wall:.1f} s (run {results['run']['duration']:.1f} s in pytest)")
    print(f"-n {args.workers} wall: {p_wall:.1f} s (speed-up {s_wall / p_wall:.2f}x)")
    print(f"waiting on the engine (serial, median): {waited:.1f} s")
    # The floor of a run: the longest wait one check imposes (the engine's own back-off),
    # whether the check waited itself or its scenario waited in the run's lane.
    waits = {r["id"]: r.get("engine_wait") or 0.0 for r in results["requirements"]}
    lane = results["run"].get("lane") or {}
    waits |= {f"lane {k}": v for k, v in (lane.get("scenarios") or {}).items()}
    name, longest = max(waits.items(), key=lambda kv: kv[1])
    ratio = s_wall / max(longest, 0.001)
    print(f"longest single wait: {name} {longest:.1f} s (serial wall is {ratio:.1f}x it)")
    if lane:
        print(
            "lane: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in (lane.get("scenarios") or {}).items())
            + (f"; not used: {lane['not_used_because']}" if lane.get("not_used_because") else "")
        )
    reqs = sorted(results["requirements"], key=lambda r: r["duration"], reverse=True)
    print("slowest requirements (serial): duration, of which waiting on the engine")
    for r in reqs[: args.slowest]:
        print(f"  {r['id']:12} {r['duration']:6.2f} s {r['engine_wait']:6.2f} s {r['title'][:50]}")
    a = {r["id"]: r["verdict"] for r in results["requirements"]}
    b = {r["id"]: r["verdict"] for r in parallel[-1][1]["requirements"]}
    diff = sorted(rid for rid in a.keys() | b.keys() if a.get(rid) != b.get(rid))
    print(
        "verdicts serial vs -n: "
        + (
            "identical"
            if not diff
            else "DIFFER: " + ", ".join(f"{rid} {a.get(rid)}/{b.get(rid)}" for rid in diff)
        )
    )
    expected_file = expectations.path_for(t["engine_key"])
    if expected_file.is_file():
        mismatches = expectations.compare(a, expectations.load(expected_file), True)
        print(
            f"verdicts serial vs {expected_file.relative_to(ROOT)}: "
            + ("identical" if not mismatches else "DIFFER: " + "; ".join(mismatches))
        )
    # Each serial run's own share (its wall time against its own waits), then their median.
    shares = sorted((w - r["summary"]["engine_wait"]) / w for w, r in serial)
    if len(shares) > 1:
        print(f"overhead share of each serial run: {shares[0]:.2f} to {shares[-1]:.2f}")
    print(f"overhead share: {statistics.median(shares):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
