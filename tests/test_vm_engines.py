"""VM engines (Docker Desktop, a Podman machine), simulated, after ``doctor``'s steps as written.

Neither VM can run on this machine, so each is simulated by what makes it one to
the suite:

- its engine is off this machine's loopback: Docker 20.10 / Podman 4.3's API
  service in a network namespace of its own with a veth pair
  (:mod:`engine_conformance.engine.netns`), whose host end is the only address of this
  machine it reaches;
- it names this machine as the VM does: in a private mount namespace its
  ``/etc/hosts`` maps ``host.docker.internal`` and ``gateway.docker.internal``
  (Docker Desktop) or ``host.containers.internal`` (Podman machine) to that host
  end; this machine's ``/etc/hosts`` is never changed;
- it says what the VM says: the suite reaches it through a proxy on a unix socket
  (:class:`deviant_proxy.DeviantProxy`) that forwards everything and rewrites only
  the engine's self-description: Docker Desktop's ``/info`` OperatingSystem
  ``Docker Desktop`` and linuxkit kernel, a Podman machine's Fedora CoreOS
  (compatible ``/info`` OperatingSystem ``fedora``, libpod ``/info``
  ``host.distribution`` fedora/coreos);
- its configuration starts as the VM's does: Docker Desktop's daemon.json as its
  Settings → Docker Engine editor shows it by default.

Podman machine: a real one's compatible ``/info`` says ``fedora`` (Podman
answers host.distribution.distribution alone); only its libpod ``/info``'s
host.distribution.variant says ``coreos``, which the target's identity carries
(:func:`engine_conformance.engine.identity.describe_target`, ``distribution_variant``).

Each step is followed as written; where it names the VM's own place
(Settings → Docker Engine; registries.conf inside the machine) or its restart
(Apply & restart; ``podman machine stop && podman machine start``),
:func:`simulated` says what that is here: the namespaced engine's own daemon.json
/ registries.conf, and its restart. After them ``doctor`` says ready, and the run
it names judges as the engine's expectation file says.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from deviant_proxy import DeviantProxy, Deviation, Request, Response
from engine_conformance.catalogue import expectations
from engine_conformance.engine import netns
from engine_conformance.engine.engines import ManagedDocker, ManagedPodman, free_port
from engine_conformance.engine.netns import Namespace, NamespacedDocker, NamespacedPodman
from tests.as_user import cli

EXIT_NOT_READY = 6
REQUIREMENTS = ("PULL-001", "IMPORT-030", "PULL-015")
"""A pull, a URL import (the two services) and a second pull."""

DESKTOP_KERNEL = "6.10.14-linuxkit"
DESKTOP_DAEMON_JSON = {
    "builder": {"gc": {"defaultKeepStorage": "20GB", "enabled": True}},
    "experimental": False,
}
"""What Docker Desktop's Settings → Docker Engine shows before anyone edits it."""
MACHINE_KERNEL = "6.8.11-300.fc40.x86_64"
MACHINE_DISTRIBUTION = {"distribution": "fedora", "variant": "coreos", "version": "40"}


def _missing() -> str | None:
    """Why these tests cannot run here, or None."""
    if problem := netns.missing(private_hosts=True):
        return problem
    if not ManagedDocker().available():
        return "docker: dockerd is not installed (bash scripts/setup installs it)"
    if not ManagedPodman.available():
        return "podman is not installed (bash scripts/setup installs it)"
    return None


# One worker at a time makes namespaces: each picks a free 10.213.N.0/30 from the routes.
pytestmark = [
    pytest.mark.engine,
    pytest.mark.xdist_group("netns"),
    pytest.mark.skipif(_missing() is not None, reason=_missing() or ""),
]


# --- what each VM says of itself ------------------------------------------------------


def _rewrite(
    name: str, match: Callable[[Request], bool], change: Callable[[dict], None]
) -> Deviation:
    """The engine's JSON answer to ``match``ed requests, with ``change`` applied to it."""

    def response(req: Request, resp: Response) -> Response:
        if resp.status != 200:
            return resp
        body = json.loads(resp.body)
        change(body)
        return resp.replace(body=json.dumps(body).encode())

    return Deviation(name, match=lambda req: req.method == "GET" and match(req), response=response)


