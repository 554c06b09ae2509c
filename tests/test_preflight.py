"""The preflight: an engine that cannot reach the suite's services is never blamed for it.

Against a Podman whose registries.conf does not list the lab registry as
insecure, every check that needs the registry is ``error`` with the fix (never
``fail``, never ``pass``), the checks that need neither are judged as usual,
and the run exits with its own code. Against every engine CI judges, the
preflight passes and costs little.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from deviant_proxy.proxy import Deviation, Request
from deviant_proxy.streaming import StreamingProxy
from engine_conformance.base.exits import CHILD_SUITE_UNREACHABLE
from engine_conformance.base.paths import ROOT
from engine_conformance.catalogue import expectations
from engine_conformance.engine.engines import EngineUnavailable, ManagedPodman, free_port
from engine_conformance.run.runner import run_suite

# schema: the property phase steers its pulls and URL imports to the lab.
LAB_SUITES = {"pull", "auth", "faults", "progress", "concurrency", "schema"}
"""Suites whose every check pulls from the lab registry."""
PREFLIGHT_SECONDS = 10.0
"""A generous bound: a small image and a small archive, from this machine."""


@pytest.fixture(scope="module")
def unconfigured_podman() -> Iterator[str]:
    """A managed Podman with no insecure registry: it cannot pull from the lab over HTTP."""
    managed = ManagedPodman()
    if not managed.available():
        pytest.skip("podman is not installed (bash scripts/setup installs it)")
    try:
        managed.start()
    except EngineUnavailable as exc:
        pytest.fail(f"managed podman would not start: {exc}")
    try:
        yield managed.target
    finally:
        managed.stop()


def test_podman_without_insecure_registry_is_error_never_fail(unconfigured_podman, tmp_path):
    out = run_suite(unconfigured_podman, tmp_path)
    assert out.returncode == CHILD_SUITE_UNREACHABLE, out.output[-3000:]
    assert out.results is not None, out.output[-3000:]
    preflight = out.results["run"]["preflight"]
    assert preflight["registry"]["status"] == "failed"
    assert preflight["file_server"]["status"] == "ok"  # a URL import needs no registry config
    reason = preflight["registry"]["reason"]
    address = re.search(r"lab registry (127\.0\.0\.1:\d+)", reason)
    assert address, reason
    assert f'[[registry]] location = "{address[1]}" insecure = true' in reason
    assert "server gave HTTP response to HTTPS client" in reason  # what Podman said
    assert "\n" not in reason
    lab = [r for r in out.results["requirements"] if r["suite"] in LAB_SUITES]
    assert {r["verdict"] for r in lab} <= {"error", "skip"}, [
        (r["id"], r["verdict"]) for r in lab if r["verdict"] not in ("error", "skip")
    ]
    errors = [r for r in lab if r["verdict"] == "error"]
    assert len(errors) > len(lab) / 2
    assert {r["reason"] for r in errors} == {reason}  # one shared reason
    # The checks that need no registry are judged as on a Podman that can reach it.
    expected = expectations.load(expectations.path_for(out.results["target"]["engine_key"]))
    others = {
        r["id"]: r["verdict"] for r in out.results["requirements"] if r["suite"] not in LAB_SUITES
    }
    assert {"ERRORS-001", "IMPORT-001", "IMPORT-020"} <= others.keys()
    assert others == {rid: expected[rid] for rid in others}


def test_cli_exits_6_with_the_fix_and_keeps_expectations(unconfigured_podman, tmp_path):
    expectation_file = tmp_path / "podman.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine_conformance",
            "run",
            "--target",
            unconfigured_podman,
            "--requirement",
            "PULL-001",
            "--requirement",
            "ERRORS-001",
            "--expectations",
            str(expectation_file),
            "--update-expectations",
            "--report-dir",
            str(tmp_path / "r"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 6, proc.stdout[-2000:] + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "insecure = true" in lines[0], proc.stderr
    assert not expectation_file.exists()  # verdicts about the setup are no expectations
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    verdicts = {r["id"]: r["verdict"] for r in results["requirements"]}
    assert verdicts["PULL-001"] == "error"
    assert verdicts["ERRORS-001"] in ("pass", "fail")


def test_only_checks_that_need_a_service_wait_for_it(unconfigured_podman, tmp_path):
    out = run_suite(unconfigured_podman, tmp_path, requirements=["ERRORS-001", "IMPORT-001"])
    assert out.returncode != CHILD_SUITE_UNREACHABLE, out.output[-3000:]
    assert out.results["run"]["preflight"] == {
        "registry": {"status": "not needed"},
        "file_server": {"status": "not needed"},
    }


def _elsewhere(closed: int) -> Deviation:
    """A proxy that sends the engine to a closed port instead of the registry and file server."""

    def rewrite(req: Request) -> Request:
        changes = {}
        for key in ("fromImage", "fromSrc"):
            value = req.param(key)
            if value and value != "-":
                changes[key] = re.sub(
                    r"^(http://)?127\.0\.0\.1:\d+",
                    lambda m: f"{m[1] or ''}127.0.0.1:{closed}",
                    value,
                )
        return req.with_params(**changes)

    return Deviation("services-elsewhere", request=rewrite)


def test_docker_that_cannot_reach_either_service(docker, tmp_path):
    deviation = _elsewhere(free_port())
    with StreamingProxy(docker.target, [deviation]) as proxy:
        out = run_suite(
            proxy.target,
            tmp_path,
            requirements=["PULL-001", "IMPORT-020", "IMPORT-001", "ERRORS-001"],
        )
    assert out.returncode == CHILD_SUITE_UNREACHABLE, out.output[-3000:]
    preflight = out.results["run"]["preflight"]
    assert {s: p["status"] for s, p in preflight.items()} == {
        "registry": "failed",
        "file_server": "failed",
    }
    pull, url_import = out.requirement("PULL-001"), out.requirement("IMPORT-020")
    assert pull["verdict"] == url_import["verdict"] == "error"
    # Connection refused: the engine is not on this machine's network. No setting of the
    # engine's makes another machine's loopback reachable, so no insecure-registries advice.
    assert "connection refused" in pull["reason"] and "--serve-host" in pull["reason"]
    assert '"insecure-registries": ["127.0.0.1:' not in pull["reason"]
    assert "the registry saw no request" in pull["reason"]
    assert "--serve-host" in url_import["reason"]
    assert "the file server saw no request" in url_import["reason"]
    assert out.verdict("IMPORT-001") == out.verdict("ERRORS-001") == "pass"


def test_preflight_passes_on_every_engine_ci_judges(suite, request):
    results = request.getfixturevalue(suite).outcome.results
    for service, probe in results["run"]["preflight"].items():
        assert probe["status"] == "ok", f"{service}: {probe['reason']}"
        assert probe["seconds"] < PREFLIGHT_SECONDS, f"{service} took {probe['seconds']} s"
        assert probe["service_saw"], service


def test_a_hung_engine_is_told_it_hung_not_how_to_reach_the_registry(docker, tmp_path):
    # The engine never answers the canary pull: nothing about the registry was learned,
    # so the reason must say the engine hung, and give no registry setting to change.
    hung = Deviation(
        "hangs-on-the-canary",
        hang=True,
        match=lambda req: (
            req.endpoint == "/images/create" and "preflight" in (req.param("fromImage") or "")
        ),
    )
    with StreamingProxy(docker.target, [hung]) as proxy:
        out = run_suite(
            proxy.target, tmp_path, requirements=["PULL-001"], extra=["--request-timeout", "3"]
        )
    assert out.returncode == CHILD_SUITE_UNREACHABLE, out.output[-3000:]
    probe = out.results["run"]["preflight"]["registry"]
    assert (probe["status"], probe["cause"]) == ("failed", "hung"), probe
    assert "did not answer the canary request within 3 s" in probe["reason"]
    assert "nothing about its reach" in probe["reason"]
    assert "insecure" not in probe["reason"] and "--serve-host" not in probe["reason"]
    assert out.verdict("PULL-001") == "error"
