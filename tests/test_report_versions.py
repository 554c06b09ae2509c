"""The API-version axis: one report, requirement x version."""

from __future__ import annotations

import json
import subprocess
import sys

from engine_conformance.reports.axis import all_versions, version_tuple
from engine_conformance.reports.report import validate
from engine_conformance.run.runner import ROOT


def test_all_means_the_engines_range_within_the_catalogues_and_the_suites():
    assert all_versions("1.12", "1.41", catalogue_min="1.24") == [f"1.{m}" for m in range(24, 42)]
    assert all_versions("1.24", "1.45", catalogue_min="1.24")[-1] == "1.44"  # suite's maximum
    assert all_versions("1.30", "1.41", catalogue_min="1.24")[0] == "1.30"  # engine's minimum


def test_run_across_versions_gives_one_report(docker, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine_conformance",
            "run",
            "--target",
            docker.target,
            "--api-versions",
            "1.41,1.23",
            "--requirement",
            "ERRORS-005",
            "--requirement",
            "ERRORS-003",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # ERRORS-005 fails at 1.41
    results = json.loads((tmp_path / "results.json").read_text())
    validate(results)
    assert results["run"]["api_versions"] == ["1.23", "1.41"]
    by_id = {r["id"]: r for r in results["requirements"]}
    # The catalogue's requirements apply from 1.24: below, each is a skip, not a verdict.
    assert by_id["ERRORS-005"]["versions_judged"] == {"1.23": "skip", "1.41": "fail"}
    assert by_id["ERRORS-003"]["versions_judged"] == {"1.23": "skip", "1.41": "pass"}
    assert set(results["summary"]["by_api_version"]) == {"1.23", "1.41"}
    assert "ERRORS-005   1.23 skip; 1.41 fail" in proc.stdout
    page = (tmp_path / "report.html").read_text()
    assert "Requirement × API version" in page and "<table class=m id=versions>" in page
    for version in ("1.23", "1.41"):
        assert (tmp_path / f"api-{version}" / "results.json").is_file()


def test_api_versions_outside_the_engine_or_not_versions_are_usage_errors(docker):
    for spec, words in (
        ("1.41,x", "API version x is not an API version"),
        ("1.41,1.99", "API version 1.99 is outside"),
    ):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "engine_conformance",
                "run",
                "--target",
                docker.target,
                "--api-versions",
                spec,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_all_runs_every_version_the_engine_serves_end_to_end(docker, tmp_path):
    # One cheap requirement keeps the runs (1.12 to 1.41 on Docker 20.10: the catalogue
    # has requirements below 1.24) short; ERRORS-003 applies from 1.24.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine_conformance",
            "run",
            "--target",
            docker.target,
            "--api-versions",
            "all",
            "--requirement",
            "ERRORS-003",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    validate(results)
    target = results["target"]
    expected = all_versions(target["min_api_version"], target["max_api_version"])
    assert len(expected) > 2 and results["run"]["api_versions"] == expected
    (errors_003,) = [r for r in results["requirements"] if r["id"] == "ERRORS-003"]
    assert errors_003["versions_judged"] == {
        v: "pass" if version_tuple(v) >= (1, 24) else "skip" for v in expected
    }
    assert all((tmp_path / f"api-{v}" / "results.json").is_file() for v in expected)
