"""Fixtures for the harness's own tests: real engines the tests start themselves.

The engines CI judges, each a managed engine in a private directory started once
per session: ``docker`` (Debian's docker.io: 20.10 on Debian 12, 26.1 on Debian
13), ``docker26`` and ``docker26_containerd`` (Debian 13's Docker 26.1),
``docker28`` and ``docker28_containerd`` (Debian unstable's Docker 28.5), each
unpacked by ``scripts/fetch-engine``, graphdriver and containerd image store, and
``podman``. Set ``EC_TEST_DOCKER`` / ``EC_TEST_DOCKER26`` /
``EC_TEST_DOCKER26_CONTAINERD`` / ``EC_TEST_DOCKER28`` /
``EC_TEST_DOCKER28_CONTAINERD`` / ``EC_TEST_PODMAN`` to a target URL to reuse an
engine that is already running (it must be disposable).

``<engine>_suite`` is one full suite run against each, checked against its
expectation file, with sentinel images seeded before and looked at after; it
judges at the engine's default API version (the lower of 1.44 and the engine's
maximum) unless ``API_VERSION_OF`` names one (Docker 28.5: its maximum, 1.51).
Its reports (results.json, junit.xml, report.html, summary.md) stay under
``reports/ci/<engine kind>/``; the session ends with a line per engine saying
which engine was judged and how long its run took, and the comparison of them in
``reports/ci/comparison.*`` (``scripts/update-matrix`` copies it to ``docs/``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import yaml

from engine_conformance.base import archives
from engine_conformance.catalogue import expectations
from engine_conformance.engine.engines import (
    EngineUnavailable,
    ManagedDocker,
    ManagedEngine,
    ManagedPodman,
    free_port,
)
from engine_conformance.engine.engines import docker26 as managed_docker26
from engine_conformance.engine.engines import docker26_containerd as managed_docker26_containerd
from engine_conformance.engine.engines import docker28 as managed_docker28
from engine_conformance.engine.engines import docker28_containerd as managed_docker28_containerd
from engine_conformance.engine.identity import describe_target
from engine_conformance.engine.target import Client, Target
from engine_conformance.run.lane import WIDTH as LANE_WIDTH
from engine_conformance.run.runner import ROOT, Outcome, run_suite
from tests import shared_runs as shared


@dataclass(frozen=True)
class Engine:
    """A running engine the tests may use: its target URL and its kind."""

    kind: str
    target: str


@dataclass
class SuiteRun:
    """A full suite run and the state of the engine around it."""

    outcome: Outcome
    sentinels_before: dict[str, str]
    sentinels_after: dict[str, str | None]
    leftovers: list[str]
    new_images: list[str]
    report_dir: Path = Path()  # where its reports (and reproducer bundles) are
    target: str = ""  # the engine it judged (under pytest-xdist, the controller's)


ENGINE_OF = {
    "docker_suite": "docker",
    "docker26_suite": "docker26",
    "docker26_containerd_suite": "docker26_containerd",
    "docker28_suite": "docker28",
    "docker28_containerd_suite": "docker28_containerd",
    "podman_suite": "podman",
}
"""The full suite runs, one per engine CI judges, and the engine fixture each judges."""

API_VERSION_OF = {"docker28_suite": "1.51", "docker28_containerd_suite": "1.51"}
"""Full runs pinned to an API version other than the default (the lower of 1.44 and the
engine's maximum): Docker 28.5 at its maximum, so the v1.48+ rules are judged. Its
expectation files record the same version (``api_version``); ``full_run`` checks that."""

SUITES = tuple(ENGINE_OF)

FULL_RUN_BUDGET = "200"
"""The full runs' property phase, in examples: the same draw every run on any machine (a
time budget draws fewer on a busy one), and every engine's findings within its first 150."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test taking ``suite`` (a fixture name) runs once per engine CI judges.
    if "suite" in metafunc.fixturenames:
        metafunc.parametrize("suite", SUITES)


JUDGED: dict[str, str] = {}
"""Which engine each suite fixture judged, for the session's closing lines."""