def _engine_details(version: dict) -> dict:
    return next(
        (
            c.setdefault("Details", {})
            for c in version.get("Components") or []
            if c.get("Name") in ("Engine", "Podman Engine")
        ),
        {},
    )


def _desktop_info(info: dict) -> None:
    info.update(
        OperatingSystem="Docker Desktop",
        OSVersion="",
        KernelVersion=DESKTOP_KERNEL,
        Name="docker-desktop",
    )


def _desktop_version(version: dict) -> None:
    version.update(
        Os="linux",
        KernelVersion=DESKTOP_KERNEL,
        Platform={"Name": "Docker Desktop 4.37.1 (178610)"},
    )
    _engine_details(version).update(Os="linux", KernelVersion=DESKTOP_KERNEL)


def _machine_info(info: dict) -> None:
    # Podman's compatible /info: OperatingSystem is host.distribution.distribution alone.
    info.update(
        OperatingSystem=MACHINE_DISTRIBUTION["distribution"],
        OSVersion=MACHINE_DISTRIBUTION["version"],
        KernelVersion=MACHINE_KERNEL,
    )


def _machine_libpod_info(info: dict) -> None:
    host = info.setdefault("host", {})
    host.update(distribution=dict(MACHINE_DISTRIBUTION), kernel=MACHINE_KERNEL)


def _machine_version(version: dict) -> None:
    version.update(KernelVersion=MACHINE_KERNEL)
    _engine_details(version).update(KernelVersion=MACHINE_KERNEL)


DESKTOP = [
    _rewrite("docker-desktop /info", lambda req: req.endpoint == "/info", _desktop_info),
    _rewrite("docker-desktop /version", lambda req: req.endpoint == "/version", _desktop_version),
]
MACHINE = [
    _rewrite("podman-machine /info", lambda req: req.endpoint == "/info", _machine_info),
    _rewrite(
        "podman-machine libpod /info",
        lambda req: re.fullmatch(r"(/v[\d.]+)?/libpod/info", req.path) is not None,
        _machine_libpod_info,
    ),
    _rewrite("podman-machine /version", lambda req: req.endpoint == "/version", _machine_version),
]


# --- the simulated VMs ------------------------------------------------------------------


class DesktopDocker(NamespacedDocker):
    """Docker 20.10 in its namespace, its daemon.json as Docker Desktop's starts."""

    def prepare(self) -> None:
        super().prepare()
        self.config_path.write_text(json.dumps(DESKTOP_DAEMON_JSON, indent=2) + "\n")


@dataclass
class VM:
    """A simulated VM engine: what the suite targets, and what stands for the VM's parts."""

    label: str  # as diagnosis names the kind
    alias: str  # the VM's name for this machine
    namespace: Namespace
    engine: DesktopDocker | NamespacedPodman
    proxy: DeviantProxy
    expectations: Path

    @property
    def target(self) -> str:
        return self.proxy.target


def _start_vm(stack: ExitStack, which: str) -> VM:
    namespace = stack.enter_context(Namespace(f"ec-{which}", veth=True))
    host = namespace.host_address
    engine: DesktopDocker | NamespacedPodman
    if which == "desktop":
        engine = DesktopDocker(
            namespace, hosts={"host.docker.internal": host, "gateway.docker.internal": host}
        )
        label, alias, answers, key = (
            "Docker Desktop",
            "host.docker.internal",
            DESKTOP,
            "docker-20.10",
        )
    else:
        engine = NamespacedPodman(namespace, hosts={"host.containers.internal": host})
        label, alias, answers, key = (
            "Podman machine",
            "host.containers.internal",
            MACHINE,
            "podman-4.3",
        )
    stack.callback(engine.stop)
    engine.start()
    scratch = Path(tempfile.mkdtemp(prefix=f"ec-{which}-"))
    stack.callback(shutil.rmtree, scratch, True)
    proxy = stack.enter_context(
        DeviantProxy(engine.target, answers, unix=str(scratch / f"{which}.sock"))
    )
    return VM(label, alias, namespace, engine, proxy, expectations.path_for(key))


