"""An engine off this machine's loopback is judged after the steps ``doctor`` gives, as written.

The engine is Debian's Docker 20.10 in a network namespace of this module's
own (:mod:`engine_conformance.engine.netns`): loopback, and one veth pair whose ends
have addresses of a ``10.213.N.0/30`` no interface or route of this machine
uses. Its 127.0.0.1 is its own, as another machine's is. It listens on a unix
socket (a file, reachable from here) and on ``tcp://<its address>:2376`` with
mutual TLS, as a remote engine does.

- With the default options a run cannot be judged: exit 6, and the reason
  says the connection was refused and to serve on an address of this machine
  (``--serve-host``, this machine's addresses listed, the veth's among them),
  not to declare 127.0.0.1 insecure, which no setting of a remote engine helps.
- ``doctor`` on the veth's address gives numbered steps; each is followed as
  it is written (the managed engine's ``--config-file`` is what
  ``/etc/docker/daemon.json`` is to a system Docker, and ``restart`` what
  ``systemctl restart docker`` does); ``doctor`` then says ``ready``, and the
  run it names gives exactly the verdicts of Docker 20.10 on this machine's
  loopback (``suites/expectations/docker-20.10.yaml``).
- ``--serve-tls --tls-dir DIR``: the CA is placed once where the step says (the
  ``/etc/docker/certs.d`` entry of this module's own address and port, removed
  afterwards; no other entry is touched) and in the engine's system trust (a
  managed engine's is its ``trust_ca``), and two runs with the same DIR pass
  the preflight with that one CA.
- The same engine over ``tcp://ADDRESS:2376`` with ``DOCKER_TLS_VERIFY`` and
  ``DOCKER_CERT_PATH``, after the one-time steps: the same verdicts, again from a
  whole run (each takes about a minute).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine_conformance.base.paths import ROOT
from engine_conformance.catalogue import expectations
from engine_conformance.engine import netns
from engine_conformance.engine.engines import (
    DOCKER_CERTS_DIR,
    EngineUnavailable,
    ManagedDocker,
    free_port,
)
from engine_conformance.engine.netns import Namespace, NamespacedDocker
from tests.as_user import CLI, cli

EXPECTATIONS = ROOT / "suites" / "expectations" / "docker-20.10.yaml"
EXIT_SUITE_UNREACHABLE = 6
TLS_SUBSET = ("PULL-001", "IMPORT-020")
"""What each --serve-tls run judges: one pull from the registry, one URL import."""


def _missing() -> str | None:
    """Why these tests cannot run here, or None."""
    return netns.missing() or (
        None
        if ManagedDocker().available()
        else "docker: dockerd is not installed (bash scripts/setup installs it)"
    )


# One worker at a time makes namespaces: each picks a free 10.213.N.0/30 from the routes.
pytestmark = [
    pytest.mark.engine,
    pytest.mark.xdist_group("netns"),
    pytest.mark.skipif(_missing() is not None, reason=_missing() or ""),
]


@pytest.fixture(scope="module")
def namespace() -> Iterator[Namespace]:
    """This module's namespace: loopback and a veth pair, removed afterwards."""
    with Namespace("ec-remote", veth=True) as made:
        yield made


@pytest.fixture(scope="module")
def engine(namespace: Namespace) -> Iterator[NamespacedDocker]:
    """Docker 20.10 in the namespace: a unix socket, and tcp://ADDRESS:2376 with mutual TLS."""
    docker = NamespacedDocker(namespace, tls=True)
    try:
        docker.start()
    except EngineUnavailable as exc:
        pytest.fail(f"dockerd would not start in network namespace {namespace.name}: {exc}")
    try:
        yield docker
    finally:
        docker.stop()


def _serving(namespace: Namespace, registry_port: int, file_server_port: int) -> list[str]:
    return [
        "--serve-host",
        namespace.host_address,
        "--registry-port",
        str(registry_port),
        "--file-server-port",
        str(file_server_port),
    ]