CI_REPORTS = ROOT / "reports" / "ci"
"""Where each full suite run's reports stay, one folder per engine kind."""


FACTORIES = {
    "docker": ("EC_TEST_DOCKER", ManagedDocker),
    "docker26": ("EC_TEST_DOCKER26", managed_docker26),
    "docker26-containerd": ("EC_TEST_DOCKER26_CONTAINERD", managed_docker26_containerd),
    "docker28": ("EC_TEST_DOCKER28", managed_docker28),
    "docker28-containerd": ("EC_TEST_DOCKER28_CONTAINERD", managed_docker28_containerd),
    "podman": ("EC_TEST_PODMAN", ManagedPodman),
}
"""Each engine kind: the variable naming a running one to reuse, and how to start one."""


class Unavailable(Exception):
    """An engine the tests need is not here (``skip``) or would not start (``fail``)."""

    def __init__(self, message: str, skip: bool) -> None:
        super().__init__(message)
        self.skip = skip

    def raise_for_pytest(self) -> None:
        if self.skip:
            pytest.skip(str(self))
        pytest.fail(str(self))


LANE_PORTS: dict[int, list[int]] = {}


def lane_ports(lab_port: int) -> list[int]:
    """The ports of the run lane's registries beside the lab registry on ``lab_port``:
    fixed, like it, before Podman starts (the same ones for every call in this process)."""
    return LANE_PORTS.setdefault(lab_port, [free_port() for _ in range(LANE_WIDTH)])


def start_engine(kind: str, lab_port: int = 0) -> tuple[Engine, ManagedEngine | None]:
    """The engine ``kind``: the one its variable names, else a managed one started now
    (Podman told that the lab registry on ``lab_port``, and the lane's beside it, speak
    plain HTTP)."""
    env, factory = FACTORIES[kind]
    if os.environ.get(env):
        return Engine(kind, os.environ[env]), None
    managed = (
        factory(insecure_registries=[f"127.0.0.1:{p}" for p in (lab_port, *lane_ports(lab_port))])
        if kind == "podman"
        else factory()
    )
    if not managed.available():
        raise Unavailable(f"{kind}: {managed.missing} (bash scripts/setup installs it)", skip=True)
    try:
        managed.start()
    except EngineUnavailable as exc:
        raise Unavailable(f"managed {kind} would not start: {exc}", skip=False) from None
    return Engine(kind, managed.target), managed


def _engine(kind: str, lab_port: int = 0) -> Iterator[Engine]:
    try:
        engine, managed = start_engine(kind, lab_port)
    except Unavailable as exc:
        exc.raise_for_pytest()
    try:
        yield engine
    finally:
        if managed is not None:
            managed.stop()


@pytest.fixture(scope="session")
def lab_port() -> int:
    """The lab registry's port, fixed before Podman starts (it reads registries.conf once)."""
    return free_port()


@pytest.fixture(scope="session")
def docker() -> Iterator[Engine]:
    """A managed Docker (dockerd from Debian's docker.io)."""
    yield from _engine("docker")


@pytest.fixture(scope="session")
def docker26() -> Iterator[Engine]:
    """Debian 13's Docker 26.1, unpacked, with the graphdriver image store (overlay2)."""
    yield from _engine("docker26")


@pytest.fixture(scope="session")
def docker26_containerd() -> Iterator[Engine]:
    """Debian 13's Docker 26.1, unpacked, with the containerd image store."""
    yield from _engine("docker26-containerd")


@pytest.fixture(scope="session")
def docker28() -> Iterator[Engine]:
    """Debian unstable's Docker 28.5, unpacked, with the graphdriver image store (overlay2)."""
    yield from _engine("docker28")


@pytest.fixture(scope="session")
def docker28_containerd() -> Iterator[Engine]:
    """Debian unstable's Docker 28.5, unpacked, with the containerd image store."""
    yield from _engine("docker28-containerd")


