"""Rootless engines: judged like their rootful selves, and diagnosed as rootless.

Rootless Podman (``podman system service`` as the suite's user ``ec-rootless``)
is judged against Podman's own expectation file, and rootless Docker (Debian's
``dockerd-rootless.sh``: RootlessKit, slirp4netns, ``--disable-host-loopback``)
against Docker 20.10's, after the one-time steps the preflight and
``engine-conformance doctor`` give are followed as written: ``~`` in a step is
the engine's ``HOME`` (its private directory, :mod:`engine_conformance.engine.rootless`),
"restart" is :meth:`restart`. Rootless Docker's 127.0.0.1 is its own, so the
suite serves it on an address of a veth pair made for the test (never on an
address of this machine's real interfaces), removed again at the end.

Each test skips, saying exactly what is missing, on a machine that cannot run the
engine (uidmap, rootlesskit, slirp4netns, a usable /dev/net/tun, user namespaces).
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine_conformance.base import archives
from engine_conformance.catalogue import expectations
from engine_conformance.engine.engines import EngineUnavailable, free_port
from engine_conformance.engine.identity import (
    LIBPOD_INFO,
    describe_target,
    is_rootless,
    podman_host,
)
from engine_conformance.engine.rootless import RootlessDocker, RootlessPodman
from engine_conformance.engine.target import Client, Target
from engine_conformance.judge.preflight import local_addresses
from engine_conformance.run.runner import ROOT, run_suite

CLI = [sys.executable, "-m", "engine_conformance"]
SENTINEL = "ecsentinel/rootless:keep"
QUICK = ["PULL-001", "IMPORT-020", "IMPORT-001", "ERRORS-001"]
"""A pull, a URL import (the two services) and two checks that need neither."""

pytestmark = pytest.mark.xdist_group("rootless")  # one suite user: its engines one at a time


# -- identity, without an engine ---------------------------------------------------


class _Answers:
    """A stand-in for :class:`Client` that answers the libpod info request."""

    def __init__(self, status: int, body: object) -> None:
        self.status, self.body = status, body
        self.exchanges: list[object] = ["earlier"]
        self.timeouts = SimpleNamespace(read=5.0)
        self.asked: list[str] = []

    def request(self, method: str, path: str, **kw: object) -> object:
        self.asked.append(f"{method} {path}")
        self.exchanges.append("libpod")
        return SimpleNamespace(status=self.status, json=lambda: self.body)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"host": {"security": {"rootless": True}}}, True),
        (200, {"host": {"security": {"rootless": False}}}, False),
        (404, {"message": "not found"}, False),
        (200, ["not", "an", "object"], False),
    ],
)
def test_rootless_podman_is_known_from_its_libpod_info(status, body, expected):
    client = _Answers(status, body)
    info = {"SecurityOptions": ["name=seccomp,profile=default"]}  # what Podman 4.3 says
    assert is_rootless(info, podman_host(client, "podman")) is expected  # type: ignore[arg-type]
    assert client.asked == [f"GET {LIBPOD_INFO}"]
    assert client.exchanges == ["earlier"]  # an observation, never a check's evidence


def test_docker_says_rootless_itself_and_is_asked_nothing_more():
    client = _Answers(500, {})
    host = podman_host(client, "docker")  # type: ignore[arg-type]
    assert is_rootless({"SecurityOptions": ["name=rootless"]}, host)
    assert not is_rootless({"SecurityOptions": []}, host)
    assert client.asked == []


# -- fixtures ------------------------------------------------------------------------


def _started(factory: Callable[[], RootlessPodman | RootlessDocker]) -> Iterator:
    engine = factory()
    problems = engine.problems()
    if problems:
        pytest.skip(f"{engine.name}: " + "; ".join(problems))
    try:
        engine.start()
    except EngineUnavailable as exc:
        pytest.fail(f"{engine.name} would not start: {exc}")
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def podman_port() -> int:
    """The lab registry's port, given to the configured rootless Podman before it starts."""
    return free_port()


@pytest.fixture(scope="module")
def configured_podman(podman_port) -> Iterator[RootlessPodman]:
    """Rootless Podman told the lab registry is plain HTTP, as the rootful one is."""
    yield from _started(lambda: RootlessPodman(insecure_registries=[f"127.0.0.1:{podman_port}"]))


@pytest.fixture
def default_podman() -> Iterator[RootlessPodman]:
    """Rootless Podman as its user has it: no registry declared insecure."""
    yield from _started(RootlessPodman)


