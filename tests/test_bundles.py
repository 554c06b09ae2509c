"""Every deviation the engines show replays from its bundle after the run has gone.

The full runs of the six engines (tests/conftest.py ``full_runs``) write a bundle
per failing case and per property-phase finding. Here the bundles are copied to
a fresh directory (the run, its lab registry and file server are gone by then)
and ``reproduce.sh`` is run against the same engine: it must say ``still
deviates``. Every failing requirement of every engine is replayed, one bundle of
each kind it left (a case, a property finding: the other bundles of a requirement
differ in parameters only), and one property-phase case per engine (each re-runs the
same phase); ``ENGINE_CONFORMANCE_EVERY_BUNDLE=1`` replays every bundle (CI's machine
has two CPUs, and each replay runs its check again). A sample
of Podman's own deviations, one per suite, replayed against Docker 20.10 (whose
expectation file records a pass) must say ``no longer deviates``. Replays of one
run's bundles go one after another: a replay serves the lab on the port the run
recorded (a Podman run's port is in the engine's configuration), and a check that
diffs the engine's image list must not see another replay's images. The six runs
are replayed side by side.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine_conformance.catalogue import expectations
from engine_conformance.run.replay import EXIT_NO_LONGER, EXIT_STILL, bundles_of, reproduce
from tests.conftest import ENGINE_OF

STILL, NO_LONGER = (EXIT_STILL, "still deviates"), (EXIT_NO_LONGER, "no longer deviates")


def replay_script(bundle: Path, target: str) -> subprocess.CompletedProcess[str]:
    """``sh reproduce.sh TARGET`` as a maintainer runs it (PYTHON: this interpreter)."""
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("DOCKER_HOST", None)
    return subprocess.run(
        ["sh", str(bundle / "reproduce.sh"), target],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def copied_bundles(run, fresh: Path) -> dict[str, list[Path]]:
    """Failing requirement -> its bundles, copied out of the run's report directory."""
    out: dict[str, list[Path]] = {}
    fresh.mkdir(parents=True)
    for req in run.outcome.results["requirements"]:
        if req["verdict"] != "fail":
            continue
        paths = bundles_of(run.report_dir, req["id"])
        assert paths, f"{req['id']} failed but has no reproducer bundle"
        for path in paths:
            shutil.copytree(path, fresh / path.name)
        out[req["id"]] = [fresh / p.name for p in paths]
    return out


def kind_of(bundle: Path) -> str:
    """``case`` or ``finding``; a case of the property phase is ``phase case``."""
    record = json.loads((bundle / "case.json").read_text())
    return "phase case" if record.get("case", "").startswith(PHASE) else record["kind"]


PHASE = "suites/test_schema.py::"
"""A SCHEMA check's bundle re-runs the whole property phase (same seed, ~20 s)."""


def chosen(bundles: dict[str, list[Path]]) -> list[Path]:
    """Every bundle with ENGINE_CONFORMANCE_EVERY_BUNDLE=1. Else, per requirement, the
    first case and the first finding, and one property-phase case for all of them: each
    such case runs the same phase again, which the first shows."""
    if os.environ.get("ENGINE_CONFORMANCE_EVERY_BUNDLE") == "1":
        return [p for paths in bundles.values() for p in paths]
    first: dict[tuple[str, str], Path] = {}
    for rid, paths in bundles.items():
        for path in paths:
            kind = kind_of(path)
            first.setdefault(("", kind) if kind == "phase case" else (rid, kind), path)
    return list(first.values())


