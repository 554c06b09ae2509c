"""The command line: one clear line and a distinct exit code for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from deviant_proxy import DeviantProxy, Deviation
from engine_conformance.base.exits import (
    CHILD_SUITE_UNREACHABLE,
    CHILD_TARGET_UNREACHABLE,
    CHILD_USAGE,
)
from engine_conformance.base.paths import ROOT
from engine_conformance.run.cli import Refusal, _verdict_code


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine_conformance", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["run", "--bogus"],
        ["frobnicate"],
        ["run", "--timeout", "0"],
        ["run", "--update-expectations"],
        ["run", "--target", "ftp://x"],
        ["run", "--serve-host", "203.0.113.9"],
    ],
)
def test_bad_option_is_exit_2(args):
    proc = cli(*args)
    assert proc.returncode == 2
    one_line(proc)


def test_unreachable_target_is_exit_3(tmp_path):
    proc = cli("run", "--target", f"unix://{tmp_path}/nothing.sock")
    assert proc.returncode == 3
    assert "cannot reach" in one_line(proc)


def test_no_engine_anywhere_is_exit_4(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    env["PATH"] = os.path.dirname(sys.executable)  # no dockerd on it
    if os.path.exists("/var/run/docker.sock"):
        pytest.skip("this machine has an engine at the standard socket")
    proc = cli("run", env=env)
    assert proc.returncode == 4
    assert "apt-get install docker.io" in one_line(proc)


def test_requirements_catalogue_as_json():
    proc = cli("requirements", "--format", "json")
    assert proc.returncode == 0
    catalogue = json.loads(proc.stdout)
    assert {"id", "level", "versions", "spec", "basis"} <= catalogue[0].keys()
    assert len({r["id"] for r in catalogue}) == len(catalogue)


def test_requirements_json_carries_level_and_basis_per_version_range():
    catalogue = {r["id"]: r for r in json.loads(cli("requirements", "--format", "json").stdout)}
    for req in catalogue.values():
        assert req["levels"], req["id"]
        for span in req["levels"]:
            assert span["level"] in ("MUST", "SHOULD", "INFO") and span["basis"], req["id"]
            assert all(b["level"] for b in span["basis"])


def test_requirements_where_names_the_check_and_its_deviant_rows():
    proc = cli("requirements", "--where", "ERRORS-004", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    (check,) = found["checks"]
    source = (ROOT / check["file"]).read_text().splitlines()
    # The line starts the check's own definition (its decorators), and its marker names
    # the requirement.
    head = source[check["line"] - 1 :]
    upto = next(i for i, line in enumerate(head) if line.lstrip().startswith("def "))
    assert head[upto].lstrip().startswith(f"def {check['name']}(")
    assert '"ERRORS-004"' in "\n".join(head[:upto])
    rows = found["deviant_rows"]
    assert {r["expect"] for r in rows} >= {"pass", "fail"}
    for row in rows:
        path, line = row["where"].rsplit(":", 1)
        assert "ERRORS-004" in (ROOT / path).read_text().splitlines()[int(line) - 1]
    text = cli("requirements", "--where", "ERRORS-004").stdout
    assert f"{check['file']}:{check['line']}" in text and "deviant rows:" in text


def test_requirements_where_an_unknown_id_is_exit_2():
    proc = cli("requirements", "--where", "NOPE-999")
    assert proc.returncode == 2
    assert "NOPE-999" in one_line(proc)


def test_run_with_an_unknown_requirement_says_so_in_one_line(docker, tmp_path):
    proc = cli(
        "run", "--target", docker.target, "--requirement", "NOPE-999", "--report-dir", str(tmp_path)
    )
    assert proc.returncode == 2
    assert one_line(proc) == "engine-conformance: unknown requirement NOPE-999"


def test_run_writes_reports_and_exit_code_follows_verdicts(docker, tmp_path):
    ok = cli(
        "run",
        "--target",
        docker.target,
        "--requirement",
        "ERRORS-003",
        "--report-dir",
        str(tmp_path / "ok"),
    )
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr
    assert (tmp_path / "ok" / "junit.xml").is_file()
    results = json.loads((tmp_path / "ok" / "results.json").read_text())
    assert results["target"]["engine"] == "docker"
    # Docker answers 500 where the spec calls for a client error: a failing MUST.
    bad = cli(
        "run",
        "--target",
        docker.target,
        "--requirement",
        "ERRORS-005",
        "--report-dir",
        str(tmp_path / "bad"),
    )
    assert bad.returncode == 1, bad.stdout[-2000:] + bad.stderr


@pytest.mark.parametrize(
    "child, code",
    [(CHILD_TARGET_UNREACHABLE, 3), (CHILD_USAGE, 2), (pytest.ExitCode.USAGE_ERROR, 2)],
)
def test_child_status_maps_to_the_documented_code(child, code, tmp_path):
    assert _verdict_code(child, tmp_path) == code


def test_plugin_statuses_never_read_as_pytest_ones(tmp_path):
    ours = {CHILD_USAGE, CHILD_TARGET_UNREACHABLE, CHILD_SUITE_UNREACHABLE}
    assert len(ours) == 3 and ours.isdisjoint(int(c) for c in pytest.ExitCode)
    with pytest.raises(Refusal) as internal:
        _verdict_code(pytest.ExitCode.INTERNAL_ERROR, tmp_path)
    assert internal.value.code == 5  # the harness failed, not "target unreachable"


def test_a_suite_that_does_not_import_is_a_harness_failure(tmp_path):
    # pytest stops with INTERRUPTED on a collection error; only a Ctrl-C of the CLI is 130.
    with pytest.raises(Refusal) as stopped:
        _verdict_code(pytest.ExitCode.INTERRUPTED, tmp_path)
    assert stopped.value.code == 5


def test_suite_unreachable_is_exit_6_with_the_reason(tmp_path):
    reason = "preflight: the engine cannot pull from the lab registry 127.0.0.1:5000: ... Fix: ..."
    (tmp_path / "results.json").write_text(
        json.dumps(
            {
                "run": {
                    "preflight": {
                        "registry": {"status": "failed", "reason": reason},
                        "file_server": {"status": "ok", "reason": ""},
                    }
                },
                "summary": {"gating_failures": 0, "error": 30},
            }
        )
    )
    with pytest.raises(Refusal) as refused:
        _verdict_code(CHILD_SUITE_UNREACHABLE, tmp_path)
    assert (refused.value.code, str(refused.value)) == (6, reason)


def test_requirements_into_a_closed_pipe_is_quiet():
    proc = subprocess.run(
        f"{sys.executable} -m engine_conformance requirements | head -1",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.count("\n") == 1 and proc.stderr == "", proc.stderr


@pytest.mark.parametrize("version", ["abc", "1", "1.41.2", "v1.41"])
def test_api_version_that_is_not_one_is_exit_2(version):
    proc = cli("run", "--api-version", version)
    assert proc.returncode == 2
    assert f"--api-version {version} is not an API version" in one_line(proc)


def test_api_version_outside_the_engines_range_names_the_range(docker):
    proc = cli("run", "--target", docker.target, "--api-version", "9.99")
    assert proc.returncode == 2
    line = one_line(proc)
    assert "9.99" in line and "(1.12 to 1.41)" in line, line


def test_missing_expectation_file_is_exit_2(tmp_path):
    proc = cli("run", "--expectations", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert "nope.yaml: no such file" in one_line(proc)


def test_strict_needs_expectations():
    proc = cli("run", "--strict")
    assert proc.returncode == 2
    one_line(proc)


@pytest.mark.parametrize("gate, code", [(True, 0), (False, 1)])
def test_the_gate_decides_the_exit_code(gate, code, tmp_path):
    (tmp_path / "results.json").write_text(
        json.dumps(
            {
                "run": {},
                "summary": {"gating_failures": 3, "error": 0},
                "expectations": {"file": "x.yaml", "passed": gate, "mismatches": []},
            }
        )
    )
    assert _verdict_code(0, tmp_path) == code


def test_signal_handling_is_restored_when_launched_ignored():
    # `nohup ... &` starts Python with SIGINT ignored, and Python keeps it so: the tool
    # installs its own handler, and so does the plugin for a plain pytest run.
    code = (
        "import signal, sys; from engine_conformance.run import cli; cli.main(['requirements']);"
        "sys.stderr.write(str(signal.getsignal(signal.SIGINT) is signal.default_int_handler))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.stderr.strip().endswith("True"), proc.stderr


def test_relative_report_dir_is_under_the_current_directory(docker, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine_conformance",
            "run",
            "--target",
            docker.target,
            "--requirement",
            "ERRORS-003",
            "--report-dir",
            "out",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert (tmp_path / "out" / "results.json").is_file()
    assert (tmp_path / "out" / "pytest.log").is_file()


def test_a_managed_engine_not_fetched_names_the_fetch_command(tmp_path):
    env = dict(os.environ, EC_DOCKER28_DIR=str(tmp_path / "not-fetched"))
    proc = cli("run", "--managed", "docker28", env=env)
    assert proc.returncode == 4
    assert "engine-conformance engines fetch docker28" in one_line(proc)
    listed = cli("engines", "list", env=env)
    assert listed.returncode == 0
    assert any(
        line.startswith("docker28 ") and "engines fetch docker28" in line
        for line in listed.stdout.splitlines()
    )


def test_the_command_connects_once_and_its_child_never_negotiates(docker, tmp_path):
    # The child adopts the command's /version (--run-config): each is asked once a run.
    asked = [
        Deviation(
            f"counts {path}",
            match=lambda req, path=path: req.endpoint == path,
            response=lambda req, resp: resp,
        )
        for path in ("/_ping", "/version")
    ]
    with DeviantProxy(docker.target, asked) as proxy:
        done = cli(
            "run",
            "--target",
            proxy.target,
            "--requirement",
            "ERRORS-003",
            "--report-dir",
            str(tmp_path),
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert [d.hits for d in asked] == [1, 1], [f"{d.name}: {d.hits}" for d in asked]


def test_one_table_declares_every_option_of_run_and_of_the_plugin():
    # `run` and the plugin read one table: an option cannot mean two things, or drift.
    from engine_conformance.run.options import OPTIONS

    dests = [o.dest for o in OPTIONS.values()]
    assert len(dests) == len(set(dests))
    help_text = cli("run", "--help").stdout
    for option in OPTIONS.values():
        if option.scope != "plugin":
            assert option.flags[-1] in help_text, option.flags