@pytest.fixture(scope="module")
def rootless_docker() -> Iterator[RootlessDocker]:
    """Rootless Docker as its user has it: an empty ~/.config/docker/daemon.json."""
    yield from _started(RootlessDocker)


@pytest.fixture(scope="module")
def host_address(rootless_docker) -> Iterator[str]:
    """An address of this machine that rootless Docker reaches (through slirp4netns): on
    a veth pair made for the test, in 198.18.0.0/15 (RFC 2544), removed at the end."""
    name = f"ecrl{secrets.token_hex(3)}"
    taken = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    address = next(
        a
        for a in (
            f"198.18.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}" for _ in range(100)
        )
        if f" {a}/" not in taken
    )
    steps = [
        ["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"],
        ["ip", "addr", "add", f"{address}/32", "dev", name],
        ["ip", "link", "set", name, "up"],
        ["ip", "link", "set", f"{name}p", "up"],
    ]
    try:
        for step in steps:
            made = subprocess.run(step, capture_output=True, text=True, timeout=30)
            if made.returncode != 0:
                pytest.skip(
                    f"cannot make a veth pair with an address for the rootless engine "
                    f"to reach ({shlex.join(step)}: {made.stderr.strip()})"
                )
        yield address
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=30)


# -- helpers -------------------------------------------------------------------------


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _client(target: str) -> Client:
    client = Client(Target.parse(target))
    client.negotiate()
    return client


def seed_sentinel(target: str) -> str:
    """An image that exists before a run and must be untouched after it: its ID."""
    with _client(target) as client:
        client.create_image(
            {"fromSrc": "-", "repo": SENTINEL}, body=archives.rootfs({"sentinel": b"rootless\n"})
        )
        image = client.inspect_image(SENTINEL)
        assert image is not None, f"could not seed {SENTINEL}"
        return image["Id"]


def untouched(target: str, sentinel: str, look) -> None:
    _, leftovers = look(target)
    with _client(target) as client:
        image = client.inspect_image(SENTINEL)
    assert image is not None and image["Id"] == sentinel, "the sentinel image was touched"
    assert leftovers == [], leftovers


def differences(results: dict, key: str) -> tuple[list[str], list[str]]:
    """Every verdict that differs from ``suites/expectations/KEY.yaml``, in either
    direction, and the requirements one of the two has and the other not."""
    expected = expectations.load(expectations.path_for(key))
    got = {r["id"]: r["verdict"] for r in results["requirements"]}
    differ = [
        f"{rid}: {got[rid]}, the file records {expected[rid]}"
        for rid in sorted(set(got) & set(expected))
        if got[rid] != expected[rid]
    ]
    unmatched = [f"{rid}: {got[rid]}, not in the file" for rid in sorted(set(got) - set(expected))]
    unmatched += [
        f"{rid}: not judged, the file records {expected[rid]}"
        for rid in sorted(set(expected) - set(got))
    ]
    return differ, unmatched


def judged_as(results: dict, key: str) -> None:
    """The run's verdicts are the ones ``suites/expectations/KEY.yaml`` records, the
    rootful engine's: any verdict the file records differs, both directions, fails.

    A requirement the file has no verdict for (the catalogue grew, the file was not
    regenerated yet) is said, not failed: the rootful engine's own expectation test
    (tests/test_expectations.py) fails for it, and nothing compares it here.
    """
    assert results["target"]["engine_key"] == key
    assert results["target"]["rootless"] is True
    differ, unmatched = differences(results, key)
    assert not differ, f"rootless {key} differs from {key}.yaml:\n  " + "\n  ".join(differ)
    if unmatched:
        warnings.warn(
            f"rootless {key}: {key}.yaml is not current with the catalogue, "
            f"so these were not compared: {'; '.join(unmatched)}",
            stacklevel=1,
        )


def quick_verdicts_match(results: dict) -> None:
    """The checks of a short run give the verdicts the engine's expectation file records."""
    expected = expectations.load(expectations.path_for(results["target"]["engine_key"]))
    got = {r["id"]: r["verdict"] for r in results["requirements"]}
    assert got == {rid: expected[rid] for rid in got}, got


def home_path(engine: RootlessPodman | RootlessDocker, path: str) -> Path:
    """A path a step names (``~/…``) as the engine sees it: ``~`` is its HOME."""
    assert path.startswith("~/"), path
    return engine.home / path.removeprefix("~/")