def _tls_env(engine: NamespacedDocker) -> dict[str, str]:
    assert engine.cert_path is not None
    return {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": engine.cert_path}


def _verdicts(report_dir: Path) -> dict[str, str]:
    results = json.loads((report_dir / "results.json").read_text())
    return {r["id"]: r["verdict"] for r in results["requirements"]}


def judged_as_on_loopback(run: CLI, report_dir: Path) -> None:
    """The run's verdicts are exactly those of the expectation file of Docker 20.10 on this
    machine's loopback, requirement for requirement, and its gate passed."""
    got = _verdicts(report_dir)
    expected = expectations.load(EXPECTATIONS)
    differ = {
        rid: (expected[rid], verdict)
        for rid, verdict in sorted(got.items())
        if rid in expected and expected[rid] != verdict
    }
    unrecorded = {rid: verdict for rid, verdict in sorted(got.items()) if rid not in expected}
    unjudged = sorted(expected.keys() - got.keys())
    assert not differ, f"verdicts other than Docker 20.10's on loopback (expected, got): {differ}"
    assert not unrecorded, (
        f"{EXPECTATIONS.name} records no verdict for {unrecorded}: "
        "regenerate it (its header says how)"
    )
    assert not unjudged, f"judged nothing for {unjudged}"
    assert run.returncode == 0, str(run)


# --- following the steps as written -------------------------------------------------------

_INSECURE = re.compile(
    r'add "insecure-registries": \["([^"]+)"\] to (\S+), then restart it '
    r"\(systemctl restart docker\), and keep the port with --registry-port "
    r"(\d+) \(daemon\.json is one JSON object: a file that is missing or "
    r"empty becomes (\{.*?\}); where the key is there already, \"([^\"]+)\" "
    r"joins its list\)"
)
_COPY_CA = re.compile(
    r"copy (\S+/ca\.crt) to (/etc/docker/certs\.d/([^/\s]+)/ca\.crt) "
    r"\(read at each pull, no restart\)"
)
_SYSTEM_TRUST = re.compile(
    r"the engine fetches fromSrc URLs with its host's system trust "
    r"store: add (\S+/ca\.crt) there .*then restart it "
    r"\(systemctl restart docker\)"
)


def declare_insecure(engine: NamespacedDocker, step: str) -> str:
    """The step's ``insecure-registries`` entry put into the engine's daemon.json as the
    step says, and the engine restarted: the address it declared."""
    found = _INSECURE.search(step)
    assert found, f"not the insecure-registries step of a system Docker: {step}"
    address, path, port, new_file, joins = found.groups()
    # A managed engine's own --config-file is what /etc/docker/daemon.json is to a
    # system Docker; the host's file is never touched.
    assert path == "/etc/docker/daemon.json", step
    assert address.endswith(f":{port}") and joins == address, step
    text = engine.config_path.read_text() if engine.config_path.exists() else ""
    if not text.strip():
        engine.config_path.write_text(new_file + "\n")
    else:
        config = json.loads(text)
        if "insecure-registries" in config:
            config["insecure-registries"].append(joins)
        else:
            config["insecure-registries"] = [address]  # the key, added to the object
        engine.config_path.write_text(json.dumps(config, indent=2) + "\n")
    engine.restart()  # what `systemctl restart docker` does
    return address


@dataclass
class Placed:
    """A certs.d entry this module made, to be removed afterwards."""

    entry: Path
    made_certs_dir: bool

    def remove(self) -> None:
        # Only what was written: ca.crt, then the entry, then certs.d if it was made here.
        (self.entry / "ca.crt").unlink(missing_ok=True)
        try:
            self.entry.rmdir()
        except OSError:
            pass
        if self.made_certs_dir:
            try:
                self.entry.parent.rmdir()  # not if someone else's entry went in since
            except OSError:
                pass


def copy_ca(step: str, address: str, placed: list[Placed]) -> Path:
    """``copy DIR/ca.crt to /etc/docker/certs.d/ADDRESS/ca.crt``, for this module's
    own ADDRESS only, into an entry that did not exist (never over another's)."""
    found = _COPY_CA.search(step)
    assert found, f"not the certs.d step: {step}"
    source, destination, named = found.groups()
    assert named == address, f"the step names {named}, this test serves on {address}"
    destination_path = Path(destination)
    assert destination_path.parent == DOCKER_CERTS_DIR / address
    made = not DOCKER_CERTS_DIR.exists()
    DOCKER_CERTS_DIR.mkdir(parents=True, exist_ok=True)
    destination_path.parent.mkdir()  # FileExistsError: someone else's entry, left alone
    placed.append(Placed(destination_path.parent, made))
    shutil.copyfile(source, destination_path)
    return Path(source)


def trust_system_wide(engine: NamespacedDocker, step: str) -> None:
    """The engine host's system trust store gets the CA, and the engine is restarted.

    A managed engine's system trust is its own (``trust_ca``: the SSL_CERT_DIR it is
    started with): this machine's trust store is never touched.
    """
    found = _SYSTEM_TRUST.search(step)
    assert found, f"not the system trust step: {step}"
    engine.trust_ca(Path(found[1]))
    engine.restart()


@pytest.fixture(scope="module")
def plain_http(engine: NamespacedDocker, namespace: Namespace) -> dict[str, object]:
    """(b)'s one-time steps: doctor on the veth's address, each step followed, doctor again."""
    ports = (free_port(namespace.host_address), free_port(namespace.host_address))
    serving = _serving(namespace, *ports)
    before = cli("doctor", "--target", engine.target, *serving)
    assert before.returncode == EXIT_SUITE_UNREACHABLE, str(before)
    steps = before.steps()
    assert len(steps) == 1, str(before)  # the file server needs nothing: plain HTTP, reached
    assert re.search(r"^file server: reached", before.stdout, re.M), str(before)
    declared = declare_insecure(engine, steps[0])
    assert declared == f"{namespace.host_address}:{ports[0]}"
    after = cli("doctor", "--target", engine.target, *serving)
    assert after.returncode == 0, str(after)
    return {"serving": serving, "before": before, "after": after}


# --- (a) ----------------------------------------------------------------------------------


def test_default_options_name_the_refused_connection_and_serve_host(
    engine: NamespacedDocker, namespace: Namespace, tmp_path: Path
) -> None:
    run = cli("run", "--target", engine.target, "--report-dir", str(tmp_path))
    print(run)
    assert run.returncode == EXIT_SUITE_UNREACHABLE, str(run)
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("engine-conformance:")]
    assert line.startswith(
        "engine-conformance: preflight: the engine cannot pull from the lab registry 127.0.0.1:"
    ), line
    registry, files = line.split(" | ")
    for reason in (registry, files):
        assert "connect: connection refused" in reason, reason
        assert "the engine is not on this machine's network" in reason, reason
        assert "--serve-host ADDRESS" in reason, reason
        listed = re.search(r"\(this machine's: ([^)]*)\)", reason)
        assert listed and namespace.host_address in listed[1].split(", "), reason
        assert "127.0.0.1" not in listed[1], reason
    # No setting of the engine's makes this machine's loopback its own.
    assert '"insecure-registries": ["127.0.0.1' not in line, line
    preflight = json.loads((tmp_path / "results.json").read_text())["run"]["preflight"]
    assert {s: (p["status"], p["cause"]) for s, p in preflight.items()} == {
        "registry": ("failed", "unreachable"),
        "file_server": ("failed", "unreachable"),
    }


