"""The suite never harms its target: it removes what it made, and only that.

Sentinel images seeded before a full run must be there after it, with the
same IDs; nothing under a run prefix may remain, also after Ctrl-C, nor what a
deviating engine made without the names it was given.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

from deviant_proxy import DeviantProxy, Deviation
from deviant_proxy.predicates import is_body_import
from engine_conformance.base import archives
from engine_conformance.base.stream import Message
from engine_conformance.engine.target import Client, Exchange, Target
from engine_conformance.judge.cleanup import (
    Images,
    created_refs,
    may_delete_by_id,
    may_remove_run_names,
    record_preexisting,
    remove_created,
    sweep,
)
from engine_conformance.run.runner import ROOT, run_suite
from lab_registry import LabRegistry, standard


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
        match=lambda req: (
            req.method == "GET" and "/ectest-" in req.path and req.path.endswith("/json")
        ),
        hang=True,
        limit=1,
    )
    with DeviantProxy(docker.target, [freeze]) as proxy:
        cmd = [
            sys.executable,
            "-m",
            "engine_conformance",
            "run",
            "--target",
            proxy.target,
            "--requirement",
            "ERRORS-003",
            "--report-dir",
            str(tmp_path),
        ]
        # Launched with SIGINT ignored, as from `nohup ... &`: the tool must stop on it anyway.
        child = subprocess.Popen(
            cmd,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
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
    ignores_repo = Deviation(
        "ignores-repo",
        match=is_body_import,
        request=lambda req: req.with_params(repo=None, tag=None),
    )
    before = _image_ids(docker.target)
    with DeviantProxy(docker.target, [ignores_repo]) as proxy:
        outcome = run_suite(proxy.target, tmp_path, requirements=["ERRORS-004", "IMPORT-003"])
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
        _create(
            [("fromImage", "127.0.0.1:5000/ectest-1/single"), ("tag", "v1")],
            "Pulling from ectest-1/single",
            f"Digest: {digest}",
        ),
        _create([("fromImage", "127.0.0.1:5000/ectest-1/single:v2")], f"Digest: {digest}"),
        # Not the run's repository: never a candidate, whatever it reports.
        _create([("fromImage", "127.0.0.1:5000/other/single")], f"Digest: {digest}"),
    ]
    assert created_refs(exchanges, "ectest-1") == [
        image_id,
        f"127.0.0.1:5000/ectest-1/single@{digest}",
    ]


RUN, OTHER_ID = "ectest-1", "sha256:" + "c" * 64
RUN_NAMES = {
    "Id": OTHER_ID,
    "RepoTags": [f"127.0.0.1:5000/{RUN}/single:v1"],
    "RepoDigests": [f"127.0.0.1:5000/{RUN}/single@sha256:{'d' * 64}"],
}


def test_an_image_there_before_the_run_is_never_deleted_by_id():
    before = frozenset({OTHER_ID})
    nameless = {"Id": OTHER_ID, "RepoTags": ["<none>:<none>"], "RepoDigests": ["<none>@<none>"]}
    also_theirs = {**RUN_NAMES, "RepoTags": [*RUN_NAMES["RepoTags"], "theirs:1"]}
    # The hole: with no record, an image whose only names are the run's (or that has none
    # at all) counts as the run's, and is deleted by ID with force.
    assert may_delete_by_id(RUN_NAMES, RUN, frozenset())
    assert may_delete_by_id(nameless, RUN, frozenset())
    for image in (RUN_NAMES, nameless, also_theirs):
        assert not may_delete_by_id(image, RUN, before)
        # Engines differ in showing "sha256:"; the record matches either way.
        assert not may_delete_by_id({**image, "Id": OTHER_ID[7:]}, RUN, before)
        assert not may_delete_by_id(image, RUN, frozenset({OTHER_ID[7:]}))
    # Its run names go only while a name of someone else's keeps it: the last name's
    # removal would delete it.
    assert not may_remove_run_names(RUN_NAMES, RUN, before)
    assert may_remove_run_names(also_theirs, RUN, before)
    # What the run made itself is cleaned up as before.
    assert may_remove_run_names(RUN_NAMES, RUN, frozenset({"sha256:" + "e" * 64}))
    assert may_delete_by_id(RUN_NAMES, RUN, frozenset({"sha256:" + "e" * 64}))
    assert not may_delete_by_id(also_theirs, RUN, frozenset())


def _dangling_lab_image(client: Client, lab: LabRegistry) -> str:
    """single:v1 of the lab, with no name at all: returns its ID.

    Pulled under a name, saved by ID (a tarball that names nothing), deleted and
    loaded back: an image only its ID leads to, as a user's dangling image is.
    """
    ref = lab.reference("single", "v1")
    pulled = client.create_image({"fromImage": ref.rsplit(":", 1)[0], "tag": "v1"})
    image = client.inspect_image(ref)
    assert pulled.status == 200 and image is not None, pulled.body[-500:]
    image_id = image["Id"]
    saved = client.request("GET", f"/images/{image_id}/get")
    assert saved.status == 200, saved.body[:500]
    assert client.delete_image(image_id, force=True) == 200
    loaded = client.request(
        "POST",
        "/images/load",
        params={"quiet": "1"},
        content=saved.body,
        headers={"Content-Type": "application/x-tar"},
    )
    assert loaded.status == 200, loaded.body[:500]
    image = client.inspect_image(image_id)
    assert image is not None and not [
        n
        for n in (image.get("RepoTags") or []) + (image.get("RepoDigests") or [])
        if not n.startswith("<none>")
    ], image
    return image_id


def _container_ids(client: Client) -> set[str]:
    return {c["Id"] for c in client.request("GET", "/containers/json", params={"all": "1"}).json()}


def test_a_dangling_image_with_the_runs_content_survives_the_run(docker, tmp_path):
    # The user's image: no name, kept only by a stopped container, and the same content
    # (so the same ID) as the lab image PULL-001 pulls, since lab content is deterministic.
    client = Client(Target.parse(docker.target))
    client.negotiate()
    images_before = {image["Id"] for image in client.list_images()}
    containers_before = _container_ids(client)
    image_id = container = None
    try:
        with (
            standard(f"ecsafety-{secrets.token_hex(3)}") as catalogue,
            LabRegistry(catalogue) as lab,
        ):
            image_id = catalogue.facts("single", "v1").image_id  # removed at the end, always
            assert _dangling_lab_image(client, lab) == image_id
        made = client.request(
            "POST",
            "/containers/create",
            params={"name": f"ecsafety-{secrets.token_hex(4)}"},
            content=json.dumps({"Image": image_id, "Cmd": ["true"]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert made.status == 201, made.body[:500]
        container = made.json()["Id"]
        assert image_id in record_preexisting(client)

        outcome = run_suite(docker.target, tmp_path, requirements=["PULL-001"])
        assert outcome.results is not None, outcome.output[-3000:]
        prefix = outcome.results["run"]["prefix"]

        image = client.inspect_image(image_id)
        assert image is not None, "the run deleted an image that was there before it"
        assert client.request("GET", f"/containers/{container}/json").status == 200
        names = (image.get("RepoTags") or []) + (image.get("RepoDigests") or [])
        # The run's pull landed on this very image (else the test proves nothing); its
        # names stay, since removing them would delete the image.
        assert any(f"{prefix}/" in n for n in names), (names, outcome.output[-3000:])
        assert all(f"{prefix}/" in n for n in names if not n.startswith("<none>")), names
        # The old policy (no record of what was there) deletes it: stopped container or not.
        assert may_delete_by_id(image, prefix, frozenset())
        remove_created(client, image_id, prefix)
        assert client.inspect_image(image_id) is None
    finally:
        if container is not None:
            client.request("DELETE", f"/containers/{container}", params={"force": "1"})
        if image_id is not None:
            client.delete_image(image_id, force=True)
        left = (
            {image["Id"] for image in client.list_images()} - images_before,
            _container_ids(client) - containers_before,
        )
        client.close()
    assert left == (set(), set()), "the test left images or containers behind"


def test_the_sweep_asks_only_of_what_no_clean_up_saw_gone(docker):
    # A check's clean-up that sees a name gone takes it off the run's list, so the sweep at
    # the end does not ask of it again; a name made again under the prefix after that (an
    # engine finishing late) is still removed, by the sweep's look at the whole list.
    run = SimpleNamespace(
        prefix=f"ectest-{secrets.token_hex(4)}",
        counter=itertools.count(),
        created=set(),
        preexisting=frozenset(),
    )
    archive = archives.rootfs({"sweep.txt": secrets.token_bytes(16)})
    with Client(Target.parse(docker.target)) as client:
        client.negotiate()
        run.preexisting = record_preexisting(client)
        images = Images(client, run)
        name = images.name("sweep")
        made = client.create_image({"fromSrc": "-", "repo": name}, body=archive)
        assert made.status == 200 and client.inspect_image(name) is not None, made.body[-300:]
        assert name in run.created
        images.cleanup()
        assert client.inspect_image(name) is None
        assert run.created == set(), "seen gone, yet left for the sweep"
        again = client.create_image({"fromSrc": "-", "repo": name}, body=archive)
        assert again.status == 200, again.body[-300:]
        removed = sweep(client, run)
        assert client.inspect_image(name) is None, "the sweep left a name under the prefix"
        assert removed, "the sweep says it removed nothing"