# -- rootless Podman -----------------------------------------------------------------


def test_rootless_podman_is_judged_by_podmans_expectation_file(
    configured_podman, podman_port, tmp_path, look
):
    with _client(configured_podman.target) as client:
        assert describe_target(client, client.info())["rootless"] is True
    sentinel = seed_sentinel(configured_podman.target)
    out = run_suite(
        configured_podman.target,
        tmp_path / "report",
        expectations="auto",
        extra=["--registry-port", str(podman_port)],
    )
    assert out.results is not None, out.output[-4000:]
    for service, probe in out.results["run"]["preflight"].items():
        assert probe["status"] == "ok", f"{service}: {probe['reason']}"
    judged_as(out.results, "podman-4.3")
    untouched(configured_podman.target, sentinel, look)


def test_rootless_podman_steps_followed_as_written(default_podman, tmp_path):
    # 1) As its user has it: the preflight stops the run (exit 6) with the rootless fix.
    first = _cli(
        "run",
        "--target",
        default_podman.target,
        "--report-dir",
        str(tmp_path / "r1"),
        *[a for rid in QUICK for a in ("--requirement", rid)],
    )
    assert first.returncode == 6, first.stdout[-2000:] + first.stderr
    results = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert results["target"]["rootless"] is True
    preflight = results["run"]["preflight"]
    assert preflight["file_server"]["status"] == "ok"  # a URL import needs no registry config
    registry = preflight["registry"]
    assert registry["status"] == "failed" and registry["cause"] == "plain-http", registry
    (step,) = registry["steps"]
    assert "~/.config/containers/registries.conf" in step
    assert "/etc/containers/registries.conf to" not in step  # never the rootful file
    assert registry["reason"] in first.stderr
    # 2) The step, as written: three lines into the file it names, the service restarted,
    # the port kept.
    found = re.search(
        r"add \[\[registry\]\] .* to (\S+) as three lines: `([^`]+)`, `([^`]+)`, "
        r"`([^`]+)`.*then restart its service.*keep the port with "
        r"--registry-port (\d+)",
        step,
    )
    assert found, step
    conf = home_path(default_podman, found[1])
    lines = "\n".join(found.group(2, 3, 4))
    tomllib.loads(lines)  # what the step says to write is valid TOML on its own
    with conf.open("a") as f:
        f.write("\n" + lines + "\n")
    default_podman.restart()
    # 3) The next run judges it.
    second = run_suite(
        default_podman.target,
        tmp_path / "r2",
        requirements=QUICK,
        extra=["--registry-port", found[5]],
    )
    assert second.returncode == 0, second.output[-3000:]
    assert {s: p["status"] for s, p in second.results["run"]["preflight"].items()} == {
        "registry": "ok",
        "file_server": "ok",
    }
    quick_verdicts_match(second.results)


# -- rootless Docker -----------------------------------------------------------------


def test_rootless_docker_is_told_to_serve_on_an_address_it_reaches(rootless_docker, tmp_path):
    out = _cli(
        "run",
        "--target",
        rootless_docker.target,
        "--report-dir",
        str(tmp_path / "r"),
        *[a for rid in QUICK for a in ("--requirement", rid)],
    )
    assert out.returncode == 6, out.stdout[-2000:] + out.stderr
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["target"]["rootless"] is True
    assert "name=rootless" in results["target"]["security_options"]
    preflight = results["run"]["preflight"]
    for service in ("registry", "file_server"):
        probe = preflight[service]
        assert probe["status"] == "failed" and probe["cause"] == "unreachable", probe
        assert "connection refused" in probe["engine_answer"]
        assert "rootless Docker's 127.0.0.1 is its own" in probe["steps"][0]
        assert "--serve-host ADDRESS" in probe["steps"][0]
    steps = preflight["registry"]["steps"]
    assert "~/.config/docker/daemon.json" in steps[1] and "restart" in steps[1]
    assert "~/.config/docker/certs.d/" in steps[1] and "--tls-dir" in steps[1]
    assert '"insecure-registries": ["127.0.0.1' not in " ".join(steps)
    # What needs neither service is judged as on the rootful Docker.
    verdicts = {r["id"]: r["verdict"] for r in results["requirements"]}
    assert verdicts["PULL-001"] == verdicts["IMPORT-020"] == "error"
    quick_verdicts_match(
        {
            **results,
            "requirements": [
                r for r in results["requirements"] if r["id"] in ("IMPORT-001", "ERRORS-001")
            ],
        }
    )