@pytest.fixture(scope="session")
def podman(lab_port) -> Iterator[Engine]:
    """A managed Podman that treats the lab registry's address as insecure (plain HTTP)."""
    yield from _engine("podman", lab_port)


SENTINELS = ("ecsentinel/keep:1", "ecsentinel/keep:ectest-lookalike")


def seed_sentinels(target: str) -> dict[str, str]:
    """Images that exist before a run and must be untouched after it: name -> ID."""
    ids = {}
    with Client(Target.parse(target)) as client:
        client.negotiate()
        for i, name in enumerate(SENTINELS):
            # The tag goes inside repo: Podman 4.3 ignores the separate tag.
            client.create_image(
                {"fromSrc": "-", "repo": name},
                body=archives.rootfs({"sentinel": f"{i}\n".encode()}),
            )
            image = client.inspect_image(name)
            assert image is not None, f"could not seed sentinel {name}"
            ids[name] = image["Id"]
    return ids


def image_ids(target: str) -> set[str]:
    with Client(Target.parse(target)) as client:
        client.negotiate()
        return {image["Id"] for image in client.list_images()}


def look(target: str) -> tuple[dict[str, str | None], list[str]]:
    """The sentinels' IDs now, and every image tag left under a run prefix."""
    with Client(Target.parse(target)) as client:
        client.negotiate()
        after = {}
        for name in SENTINELS:
            image = client.inspect_image(name)
            after[name] = image["Id"] if image else None
        leftovers = [
            t
            for image in client.list_images()
            for t in image.get("RepoTags") or []
            if "ectest-" in t.rsplit(":", 1)[0]
        ]
    return after, leftovers


@pytest.fixture(name="look")
def look_fixture():
    """``look(target) -> (sentinel IDs, leftover prefixed tags)``."""
    return look


def engine_key(target: str) -> str:
    """The expectation-file key of the engine at ``target`` (``docker-26.1-containerd``)."""
    with Client(Target.parse(target)) as client:
        client.negotiate()
        return describe_target(client, client.info())["engine_key"]


def _phase_line(results: dict) -> str:
    """How the property phase went, so CI's log shows it kept within its budget."""
    for req in results["requirements"]:
        phase = req.get("observations") or {}
        if req["id"].startswith("SCHEMA-") and "requests" in phase:
            found = sum(
                len((r.get("observations") or {}).get("findings") or [])
                for r in results["requirements"]
                if r["id"].startswith("SCHEMA-")
            )
            return (
                f"; property phase: {phase['requests']} requests in {phase['seconds']} s "
                f"(budget {phase['budget']}), {found} distinct findings"
            )
    return ""


def full_run(engine: Engine, lab_port: int, api_version: str | None = None) -> SuiteRun:
    before = seed_sentinels(engine.target)
    ids_before = image_ids(engine.target)
    # An engine with no expectation file (Podman 5.4 on Debian 13, say) is still
    # judged; the expectation test then says plainly that there was nothing to compare.
    key = engine_key(engine.target)
    path = expectations.path_for(key)
    known = path.is_file()
    report_dir = CI_REPORTS / engine.kind
    shutil.rmtree(report_dir, ignore_errors=True)
    started = time.monotonic()
    outcome = run_suite(
        engine.target,
        report_dir,
        api_version=api_version,
        expectations="auto" if known else None,
        extra=[
            "--registry-port",
            str(lab_port),
            "--lane-ports",
            ",".join(map(str, lane_ports(lab_port))),
            "--property-budget",
            FULL_RUN_BUDGET,
        ],
    )
    assert outcome.results is not None, outcome.output[-4000:]
    t = outcome.results["target"]
    JUDGED[engine.kind] = (
        f"{t['engine']} {t['version']} ({t.get('image_store')}, "
        f"API {t['api_version']}) -> {t['engine_key']} "
        f"in {time.monotonic() - started:.0f} s" + _phase_line(outcome.results)
    )
    after, leftovers = look(engine.target)
    new = sorted(image_ids(engine.target) - ids_before)
    # The file is judged at the API version it was made at, or it judges other rules.
    recorded = (yaml.safe_load(path.read_text()) or {}).get("api_version") if known else None
    assert recorded in (None, t["api_version"]), (
        f"{path} records API {recorded}, but the test command judged {engine.kind} at "
        f"{t['api_version']}: regenerate it at that version (--api-version), or change "
        "API_VERSION_OF in tests/conftest.py"
    )
    return SuiteRun(outcome, before, after, leftovers, new, report_dir, engine.target)


