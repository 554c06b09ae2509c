"""Managed engines: Docker and Podman started in private temporary directories.

    >>> with ManagedDocker() as docker:                        # doctest: +SKIP
    ...     docker.target        # 'unix:///tmp/ec-docker-xxxx/docker.sock'
    >>> with ManagedPodman(insecure_registries=["127.0.0.1:5000"]) as podman:  # doctest: +SKIP
    ...     podman.target

They never touch the host's own engines: every path (socket, data root, exec
root, pid file, registries.conf) lives under one temporary directory that is
removed on stop. The one exception is the registry CA a managed Docker is
given (``trust_registry_ca``): dockerd reads it only from the host-wide
``/etc/docker/certs.d``, so that one entry is written there, marked as this
process's, removed on stop, and reclaimed by a later run if this one is killed
hard (:mod:`engine_conformance.engine.certsd`).

``ManagedDocker(tls=True)`` also listens on TCP with mutual TLS, using
certificates made by trustme; ``cert_path`` is then a directory laid out like
``DOCKER_CERT_PATH``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import httpx

from engine_conformance.base import paths
from engine_conformance.engine import certsd
from engine_conformance.engine.tls import host_port
from lab_registry.distribution import free_port  # one place for it; re-exported

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class EngineUnavailable(Exception):
    """The engine's program is not installed or would not start."""


class ManagedEngine:
    """Common life cycle: make a private dir, start, wait for /_ping, stop, clean."""

    program = ""
    name = ""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.socket = ""

    @classmethod
    def available(cls) -> bool:
        return shutil.which(cls.program) is not None

    @property
    def missing(self) -> str:
        """What to say when ``available()`` is false."""
        return f"{self.program} is not installed"

    @property
    def target(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "engine.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    @property
    def trust_dir(self) -> Path:
        """Extra CA certificates the engine's Go TLS clients trust (``SSL_CERT_DIR``)."""
        assert self.dir is not None
        return self.dir / "trusted-cas"

    def _trusting_environment(self, env: dict[str, str]) -> dict[str, str]:
        # Go reads SSL_CERT_DIR (a colon list) besides the system bundle; keep the
        # system directory too, so that nothing the engine trusted before is lost.
        env["SSL_CERT_DIR"] = f"{self.trust_dir}:{env.get('SSL_CERT_DIR', '/etc/ssl/certs')}"
        return env

    def trust_ca(self, ca_path: Path) -> None:
        """Trust ``ca_path`` for ``fromSrc`` URLs (Go's default client, system roots).

        Go reads its system roots once, at the engine's first TLS check: call this
        before the engine makes any TLS connection (right after ``start``).
        """
        pem = Path(ca_path).read_bytes()
        self.trust_dir.mkdir(exist_ok=True)
        (self.trust_dir / f"{hashlib.sha256(pem).hexdigest()[:16]}.crt").write_bytes(pem)

    def trust_registry_ca(self, address: str, ca_path: Path) -> None:
        """Trust ``ca_path`` for the registry at ``address`` (HOST:PORT), no restart."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Write whatever the engine needs before it starts."""

    def start(self) -> Self:
        if not self.available():
            raise EngineUnavailable(self.missing)
        # Unix socket paths are limited to 108 bytes, so stay short and in /tmp.
        self.dir = Path(tempfile.mkdtemp(prefix=f"ec-{self.name}-", dir="/tmp"))
        # Reports name this directory $ENGINE_DIR: it is the suite's, and gone after the run.
        (self.dir / paths.MANAGED_MARKER).write_text("")
        self.socket = str(self.dir / f"{self.name}.sock")
        self.prepare()
        self._launch()
        return self

    def restart(self) -> None:
        """Stop the engine's process and start it again in the same directory, as
        ``systemctl restart`` does a service: it reads its configuration anew, and keeps
        its images."""
        assert self.dir is not None, "not started"
        self._terminate()
        self._launch()

    def _launch(self) -> None:
        log = open(self.log_path, "ab")  # a restart appends to the log
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                start_new_session=True,  # Ctrl-C at the terminal is ours to handle
            )
        finally:
            log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        transport = httpx.HTTPTransport(uds=self.socket)
        with httpx.Client(transport=transport, base_url="http://engine", timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise EngineUnavailable(
                        f"{self.program} exited with {self.process.returncode}: {self._log_tail()}"
                    )
                if os.path.exists(self.socket):
                    try:
                        if http.get("/_ping").status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                # Readiness has no event to wait on: the socket appears before it answers.
                time.sleep(0.1)
        raise EngineUnavailable(f"{self.program} did not answer /_ping in {START_TIMEOUT:.0f}s")

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][-300:] if lines else ""

    def stop(self) -> None:
        self._terminate()
        self._forget_trust()
        if self.dir is not None:
            self._unmount_below(self.dir)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT)
        self.process = None

    def _forget_trust(self) -> None:
        """Undo ``trust_registry_ca`` where it wrote outside the private directory."""

    @staticmethod
    def _unmount_below(path: Path) -> None:
        # A killed engine can leave overlay mounts behind; rmtree cannot cross them.
        try:
            mounts = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            return
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(str(path))]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)

    def __enter__(self) -> ManagedEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