@pytest.fixture(scope="module", params=["desktop", "machine"])
def vm(request: pytest.FixtureRequest) -> Iterator[VM]:
    """One simulated VM engine for the module, everything of it removed afterwards."""
    with ExitStack() as stack:
        yield _start_vm(stack, request.param)


# --- following the steps ------------------------------------------------------------------

PLACES = {
    "Docker Desktop": ("Settings → Docker Engine (the daemon.json editor)", "Apply & restart"),
    "Podman machine": (
        "/etc/containers/registries.conf inside the machine (podman machine ssh)",
        "podman machine stop && podman machine start",
    ),
}
"""Where each VM keeps its registry settings, and how it is made to read them again."""


def simulated(vm: VM, destination: str, restart: str) -> Path:
    """The simulation's file for the one a step names, after asserting that the step
    names the VM's own place and restart (:data:`PLACES`): the namespaced engine's
    daemon.json (``--config-file``) / registries.conf (CONTAINERS_REGISTRIES_CONF),
    both read at each start, as the VM's are. Its restart is :meth:`engine.restart`."""
    assert (destination, restart) == PLACES[vm.label], (destination, restart)
    if isinstance(vm.engine, NamespacedPodman):
        return vm.engine.registries_conf
    return vm.engine.config_path


_DOCKER_ENTRY = re.compile(
    r'add "insecure-registries": \["([^"]+)"\] to (.+?), then (.+?), and keep the port with '
    r"--registry-port (\d+) \(daemon\.json is one JSON object: a file that is missing or "
    r'empty becomes (\{.*?\}); where the key is there already, "([^"]+)" joins its list\)'
)
_PODMAN_ENTRY = re.compile(
    r"add \[\[registry\]\] .* to (.+?) as three lines: `([^`]+)`, `([^`]+)`, `([^`]+)` "
    r"\(CONTAINERS_REGISTRIES_CONF names another file if set\), then (.+?), and keep the port "
    r"with --registry-port (\d+)"
)


def declare_insecure(vm: VM, step: str, chosen: str) -> str:
    """The step's plain-HTTP entry written where it says, as it says, ADDRESS being the
    address chosen in the serve-host step; the VM restarted as it says. The entry."""
    if isinstance(vm.engine, NamespacedPodman):
        found = _PODMAN_ENTRY.search(step)
        assert found, f"not the registries.conf step of a Podman machine: {step}"
        path = simulated(vm, found[1], found[5])
        lines = "\n".join(found.group(2, 3, 4)).replace('"ADDRESS:', f'"{chosen}:')
        entry = tomllib.loads(lines)["registry"][0]["location"]
        with path.open("a") as f:
            f.write("\n" + lines + "\n")
    else:
        found = _DOCKER_ENTRY.search(step)
        assert found, f"not the daemon.json step of Docker Desktop: {step}"
        path = simulated(vm, found[2], found[3])
        entry = found[1].replace("ADDRESS:", f"{chosen}:")
        assert found[6] == found[1], step
        text = path.read_text()
        if not text.strip():
            path.write_text(found[5].replace("ADDRESS:", f"{chosen}:") + "\n")
        else:
            config = json.loads(text)
            config.setdefault("insecure-registries", []).append(entry)  # joins, or the key added
            path.write_text(json.dumps(config, indent=2) + "\n")
    assert entry.startswith(f"{chosen}:"), step
    vm.engine.restart()
    return entry


def follow(vm: VM, steps: list[str]) -> list[str]:
    """Every step followed as written; the serving options they name."""
    chosen = vm.namespace.host_address  # the one address of this machine the VM reaches
    options: list[str] = ["--serve-host", chosen]
    assert steps, "no steps"
    for step in steps:
        if step.startswith(f"{vm.label} runs in a VM"):
            listed = re.search(r"\(this machine's: ([^)]*)\)", step)
            assert listed and chosen in listed[1].split(", "), step
            assert f"not 0.0.0.0 nor {vm.alias}" in step, step
            port = re.search(r"a fixed (--registry-port|--file-server-port) (\d+)", step)
            assert port, step
            options += [port[1], port[2]]
        elif step.startswith("declare "):
            entry = declare_insecure(vm, step, chosen)
            # The port it declares is the one the serve-host step fixed.
            assert options[options.index("--registry-port") + 1] == entry.rsplit(":", 1)[1]
        else:
            pytest.fail(f"a step this test cannot follow as written: {step}")
    assert "--registry-port" in options and "--file-server-port" in options, steps
    return options


