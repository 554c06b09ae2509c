"""Fixtures for the harness's own tests: real engines the tests start themselves.

``docker`` and ``podman`` are managed engines in private directories, started
once per session. Set ``EC_TEST_DOCKER`` / ``EC_TEST_PODMAN`` to a target URL
to reuse an engine that is already running (it must be disposable).
``docker_suite`` / ``podman_suite`` are one full suite run against each,
checked against its expectation file, with sentinel images seeded before and
looked at after.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from engine_conformance import archives
from engine_conformance.engines import EngineUnavailable, ManagedDocker, ManagedPodman, free_port
from engine_conformance.runner import Outcome, run_suite
from engine_conformance.target import Client, Target


@dataclass(frozen=True)
class Engine:
    """A running engine the tests may use: its target URL and its kind."""

    kind: str
    target: str


@dataclass
class SuiteRun:
    """A full suite run and the state of the engine around it."""

    outcome: Outcome
    sentinels_before: dict[str, str]
    sentinels_after: dict[str, str | None]
    leftovers: list[str]
    new_images: list[str]


def _engine(kind: str, env: str, factory) -> Iterator[Engine]:
    if os.environ.get(env):
        yield Engine(kind, os.environ[env])
        return
    managed = factory()
    if not managed.available():
        pytest.skip(f"{managed.program} is not installed (bash scripts/setup installs it)")
    try:
        managed.start()
    except EngineUnavailable as exc:
        pytest.fail(f"managed {kind} would not start: {exc}")
    try:
        yield Engine(kind, managed.target)
    finally:
        managed.stop()


@pytest.fixture(scope="session")
def lab_port() -> int:
    """The lab registry's port, fixed before Podman starts (it reads registries.conf once)."""
    return free_port()


@pytest.fixture(scope="session")
def docker() -> Iterator[Engine]:
    """A managed Docker (dockerd from Debian's docker.io)."""
    yield from _engine("docker", "EC_TEST_DOCKER", ManagedDocker)


@pytest.fixture(scope="session")
def podman(lab_port) -> Iterator[Engine]:
    """A managed Podman that treats the lab registry's address as insecure (plain HTTP)."""
    yield from _engine("podman", "EC_TEST_PODMAN",
                       lambda: ManagedPodman(insecure_registries=[f"127.0.0.1:{lab_port}"]))


SENTINELS = ("ecsentinel/keep:1", "ecsentinel/keep:ectest-lookalike")


def seed_sentinels(target: str) -> dict[str, str]:
    """Images that exist before a run and must be untouched after it: name -> ID."""
    ids = {}
    with Client(Target.parse(target)) as client:
        client.negotiate()
        for i, name in enumerate(SENTINELS):
            # The tag goes inside repo: Podman 4.3 ignores the separate tag.
            client.create_image({"fromSrc": "-", "repo": name},
                                body=archives.rootfs({"sentinel": f"{i}\n".encode()}))
            image = client.inspect_image(name)
            assert image is not None, f"could not seed sentinel {name}"
            ids[name] = image["Id"]
    return ids


def image_ids(target: str) -> set[str]:
    with Client(Target.parse(target)) as client:
        client.negotiate()
        return {image["Id"] for image in client.list_images()}


def look(target: str) -> tuple[dict[str, str | None], list[str]]:
    """The sentinels' IDs now, and every image tag left under a run prefix."""
    with Client(Target.parse(target)) as client:
        client.negotiate()
        after = {}
        for name in SENTINELS:
            image = client.inspect_image(name)
            after[name] = image["Id"] if image else None
        leftovers = [t for image in client.list_images() for t in image.get("RepoTags") or []
                     if "ectest-" in t.rsplit(":", 1)[0]]
    return after, leftovers


@pytest.fixture(name="look")
def look_fixture():
    """``look(target) -> (sentinel IDs, leftover prefixed tags)``."""
    return look


def full_run(engine: Engine, lab_port: int, tmp_path_factory) -> SuiteRun:
    before = seed_sentinels(engine.target)
    ids_before = image_ids(engine.target)
    outcome = run_suite(engine.target, tmp_path_factory.mktemp(f"{engine.kind}-suite"),
                        expectations="auto", extra=["--registry-port", str(lab_port)])
    assert outcome.results is not None, outcome.output[-4000:]
    after, leftovers = look(engine.target)
    new = sorted(image_ids(engine.target) - ids_before)
    return SuiteRun(outcome, before, after, leftovers, new)


@pytest.fixture(scope="session")
def docker_suite(docker, lab_port, tmp_path_factory) -> SuiteRun:
    return full_run(docker, lab_port, tmp_path_factory)


@pytest.fixture(scope="session")
def podman_suite(podman, lab_port, tmp_path_factory) -> SuiteRun:
    return full_run(podman, lab_port, tmp_path_factory)