DOCKER_CERTS_DIR = Path("/etc/docker/certs.d")
"""moby's ``registry.CertsDir()`` for a rootful dockerd."""

UNPACKED = {
    "docker26": "Debian 13's Docker 26.1 and containerd 1.7",
    "docker28": "Debian unstable's Docker 28.5 and containerd 2.1",
}
"""The Dockers ``scripts/fetch-engine NAME`` unpacks (not installs), by name."""


def unpacked_dir(name: str) -> Path:
    """Where ``scripts/fetch-engine NAME`` unpacked it: ``EC_<NAME>_DIR``, else
    ``/opt/engine-conformance/NAME``."""
    return Path(os.environ.get(f"EC_{name.upper()}_DIR", f"/opt/engine-conformance/{name}"))


class ManagedDocker(ManagedEngine):
    """``dockerd`` from Debian's docker.io, private to one directory.

    ``ManagedDocker(root=unpacked_dir("docker28"))`` runs an unpacked dockerd instead
    (its own ``containerd`` first on PATH; :func:`unpacked_docker` makes such
    factories); ``containerd_store=True`` switches it to the containerd image store
    (``features.containerd-snapshotter``).
    """

    program = "dockerd"
    name = "docker"

    def __init__(
        self,
        tls: bool = False,
        *,
        root: Path | None = None,
        containerd_store: bool = False,
        certs_dir: Path | None = None,
        tcp_host: str = "127.0.0.1",
        tcp_port: int | None = None,
    ) -> None:
        super().__init__()
        # By default the one a rootful dockerd reads; tests give a directory of their own.
        self.certs_dir = certs_dir if certs_dir is not None else DOCKER_CERTS_DIR
        self.tls = tls
        self.root = root
        self.containerd_store = containerd_store
        # With tls: where the TCP listener binds (and what its certificate names), and
        # its port (default: a free one on this machine's loopback).
        self.tcp_host = tcp_host
        self.tcp_port: int | None = tcp_port
        self.cert_path: str | None = None
        self._registry_cas: list[tuple[Path, str, certsd.Owner]] = []
        self._made_certs_dir = False
        self.reclaimed_certs: list[str] = []
        self.unpacked = ""  # the name `engine-conformance engines fetch` knows it by, if any

    @property
    def dockerd(self) -> str:
        return str(self.root / "usr/sbin/dockerd") if self.root else "dockerd"

    # Not typed below: a property in the base class; a method here, for an engine that must be
    # probed.
    def available(self) -> bool:  # type: ignore[override]
        if self.root is not None:
            return os.access(self.dockerd, os.X_OK)
        return shutil.which("dockerd") is not None

    @property
    def missing(self) -> str:
        if self.root is not None:
            name = getattr(self, "unpacked", "") or self.root.name
            return (
                f"{self.dockerd} is missing: `engine-conformance engines fetch {name}` "
                "unpacks it (bash scripts/setup runs that)"
            )
        return super().missing

    def environment(self) -> dict[str, str]:
        env = self._trusting_environment(dict(os.environ))
        if self.root is not None:
            # dockerd starts the containerd it finds first on PATH: the unpacked one.
            env["PATH"] = f"{self.root / 'usr/bin'}:{self.root / 'usr/sbin'}:{env.get('PATH', '')}"
        return env

    def trust_registry_ca(self, address: str, ca_path: Path) -> None:
        """``/etc/docker/certs.d/ADDRESS/ca.crt``, removed again on ``stop``.

        A rootful dockerd (20.10, 26.1, 28.5, either image store) has no certs
        directory of its own: ``registry.CertsDir()`` is that global one unless
        it runs under RootlessKit, and it is read at each pull. Only this one
        ADDRESS entry is written, with an owner marker, and never over an entry
        that exists (:class:`certsd.EntryTaken`). Entries earlier runs left when
        they were killed are reclaimed first (``reclaimed_certs`` names them);
        see :mod:`engine_conformance.engine.certsd`.
        """
        self._made_certs_dir = self._made_certs_dir or not self.certs_dir.exists()
        owner = certsd.this_process(self.dir, address)
        self.reclaimed_certs += certsd.claim(self.certs_dir, address, ca_path, owner)
        self._registry_cas.append((self.certs_dir, address, owner))

    def _forget_trust(self) -> None:
        while self._registry_cas:
            certsd.release(*self._registry_cas.pop())
        if self._made_certs_dir:
            self._made_certs_dir = False
            try:
                self.certs_dir.rmdir()  # ours, and only if nothing else went in since
            except OSError:
                pass

    @property
    def tls_target(self) -> str:
        assert self.tcp_port is not None, "started without tls=True"
        return f"https://{host_port(self.tcp_host, self.tcp_port)}"

    @property
    def config_path(self) -> Path:
        """The engine's own ``daemon.json`` (``--config-file``): what
        ``/etc/docker/daemon.json`` is to a system Docker."""
        assert self.dir is not None, "not started"
        return self.dir / "daemon.json"

    def prepare(self) -> None:
        assert self.dir is not None
        # Our own config file, so that the host's /etc/docker/daemon.json never applies.
        config = {"features": {"containerd-snapshotter": True}} if self.containerd_store else {}
        (self.dir / "daemon.json").write_text(json.dumps(config))
        if self.tls:
            self._make_certificates()

    def _make_certificates(self) -> None:
        import trustme

        assert self.dir is not None
        ca = trustme.CA()
        server = ca.issue_cert(*dict.fromkeys([self.tcp_host, "127.0.0.1", "localhost"]))
        client = ca.issue_cert("engine-conformance-client")
        server_dir, client_dir = self.dir / "server-certs", self.dir / "client-certs"
        server_dir.mkdir()
        client_dir.mkdir()
        for d in (server_dir, client_dir):
            ca.cert_pem.write_to_path(str(d / "ca.pem"))
        server.cert_chain_pems[0].write_to_path(str(server_dir / "cert.pem"))
        server.private_key_pem.write_to_path(str(server_dir / "key.pem"))
        client.cert_chain_pems[0].write_to_path(str(client_dir / "cert.pem"))
        client.private_key_pem.write_to_path(str(client_dir / "key.pem"))
        self.cert_path = str(client_dir)
        self.tcp_port = self.tcp_port or free_port()

    def command(self) -> list[str]:
        assert self.dir is not None
        cmd = [
            self.dockerd,
            "--config-file", str(self.dir / "daemon.json"),
            "--host", f"unix://{self.socket}",
            "--data-root", str(self.dir / "root"),
            "--exec-root", str(self.dir / "exec"),
            "--pidfile", str(self.dir / "docker.pid"),
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
        ]  # fmt: skip
        if self.tls:
            assert self.tcp_port is not None  # chosen in prepare()
            certs = self.dir / "server-certs"
            cmd += [
                "--host", f"tcp://{host_port(self.tcp_host, self.tcp_port)}",
                "--tlsverify",
                "--tlscacert", str(certs / "ca.pem"),
                "--tlscert", str(certs / "cert.pem"),
                "--tlskey", str(certs / "key.pem"),
            ]  # fmt: skip
        return cmd