def full_runs_of(
    needed: set[str], engine_of: Callable[[str], Engine], podman_lab_port: int
) -> dict[str, SuiteRun | BaseException]:
    """The full runs ``needed``, side by side: each engine mostly waits on I/O, so
    together they take about as long as the slowest alone. Podman gets the lab port it
    was told about; each Docker a port of its own (127.0.0.0/8 is insecure to it)."""
    engines: dict[str, Engine] = {}
    runs: dict[str, SuiteRun | BaseException] = {}
    for name in sorted(needed):
        try:
            engines[name] = engine_of(name)
        except (Unavailable, pytest.skip.Exception, pytest.fail.Exception) as exc:
            runs[name] = exc  # raised again by the suite fixture, in its own test
    with ThreadPoolExecutor(max_workers=max(1, len(engines))) as pool:
        futures = {
            name: pool.submit(
                full_run,
                engine,
                podman_lab_port if name == "podman_suite" else free_port(),
                API_VERSION_OF.get(name),
            )
            for name, engine in engines.items()
        }
        for name, future in futures.items():
            try:
                runs[name] = future.result()
            except Exception as exc:  # noqa: BLE001 - reported by the test that needs it
                runs[name] = exc
    return runs


def full_runs_needed(item: pytest.Item) -> set[str]:
    """The full runs ``item`` reads: a suite fixture, the ``suite`` parameter, or a
    deviant row of Docker itself (its verdict is Docker's full run)."""
    needed = {name for name in item.fixturenames if name in ENGINE_OF}
    params = getattr(getattr(item, "callspec", None), "params", {})
    if params.get("suite") in ENGINE_OF:
        needed.add(params["suite"])
    case = params.get("case")
    if (
        "judge" in item.fixturenames
        and case is not None
        and not case.deviations
        and case.api_version is None
    ):
        needed.add("docker_suite")
    return needed


NEEDED: set[str] = set()
"""The full runs the collected tests need (see ``pytest_collection_modifyitems``)."""


@pytest.hookimpl(trylast=True)  # after -k / -m deselected: only the runs the session will use
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs = {item.nodeid: full_runs_needed(item) for item in items}
    for found in needs.values():
        NEEDED.update(found)
    if shared.is_worker(config):
        # Under pytest-xdist the controller makes the full runs (some 2.5 min) while the
        # workers judge what does not read them. The order (a stable sort: every worker
        # must collect the same) puts the long serial groups (namespaces, the rootless
        # user) first, then the deviant rows, then what reads the full runs, then the rest:
        # no long test is left to start last.
        def rank(item: pytest.Item) -> int:
            if item.get_closest_marker("xdist_group"):
                return 0
            if needs[item.nodeid]:
                return 2
            return 1 if item.nodeid.startswith("tests/deviants/") else 3

        items.sort(key=rank)
        shared.tell_needed(config, NEEDED)


@pytest.fixture(scope="session")
def full_runs(request: pytest.FixtureRequest, lab_port: int) -> dict[str, SuiteRun | BaseException]:
    """Every full run the session needs: made here, or under pytest-xdist by the controller
    (on engines of its own, which live as long as the session)."""
    if shared.is_worker(request.config):
        made = shared.wait_for_runs(request.config)
        if made is not None:
            return {name: load_run(found) for name, found in made.items()}
    return full_runs_of(NEEDED, lambda name: request.getfixturevalue(ENGINE_OF[name]), lab_port)


