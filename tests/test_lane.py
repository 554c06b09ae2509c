"""The run's lane (engine_conformance/run/lane.py): scenarios run ahead, and the same verdicts.

A lane scenario's images are claimed before it sends anything, and the run's whole-list
views leave them out; an engine that cannot pull from a lane registry gets each
scenario run in its own check instead, with the verdict it would have had anyway.
"""

from __future__ import annotations

from deviant_proxy import DeviantProxy, Deviation, Response
from deviant_proxy.predicates import pulling
from engine_conformance.base import archives
from engine_conformance.engine.target import Client, Target
from engine_conformance.judge.checks import imported_id
from engine_conformance.run.runner import run_suite

# The lane's registries name their repositories <prefix>/lane-<n>/…
LANE_REFUSED = Deviation(
    "refuses-the-lane",
    match=pulling("/lane-"),
    answer=lambda req: Response.json(500, {"message": "no route to the lane's registry"}),
)


def test_claimed_image_ids_are_left_out_of_whole_list_views(docker):
    with Client(Target.parse(docker.target)) as client:
        client.negotiate()
        ex = client.create_image(
            {"fromSrc": "-", "repo": "ectest-lane/claimed"},
            body=archives.rootfs({"etc/ectest-lane": b"claimed\n"}),
        )
        image = imported_id(ex)
        assert image, ex.body[-300:]
        try:
            listed = {i["Id"] for i in client.list_images()}
            assert image in listed
            client.unseen.add(image.removeprefix("sha256:"))
            assert image not in {i["Id"] for i in client.list_images()}
            assert client.inspect_image(image) is not None  # only whole-list views hide it
            client.unseen.clear()
            assert image in {i["Id"] for i in client.list_images()}
        finally:
            client.delete_image(image, force=True)


def test_docker_full_run_used_the_lane_and_left_nothing(docker_suite):
    run = docker_suite.outcome.results["run"]
    lane = run["lane"]
    assert lane["used"], lane
    assert {"faults-cut", "auth-leaks", "progress-large"} <= set(lane["scenarios"]), lane
    assert run["left_behind"] == []
    cut = next(r for r in docker_suite.outcome.results["requirements"] if r["id"] == "FAULTS-007")
    assert cut["observations"]["ran"].startswith("ahead, in the run's lane"), cut["observations"]


def test_a_lane_the_engine_cannot_pull_from_leaves_each_scenario_to_its_check(docker, tmp_path):
    with DeviantProxy(docker.target, [LANE_REFUSED]) as proxy:
        out = run_suite(proxy.target, tmp_path, requirements=["FAULTS-007", "AUTH-014"])
    assert LANE_REFUSED.hits, "no lane probe went through the proxy: the test proves nothing"
    lane = out.results["run"]["lane"]
    assert not lane["used"] and not lane["scenarios"], lane
    for key in ("faults-cut", "auth-leaks"):
        assert "cannot pull from the lab registry" in lane["not_used_because"][key], lane
    # Run in their checks, as without a lane: Docker's verdicts.
    assert out.verdict("FAULTS-007") == "pass", out.output[-2000:]
    assert out.verdict("AUTH-014") == "pass", out.output[-2000:]
    observed = next(r for r in out.results["requirements"] if r["id"] == "FAULTS-007")
    assert "ran" not in observed["observations"]