def _verdicts(report_dir: Path) -> dict[str, str]:
    results = json.loads((report_dir / "results.json").read_text())
    return {r["id"]: r["verdict"] for r in results["requirements"]}


def _requirements() -> list[str]:
    return [a for rid in REQUIREMENTS for a in ("--requirement", rid)]


# --- (a) ----------------------------------------------------------------------------------


def test_default_options_name_the_vm_and_its_steps(vm: VM, tmp_path: Path) -> None:
    vm = vm
    run = cli("run", "--target", vm.target, "--report-dir", str(tmp_path), *_requirements())
    print(run)
    assert run.returncode == EXIT_NOT_READY, str(run)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["target"]["operating_system"] == (
        "Docker Desktop" if vm.label == "Docker Desktop" else "fedora"
    )
    preflight = results["run"]["preflight"]
    for service in ("registry", "file_server"):
        probe = preflight[service]
        assert (probe["status"], probe["cause"]) == ("failed", "unreachable"), probe
        assert probe["steps"][0].startswith(
            f"{vm.label} runs in a VM, whose 127.0.0.1 is not this machine's"
        ), probe["steps"]
        assert probe["reason"] in run.stderr
    assert preflight["registry"]["steps"][1].startswith("declare ADDRESS:"), preflight


def test_serving_on_0_0_0_0_sends_the_vm_to_itself(vm: VM) -> None:
    # What the steps once said (--serve-host 0.0.0.0; the VM reaches this machine by its
    # alias), followed: the engine is given 0.0.0.0 in every reference and URL, and dials
    # its own. The steps now say so.
    ports = [str(free_port("0.0.0.0")), str(free_port("0.0.0.0"))]
    doctor = cli(
        "doctor",
        "--target",
        vm.target,
        "--serve-host",
        "0.0.0.0",
        "--registry-port",
        ports[0],
        "--file-server-port",
        ports[1],
    )
    print(doctor)
    assert doctor.returncode == EXIT_NOT_READY, str(doctor)
    for port in ports:
        assert f"dial tcp 0.0.0.0:{port}: connect: connection refused" in doctor.stdout
    assert all(
        f"not 0.0.0.0 nor {vm.alias}" in step for step in doctor.steps() if "--serve-host" in step
    ), str(doctor)


# --- (b) ----------------------------------------------------------------------------------


def test_steps_followed_as_written_then_judged_as_its_engine(vm: VM, tmp_path: Path) -> None:
    vm = vm
    before = cli("doctor", "--target", vm.target)
    print(before)
    assert before.returncode == EXIT_NOT_READY, str(before)
    assert before.stdout.startswith("engine: "), str(before)
    serving = follow(vm, before.steps())

    after = cli("doctor", "--target", vm.target, *serving)
    print(after)
    assert after.returncode == 0, str(after)
    ready = after.stdout.strip().splitlines()[-1]
    command = ["engine-conformance", "run", "--target", vm.target, *serving]
    assert ready == "ready: " + " ".join(command), str(after)

    report = tmp_path / "report"
    run = cli(
        *command[1:],
        *_requirements(),
        "--expectations",
        str(vm.expectations),
        "--report-dir",
        str(report),
    )
    print(run)
    expected = expectations.load(vm.expectations)
    assert _verdicts(report) == {rid: expected[rid] for rid in REQUIREMENTS}, str(run)
    assert run.returncode == 0, str(run)


# --- the premises ---------------------------------------------------------------------------


def test_the_vm_names_this_machine_by_its_alias_and_this_machine_is_untouched(vm: VM) -> None:
    assert vm.engine.process is not None
    pid = vm.engine.process.pid
    resolved = subprocess.run(
        ["nsenter", f"--target={pid}", "--mount", "--net", "--", "getent", "hosts", vm.alias],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert resolved.stdout.split() == [vm.namespace.host_address, vm.alias], resolved
    assert vm.alias not in Path("/etc/hosts").read_text()
    inode = os.stat(vm.namespace.path).st_ino
    assert os.readlink(f"/proc/{pid}/ns/net") == f"net:[{inode}]"
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
