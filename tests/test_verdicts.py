"""Verdict rules, without an engine and without pytest's machinery: verdicts.py is plain data in."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine_conformance.catalogue.requirements import Catalogue
from engine_conformance.judge.verdicts import (
    Precondition,
    Record,
    aggregate,
    build_results,
    classify,
    merge,
    precondition,
    tolerated,
)


class TargetHung(Exception):
    pass


@pytest.mark.parametrize("phase", ["setup", "call", "teardown"])
def test_precondition_is_error_in_any_phase(phase):
    assert classify(phase, "failed", Precondition, "the engine never fetched the layer") == (
        "error",
        "the engine never fetched the layer",
    )


def test_only_an_assertion_in_the_call_is_fail():
    assert classify("call", "failed", AssertionError, "pulled 2 tags\nassert 2 == 1") == (
        "fail",
        "pulled 2 tags",
    )
    verdict, reason = classify("setup", "failed", AssertionError, "fixture check")
    assert (verdict, reason) == ("error", "setup: fixture check")
    assert classify("teardown", "failed", AssertionError, "x")[0] == "error"


def test_any_other_exception_is_error_naming_it():
    assert classify("call", "failed", TargetHung, "no answer in 60 s") == (
        "error",
        "TargetHung: no answer in 60 s",
    )
    assert classify("teardown", "failed", KeyError, "'Id'") == ("error", "teardown: KeyError: 'Id'")
    assert classify("call", "failed", None, "")[0] == "error"


def test_passes_and_skips():
    assert classify("call", "passed") == ("pass", "")
    assert classify("setup", "passed") == (None, "")
    assert classify("teardown", "passed") == (None, "")
    assert classify("setup", "skipped", message="applies to API 1.44+") == (
        "skip",
        "applies to API 1.44+",
    )
    assert classify("call", "skipped", message="no journal")[0] == "skip"


def test_precondition_helper():
    precondition(True, "never raised")
    with pytest.raises(Precondition, match="absent before"):
        precondition([], "the image was not absent before the check")


def phases(*outcomes: tuple[str, str, type[BaseException] | None, str]) -> Record:
    """The record of one item after its phases, folded as the plugin does."""
    record = None
    for phase, outcome, exc, message in outcomes:
        verdict, reason = classify(phase, outcome, exc, message)
        if verdict is not None:
            record = merge(record, Record("t::x", verdict, reason, duration=1.0))
    assert record is not None
    return record


def test_teardown_error_does_not_overwrite_a_fail():
    record = phases(
        ("setup", "passed", None, ""),
        ("call", "failed", AssertionError, "engine answered 500"),
        ("teardown", "failed", RuntimeError, "image still in use"),
    )
    assert (record.verdict, record.reason) == ("fail", "engine answered 500")
    assert record.teardown_error == "teardown: RuntimeError: image still in use"
    assert record.case()["teardown_error"] == record.teardown_error
    assert record.duration == 2.0


def test_teardown_error_after_a_pass_is_error():
    record = phases(
        ("call", "passed", None, ""), ("teardown", "failed", RuntimeError, "cannot delete")
    )
    assert (record.verdict, record.reason) == ("error", "teardown: RuntimeError: cannot delete")


def test_teardown_error_keeps_the_first_error():
    record = phases(
        ("setup", "failed", Precondition, "registry unreachable"),
        ("teardown", "failed", RuntimeError, "cannot delete"),
    )
    assert (record.verdict, record.reason) == ("error", "registry unreachable")
    assert "cannot delete" in record.teardown_error


def test_aggregate_fail_beats_error_beats_pass_beats_skip():
    def r(verdict: str, reason: str = "") -> Record:
        return Record(f"t::{verdict}{reason}", verdict, reason)

    assert aggregate([r("pass"), r("error", "e"), r("fail", "f"), r("skip", "s")]) == ("fail", "f")
    assert aggregate([r("pass"), r("error", "e1"), r("error", "e1"), r("error", "e2")]) == (
        "error",
        "e1; e2",
    )
    assert aggregate([r("skip", "s"), r("pass")]) == ("pass", "")
    assert aggregate([r("skip", "a"), r("skip", "b")]) == ("skip", "a; b")


def test_tolerated():
    assert tolerated("fail", gating=False, expected=None, checking=False) == "observation"
    assert tolerated("fail", gating=True, expected=None, checking=False) is None
    assert tolerated("error", gating=False, expected=None, checking=False) is None
    assert tolerated("error", gating=True, expected="error", checking=True) == "expected-deviation"
    assert tolerated("fail", gating=True, expected="error", checking=True) is None
    assert tolerated("pass", gating=True, expected="fail", checking=True) is None


def test_build_results_per_requirement():
    catalogue = Catalogue.load()
    first, second = list(catalogue)[:2]
    records = {
        first: [
            Record(
                "t::a",
                "fail",
                "deviated",
                1.5,
                evidence=[{"status": 500}],
                teardown_error="teardown: oops",
            ),
            Record("t::b", "pass", "", 0.5, observations={"k": 1}),
        ],
        second: [Record("t::c", "error", "preflight: unreachable")],
    }
    results = build_results(
        catalogue,
        records,
        {"engine": "docker"},
        {"prefix": "ectest-x", "preflight": {"registry": {"status": "ok"}}},
        started=0.0,
    )
    assert results["run"]["prefix"] == "ectest-x"
    assert results["run"]["preflight"] == {"registry": {"status": "ok"}}
    by_id = {r["id"]: r for r in results["requirements"]}
    assert set(by_id) == {first, second}
    assert (by_id[first]["verdict"], by_id[first]["reason"]) == ("fail", "deviated")
    assert by_id[first]["duration"] == 2.0
    assert by_id[first]["observations"] == {"k": 1}
    assert by_id[first]["cases"][0]["teardown_error"] == "teardown: oops"
    assert by_id[second]["verdict"] == "error"
    summary = results["summary"]
    assert (summary["fail"], summary["error"], summary["pass"]) == (1, 1, 0)
    assert summary["gating_failures"] == (catalogue[first].level != "INFO")


def test_verdicts_module_does_not_import_pytest():
    code = "import sys, engine_conformance.judge.verdicts; sys.exit('pytest' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
