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

A :class:`NamespacedDocker` is a :class:`~engine_conformance.engines.ManagedDocker`
whose dockerd (and the containerd it starts) runs in the namespace: started with
``nsenter --net=/run/netns/NAME``, which changes the network namespace only.
(``ip netns exec`` also remounts /sys, and dockerd then stops with "Devices
cgroup isn't mounted".) Its unix socket is a file, reachable from this
machine's namespace; with ``tls=True`` it also listens on TCP with mutual TLS
on the namespace's address (port 2376), as a remote engine would. Its
127.0.0.1 is its own: a pull from this machine's 127.0.0.1 is refused, as it
is for an engine on another machine.

Everything here needs root, ``ip`` (iproute2) and ``nsenter`` (util-linux):
:func:`missing` says which is lacking.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .engines import ManagedDocker

RANGE = ipaddress.IPv4Network("10.213.0.0/16")
"""Where the veth pairs' ``/30`` networks are picked: ``10.213.N.0/30``."""

NETNS_DIR = Path("/run/netns")
LOCK = Path("/run/lock/engine-conformance-netns.lock")
"""Held while a ``/30`` is picked and given, so that two processes never pick the same."""

TLS_PORT = 2376


def missing() -> str | None:
    """Why a namespaced engine cannot run here (one line), or None."""
    if os.geteuid() != 0:
        return "needs root: it makes a network namespace (ip netns add) and starts dockerd in it"
    if shutil.which("ip") is None:
        return "needs ip (iproute2) to make a network namespace: apt-get install iproute2"
    if shutil.which("nsenter") is None:
        return "needs nsenter (util-linux) to start dockerd in the network namespace"
    return None


def ip(*args: str) -> str:
    """``ip ARGS``; its output. Raises ``subprocess.CalledProcessError`` with what it said."""
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True,
                          timeout=30).stdout


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
            subprocess.run(["ip", "link", "delete", "dev", self.host_link],
                           capture_output=True, timeout=30, check=False)
            self._made_link = False
        if self._made:
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True,
                           timeout=30, check=False)
            self._made = False

    def links(self) -> list[str]:
        """The interfaces inside the namespace."""
        return [line.split(":")[1].strip().split("@")[0]
                for line in ip("-n", self.name, "-o", "link", "show").splitlines()]

    def __enter__(self) -> Namespace:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def free_network(taken: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
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
            found.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}",
                                              strict=False))
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


class NamespacedDocker(ManagedDocker):
    """A managed Docker whose dockerd (and the containerd it starts) runs in ``namespace``.

    With ``tls=True`` it listens on ``tcp://ADDRESS:2376`` with mutual TLS as well,
    ADDRESS being the namespace's end of its veth pair (``cert_path`` holds the client
    certificates, laid out like ``DOCKER_CERT_PATH``).
    """

    def __init__(self, namespace: Namespace, tls: bool = False, **kwargs: object) -> None:
        if tls:
            kwargs.setdefault("tcp_host", namespace.address)
            kwargs.setdefault("tcp_port", TLS_PORT)
        super().__init__(tls, **kwargs)  # type: ignore[arg-type]
        self.namespace = namespace

    @property
    def tcp_target(self) -> str:
        """``tcp://ADDRESS:2376``, as given with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH."""
        return self.tls_target.replace("https://", "tcp://", 1)

    def command(self) -> list[str]:
        return ["nsenter", f"--net={self.namespace.path}", "--", *super().command()]


__all__ = ["RANGE", "Namespace", "NamespacedDocker", "free_network", "ip", "missing"]
