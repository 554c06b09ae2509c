"""Why an engine cannot reach the suite's services, and the one-time steps that fix it.

The preflight (:mod:`engine_conformance.judge.preflight`) learns what the engine
answered its canary pull or import; this module, which does no I/O, reads that
answer and the engine's own identity and says what to do::

    >>> kind = engine_kind({"engine": "docker", "security_options": ["name=rootless"]})
    >>> kind.label, kind.certs_d
    ('rootless Docker', '~/.config/docker/certs.d')
    >>> cause("HTTP 500 'dial tcp 127.0.0.1:5000: connect: connection refused'")
    'unreachable'

Causes (:data:`CAUSES`): the engine is not on this machine's network
(``unreachable``: connection refused, no route, timeouts), it speaks HTTPS to a
plain-HTTP registry (``plain-http``), it does not trust the run's CA
(``untrusted``), it did not answer in time (``hung``: nothing about the
registry was learned), or something else (``other``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

CAUSES = ("unreachable", "plain-http", "untrusted", "hung", "other")
LOOPBACK = ("127.", "localhost", "::1", "[::1]")

_UNREACHABLE = re.compile(
    r"connection refused|no route to host|network is unreachable|i/o timeout|"
    r"connection timed out|no such host|host is down|connection reset",
    re.I,
)
_PLAIN_HTTP = re.compile(r"server gave HTTP response to HTTPS client", re.I)
_UNTRUSTED = re.compile(
    r"x509|certificate signed by unknown authority|failed to verify certificate|"
    r"certificate is not trusted|unknown certificate authority|certificate verify failed",
    re.I,
)
_HUNG = re.compile(r"did not answer|timed out", re.I)


@dataclass(frozen=True)
class EngineKind:
    """Where an engine of one kind keeps what the fixes change."""

    name: str
    label: str
    insecure: str  # how to declare a plain-HTTP registry ({address} filled in)
    certs_d: str  # the directory whose HOST:PORT/ca.crt the engine trusts for a registry
    restart: str  # what makes the engine read its configuration again
    host_alias: str = ""  # the VM's name for this machine: never what to serve on (VM engines)
    shares_loopback: bool = True  # whether the engine's 127.0.0.1 can be this machine's
    insecure_note: str = ""  # how the entry goes into a file that is new or has it already
    inside: str = ""  # where certs_d is, when not on this machine ("inside the machine")


def _kinds() -> dict[str, EngineKind]:
    docker_insecure = 'add "insecure-registries": ["{address}"] to {path}'
    # daemon.json is one JSON object, and Debian's docker.io ships none: the key alone,
    # written as a new file, stops dockerd ("cannot unmarshal string into Go value").
    docker_note = (
        "daemon.json is one JSON object: a file that is missing or empty becomes "
        '{{"insecure-registries": ["{address}"]}}; where the key is there already, '
        '"{address}" joins its list'
    )
    # TOML: the table header and each key on a line of their own (pasted as one line,
    # every pull fails with "expected a top-level item to end with a newline").
    podman_insecure = (
        'add [[registry]] location = "{address}" insecure = true to {path} as '
        'three lines: `[[registry]]`, `location = "{address}"`, `insecure = true` '
        "(CONTAINERS_REGISTRIES_CONF names another file if set{also})"
    )
    return {
        k.name: k
        for k in (
            EngineKind(
                "docker",
                "Docker",
                docker_insecure.replace("{path}", "/etc/docker/daemon.json"),
                "/etc/docker/certs.d",
                "restart it (systemctl restart docker)",
                insecure_note=docker_note,
            ),
            EngineKind(
                "docker-rootless",
                "rootless Docker",
                docker_insecure.replace("{path}", "~/.config/docker/daemon.json"),
                "~/.config/docker/certs.d",
                "restart it (systemctl --user restart docker)",
                shares_loopback=False,
                insecure_note=docker_note,
            ),
            EngineKind(
                "docker-desktop",
                "Docker Desktop",
                docker_insecure.replace(
                    "{path}", "Settings → Docker Engine (the daemon.json editor)"
                ),
                "~/.docker/certs.d",
                "Apply & restart",
                host_alias="host.docker.internal",
                shares_loopback=False,
                insecure_note=docker_note,
            ),
            EngineKind(
                "podman",
                "Podman",
                podman_insecure.replace("{path}", "/etc/containers/registries.conf").replace(
                    "{also}", ""
                ),
                "/etc/containers/certs.d",
                "restart its service (a running service does not re-read registries.conf)",
            ),
            EngineKind(
                "podman-rootless",
                "rootless Podman",
                podman_insecure.replace("{path}", "~/.config/containers/registries.conf").replace(
                    "{also}",
                    "; a user's registries.conf is read instead of "
                    "/etc/containers/registries.conf: make it from a copy of that",
                ),
                "~/.config/containers/certs.d",
                "restart its service (systemctl --user restart podman.socket podman)",
            ),
            EngineKind(
                "podman-machine",
                "Podman machine",
                podman_insecure.replace(
                    "{path}",
                    "/etc/containers/registries.conf inside the machine (podman machine ssh)",
                ).replace("{also}", ""),
                "/etc/containers/certs.d",
                "podman machine stop && podman machine start",
                host_alias="host.containers.internal",
                shares_loopback=False,
                inside=" inside the machine (podman machine ssh)",
            ),
        )
    }


KINDS = _kinds()


def engine_kind(target_info: dict[str, Any]) -> EngineKind:
    """The kind of engine, from its own answers (``/version`` and ``/info`` as the run saw them).

    Rootless: ``rootless`` is true (:func:`engine_conformance.engine.identity.is_rootless`:
    Podman says so only in its libpod ``/info``), or ``/info`` SecurityOptions holds
    ``name=rootless`` (Docker). Docker Desktop:
    OperatingSystem ``Docker Desktop``. Podman machine: a Podman whose host is
    Fedora CoreOS (the machine image): ``distribution_variant`` ``coreos``, its libpod
    ``/info`` ``host.distribution.variant``. Its compatible ``/info`` cannot tell: its
    OperatingSystem is the distribution alone, ``fedora``, as on a Fedora workstation.
    """
    podman = target_info.get("engine") == "podman"
    system = str(target_info.get("operating_system") or "")
    rootless = target_info.get("rootless") is True or any(
        "rootless" in str(o) for o in target_info.get("security_options") or []
    )
    if podman:
        if str(target_info.get("distribution_variant") or "").lower() == "coreos":
            return KINDS["podman-machine"]
        return KINDS["podman-rootless" if rootless else "podman"]
    if system.startswith("Docker Desktop"):
        return KINDS["docker-desktop"]
    return KINDS["docker-rootless" if rootless else "docker"]


def cause(answer: str, answered: bool = True) -> str:
    """Which of :data:`CAUSES` the engine's answer shows.

    ``answered`` is False when the harness got no answer at all (``answer`` is then its
    own error): a timeout is ``hung``; anything else (the engine went away) is ``other``,
    never read as the engine's reach to the registry.
    """
    if not answered:
        return "hung" if _HUNG.search(answer) else "other"
    if _PLAIN_HTTP.search(answer):
        return "plain-http"
    if _UNTRUSTED.search(answer):
        return "untrusted"
    if _UNREACHABLE.search(answer):
        return "unreachable"
    if _HUNG.search(answer):
        return "hung"
    return "other"


@dataclass(frozen=True)
class Setup:
    """How the run serves: what the steps refer to."""

    serve_host: str
    registry_port: int
    file_server_port: int = 0
    tls_dir: str = ""  # --tls-dir, when given
    serving_tls: bool = False  # --serve-tls
    local_addresses: tuple[str, ...] = ()  # this machine's addresses, loopback excluded
    timeout: float = 0.0
    remote: bool = False  # the target is reached over the network, not on this machine

    def elsewhere(self, kind: EngineKind) -> bool:
        """Whether the engine's 127.0.0.1 is not this machine's."""
        return self.remote or not kind.shares_loopback


def registry_steps(why: str, kind: EngineKind, setup: Setup) -> list[str]:
    """The numbered one-time steps after which the engine pulls from the lab registry.

    ``why`` is one of :data:`CAUSES`; every step can be followed as written.
    """
    if why == "hung":
        return [_hung(kind, setup)]
    loopback = setup.serve_host.startswith(LOOPBACK)
    host = setup.serve_host
    steps: list[str] = []
    if why == "unreachable" or (loopback and setup.elsewhere(kind)):
        # With several addresses to choose from, the next steps name the one chosen. Never
        # a VM's alias for this machine: the engine is given the --serve-host address
        # itself, in every reference, and the alias is the VM's name, not this machine's.
        host = setup.local_addresses[0] if len(setup.local_addresses) == 1 else "ADDRESS"
        steps.append(_serve_host(kind, setup, loopback))
    port = setup.registry_port or "PORT"
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 in brackets
    needs_trust = (
        not host.startswith(LOOPBACK)
        or why in ("plain-http", "untrusted")
        or kind.name.startswith("podman")
    )
    if not needs_trust:
        steps.append(
            f"nothing else: {kind.label} treats 127.0.0.0/8 as a plain-HTTP registry "
            "(if this still fails, see what it answered above)"
        )
        return steps
    tls_dir = setup.tls_dir or "DIR"
    ca_step = (
        f"or serve over HTTPS with a CA made once: run with --serve-tls --tls-dir "
        f"{tls_dir} --registry-port {port}, then copy {tls_dir}/ca.crt to "
        f"{kind.certs_d}/{address}/ca.crt{kind.inside} (read at each pull, no restart)"
    )
    if why == "untrusted" or setup.serving_tls:
        steps.append(
            ca_step.removeprefix("or ").replace("serve over HTTPS with a CA made once: ", "")
        )
        if not setup.tls_dir:
            steps.append(
                "keep giving the same --tls-dir DIR: without it each run makes a new "
                "CA, which the engine will not trust"
            )
        return steps
    note = f" ({kind.insecure_note.format(address=address)})" if kind.insecure_note else ""
    steps.append(
        f"declare {address} a plain-HTTP registry: "
        f"{kind.insecure.format(address=address)}, then {kind.restart}, and keep the "
        f"port with --registry-port {port}{note}; {ca_step}"
    )
    return steps


def file_server_steps(why: str, kind: EngineKind, setup: Setup) -> list[str]:
    """The numbered one-time steps after which the engine imports from the file server."""
    if why == "hung":
        return [_hung(kind, setup)]
    steps: list[str] = []
    loopback = setup.serve_host.startswith(LOOPBACK)
    if why == "unreachable" or (loopback and setup.elsewhere(kind)):
        steps.append(
            _serve_host(
                kind, setup, loopback, server="file server", port_option="--file-server-port"
            )
        )
    if why == "untrusted" or setup.serving_tls:
        steps.append(
            f"the engine fetches fromSrc URLs with its host's system trust store: "
            f"add {setup.tls_dir or 'DIR'}/ca.crt there (Debian: copy it to "
            "/usr/local/share/ca-certificates/engine-conformance.crt, run "
            f"update-ca-certificates), then {kind.restart}"
        )
    if not steps:
        steps.append(
            "see what the engine answered above: it reached neither a refused "
            "connection nor a certificate problem"
        )
    return steps


def numbered(steps: list[str]) -> str:
    """``1) … 2) …`` on one line, for a reason."""
    return " ".join(f"{i}) {s}" for i, s in enumerate(steps, 1))


def _serve_host(
    kind: EngineKind,
    setup: Setup,
    loopback: bool,
    server: str = "lab registry",
    port_option: str = "--registry-port",
) -> str:
    port = setup.registry_port if port_option == "--registry-port" else setup.file_server_port
    fixed = f" and a fixed {port_option} {port or 'PORT'}"
    where = ", ".join(setup.local_addresses) or "see `ip -br addr`"
    if kind.host_alias:
        # --serve-host is both where the suite listens and what it names to the engine in
        # each image reference and URL: 0.0.0.0 would send the VM to its own 0.0.0.0, and
        # the VM's alias for this machine is a name only the VM knows.
        return (
            f"{kind.label} runs in a VM, whose 127.0.0.1 is not this machine's: run with "
            f"--serve-host ADDRESS{fixed}, ADDRESS being an address of this machine the "
            f"VM reaches (this machine's: {where}); not 0.0.0.0 nor {kind.host_alias}, "
            "the VM's name for this machine: the engine is sent to the --serve-host "
            "address itself"
        )
    if loopback:
        return (
            f"the engine is not on this machine's network ({kind.label}'s 127.0.0.1 is its "
            f"own): run with --serve-host ADDRESS{fixed}, ADDRESS being an address of this "
            f"machine the engine reaches (this machine's: {where})"
        )
    return (
        f"the engine could not connect to {setup.serve_host}: it does not reach that "
        f"address, or a firewall stops the {server}'s port; run with --serve-host ADDRESS"
        f"{fixed}, ADDRESS being another address of this machine the engine reaches (this "
        f"machine's: {where})"
    )


def _hung(kind: EngineKind, setup: Setup) -> str:
    within = f" within {setup.timeout:g} s" if setup.timeout else " in time"
    return (
        f"{kind.label} did not answer the canary request{within}: the engine hung or is "
        "very slow, and nothing about its reach to the suite's servers was learned; check "
        "the engine (`docker info`, its log), or give a longer --timeout"
    )