# --- (b) ----------------------------------------------------------------------------------


def test_doctor_steps_followed_as_written_then_a_full_run_judges_as_on_loopback(
    engine: NamespacedDocker, namespace: Namespace, plain_http: dict[str, object], tmp_path: Path
) -> None:
    before, after = plain_http["before"], plain_http["after"]
    print(before, after, sep="\n")
    assert isinstance(after, CLI)
    ready = after.stdout.strip().splitlines()[-1]
    command = ["engine-conformance", "run", "--target", engine.target, *plain_http["serving"]]
    assert ready == "ready: " + " ".join(command), str(after)
    run = cli(*command[1:], "--expectations", str(EXPECTATIONS), "--report-dir", str(tmp_path))
    print(run)
    judged_as_on_loopback(run, tmp_path)


# --- (c) ----------------------------------------------------------------------------------


@pytest.fixture
def placed() -> Iterator[list[Placed]]:
    """certs.d entries a test made: removed afterwards, whatever happened."""
    made: list[Placed] = []
    try:
        yield made
    finally:
        for entry in made:
            entry.remove()


def test_serve_tls_twice_after_one_ca_placement(
    engine: NamespacedDocker, namespace: Namespace, placed: list[Placed], tmp_path: Path
) -> None:
    # A port of its own: the one (b) declared insecure would be pulled without verifying.
    ports = (free_port(namespace.host_address), free_port(namespace.host_address))
    address = f"{namespace.host_address}:{ports[0]}"
    tls_dir = tmp_path / "tls"
    serving = [*_serving(namespace, *ports), "--serve-tls", "--tls-dir", str(tls_dir)]
    before = cli("doctor", "--target", engine.target, *serving)
    print(before)
    assert before.returncode == EXIT_SUITE_UNREACHABLE, str(before)
    registry, files = before.steps()
    ca = copy_ca(registry, address, placed)
    assert ca == tls_dir / "ca.crt"
    trust_system_wide(engine, files)
    fingerprint = hashlib.sha256(ca.read_bytes()).hexdigest()

    after = cli("doctor", "--target", engine.target, *serving)
    print(after)
    assert after.returncode == 0, str(after)
    for i in (1, 2):
        report = tmp_path / f"run{i}"
        run = cli(
            "run",
            "--target",
            engine.target,
            *serving,
            *[a for rid in TLS_SUBSET for a in ("--requirement", rid)],
            "--report-dir",
            str(report),
        )
        print(run)
        assert run.returncode == 0, str(run)
        results = json.loads((report / "results.json").read_text())
        assert {s: p["status"] for s, p in results["run"]["preflight"].items()} == {
            "registry": "ok",
            "file_server": "ok",
        }, results["run"]["preflight"]
        assert _verdicts(report) == {rid: "pass" for rid in TLS_SUBSET}, results["requirements"]
        # The same CA: the one placed once, never made anew.
        assert hashlib.sha256(ca.read_bytes()).hexdigest() == fingerprint
        assert (DOCKER_CERTS_DIR / address / "ca.crt").read_bytes() == ca.read_bytes()
        assert not (report / "tls").exists()


