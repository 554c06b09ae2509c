"""The release gate: --expectations FILE passes on matching verdicts, fails on a regression
or a change, and reports a requirement that newly passes as "fixed: update the expectations"
(failing only with --strict)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine_conformance.catalogue.expectations import gate
from engine_conformance.run.runner import ROOT


def test_matching_verdicts_pass():
    g = gate({"A-001": "pass", "B-001": "fail"}, {"A-001": "pass", "B-001": "fail"}, True)
    assert g.passed and g.mismatches == []


def test_expected_pass_that_does_not_is_a_regression():
    for got in ("fail", "error", "skip"):
        g = gate({"A-001": got}, {"A-001": "pass"}, True)
        assert not g.passed and g.regressions == [f"A-001: expected pass, got {got}"]


def test_newly_passing_is_fixed_and_fails_only_when_strict():
    g = gate({"A-001": "pass"}, {"A-001": "fail"}, True)
    assert g.passed and g.fixed == ["A-001: expected fail, got pass"]
    assert g.lines() == ["fixed: update the expectations: A-001: expected fail, got pass"]
    assert not gate({"A-001": "pass"}, {"A-001": "fail"}, True, strict=True).passed


@pytest.mark.parametrize(
    "verdicts, expected, complete",
    [
        ({"A-001": "error"}, {"A-001": "fail"}, True),  # a deviation became a harness error
        ({"A-001": "fail"}, {}, True),  # the file does not know the requirement
        ({}, {"A-001": "fail"}, True),  # a complete run did not judge it
    ],
)
def test_any_other_difference_is_a_change_that_fails(verdicts, expected, complete):
    g = gate(verdicts, expected, complete)
    assert not g.passed and g.changed and not g.regressions


def test_a_selection_does_not_miss_what_it_did_not_select():
    assert gate({"A-001": "pass"}, {"A-001": "pass", "B-001": "fail"}, complete=False).passed


def _gated(docker, tmp_path, verdicts: dict[str, str], *flags: str) -> tuple[int, str, dict]:
    tmp_path.mkdir()
    exp = tmp_path / "expected.yaml"
    exp.write_text("verdicts:\n" + "".join(f"  {k}: {v}\n" for k, v in verdicts.items()))
    report = tmp_path / "r"
    args = [a for rid in verdicts for a in ("--requirement", rid)]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine_conformance",
            "run",
            "--target",
            docker.target,
            *args,
            "--expectations",
            str(exp),
            "--report-dir",
            str(report),
            *flags,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = json.loads((report / "results.json").read_text())
    return proc.returncode, proc.stdout + proc.stderr, results["expectations"]


def test_gate_end_to_end(docker, tmp_path):
    # Docker 20.10: ERRORS-005 fails (500 for a 4xx), ERRORS-003 passes.
    code, out, exp = _gated(docker, tmp_path / "a", {"ERRORS-005": "fail", "ERRORS-003": "pass"})
    assert (code, exp["passed"]) == (0, True), out
    assert "gate passed" in out
    code, out, exp = _gated(docker, tmp_path / "b", {"ERRORS-005": "pass", "ERRORS-003": "pass"})
    assert code == 1 and exp["regressions"], out
    assert "regression: ERRORS-005: expected pass, got fail" in out
    code, out, exp = _gated(docker, tmp_path / "c", {"ERRORS-005": "fail", "ERRORS-003": "fail"})
    assert code == 0 and "fixed: update the expectations: ERRORS-003" in out, out
    code, out, _ = _gated(
        docker, tmp_path / "d", {"ERRORS-005": "fail", "ERRORS-003": "fail"}, "--strict"
    )
    assert code == 1, out
