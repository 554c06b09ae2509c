"""Every deviation the engines show replays from its bundle after the run has gone.

The full runs of the six engines (tests/conftest.py ``full_runs``) write a bundle
per failing case and per property-phase finding. Here the bundles are copied to
a fresh directory (the run, its lab registry and file server are gone by then)
and each ``reproduce.sh`` is run against the same engine: it must say ``still
deviates``. A deviation of Podman's alone, replayed against Docker 20.10 (whose
expectation file records a pass), must say ``no longer deviates``. Replays against
one engine run one after another (a check that diffs the engine's image list must
not see another replay's images); the engines are replayed side by side.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine_conformance import expectations
from engine_conformance.replay import EXIT_NO_LONGER, EXIT_STILL, bundles_of, reproduce
from tests.conftest import ENGINE_OF

STILL, NO_LONGER = (EXIT_STILL, "still deviates"), (EXIT_NO_LONGER, "no longer deviates")


def replay_script(bundle: Path, target: str) -> subprocess.CompletedProcess[str]:
    """``sh reproduce.sh TARGET`` as a maintainer runs it (PYTHON: this interpreter)."""
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("DOCKER_HOST", None)
    return subprocess.run(["sh", str(bundle / "reproduce.sh"), target], capture_output=True,
                          text=True, timeout=300, env=env)


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


def test_every_deviation_replays_from_its_bundle(request, tmp_path):
    runs = {name: request.getfixturevalue(name) for name in ENGINE_OF}
    targets = {name: request.getfixturevalue(ENGINE_OF[name]).target for name in ENGINE_OF}
    plans: dict[str, list[tuple[Path, tuple[int, str]]]] = {name: [] for name in ENGINE_OF}
    for name, run in runs.items():
        for paths in copied_bundles(run, tmp_path / name).values():
            plans[name] += [(p, STILL) for p in paths]
    reference = expectations.load(expectations.path_for("docker-20.10"))
    podman_only = copied_bundles(runs["podman_suite"], tmp_path / "podman-on-docker")
    for rid, paths in podman_only.items():
        if reference.get(rid) == "pass":
            plans["docker_suite"].append((paths[0], NO_LONGER))

    def replay_all(name: str) -> list[str]:
        wrong = []
        for bundle, (code, word) in plans[name]:
            done = replay_script(bundle, targets[name])
            if done.returncode != code or word not in done.stdout:
                wrong.append(f"{name} {bundle.name}: exit {done.returncode}, expected {code} "
                             f"({word}):\n{done.stdout[-1500:]}{done.stderr[-800:]}")
        return wrong

    with ThreadPoolExecutor(max_workers=len(plans)) as pool:
        wrong = [w for found in pool.map(replay_all, list(plans)) for w in found]
    assert not wrong, "\n\n".join(wrong)
    assert any(code == EXIT_NO_LONGER for _, (code, _) in plans["docker_suite"])


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

    from engine_conformance.runner import run_suite

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
    from engine_conformance.runner import run_suite

    report_dir = tmp_path / "run"
    run_suite(docker.target, report_dir, requirements=["AUTH-003"])
    bundle = bundles_of(report_dir, "AUTH-003")[0]
    done = replay_script(bundle, f"unix://{tmp_path}/no.sock")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "could not judge" in done.stdout and "Traceback" not in done.stdout + done.stderr
