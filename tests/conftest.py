"""Fixtures for the harness's own tests: real engines the tests start themselves.

``docker`` and ``podman`` are managed engines in private directories, started
once per session. Set ``EC_TEST_DOCKER`` / ``EC_TEST_PODMAN`` to a target URL
to reuse an engine that is already running (it must be disposable).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from engine_conformance.engines import EngineUnavailable, ManagedDocker, ManagedPodman


@dataclass(frozen=True)
class Engine:
    """A running engine the tests may use: its target URL and its kind."""

    kind: str
    target: str


def _engine(kind: str, env: str, factory) -> Iterator[Engine]:
    if os.environ.get(env):
        yield Engine(kind, os.environ[env])
        return
    managed = factory()
    if not managed.available():
        pytest.skip(f"{managed.program} is not installed (apt-get install "
                    f"{'docker.io' if kind == 'docker' else 'podman'})")
    try:
        managed.start()
    except EngineUnavailable as exc:
        pytest.fail(f"managed {kind} would not start: {exc}")
    try:
        yield Engine(kind, managed.target)
    finally:
        managed.stop()


@pytest.fixture(scope="session")
def docker() -> Iterator[Engine]:
    """A managed Docker (dockerd from Debian's docker.io)."""
    yield from _engine("docker", "EC_TEST_DOCKER", ManagedDocker)


@pytest.fixture(scope="session")
def podman() -> Iterator[Engine]:
    """A managed Podman (podman system service from Debian's podman)."""
    yield from _engine("podman", "EC_TEST_PODMAN", ManagedPodman)