class ManagedPodman(ManagedEngine):
    """``podman system service`` from Debian's podman, private to one directory.

    Podman reads registries.conf only at start, so the registries it must
    reach over plain HTTP are given up front.
    """

    program = "podman"
    name = "podman"

    def __init__(self, insecure_registries: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        self.insecure_registries = list(insecure_registries)

    def prepare(self) -> None:
        assert self.dir is not None
        (self.dir / "home").mkdir()
        entries = "".join(
            f'\n[[registry]]\nlocation = "{r}"\ninsecure = true\n' for r in self.insecure_registries
        )
        (self.dir / "registries.conf").write_text(
            'unqualified-search-registries = []\nshort-name-mode = "permissive"\n' + entries
        )

    def environment(self) -> dict[str, str]:
        assert self.dir is not None
        env = self._trusting_environment(dict(os.environ))
        env["CONTAINERS_REGISTRIES_CONF"] = str(self.dir / "registries.conf")
        env["TMPDIR"] = str(self.dir)
        # containers/image looks in $HOME/.config/containers/certs.d first: a
        # private HOME gives this Podman a certs directory no one else reads.
        env["HOME"] = str(self.dir / "home")
        return env

    def trust_registry_ca(self, address: str, ca_path: Path) -> None:
        """``$HOME/.config/containers/certs.d/ADDRESS/ca.crt`` in the private HOME."""
        assert self.dir is not None
        entry = self.dir / "home/.config/containers/certs.d" / address
        entry.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca_path, entry / "ca.crt")

    def command(self) -> list[str]:
        assert self.dir is not None
        return [
            "podman",
            "--root", str(self.dir / "root"),
            "--runroot", str(self.dir / "run"),
            "--tmpdir", str(self.dir / "tmp"),
            "--events-backend", "file",
            "--cgroup-manager", "cgroupfs",
            "system", "service", "--time=0", f"unix://{self.socket}",
        ]  # fmt: skip