def test_every_deviation_replays_from_its_bundle(
    request,
    tmp_path,
    docker_suite,
    docker26_suite,
    docker26_containerd_suite,
    docker28_suite,
    docker28_containerd_suite,
    podman_suite,
):
    # The six runs as arguments: collected, they run side by side, each on its own port.
    runs = {name: request.getfixturevalue(name) for name in ENGINE_OF}
    targets = {name: run.target for name, run in runs.items()}  # the engines they judged
    # Per recorded run: (bundle, target to replay it on, expected exit and word).
    plans: dict[str, list[tuple[Path, str, tuple[int, str]]]] = {n: [] for n in ENGINE_OF}
    for name, run in runs.items():
        plans[name] += [
            (p, targets[name], STILL) for p in chosen(copied_bundles(run, tmp_path / name))
        ]
        engine_dir = targets[name].removeprefix("unix://").rpartition("/")[0]
        named = [
            p.name
            for p in (tmp_path / name).iterdir()
            if engine_dir in (p / "case.json").read_text()
        ]
        assert not named, f"{name}: {named} name the managed engine's {engine_dir}"
    reference = expectations.load(expectations.path_for("docker-20.10"))
    podman_only = copied_bundles(runs["podman_suite"], tmp_path / "podman-on-docker")
    sample: dict[str, Path] = {}
    for rid, paths in podman_only.items():
        if reference.get(rid) == "pass":
            sample.setdefault(rid.split("-")[0], paths[0])
    assert len(sample) >= 4, sample
    plans["podman_suite"] += [(p, targets["docker_suite"], NO_LONGER) for p in sample.values()]

    def replay_all(name: str) -> list[str]:
        wrong, started = [], time.monotonic()
        for bundle, target, (code, word) in plans[name]:
            done = replay_script(bundle, target)
            if done.returncode != code or word not in done.stdout:
                wrong.append(
                    f"{name} {bundle.name} on {target}: exit {done.returncode}, "
                    f"expected {code} ({word}):\n{done.stdout[-1500:]}"
                    f"{done.stderr[-800:]}"
                )
        print(f"{name}: {len(plans[name])} replays in {time.monotonic() - started:.0f} s")
        return wrong

    with ThreadPoolExecutor(max_workers=len(plans)) as pool:
        wrong = [w for found in pool.map(replay_all, list(plans)) for w in found]
    assert not wrong, "\n\n".join(wrong)
    kinds = {kind_of(bundle) for plan in plans.values() for bundle, _, _ in plan}
    assert kinds == {"case", "finding", "phase case"}, kinds


def test_reproduce_reads_the_report_and_says_still_deviates(docker_suite, docker):
    # The command a maintainer runs: one line per case, then and now.
    lines: list[str] = []

    class Out:
        def write(self, text: str) -> int:
            lines.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    outcomes = reproduce(docker_suite.report_dir, "AUTH-003", docker.target, out=Out())
    text = "".join(lines)
    assert outcomes and all(o.deviates for o in outcomes), text
    assert "AUTH-003 test_refused_pull_is_404[no-header]: still deviates" in text
    assert "then: " in text and "now:  the check fails again" in text


def test_a_taken_port_moves_the_lab_and_rewrites_the_request(docker, tmp_path):
    # The recorded lab port is someone else's now: the replay serves elsewhere, names
    # the new address in the request it sends, and the deviation still shows.
    import socket

    from engine_conformance.run.runner import run_suite

    report_dir = tmp_path / "run"
    run_suite(docker.target, report_dir, requirements=["AUTH-003"])
    (bundle,) = [p for p in bundles_of(report_dir, "AUTH-003") if p.name == "AUTH-003-1"]
    recorded = bundle / "lab-1.json"
    from lab_registry import content

    host, _, port = content.address(json.loads(recorded.read_text())).rpartition(":")
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the run's TIME_WAIT
        taken.bind((host, int(port)))
        taken.listen()
        done = replay_script(bundle, docker.target)
    assert done.returncode == EXIT_STILL, done.stdout + done.stderr
    sent = next(line for line in done.stdout.splitlines() if line.strip().startswith("1. POST"))
    assert f"%3A{port}%2F" not in sent and "still deviates" in done.stdout


def test_an_unreachable_target_is_could_not_judge(tmp_path, docker):
    from engine_conformance.run.runner import run_suite

    report_dir = tmp_path / "run"
    run_suite(docker.target, report_dir, requirements=["AUTH-003"])
    bundle = bundles_of(report_dir, "AUTH-003")[0]
    done = replay_script(bundle, f"unix://{tmp_path}/no.sock")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "could not judge" in done.stdout and "Traceback" not in done.stdout + done.stderr


def test_a_taken_fixed_port_is_could_not_judge_naming_it():
    # A Podman run's --registry-port is in the engine's configuration: a re-run of the
    # check elsewhere would not be fair, so a taken one is named, not worked around.
    import socket

    from engine_conformance.run.replay import _judge_case

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        record = {
            "requirement": {"id": "PULL-003"},
            "case": "suites/test_pull.py::x",
            "run_options": ["--serve-host", "127.0.0.1", "--registry-port", str(port)],
        }
        deviates, why = _judge_case(record, "unix:///nowhere.sock", 30)
    assert deviates is None and f"127.0.0.1:{port} is in use" in why
