"""An engine off this machine's loopback, on this machine: a network namespace of its own.

    >>> with Namespace("ec-remote", veth=True) as ns:                   # doctest: +SKIP
    ...     ns.host_address, ns.address          # ('10.213.7.1', '10.213.7.2')
    ...     with NamespacedDocker(ns, tls=True) as docker:
    ...         docker.target        # 'unix:///tmp/ec-docker-xxxx/docker.sock'
    ...         docker.tls_target    # 'https://10.213.7.2:2376'

A :class:`Namespace` is made with ``ip netns add``; it has loopback up and,
with ``veth=True``, one veth pair: one end in the namespace, one on this
machine, each with an address of a ``/30`` of :data:`RANGE` that no interface
or route of this machine touches (picked under a lock, so that two processes
never pick the same one). No other address is given anywhere (the ends get no
IPv6 link-local address either) and no route beyond the ``/30`` itself: the
engine reaches this machine's ``host_address`` and nothing else, and this
machine reaches the engine at ``address``. ``remove`` (on leaving the ``with``,
and after a failure while it was being made) deletes the namespace and the
veth pair, and nothing else.

A :class:`NamespacedDocker` is a :class:`~engine_conformance.engine.engines.ManagedDocker`
whose dockerd (and the containerd it starts) runs in the namespace: started with
``nsenter --net=/run/netns/NAME``, which changes the network namespace only.
(``ip netns exec`` also remounts /sys, and dockerd then stops with "Devices
cgroup isn't mounted".) Its unix socket is a file, reachable from this
machine's namespace; with ``tls=True`` it also listens on TCP with mutual TLS
on the namespace's address (port 2376), as a remote engine would. Its
127.0.0.1 is its own: a pull from this machine's 127.0.0.1 is refused, as it
is for an engine on another machine.

With ``hosts={NAME: ADDRESS}`` the engine also runs in a mount namespace of its
own in which ``/etc/hosts`` is a file of its private directory naming NAME (as a
VM engine's names this machine: ``host.docker.internal``); this machine's
``/etc/hosts`` is never changed. :class:`NamespacedPodman` is the same for
Podman's API service.

Everything here needs root, ``ip`` (iproute2) and ``nsenter`` (util-linux), and
``unshare`` (util-linux) for ``hosts``: :func:`missing` says which is lacking.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from engine_conformance.engine.engines import ManagedDocker, ManagedEngine, ManagedPodman

RANGE = ipaddress.IPv4Network("10.213.0.0/16")
"""Where the veth pairs' ``/30`` networks are picked: ``10.213.N.0/30``."""

NETNS_DIR = Path("/run/netns")
LOCK = Path("/run/lock/engine-conformance-netns.lock")
"""Held while a ``/30`` is picked and given, so that two processes never pick the same."""

TLS_PORT = 2376


def missing(private_hosts: bool = False) -> str | None:
    """Why a namespaced engine cannot run here (one line), or None.

    ``private_hosts``: one started with ``hosts=`` (it needs ``unshare`` too).
    """
    if os.geteuid() != 0:
        return "needs root: it makes a network namespace (ip netns add) and starts dockerd in it"
    if shutil.which("ip") is None:
        return "needs ip (iproute2) to make a network namespace: apt-get install iproute2"
    if shutil.which("nsenter") is None:
        return "needs nsenter (util-linux) to start dockerd in the network namespace"
    if private_hosts and shutil.which("unshare") is None:
        return "needs unshare (util-linux) to give the engine an /etc/hosts of its own"
    return None


def ip(*args: str) -> str:
    """``ip ARGS``; its output. Raises ``subprocess.CalledProcessError`` with what it said."""
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


