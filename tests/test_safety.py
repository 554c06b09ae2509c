"""The suite never harms its target: it removes what it made, and only that.

Sentinel images seeded before a full run must be there after it, with the
same IDs; nothing under a run prefix may remain, also after Ctrl-C, nor what a
deviating engine made without the names it was given.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from deviant_proxy import DeviantProxy, Deviation
from deviant_proxy.predicates import is_body_import
from engine_conformance.cleanup import created_refs
from engine_conformance.runner import ROOT, run_suite
from engine_conformance.stream import Message
from engine_conformance.target import Client, Exchange, Target


def test_sentinels_untouched_and_nothing_left(suite, request):
    run = request.getfixturevalue(suite)
    assert run.sentinels_after == run.sentinels_before
    assert run.leftovers == []
    assert run.new_images == [], "the run left images behind that it did not name"


def test_ctrl_c_mid_run_removes_what_was_created(docker, tmp_path, look):
    # Freeze the run at a moment when one of its images exists: the inspect
    # that follows a successful import never gets an answer.
    freeze = Deviation(
        "freeze-inspect",
        match=lambda req: req.method == "GET" and "/ectest-" in req.path
        and req.path.endswith("/json"),
        hang=True,
        limit=1,
    )
    with DeviantProxy(docker.target, [freeze]) as proxy:
        cmd = [sys.executable, "-m", "engine_conformance", "run", "--target", proxy.target,
               "--requirement", "ERRORS-003", "--report-dir", str(tmp_path)]
        # Launched with SIGINT ignored, as from `nohup ... &`: the tool must stop on it anyway.
        child = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert freeze.seen.wait(60), "the run never reached the frozen inspect"
            _, leftovers = look(docker.target)
            assert leftovers, "the run had created nothing yet; the test proves nothing"
            interrupted = time.monotonic()
            os.killpg(child.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            output, _ = child.communicate(timeout=120)
            stopped = time.monotonic() - interrupted
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 130, output.decode(errors="replace")[-2000:]
    assert stopped < 4, f"Ctrl-C took {stopped:.1f} s to stop the run"
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["run"]["complete"] is False and results["run"]["interrupted"] is True
    _, leftovers = look(docker.target)
    assert leftovers == []


def _image_ids(target: str) -> set[str]:
    with Client(Target.parse(target)) as client:
        client.negotiate()
        return {image["Id"] for image in client.list_images()}


def test_untagged_imports_of_an_engine_that_ignores_repo_are_removed(docker, tmp_path):
    # The images stay untagged, so no name leads to them: the IDs the imports reported do.
    # ERRORS-004 tracks no ID itself: clean-up finds it in the import's last message.
    ignores_repo = Deviation("ignores-repo", match=is_body_import,
                             request=lambda req: req.with_params(repo=None, tag=None))
    before = _image_ids(docker.target)
    with DeviantProxy(docker.target, [ignores_repo]) as proxy:
        outcome = run_suite(proxy.target, tmp_path,
                            requirements=["ERRORS-004", "IMPORT-003"])
    assert ignores_repo.hits, "no import went through the proxy: the test proves nothing"
    assert outcome.verdict("ERRORS-004") == "fail", outcome.output[-2000:]
    assert _image_ids(docker.target) - before == set()


def _create(params: list[tuple[str, str]], *statuses: str) -> Exchange:
    ex = Exchange("POST", "/v1.41/images/create", params, {}, status=200)
    ex.messages = [Message({"status": s}, 0, 0.0) for s in statuses]
    return ex


def test_created_refs_are_what_the_engine_said_it_made():
    image_id, digest = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    exchanges = [
        _create([("fromSrc", "-"), ("repo", "ectest-1/imp-1")], image_id),
        _create([("fromImage", "127.0.0.1:5000/ectest-1/single"), ("tag", "v1")],
                "Pulling from ectest-1/single", f"Digest: {digest}"),
        _create([("fromImage", "127.0.0.1:5000/ectest-1/single:v2")], f"Digest: {digest}"),
        # Not the run's repository: never a candidate, whatever it reports.
        _create([("fromImage", "127.0.0.1:5000/other/single")], f"Digest: {digest}"),
    ]
    assert created_refs(exchanges, "ectest-1") == [
        image_id, f"127.0.0.1:5000/ectest-1/single@{digest}"]
