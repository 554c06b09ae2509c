"""``--registry``: the pull suites against a registry that is not the lab's own.

The real distribution registry stands in for a user's registry: the suite
pushes its images there, pulls judge as usual, and checks that need the lab
registry's journal or faults skip, saying why.
"""

from __future__ import annotations

import shutil

import pytest

from engine_conformance.run.runner import run_suite
from lab_registry.distribution import DistributionRegistry


@pytest.fixture(scope="module")
def distribution():
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (bash scripts/setup installs it)")
    with DistributionRegistry() as real:
        yield real


def test_pulls_judged_and_lab_only_checks_skip(docker, distribution, tmp_path):
    out = run_suite(
        docker.target,
        tmp_path,
        requirements=["PULL-001", "PULL-008", "FAULTS-001"],
        extra=["--registry", distribution.address],
    )
    assert out.verdict("PULL-001") == "pass", out.output[-3000:]
    assert out.verdict("PULL-008") == "pass", out.output[-3000:]
    faults = out.requirement("FAULTS-001")
    assert faults["verdict"] == "skip"
    assert "external registry" in faults["reason"]
