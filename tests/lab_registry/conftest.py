"""Fixtures for the lab registry's own tests.

``lab`` is one lab registry per session, reset (faults, auth, journal) around
every test; ``http`` an httpx client on it. ``distribution`` is the real CNCF
registry loaded with the same catalogue, and ``docker_socket`` a private
``dockerd`` (both skipped with a reason when not installed).

``docker_socket`` is deliberately small: the project's
``engine_conformance.engines.ManagedDocker`` will replace it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lab_registry import Catalogue, LabRegistry, standard
from lab_registry.distribution import DistributionRegistry

PREFIX = f"ectest-{secrets.token_hex(3)}"


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


def _wait_for_ping(sock: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    transport = httpx.HTTPTransport(uds=sock)
    with httpx.Client(transport=transport, base_url="http://docker", timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:]
                raise RuntimeError(f"dockerd exited with {process.returncode}: {tail}")
            if os.path.exists(sock):
                try:
                    if client.get("/_ping").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.1)  # no readiness event: the socket appears before it answers
    raise RuntimeError("dockerd did not answer /_ping within 60 s")


def _unmount_below(path: str) -> None:
    # A dockerd that died hard can leave mounts that rmtree cannot cross.
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    points = [m.split()[1] for m in mounts if m.split()[1].startswith(path)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@pytest.fixture(scope="session")
def docker_socket() -> Iterator[str]:
    """A private dockerd's socket path; stopped (SIGTERM, wait) and cleaned at the end."""
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed (apt-get install docker.io)")
    # Unix socket paths are limited to 108 bytes: keep the directory short.
    d = tempfile.mkdtemp(prefix="ec", dir="/tmp")
    sock = f"{d}/docker.sock"
    log_path = Path(d) / "dockerd.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                "dockerd",
                "--host", f"unix://{sock}",
                "--data-root", f"{d}/root",
                "--exec-root", f"{d}/exec",
                "--pidfile", f"{d}/docker.pid",
                "--iptables=false",
                "--bridge=none",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_for_ping(sock, process, log_path)
        yield sock
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)
        _unmount_below(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_api(docker_socket: str) -> Iterator[httpx.Client]:
    """An httpx client on the private dockerd (pulls can take a while)."""
    transport = httpx.HTTPTransport(uds=docker_socket)
    with httpx.Client(transport=transport, base_url="http://docker", timeout=120.0) as client:
        yield client