def unpacked_docker(name: str, containerd_store: bool = False) -> Callable[..., ManagedDocker]:
    """A factory for the unpacked Docker ``name`` (see :data:`UNPACKED`), graphdriver
    store (overlay2) or, with ``containerd_store``, the containerd image store."""

    def make(**kwargs: object) -> ManagedDocker:
        # Not typed below: kwargs pass through to ManagedDocker as given by the caller.
        engine = ManagedDocker(root=unpacked_dir(name), containerd_store=containerd_store, **kwargs)  # type: ignore[arg-type]
        engine.unpacked = name  # what `engines fetch` calls it
        return engine

    store = "the containerd image store" if containerd_store else "the graphdriver store"
    make.__name__ = name + ("_containerd" if containerd_store else "")
    make.__doc__ = (
        f"{UNPACKED[name]}, unpacked by ``engine-conformance engines fetch {name}``, {store}."
    )
    return make


docker26 = unpacked_docker("docker26")
docker26_containerd = unpacked_docker("docker26", containerd_store=True)
docker28 = unpacked_docker("docker28")
docker28_containerd = unpacked_docker("docker28", containerd_store=True)

ENGINES: dict[str, Callable[..., ManagedEngine]] = {
    "docker": ManagedDocker,
    "docker26": docker26,
    "docker26-containerd": docker26_containerd,
    "docker28": docker28,
    "docker28-containerd": docker28_containerd,
    "podman": ManagedPodman,
}
"""What ``--managed NAME`` starts."""

__all__ = [
    "ENGINES",
    "UNPACKED",
    "EngineUnavailable",
    "ManagedDocker",
    "ManagedEngine",
    "ManagedPodman",
    "free_port",
    "unpacked_docker",
    "unpacked_dir",
]