# --- (d) ----------------------------------------------------------------------------------


def test_tcp_tls_target_after_the_one_time_steps(
    engine: NamespacedDocker, namespace: Namespace, plain_http: dict[str, object], tmp_path: Path
) -> None:
    target = engine.tcp_target
    assert target == f"tcp://{namespace.address}:2376"
    serving = plain_http["serving"]
    assert isinstance(serving, list)
    env = _tls_env(engine)
    doctor = cli("doctor", "--target", target, *serving, env=env)
    print(doctor)
    assert doctor.returncode == 0, str(doctor)
    assert doctor.stdout.strip().splitlines()[-1] == (
        f"ready: engine-conformance run --target https://{namespace.address}:2376 "
        + " ".join(serving)
    ), str(doctor)
    run = cli(
        "run",
        "--target",
        target,
        *serving,
        "--expectations",
        str(EXPECTATIONS),
        "--report-dir",
        str(tmp_path),
        env=env,
    )
    print(run)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["target"]["url"] == f"https://{namespace.address}:2376"
    judged_as_on_loopback(run, tmp_path)


def test_the_namespace_has_only_its_own_addresses(
    namespace: Namespace, engine: NamespacedDocker
) -> None:
    """The premise: loopback and the veth, whose two addresses are the only ones given."""
    assert namespace.links() == ["lo", namespace.link]
    inside = json.loads(netns.ip("-j", "-n", namespace.name, "addr", "show"))
    given = sorted(f"{a['local']}/{a['prefixlen']}" for link in inside for a in link["addr_info"])
    assert given == sorted(["127.0.0.1/8", "::1/128", f"{namespace.address}/30"]), given
    outside = json.loads(netns.ip("-j", "addr", "show", "dev", namespace.host_link))
    assert [f"{a['local']}/{a['prefixlen']}" for a in outside[0]["addr_info"]] == [
        f"{namespace.host_address}/30"
    ]
    assert namespace.network is not None and namespace.network.subnet_of(netns.RANGE)
    assert engine.process is not None
    inode = os.stat(namespace.path).st_ino
    assert os.readlink(f"/proc/{engine.process.pid}/ns/net") == f"net:[{inode}]"
