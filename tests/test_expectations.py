"""The suites against managed Docker and Podman give the verdicts their expectation files record.

This is how CI stays green while reporting real deviations, and how a
deviation that appears or disappears is noticed.
"""

from __future__ import annotations

import warnings

import pytest


def test_verdicts_match_expectation_file(suite, request):
    run = request.getfixturevalue(suite).outcome
    exp = run.results.get("expectations")
    if exp is None:
        key = run.results["target"]["engine_key"]
        pytest.skip(f"no expectation file for {key}: judged, but nothing to compare with "
                    f"(suites/expectations/{key}.yaml; see README, Expectations)")
    # Exactly the release gate a user gets from `run --expectations` (no --strict): a
    # regression or a change fails; a fix is reported and asks for the file to be updated.
    lines = [f"regression: {x}" for x in exp["regressions"]]
    lines += [f"changed: {x}" for x in exp["changed"]]
    assert exp["passed"], f"the gate failed against {exp['file']}:\n  " + "\n  ".join(lines)
    for fixed in exp["fixed"]:
        warnings.warn(f"fixed: update the expectations ({exp['file']}): {fixed}", stacklevel=1)


def test_run_covers_the_catalogue(suite, request):
    from engine_conformance.requirements import Catalogue

    results = request.getfixturevalue(suite).outcome.results
    judged = {r["id"] for r in results["requirements"]}
    assert judged == set(Catalogue.load()), "some requirement has no check in suites/"