class Namespace:
    """A network namespace of the caller's own, with loopback up and an optional veth pair."""

    def __init__(self, prefix: str = "ec-ns", veth: bool = False) -> None:
        tag = secrets.token_hex(3)
        self.name = f"{prefix}-{os.getpid()}-{tag}"
        self.veth = veth
        # Interface names are at most 15 bytes.
        self.host_link = f"ec{tag}h"
        self.link = f"ec{tag}n"
        self.network: ipaddress.IPv4Network | None = None
        self._made = False
        self._made_link = False

    @property
    def path(self) -> Path:
        """What ``nsenter --net=`` takes."""
        return NETNS_DIR / self.name

    @property
    def host_address(self) -> str:
        """This machine's end of the veth pair: what the engine reaches (``--serve-host``)."""
        return str(self._hosts()[0])

    @property
    def address(self) -> str:
        """The namespace's end of the veth pair: where this machine reaches the engine."""
        return str(self._hosts()[1])

    def _hosts(self) -> list[ipaddress.IPv4Address]:
        assert self.network is not None, "a namespace without veth has loopback only"
        return list(self.network.hosts())

    def create(self) -> Namespace:
        ip("netns", "add", self.name)
        self._made = True
        try:
            ip("-n", self.name, "link", "set", "lo", "up")
            if self.veth:
                self._add_veth()
        except BaseException:
            self.remove()
            raise
        return self

    def _add_veth(self) -> None:
        with _locked():
            self.network = free_network(_taken())
            ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.link)
            self._made_link = True
            ip("link", "set", "dev", self.link, "netns", self.name)
            # No IPv6 link-local address: the two below are the only ones given. (Set
            # after the move: a link moved to another namespace starts afresh.)
            ip("link", "set", "dev", self.host_link, "addrgenmode", "none")
            ip("-n", self.name, "link", "set", "dev", self.link, "addrgenmode", "none")
            prefix = self.network.prefixlen
            ip("addr", "add", f"{self.host_address}/{prefix}", "dev", self.host_link)
            ip("-n", self.name, "addr", "add", f"{self.address}/{prefix}", "dev", self.link)
        ip("link", "set", "dev", self.host_link, "up")
        ip("-n", self.name, "link", "set", "dev", self.link, "up")

    def remove(self) -> None:
        """Delete the veth pair and the namespace (what was made of them); idempotent."""
        if self._made_link:
            # Deleting either end deletes both; the namespace's end goes with it anyway.
            subprocess.run(
                ["ip", "link", "delete", "dev", self.host_link],
                capture_output=True,
                timeout=30,
                check=False,
            )
            self._made_link = False
        if self._made:
            subprocess.run(
                ["ip", "netns", "delete", self.name], capture_output=True, timeout=30, check=False
            )
            self._made = False

    def links(self) -> list[str]:
        """The interfaces inside the namespace."""
        return [
            line.split(":")[1].strip().split("@")[0]
            for line in ip("-n", self.name, "-o", "link", "show").splitlines()
        ]

    def __enter__(self) -> Namespace:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def free_network(
    taken: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> ipaddress.IPv4Network:
    """A ``10.213.N.0/30`` that overlaps none of ``taken``.

    >>> free_network([ipaddress.ip_network("10.213.0.0/17")]).subnet_of(
    ...     ipaddress.ip_network("10.213.128.0/17"))
    True
    """
    candidates = [ipaddress.IPv4Network(f"10.213.{n}.0/30") for n in range(256)]
    random.shuffle(candidates)  # two runs started at once rarely even try the same
    for network in candidates:
        if not any(network.version == t.version and network.overlaps(t) for t in taken):
            return network
    raise OSError(f"no /30 of {RANGE} is free of this machine's addresses and routes")


def _taken() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every IPv4 network an address or route of this machine is on."""
    found: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in json.loads(ip("-j", "-4", "addr", "show") or "[]"):
        for info in entry.get("addr_info", []):
            found.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        destination = route.get("dst", "")
        if destination == "default":
            continue
        try:
            found.append(ipaddress.ip_network(destination, strict=False))
        except ValueError:
            pass
    return found


@contextmanager
def _locked() -> Iterator[None]:
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def hosts_text(names: Mapping[str, str]) -> str:
    """An ``/etc/hosts`` with localhost and ``ADDRESS NAME`` for each of ``names``.

    >>> print(hosts_text({"host.docker.internal": "10.213.7.1"}), end="")
    127.0.0.1 localhost
    ::1 localhost
    10.213.7.1 host.docker.internal
    """
    lines = ["127.0.0.1 localhost", "::1 localhost"]
    return "\n".join(lines + [f"{address} {name}" for name, address in names.items()]) + "\n"


def in_namespaces(namespace: Namespace, command: list[str], hosts: Path | None) -> list[str]:
    """``command`` in ``namespace``'s network, and with ``hosts`` bound over /etc/hosts in a
    private mount namespace (the bind is seen by nothing else: propagation private)."""
    inner = (
        command
        if hosts is None
        else [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"',
            str(hosts),
            *command,
        ]
    )
    return ["nsenter", f"--net={namespace.path}", "--", *inner]


class _Namespaced(ManagedEngine):
    """What a managed engine in a :class:`Namespace` (and, with ``hosts``, a private
    /etc/hosts) adds to its command and its private directory."""

    namespace: Namespace
    hosts: dict[str, str]

    @property
    def hosts_path(self) -> Path | None:
        """The engine's /etc/hosts, a file of its private directory (None without ``hosts``)."""
        assert self.dir is not None, "not started"
        return self.dir / "hosts" if self.hosts else None

    def prepare(self) -> None:
        super().prepare()
        if self.hosts_path is not None:
            self.hosts_path.write_text(hosts_text(self.hosts))

    def command(self) -> list[str]:
        return in_namespaces(self.namespace, super().command(), self.hosts_path)


class NamespacedDocker(_Namespaced, ManagedDocker):
    """A managed Docker whose dockerd (and the containerd it starts) runs in ``namespace``.

    With ``tls=True`` it listens on ``tcp://ADDRESS:2376`` with mutual TLS as well,
    ADDRESS being the namespace's end of its veth pair (``cert_path`` holds the client
    certificates, laid out like ``DOCKER_CERT_PATH``). With ``hosts`` its /etc/hosts
    is its own (see the module docstring).
    """

    def __init__(
        self,
        namespace: Namespace,
        tls: bool = False,
        hosts: Mapping[str, str] | None = None,
        **kwargs: object,
    ) -> None:
        if tls:
            kwargs.setdefault("tcp_host", namespace.address)
            kwargs.setdefault("tcp_port", TLS_PORT)
        # Not typed below: kwargs pass through to ManagedDocker as given by the caller.
        ManagedDocker.__init__(self, tls, **kwargs)  # type: ignore[arg-type]
        self.namespace = namespace
        self.hosts = dict(hosts or {})

    @property
    def tcp_target(self) -> str:
        """``tcp://ADDRESS:2376``, as given with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH."""
        return self.tls_target.replace("https://", "tcp://", 1)


class NamespacedPodman(_Namespaced, ManagedPodman):
    """A managed Podman (``podman system service``, its own registries.conf and storage)
    running in ``namespace``, with ``hosts`` as its /etc/hosts if given.

    ``registries_conf`` is its registries.conf (CONTAINERS_REGISTRIES_CONF), read at
    each start: what ``/etc/containers/registries.conf`` is to a system Podman.
    """

    def __init__(
        self,
        namespace: Namespace,
        hosts: Mapping[str, str] | None = None,
        insecure_registries: list[str] | tuple[str, ...] = (),
    ) -> None:
        ManagedPodman.__init__(self, insecure_registries)
        self.namespace = namespace
        self.hosts = dict(hosts or {})

    @property
    def registries_conf(self) -> Path:
        assert self.dir is not None, "not started"
        return self.dir / "registries.conf"


__all__ = [
    "RANGE",
    "Namespace",
    "NamespacedDocker",
    "NamespacedPodman",
    "free_network",
    "hosts_text",
    "in_namespaces",
    "ip",
    "missing",
]
