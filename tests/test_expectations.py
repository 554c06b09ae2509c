"""The suites against managed Docker and Podman give the verdicts their expectation files record.

This is how CI stays green while reporting real deviations, and how a
deviation that appears or disappears is noticed.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("suite", ["docker_suite", "podman_suite"])
def test_verdicts_match_expectation_file(suite, request):
    run = request.getfixturevalue(suite).outcome
    exp = run.results.get("expectations")
    assert exp is not None, f"no expectation file was used:\n{run.output[-3000:]}"
    assert not exp["mismatches"], (
        f"verdicts differ from {exp['file']}:\n  " + "\n  ".join(exp["mismatches"])
    )


@pytest.mark.parametrize("suite", ["docker_suite", "podman_suite"])
def test_run_covers_the_catalogue(suite, request):
    from engine_conformance.requirements import Catalogue

    results = request.getfixturevalue(suite).outcome.results
    judged = {r["id"] for r in results["requirements"]}
    assert judged == set(Catalogue.load()), "some requirement has no check in suites/"
