"""Fixtures for the lab registry's own tests.

``lab`` is one lab registry per session, reset (faults, auth, journal) around
every test; ``http`` an httpx client on it. ``distribution`` is the real CNCF
registry loaded with the same catalogue, and ``docker_socket`` a private
``dockerd`` (both skipped with a reason when not installed).

``docker_socket`` is the socket of the session's managed Docker.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from lab_registry import Catalogue, LabRegistry, standard
from lab_registry.distribution import DistributionRegistry

PREFIX = f"ectest-{secrets.token_hex(3)}"
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serving_cli(
    args: list[str], preexec_fn: Callable[[], object] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m lab_registry serve ARGS`` started, and the URL its first line names.

    The test stops it (a signal, then ``communicate``); whatever is left is killed.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "lab_registry", "serve", *args], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("lab registry serving http://127.0.0.1:"), first
        yield process, first.split()[3]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def lab_catalogue() -> Iterator[Catalogue]:
    """The standard catalogue under a per-run prefix, plus a small "large" image."""
    with standard(PREFIX) as catalogue:
        # Big enough to need several socket writes, small enough to be quick.
        catalogue.add_large(catalogue.name("large"), "latest", 3 << 20, seed=7)
        yield catalogue


@pytest.fixture(scope="session")
def lab_session(lab_catalogue: Catalogue) -> Iterator[LabRegistry]:
    with LabRegistry(lab_catalogue) as registry:
        yield registry


@pytest.fixture
def lab(lab_session: LabRegistry) -> Iterator[LabRegistry]:
    """The session's lab registry with no faults, no auth and an empty journal."""
    lab_session.reset()
    yield lab_session
    lab_session.reset()


@pytest.fixture
def http(lab: LabRegistry) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lab.url, timeout=10.0) as client:
        yield client


@pytest.fixture(scope="session")
def distribution(lab_catalogue: Catalogue) -> Iterator[DistributionRegistry]:
    """The real distribution registry holding the same images as the lab."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    with DistributionRegistry() as real:
        real.push_catalogue(lab_catalogue)
        yield real


@pytest.fixture(scope="session")
def docker_socket(docker) -> str:
    """The socket path of the session's managed Docker (see tests/conftest.py)."""
    from engine_conformance.engine.target import Target

    uds = Target.parse(docker.target).uds
    if uds is None:
        pytest.skip("the lab registry's engine tests need Docker on a unix socket")
    return uds


@pytest.fixture
def docker_api(docker_socket: str) -> Iterator[httpx.Client]:
    """An httpx client on the managed Docker (pulls can take a while)."""
    transport = httpx.HTTPTransport(uds=docker_socket)
    with httpx.Client(transport=transport, base_url="http://docker", timeout=120.0) as client:
        yield client
