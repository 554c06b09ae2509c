"""findings.md (draft bug reports), docs/findings.md (CI's deviations) and reports that name
no directory of the machine that wrote them; no live engine needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine_conformance.base import paths
from engine_conformance.catalogue import expectations
from engine_conformance.judge.reproducer import curl_for_evidence
from engine_conformance.judge.verdicts import counts, scores
from engine_conformance.reports import findings
from engine_conformance.reports.report import REPORT_FILES, portable, validate, write_reports
from engine_conformance.run.runner import ROOT

REQUEST = "POST /v1.41/images/create?fromImage=127.0.0.1%3A5000%2Fectest-0123abcd%2Fsingle&tag=v1"


def _entry(rid: str, level: str, verdict: str, **extra: object) -> dict:
    basis = {
        "MUST": {
            "kind": "document",
            "versions": ">=1.24",
            "at": "response 404",
            "quote": "repository does not exist or no read access",
            "level": "MUST",
        },
        "SHOULD": {
            "kind": "rfc",
            "versions": ">=1.24",
            "source": "RFC 9110 §15.5",
            "keyword": "none",
            "quote": "the client seems to have erred",
            "level": "SHOULD",
        },
        "INFO": {"kind": "observation", "versions": ">=1.24", "note": "who knows", "level": "INFO"},
    }[level]
    return {
        "id": rid,
        "title": f"A pull refused for lack of read access answers 404 ({rid})",
        "level": level,
        "suite": rid.split("-")[0].lower(),
        "versions": ">=1.24",
        "spec": "spec text",
        "basis": [basis],
        "judged_at": "1.41",
        "verdict": verdict,
        "reason": "",
        "duration": 0.1,
        "engine_wait": 0.05,
        "evidence": [],
        "observations": {},
        "cases": [],
    } | extra


def fake_results(report_dir: Path, home: Path) -> dict:
    """A run as the harness writes it, with absolute paths wherever the harness puts them."""
    ev = {
        "request": REQUEST,
        "request_headers": {},
        "status": 500,
        "headers": {},
        "first_messages": [{"message": "unauthorized: authentication required"}],
        "last_message": None,
        "message_count": 1,
        "framing_errors": [],
        "body": None,
        "timed_out": False,
        "incomplete": None,
    }
    reqs = [
        _entry(
            "AUTH-003",
            "MUST",
            "fail",
            reason="no-header: HTTP 500 before the stream, expected HTTP 404 (documented: "
            "404 'repository does not exist or no read access')",
            evidence=[ev],
            reference_deviates=["docker-20.10"],
            reproducers=[
                {
                    "path": "reproducers/AUTH-003-1",
                    "case": "test_refused_pull_is_404[no-header]",
                    "command": "sh reproducers/AUTH-003-1/reproduce.sh",
                }
            ],
        ),
        _entry("AUTH-004", "MUST", "pass"),
        _entry(
            "SCHEMA-004",
            "SHOULD",
            "fail",
            reason="1 distinct finding",
            observations={
                "findings": [
                    {
                        "requirement": "SCHEMA-004",
                        "shape": "import -> HTTP 500",
                        "detail": "HTTP 500 for a request that is the client's fault",
                        "requests": 4,
                        "request": "POST /v1.41/images/create?fromSrc=-&changes=RUN+true",
                        "kind": "import",
                        "generation": "positive",
                        "status": 500,
                        "answer": '{"message":"invalid change"}\n',
                        "reproducer": "curl -sS -i --unix-socket /var/run/docker.sock -X POST "
                        f"--data-binary @{report_dir}/reproducers/SCHEMA-004-2/"
                        "bodies/1.bin 'http://localhost/v1.41/images/create'",
                        "body_file": f"{report_dir}/reproducers/SCHEMA-004-2/bodies/1.bin",
                        "bundle": "reproducers/SCHEMA-004-2",
                    }
                ]
            },
        ),
        _entry(
            "PULL-010",
            "INFO",
            "fail",
            reason="the repeat pull's status lines do not say the image is up to date",
        ),
    ]
    summary = counts(reqs) | {
        "gating_failures": 2,
        "engine_wait": 0.2,
        "by_level": {lv: counts(r for r in reqs if r["level"] == lv) for lv in scores(reqs)},
        "by_suite": {
            s: counts(r for r in reqs if r["suite"] == s)
            for s in dict.fromkeys(r["suite"] for r in reqs)
        },
        "score": scores(reqs),
    }
    ca = report_dir / "tls" / "ca.crt"
    return {
        "tool": {"name": "engine-conformance", "version": "0.1.0"},
        "run": {
            "started": "2026-12-05T00:00:00Z",
            "duration": 1.0,
            "python": "3.11.7",
            "suite_version": "0.1.0",
            "seed": 1,
            "prefix": "ectest-0123abcd",
            "command_line": [
                f"{ROOT}/.venv/lib/python3.11/site-packages/pytest/__main__.py",
                f"{ROOT}/suites",
                "--rootdir",
                str(ROOT),
                "--report-dir",
                str(report_dir),
                "--tls-dir",
                str(home / ".ec-tls"),
                "--expectations",
                str(home / "gate" / "mine.yaml"),
            ],
            "complete": True,
            "interrupted": False,
            "cleanup_removed": [],
            "preflight": {
                "registry": {
                    "status": "failed",
                    "reason": f"copy {ca} to /etc/docker/certs.d/"
                    f"10.0.0.1:5000/ca.crt (or {home}/.ec-tls/"
                    "ca.crt)",
                }
            },
        },
        "target": {
            "url": "unix:///var/run/docker.sock",
            "engine": "docker",
            "version": "20.10.24+dfsg1",
            "engine_key": "docker-20.10",
            "image_store": "graphdriver",
            "api_version": "1.41",
            "max_api_version": "1.41",
            "min_api_version": "1.12",
            "os": "linux",
            "arch": "amd64",
            "storage_driver": "overlay2",
        },
        "summary": summary,
        "requirements": reqs,
        "expectations": {
            "file": str(home / "gate" / "mine.yaml"),
            "mismatches": [],
            "passed": False,
            "strict": False,
            "regressions": ["X-001: boom"],
            "fixed": [],
            "changed": [],
        },
    }


def _expectations(tmp: Path) -> Path:
    d = tmp / "expectations"
    d.mkdir()
    (d / "docker-20.10.yaml").write_text("verdicts:\n  AUTH-003: fail\n  SCHEMA-004: fail\n")
    (d / "podman-4.3.yaml").write_text("verdicts:\n  AUTH-003: pass\n  SCHEMA-004: fail\n")
    (d / "docker-26.1.yaml").write_text("verdicts:\n  AUTH-003: pass\n  SCHEMA-004: pass\n")
    return d


def test_drafts_one_section_per_deviation_info_last(tmp_path):
    results = fake_results(tmp_path / "r", tmp_path / "home")
    exp = _expectations(tmp_path)
    text = findings.drafts(results, exp)
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert len(heads) == 3, heads  # AUTH-003, the SCHEMA-004 finding, then the INFO list
    assert heads[0] == (
        "## docker 20.10.24+dfsg1 (graphdriver): HTTP 500 before the stream "
        "— POST /images/create: expected a pull refused for lack of read "
        "access answers 404 (AUTH-003)"
    )
    assert heads[1].startswith("## docker 20.10.24+dfsg1 (graphdriver): import -> HTTP 500")
    assert heads[2] == "## Observations that do not gate (INFO)"
    assert text.index("PULL-010") > text.index(heads[2])
    auth = findings.sections(results, exp)["AUTH-003"]
    assert auth in text
    assert "- Engine: docker 20.10.24+dfsg1 · image store graphdriver" in auth
    assert "judged at Engine API 1.41" in auth and "linux/amd64" in auth
    assert "- Requirement: AUTH-003 (MUST at Engine API 1.41)" in auth
    assert (
        '- Basis: Engine API v1.41, response 404: "repository does not exist or no read access"'
    ) in auth
    assert "**Expected**: HTTP 404 (documented:" in auth
    assert (
        "    sh reproducers/AUTH-003-1/reproduce.sh    # test_refused_pull_is_404[no-header]"
        in auth
    )
    assert "Engines that pass (per their expectation files): docker-26.1, podman-4.3." in auth
    schema = findings.sections(results, exp)["SCHEMA-004"]
    assert "RFC 9110 §15.5 (an RFC on HTTP itself" in schema
    assert "    sh reproducers/SCHEMA-004-2/reproduce.sh" in schema
    assert "Engines that pass (per their expectation files): docker-26.1." in schema


def test_drafts_without_bundles_give_a_curl(tmp_path):
    results = fake_results(tmp_path / "r", tmp_path / "home")
    del results["requirements"][0]["reproducers"]
    text = findings.sections(results, tmp_path / "none")["AUTH-003"]
    assert (
        "the report has no bundle" in text and "curl -sS --unix-socket /var/run/docker.sock" in text
    )
    assert "Engines that pass" not in text  # no expectation files: no claim either


def test_reports_name_no_directory_of_this_machine(tmp_path, monkeypatch):
    home, report_dir = tmp_path / "home", tmp_path / "reports" / "run1"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path.parent)  # the reports' directory is not below where it ran
    monkeypatch.setenv("PWD", str(tmp_path.parent))
    results = fake_results(report_dir, home)
    written = write_reports(report_dir, results)
    assert [p.name for p in written] == list(REPORT_FILES) and "findings.md" in REPORT_FILES
    machine = {str(ROOT), str(tmp_path), str(home), "/tmp/"}
    for path in written:
        text = path.read_text()
        hits = sorted(m for m in machine if m in text)
        assert not hits, f"{path.name} names {hits}"
    out = json.loads((report_dir / "results.json").read_text())
    validate(out)  # the fabricated bundle fields follow the schema too
    gate = f"{tmp_path.name}/home/gate/mine.yaml"  # relative to where it ran, before ~
    assert out["expectations"]["file"] == gate
    assert out["run"]["command_line"][:4] == [
        ".venv/lib/python3.11/site-packages/pytest/__main__.py",
        "suites",
        "--rootdir",
        ".",
    ]
    assert out["run"]["command_line"][5] == f"{tmp_path.name}/reports/run1"
    assert f"gate FAILED against {gate}" in (report_dir / "report.html").read_text()
    finding = out["requirements"][2]["observations"]["findings"][0]
    assert finding["body_file"] == (
        f"{tmp_path.name}/reports/run1/reproducers/SCHEMA-004-2/bodies/1.bin"
    )


def test_paths_as_the_user_wrote_them(tmp_path):
    results = {
        "run": {
            "command_line": [
                "engine-conformance",
                "run",
                "--report-dir",
                "out/",
                "--expectations=mine.yaml",
            ]
        },
        "expectations": {"file": "/elsewhere/x/mine.yaml"},
        "reason": "see /srv/a/b/out/pytest.log and /srv/a/b/out",
        "target": {"url": "unix:///srv/a/b/out/s.sock"},
    }
    out = portable(results, Path("/srv/a/b/out"), cwd=Path("/nowhere/at/all"))
    assert out["expectations"]["file"] == "mine.yaml"
    assert out["reason"] == "see out/pytest.log and out"
    assert out["target"] == results["target"]  # the engine's address is the engine's
    absolute = portable(
        results | {"run": {"command_line": ["--report-dir", "/srv/a/b/out"]}},
        Path("/srv/a/b/out"),
        cwd=Path("/nowhere/at/all"),
    )
    assert absolute["reason"] == "see REPORT_DIR/pytest.log and REPORT_DIR"


def test_a_managed_engines_directory_is_engine_dir(tmp_path):
    # The suite's own engine lives in a directory gone after the run: reports call it
    # $ENGINE_DIR everywhere, and the curl lines keep it expandable. Any other engine's
    # socket (no marker in its directory) stays as given.
    engine = tmp_path / "ec-docker-x"
    engine.mkdir()
    (engine / paths.MANAGED_MARKER).write_text("")
    sock = f"unix://{engine}/docker.sock"
    curl = curl_for_evidence(sock, {"request": "POST /v1.41/images/create?fromImage=a"})
    results = {
        "target": {"url": sock, "engine": "docker"},
        "reason": f"curl: {curl}",
        "evidence": {"said": f"open {engine}/root/x"},
    }
    out = portable(results, tmp_path / "out", cwd=Path("/nowhere/at/all"))
    assert out["target"] == {"url": "unix://$ENGINE_DIR/docker.sock", "engine": "docker"}
    assert '--unix-socket "$ENGINE_DIR/docker.sock"' in curl_for_evidence(
        out["target"]["url"], {"request": "POST /v1.41/images/create?fromImage=a"}
    )
    assert str(engine) not in out["reason"] and "$ENGINE_DIR/docker.sock" in out["reason"]
    # The engine's words, as it said them, but for its private directory's name.
    assert out["evidence"] == {"said": "open $ENGINE_DIR/root/x"}
    (engine / paths.MANAGED_MARKER).unlink()
    assert (
        portable(results, tmp_path / "out", cwd=Path("/nowhere/at/all"))["target"]
        == results["target"]
    )


def test_run_commands_pin_only_a_version_other_than_the_default():
    t = {"api_version": "1.51", "max_api_version": "1.51"}
    assert "--api-version 1.51" in findings._run_command("docker28", t, "AUTH-003")
    t = {"api_version": "1.44", "max_api_version": "1.45"}
    assert "--api-version" not in findings._run_command("docker26", t, "AUTH-003")


def _expected_fails() -> set[tuple[str, str]]:
    return {
        (path.stem, rid)
        for path in expectations.EXPECTATIONS_DIR.glob("*.yaml")
        for rid, verdict in expectations.load(path).items()
        if verdict == "fail"
    }


def test_docs_findings_is_current_with_the_expectation_files():
    doc = ROOT / "docs" / "findings.md"
    assert doc.is_file(), "docs/findings.md is missing: run the tests, then scripts/update-matrix"
    listed, want = findings.listed(doc.read_text()), _expected_fails()
    stale = [f"{k} {rid}: not listed" for k, rid in sorted(want - listed)]
    stale += [f"{k} {rid}: listed, not a fail" for k, rid in sorted(listed - want)]
    assert not stale, (
        "docs/findings.md is stale against suites/expectations/ (run the tests, "
        "then scripts/update-matrix): " + "; ".join(stale[:10])
    )


def test_docs_findings_gives_each_deviation_its_commands():
    text = (ROOT / "docs" / "findings.md").read_text()
    assert (
        "engine-conformance run --managed docker26-containerd --requirement IMPORT-032"
        " --report-dir REPORT_DIR" in text
    )
    assert "sh REPORT_DIR/reproducers/IMPORT-032-1/reproduce.sh" in text
    assert "engine-conformance reproduce REPORT_DIR IMPORT-032" in text
    assert text.count("engine-conformance reproduce REPORT_DIR ") == len(_expected_fails())
    assert os.sep + "tmp" + os.sep not in text and str(ROOT) not in text