def test_rootless_docker_doctor_steps_followed_as_written(
    rootless_docker, host_address, tmp_path, look
):
    # 1) The doctor, with the serving options a run has by default.
    doctor = _cli("doctor", "--target", rootless_docker.target, timeout=300)
    assert doctor.returncode == 6, doctor.stdout + doctor.stderr
    steps = [
        line.split(") ", 1)[1] for line in doctor.stdout.splitlines() if re.match(r"  \d+\) ", line)
    ]
    options: list[str] = []
    for step in steps:
        if step.startswith("the engine is not on this machine's network"):
            # --serve-host ADDRESS, one of this machine's the engine reaches: the test's own.
            listed = re.search(r"\(this machine's: ([^)]*)\)", step)
            assert listed and host_address in listed[1].split(", "), step
            assert host_address in local_addresses()
            port = re.search(r"a fixed (--registry-port|--file-server-port) (\d+)", step)
            assert port, step
            options += [port[1], port[2]]
        elif step.startswith("declare "):
            found = re.search(
                r'add "insecure-registries": \["([^"]+)"\] to (\S+), then '
                r"restart it",
                step,
            )
            assert found, step
            # ADDRESS (several to choose from) is the one chosen above; else the one there is.
            entry = found[1].replace("ADDRESS:", f"{host_address}:")
            assert entry.startswith(f"{host_address}:"), step
            daemon_json = home_path(rootless_docker, found[2])
            config = json.loads(daemon_json.read_text() or "{}")
            config.setdefault("insecure-registries", []).append(entry)
            daemon_json.write_text(json.dumps(config, indent=2) + "\n")
            rootless_docker.restart()
        else:
            pytest.fail(f"a step this test cannot follow as written: {step}")
    assert "--registry-port" in options and "--file-server-port" in options, steps
    serving = ["--serve-host", host_address, *options]
    # 2) The doctor with the options the steps name says ready, and how to run.
    again = _cli("doctor", "--target", rootless_docker.target, *serving, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    ready = again.stdout.strip().splitlines()[-1]
    assert ready.startswith("ready: engine-conformance run "), again.stdout
    command = shlex.split(ready.removeprefix("ready: "))[1:]
    assert command == ["run", "--target", rootless_docker.target, *serving]
    # 3) That command judges it: Docker 20.10's verdicts.
    sentinel = seed_sentinel(rootless_docker.target)
    run = _cli(*command, "--expectations", "auto", "--report-dir", str(tmp_path / "r"))
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    for service, probe in results["run"]["preflight"].items():
        assert probe["status"] == "ok", f"{service}: {probe['reason']}"
    judged_as(results, "docker-20.10")
    # The release gate's own exit code: 1 only for what judged_as said is not compared.
    assert run.returncode == (0 if results["expectations"]["passed"] else 1), (
        run.stdout[-3000:] + run.stderr
    )
    untouched(rootless_docker.target, sentinel, look)


def test_rootless_docker_trusts_the_run_ca_in_its_own_certs_d(
    rootless_docker, host_address, tmp_path
):
    # The other fix for the registry: HTTPS with a lasting CA, copied where the step says.
    serving = [
        "--serve-host",
        host_address,
        "--registry-port",
        str(free_port(host_address)),
        "--file-server-port",
        str(free_port(host_address)),
        "--tls-dir",
        str(tmp_path / "tls"),
    ]
    first = _cli("doctor", "--target", rootless_docker.target, *serving, timeout=300)
    assert first.returncode == 6, first.stdout + first.stderr
    steps = [
        line.split(") ", 1)[1] for line in first.stdout.splitlines() if re.match(r"  \d+\) ", line)
    ]
    copy = re.search(
        r"copy (\S+) to (~/\.config/docker/certs\.d/\S+) \(read at each pull, no "
        r"restart\)",
        steps[0],
    )
    assert copy, steps
    assert copy[2] == f"~/.config/docker/certs.d/{host_address}:{serving[3]}/ca.crt"
    # The file server is fetched with the host's trust store: a host-wide change, not made here.
    assert any("update-ca-certificates" in step for step in steps[1:]), steps
    rootless_docker.write(copy[2].removeprefix("~/"), Path(copy[1]).read_text())
    again = _cli("doctor", "--target", rootless_docker.target, *serving, timeout=300)
    assert re.search(r"^lab registry: reached", again.stdout, re.M), again.stdout
    assert "update-ca-certificates" in again.stdout