def _suite(request: pytest.FixtureRequest, name: str) -> SuiteRun:
    runs = request.getfixturevalue("full_runs")
    if name not in runs:  # asked for by name at run time only: run it now, alone
        runs[name] = full_run(
            request.getfixturevalue(ENGINE_OF[name]),
            request.getfixturevalue("lab_port"),
            API_VERSION_OF.get(name),
        )
    got = runs[name]
    if isinstance(got, Unavailable):
        got.raise_for_pytest()
    if isinstance(got, BaseException):
        raise got
    return got


def dump_run(run: SuiteRun | BaseException) -> dict:
    """``run`` as JSON, for the workers of a pytest-xdist session."""
    if isinstance(run, SuiteRun):
        return {"run": {**asdict(run), "report_dir": str(run.report_dir)}}
    skip = isinstance(run, pytest.skip.Exception) or (isinstance(run, Unavailable) and run.skip)
    return {"skip" if skip else "error": str(run) or repr(run)}


def load_run(found: dict) -> SuiteRun | BaseException:
    if "run" not in found:
        return Unavailable(found.get("skip") or found["error"], skip="skip" in found)
    run = dict(found["run"])
    return SuiteRun(
        **{**run, "outcome": Outcome(**run["outcome"]), "report_dir": Path(run["report_dir"])}
    )


@pytest.fixture(scope="session")
def docker_suite(request) -> SuiteRun:
    return _suite(request, "docker_suite")


@pytest.fixture(scope="session")
def docker26_suite(request) -> SuiteRun:
    return _suite(request, "docker26_suite")


@pytest.fixture(scope="session")
def docker26_containerd_suite(request) -> SuiteRun:
    return _suite(request, "docker26_containerd_suite")


@pytest.fixture(scope="session")
def docker28_suite(request) -> SuiteRun:
    return _suite(request, "docker28_suite")


@pytest.fixture(scope="session")
def docker28_containerd_suite(request) -> SuiteRun:
    return _suite(request, "docker28_containerd_suite")


@pytest.fixture(scope="session")
def podman_suite(request) -> SuiteRun:
    return _suite(request, "podman_suite")


CONTROLLER = pytest.StashKey[shared.Controller]()


def pytest_configure(config: pytest.Config) -> None:
    if shared.is_controller(config):
        config.stash[CONTROLLER] = shared.Controller()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids) -> None:
    controller = node.config.stash.get(CONTROLLER, None)
    if controller is not None:
        controller.start(node.gateway.id, lambda needed: _controller_runs(controller, needed))


def _controller_runs(controller: shared.Controller, needed: set[str]) -> dict[str, dict]:
    lab_port = free_port()
    kinds = {name: ENGINE_OF[name].replace("_", "-") for name in needed}
    started: dict[str, tuple[Engine, ManagedEngine | None] | Unavailable] = {}

    def start(name: str) -> None:
        try:
            started[name] = start_engine(kinds[name], lab_port)
        except Unavailable as exc:
            started[name] = exc

    with ThreadPoolExecutor(max_workers=max(1, len(needed))) as pool:
        list(pool.map(start, sorted(needed)))
    for got in started.values():
        if not isinstance(got, Unavailable) and got[1] is not None:
            controller.stops.append(got[1].stop)

    def engine_of(name: str) -> Engine:
        got = started[name]
        if isinstance(got, Unavailable):
            raise got
        return got[0]

    return {name: dump_run(run) for name, run in full_runs_of(needed, engine_of, lab_port).items()}


def pytest_unconfigure(config: pytest.Config) -> None:
    controller = config.stash.get(CONTROLLER, None)
    if controller is not None:
        controller.finish()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    controller = config.stash.get(CONTROLLER, None)
    if controller is not None:
        controller.join()
    if JUDGED:
        terminalreporter.section("engines judged")
        for kind, what in sorted(JUDGED.items()):
            terminalreporter.write_line(f"{kind}: {what}")
        from engine_conformance.reports.compare import compare_dirs

        written = compare_dirs([CI_REPORTS / kind for kind in sorted(JUDGED)], CI_REPORTS)
        terminalreporter.write_line(f"comparison: {', '.join(str(p) for p in written)}")
