"""The real CNCF distribution registry (``docker-registry serve``), private and temporary.

    >>> from lab_registry.distribution import DistributionRegistry
    >>> with DistributionRegistry() as real:                 # doctest: +SKIP
    ...     real.push_catalogue(catalogue)
    ...     real.address                                     # '127.0.0.1:43817'

It is the yardstick the lab registry is checked against (same images, same
requests, same engine pull) and the baseline of the throughput benchmark.
Storage, config and log live in one temporary directory, removed on stop.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from lab_registry.catalogue import Catalogue
from lab_registry.images import Artifact
from lab_registry.push import push, push_catalogue

PROGRAM = "docker-registry"
START_TIMEOUT = 20.0


class DistributionUnavailable(RuntimeError):
    """``docker-registry`` is not installed or would not start."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def available() -> bool:
    return shutil.which(PROGRAM) is not None


class DistributionRegistry:
    """``docker-registry serve`` on ``127.0.0.1:<free port>`` with filesystem storage."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port
        self.dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def client(self) -> httpx.Client:
        """An httpx client on the registry (long timeouts: big blobs go through it)."""
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.url, timeout=httpx.Timeout(300.0, connect=5.0)
            )
        return self._client

    def config_yaml(self) -> str:
        assert self.dir is not None
        # Written by hand: the format is tiny and fixed, and YAML needs no escaping here.
        return (
            "version: 0.1\n"
            "log:\n"
            "  level: warn\n"
            "  accesslog:\n"
            "    disabled: true\n"
            "storage:\n"
            "  filesystem:\n"
            f"    rootdirectory: {self.dir / 'data'}\n"
            "  delete:\n"
            "    enabled: true\n"
            "http:\n"
            f"  addr: {self.address}\n"
        )

    def start(self) -> DistributionRegistry:
        if not available():
            raise DistributionUnavailable(f"{PROGRAM} is not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="lab-distribution-"))
        if self.port is None:
            self.port = free_port(self.host)
        config = self.dir / "config.yml"
        config.write_text(self.config_yaml())
        with open(self.dir / "registry.log", "wb") as log:
            self.process = subprocess.Popen(
                [PROGRAM, "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal is for us, not for it
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise DistributionUnavailable(
                    f"{PROGRAM} exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            # No readiness event exists: poll until the port answers.
            time.sleep(0.05)
        raise DistributionUnavailable(
            f"{PROGRAM} did not answer in {START_TIMEOUT:.0f}s: {self.log_tail()}"
        )

    def log_tail(self) -> str:
        if self.dir is None:
            return ""
        try:
            lines = (self.dir / "registry.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][-300:] if lines else ""

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
            self.process = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> DistributionRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, repository: str, tag: str, artifact: Artifact) -> str:
        """Push an image or index as ``repository:tag``; returns its digest."""
        return push(self.client, repository, tag, artifact)

    def push_catalogue(self, catalogue: Catalogue) -> None:
        push_catalogue(self.client, catalogue)
