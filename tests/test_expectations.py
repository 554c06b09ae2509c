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
        pytest.skip(
            f"no expectation file for {key}: judged, but nothing to compare with "
            f"(suites/expectations/{key}.yaml; see README, Expectations)"
        )
    # Exactly the release gate a user gets from `run --expectations` (no --strict): a
    # regression or a change fails; a fix is reported and asks for the file to be updated.
    lines = [f"regression: {x}" for x in exp["regressions"]]
    lines += [f"changed: {x}" for x in exp["changed"]]
    assert exp["passed"], f"the gate failed against {exp['file']}:\n  " + "\n  ".join(lines)
    for fixed in exp["fixed"]:
        warnings.warn(f"fixed: update the expectations ({exp['file']}): {fixed}", stacklevel=1)


def test_run_covers_the_catalogue(suite, request):
    from engine_conformance.catalogue.requirements import Catalogue

    results = request.getfixturevalue(suite).outcome.results
    judged = {r["id"] for r in results["requirements"]}
    assert judged == set(Catalogue.load()), "some requirement has no check in suites/"


def test_levels_follow_the_api_version_judged(docker_suite, docker28_suite):
    # v1.48 documents what v1.41 leaves to the reference engine: PULL-003 (tag takes
    # precedence) is SHOULD at Docker 20.10's 1.41 and MUST at Docker 28.5's 1.51, each
    # run showing the level it judged at and the basis in force there.
    def judged(run, rid):
        results = run.outcome.results
        return next(r for r in results["requirements"] if r["id"] == rid), results["target"]

    old, old_target = judged(docker_suite, "PULL-003")
    new, new_target = judged(docker28_suite, "PULL-003")
    assert (old_target["api_version"], new_target["api_version"]) == ("1.41", "1.51")
    assert (old["level"], old["judged_at"]) == ("SHOULD", "1.41")
    assert [b["kind"] for b in old["basis"]] == ["reference"]
    assert (new["level"], new["judged_at"]) == ("MUST", "1.51")
    (document,) = [b for b in new["basis"] if b["kind"] == "document"]
    assert "`tag` takes precedence" in document["quote"]
