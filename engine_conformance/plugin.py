"""pytest integration: options, fixtures, verdicts and reports.

Loaded by the project's root ``conftest.py``; ``pytest --target URL suites/``
then judges a target. A suite check is an ordinary test marked with its
requirement::

    @pytest.mark.requirement("IMPORT-001")
    def test_import_creates_image(client, images, archive):
        ...

Verdicts (decided in :mod:`engine_conformance.verdicts`, which this module only
wires in): an assertion that fails in the check is ``fail``; a precondition
that did not hold, or anything else that goes wrong (the target hung, a
fixture broke) is ``error``, kept apart from fail; a ``pytest.skip`` or a
version outside the requirement's range is ``skip``.

Before the first check that needs the lab registry or the file server, the
fixture of that service proves the engine reaches it (:mod:`.preflight`); if it
does not, every check that needs it is an ``error`` with one shared reason and
the fix, and the session exits with ``runner.CHILD_SUITE_UNREACHABLE``. The
plugin's own exit statuses (see :mod:`.runner`) lie outside pytest's 0-5.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets as _secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import expectations
from .cleanup import Images, sweep
from .fileserver import FileServer
from .preflight import Probe, probe_file_server, probe_registry
from .report import scrub, write_reports
from .requirements import Catalogue, CatalogueError, Requirement
from .runner import (
    CHILD_SUITE_UNREACHABLE,
    CHILD_TARGET_UNREACHABLE,
    CHILD_USAGE,
    COMMAND_LINE,
    PROGRESS_FD,
    api_version_problem,
)
from .target import Client, Target, TargetError, Timeouts, UsageError
from .verdicts import Precondition, Record, build_results, classify, merge, tolerated

SERVICES = ("registry", "file_server")  # what a preflight proves the engine reaches


@dataclass
class Run:
    """Per-session state, kept on ``config.stash``."""

    catalogue: Catalogue
    prefix: str
    report_dir: Path
    client: Client | None = None
    target_info: dict = field(default_factory=dict)
    records: dict[str, list[Record]] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)
    expected: dict[str, str] | None = None
    expectations_path: Path | None = None
    started: float = field(default_factory=time.time)
    complete: bool = True
    mismatches: list[str] = field(default_factory=list)
    gate: expectations.Gate | None = None
    results: dict | None = None
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    preflight: dict[str, Probe] = field(default_factory=dict)
    progress: Any = None  # the CLI's progress channel (a text file), when it gave one

    @property
    def unreachable(self) -> list[Probe]:
        """The preflights that failed: the suite could not judge what needs those services."""
        return [p for p in self.preflight.values() if not p.ok]


RUN = pytest.StashKey[Run]()
ITEM_START = pytest.StashKey[int]()
ITEM_OBS = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("engine-conformance")
    group.addoption("--target", help="engine: unix:///path, tcp://h:p, https://h:p "
                    "(default: DOCKER_HOST, then /var/run/docker.sock)")
    group.addoption("--api-version", help="pin the API version (default: negotiate, at most 1.44)")
    group.addoption("--report-dir", default=None, help="where results.json and junit.xml go")
    group.addoption("--expectations", default=None,
                    help="expectation file to check verdicts against, or 'auto'")
    group.addoption("--update-expectations", action="store_true",
                    help="write this run's verdicts to the expectation file")
    group.addoption("--strict-gate", action="store_true",
                    help="with --expectations: a requirement that newly passes fails the gate "
                         "too (default: reported as 'fixed: update the expectations')")
    group.addoption("--run-prefix", default=None, help="name prefix for everything the run creates")
    group.addoption("--request-timeout", type=float, default=60.0, help="seconds per request")
    group.addoption("--stream-timeout", type=float, default=300.0,
                    help="seconds for a whole progress stream")
    group.addoption("--requirement", action="append", default=[], metavar="ID",
                    help="judge only this requirement (repeatable)")
    group.addoption("--registry-port", type=int, default=0,
                    help="port for the lab registry (0: any free one); a managed Podman must "
                         "have been told it is insecure")
    group.addoption("--registry", default=None, metavar="HOST:PORT",
                    help="an external registry (plain HTTP, push allowed) to pull from instead "
                         "of the lab registry; fault and journal checks then skip")
    group.addoption("--serve-host", default="127.0.0.1",
                    help="address the suite's own servers listen on (must be reachable "
                         "from the engine)")
    group.addoption("--serve-tls", action="store_true",
                    help="serve the lab registry and file server over HTTPS with a CA made "
                         "for the run (<report-dir>/tls/ca.crt: the engine must trust it)")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a cancelled CI job) cleans up like Ctrl-C


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requirement(id): the catalogue requirement this suite check judges"
    )
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
        # Python leaves SIGINT ignored when it was ignored at launch (a `nohup ... &` shell):
        # Ctrl-C, or the CLI passing one on, must still stop the run and clean up.
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        catalogue = Catalogue.load()
    except CatalogueError as exc:
        raise pytest.UsageError(f"requirement catalogue: {exc}") from None
    prefix = config.getoption("run_prefix") or f"ectest-{_secrets.token_hex(4)}"
    report_dir = Path(
        config.getoption("report_dir")
        or Path(config.rootpath) / "reports" / time.strftime("%Y%m%d-%H%M%S")
    )
    config.stash[RUN] = Run(catalogue=catalogue, prefix=prefix, report_dir=report_dir,
                            progress=_progress_channel())


def _progress_channel() -> Any:
    fd = os.environ.get(PROGRESS_FD)
    if not fd:
        return None
    try:
        return os.fdopen(int(fd), "w", buffering=1, closefd=False)
    except (OSError, ValueError):
        return None


def _emit(run: Run | None, **event: Any) -> None:
    """One progress event for the CLI (which shows progress and refusals, not pytest's log)."""
    if run is None or run.progress is None:
        return
    try:
        run.progress.write(json.dumps(event, default=str) + "\n")
    except (OSError, ValueError):
        run.progress = None  # the CLI went away; the run goes on and writes its reports


def _refuse(config: pytest.Config, message: str, code: int) -> None:
    """Stop the session with one line for the user and the plugin's exit status ``code``."""
    _emit(config.stash.get(RUN, None), event="refusal", message=message, code=code)
    pytest.exit(message, code)


def _run(config: pytest.Config) -> Run:
    return config.stash[RUN]


def _requirement_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("requirement")
    return str(marker.args[0]) if marker and marker.args else None


# -- collection: connect once, before anything runs ------------------------------


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    run = _run(config)
    wanted = set(config.getoption("requirement"))
    if wanted:
        unknown = wanted - set(run.catalogue)
        if unknown:
            raise pytest.UsageError(f"unknown requirement {', '.join(sorted(unknown))}")
        keep = [i for i in items if _requirement_of(i) in wanted]
        drop = [i for i in items if i not in keep]
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep
    suite_items = [i for i in items if _requirement_of(i)]
    for item in suite_items:
        rid = _requirement_of(item)
        if rid not in run.catalogue:
            raise pytest.UsageError(f"{item.nodeid}: requirement {rid} is not in the catalogue")
    if not suite_items:
        return
    run.complete = {_requirement_of(i) for i in suite_items} >= set(run.catalogue)
    _connect(config, run)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Here, after every plugin's deselection (-k included): the counts the progress shows.
    run = session.config.stash.get(RUN, None)
    if run is None or run.client is None:
        return
    per_suite: dict[str, int] = {}
    for item in session.items:
        rid = _requirement_of(item)
        if rid:
            name = run.catalogue[rid].suite
            per_suite[name] = per_suite.get(name, 0) + 1
    t = run.target_info
    _emit(run, event="collected", suites=per_suite,
          target=f"{t['engine']} {t['version']} (API {t['api_version']}) at {t['url']}")


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items and items[0].config.stash.get(RUN, None):
        items[0].config.stash[RUN].complete = False


def _connect(config: pytest.Config, run: Run) -> None:
    try:
        spec = config.getoption("target")
        target = Target.parse(spec) if spec else Target.default()
        if target is None:
            _refuse(config, "no target: give --target or set DOCKER_HOST "
                    "(or use `engine-conformance run`, which can start one)", CHILD_USAGE)
        client = Client(
            target,
            api_version=config.getoption("api_version") or os.environ.get("DOCKER_API_VERSION"),
            timeouts=Timeouts(
                read=config.getoption("request_timeout"),
                stream=config.getoption("stream_timeout"),
            ),
        )
        client.negotiate()
        info = client.info()
    except UsageError as exc:
        _refuse(config, f"bad target: {exc}", CHILD_USAGE)
    except TargetError as exc:
        _refuse(config, str(exc), CHILD_TARGET_UNREACHABLE)
    if client.pinned:
        problem = api_version_problem(client.pinned, client.version_info.get("MinAPIVersion"),
                                      client.version_info.get("ApiVersion"))
        if problem:
            client.close()
            _refuse(config, problem, CHILD_USAGE)
    run.client = client
    run.target_info = describe_target(client, info)
    expect = config.getoption("expectations")
    if expect:
        path = (expectations.path_for(run.target_info["engine_key"]) if expect == "auto"
                else Path(expect))
        run.expectations_path = path
        if not config.getoption("update_expectations"):
            if not path.is_file():
                _refuse(config, f"no expectation file {path}"
                        + (f" for {run.target_info['engine_key']}" if expect == "auto" else ""),
                        CHILD_USAGE)
            run.expected = expectations.load(path)


def describe_target(client: Client, info: dict) -> dict:
    """Engine identity for reports and for picking an expectation file."""
    v = client.version_info
    components = [c.get("Name", "") for c in v.get("Components") or []]
    product = "podman" if any("podman" in c.lower() for c in components) else "docker"
    version = str(v.get("Version", "unknown"))
    major_minor = ".".join(version.split("+")[0].split(".")[:2])
    store = image_store(product, info)
    # The key tells Docker's two image stores apart: they judge differently.
    key = f"{product}-{major_minor}" + ("-containerd" if store == "containerd" else "")
    return {
        "url": client.target.url,
        "engine": product,
        "version": version,
        "engine_key": key,
        "image_store": store,
        "api_version": client.api_version,
        "max_api_version": v.get("ApiVersion"),
        "min_api_version": v.get("MinAPIVersion"),
        "os": v.get("Os") or info.get("OSType"),
        "arch": v.get("Arch") or info.get("Architecture"),
        "storage_driver": info.get("Driver"),
        "operating_system": info.get("OperatingSystem"),
    }


def image_store(product: str, info: dict) -> str:
    """``containerd`` (Docker's containerd store), ``graphdriver`` or ``containers-storage``."""
    if product == "podman":
        return "containers-storage"
    status = {str(k): str(v) for k, v in (info.get("DriverStatus") or []) if k}
    if status.get("driver-type", "").startswith("io.containerd.snapshotter"):
        return "containerd"
    return "graphdriver"


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def run_state(request: pytest.FixtureRequest) -> Run:
    return _run(request.config)


@pytest.fixture(scope="session")
def client(run_state: Run) -> Client:
    """The negotiated client for the target under test."""
    if run_state.client is None:
        pytest.skip("no target connected (not a suite run)")
    return run_state.client


@pytest.fixture(scope="session")
def api_version(client: Client) -> str:
    return client.api_version


@pytest.fixture(scope="session")
def target_info(run_state: Run, client: Client) -> dict:
    return run_state.target_info


@pytest.fixture(scope="session")
def file_server(request: pytest.FixtureRequest, run_state: Run, client: Client,
                target_info: dict) -> Iterator[FileServer]:
    """A :class:`FileServer` for ``fromSrc=<URL>`` imports, on ``--serve-host``.

    Proven reachable by the engine first; if it is not, this fixture raises
    :class:`Precondition` for every check that uses it (pytest re-raises a session
    fixture's failure), so those checks are ``error`` with one shared reason.
    """
    from .tls import server_context_for

    config = request.config
    tls = server_context_for(config.getoption("serve_tls"), run_state.report_dir,
                             config.getoption("serve_host"))
    with FileServer(config.getoption("serve_host"), tls=tls) as server:
        _preflight(run_state, lambda: probe_file_server(
            client, server, target_info, run_state.prefix, run_state.created.add,
            _ca(config, run_state)))
        yield server


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest, run_state: Run, client: Client, target_info: dict):
    """The registry the pull suites use, serving the standard catalogue under the run prefix.

    The lab registry listens on ``--serve-host``:``--registry-port``; with
    ``--registry`` it is an external one instead (``lab.external`` is True).
    Proven reachable by the engine first, like :func:`file_server`; the
    ``registry`` and ``lab_control`` fixtures inherit its failure.
    """
    from .registries import serve
    from .tls import server_context_for

    config = request.config
    tls = server_context_for(config.getoption("serve_tls"), run_state.report_dir,
                             config.getoption("serve_host"))
    try:
        with serve(run_state.prefix, host=config.getoption("serve_host"),
                   port=config.getoption("registry_port"),
                   external=config.getoption("registry"), tls=tls) as registry:
            _preflight(run_state, lambda: probe_registry(
                client, registry, target_info, run_state.created.add, _ca(config, run_state)))
            yield registry
    except OSError as exc:
        _refuse(config, f"cannot serve the lab registry: {exc}", CHILD_USAGE)


def _ca(config: pytest.Config, run: Run) -> Path | None:
    """The run's CA file when its servers speak HTTPS, for the preflight's advice."""
    from .tls import CA_FILE, run_directory

    return run_directory(run.report_dir) / CA_FILE if config.getoption("serve_tls") else None


def _preflight(run: Run, probe: Callable[[], Probe]) -> None:
    result = probe()
    run.preflight[result.service] = result
    if not result.ok:
        raise Precondition(result.reason)


@pytest.fixture
def registry(lab):
    """The run's registry with no faults or auth rules and an empty journal, for one check."""
    lab.reset()
    yield lab
    lab.reset()


@pytest.fixture
def lab_control(registry):
    """The in-process lab registry, for checks that read its journal or inject faults."""
    if registry.external:
        pytest.skip("an external registry is in use: its journal and faults are not ours")
    return registry


@pytest.fixture
def observe(request: pytest.FixtureRequest) -> dict:
    """A dict whose entries are shown as the check's observations in the report."""
    return request.node.stash.setdefault(ITEM_OBS, {})


@pytest.fixture
def secret(run_state: Run):
    """Register a string that must never appear in output or reports."""

    def register(value: str) -> str:
        run_state.secrets.add(value)
        return value

    return register


@pytest.fixture
def images(client: Client, run_state: Run):
    """Creates names under the run prefix and removes those images after the check."""
    tracker = Images(client, run_state)
    yield tracker
    tracker.cleanup()


# -- verdicts ---------------------------------------------------------------------


def pytest_runtest_setup(item: pytest.Item) -> None:
    rid = _requirement_of(item)
    if not rid:
        return
    run = _run(item.config)
    if run.client is not None:
        item.stash[ITEM_START] = len(run.client.exchanges)
    req = run.catalogue[rid]
    if run.client is not None and not req.applies_to(run.client.api_version):
        pytest.skip(f"applies to API {req.versions}; the target speaks {run.client.api_version}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    rid = _requirement_of(item)
    if not rid:
        return report
    run = _run(item.config)
    if run.secrets and report.longrepr is not None and not report.skipped:
        # pytest prints failure text as it is: registered secrets go first.
        report.longrepr = scrub(str(report.longrepr), run.secrets)
    if run.secrets:
        report.sections = [(k, scrub(v, run.secrets)) for k, v in report.sections]
    req = run.catalogue[rid]
    verdict, reason = classify(report.when, report.outcome, *_raised(report, call))
    if verdict is None:
        if report.when == "teardown":
            _finished(item, run, rid)
        return report
    if call.excinfo is not None and call.excinfo.errisinstance(Precondition):
        # The reason says what did not hold and the fix; a traceback into a fixture,
        # repeated for every check the preflight stopped, would only bury it.
        report.longrepr = reason
    record = Record(item.nodeid, verdict, reason, report.duration)
    if run.client is not None:
        start = item.stash.get(ITEM_START, 0)
        record.evidence = [ex.evidence() for ex in run.client.exchanges[start:]][-6:]
    record.observations = dict(item.stash.get(ITEM_OBS, {}))
    records = run.records.setdefault(rid, [])
    previous = next((i for i, r in enumerate(records) if r.nodeid == item.nodeid), None)
    if previous is None:
        records.append(record)
    else:
        records[previous] = merge(records[previous], record)
    _reshape(report, req, verdict, run)
    if report.when == "teardown":
        _finished(item, run, rid)
    return report


def _waited(exchanges: list) -> float:
    """Seconds spent waiting on the engine's answers (the exchanges' own clocks)."""
    now = time.monotonic()
    return sum((ex.finished or now) - ex.started for ex in exchanges if ex.started)


def _finished(item: pytest.Item, run: Run, rid: str) -> None:
    """After an item's last phase: its time waiting on the engine, and a progress event."""
    record = next((r for r in run.records.get(rid, []) if r.nodeid == item.nodeid), None)
    if record is None:
        return
    if run.client is not None:
        record.engine_wait = _waited(run.client.exchanges[item.stash.get(ITEM_START, 0):])
    _emit(run, event="item", suite=run.catalogue[rid].suite, requirement=rid,
          verdict=record.verdict)


def _raised(
    report: pytest.TestReport, call: pytest.CallInfo
) -> tuple[type[BaseException] | None, str]:
    """What a phase raised, as plain data for :func:`verdicts.classify`."""
    if report.skipped:
        return None, _skip_reason(report)
    excinfo = call.excinfo
    if report.passed or excinfo is None:
        return None, ""
    value = excinfo.value
    if isinstance(value, pytest.fail.Exception):
        return AssertionError, str(value.msg)  # an explicit pytest.fail() in a check
    if isinstance(value, AssertionError) and value.args:
        return type(value), str(value.args[0])
    if isinstance(value, AssertionError):
        return type(value), excinfo.exconly().removeprefix("AssertionError").lstrip(": ")
    return type(value), str(value)


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr or "")


def _reshape(report: pytest.TestReport, req: Requirement, verdict: str, run: Run) -> None:
    """Make pytest's own outcome agree with what the run is judged on (see ``tolerated``)."""
    expected = run.expected.get(req.id) if run.expected is not None else None
    why = tolerated(verdict, gating=req.gating, expected=expected,
                    checking=run.expected is not None)
    if why is not None:
        report.outcome = "passed"
        report.user_properties.append((why, verdict))


# -- end of session ---------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN, None)
    if run is None or run.client is None:
        return
    config = session.config
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    _emit(run, event="finishing", interrupted=interrupted)
    removed = sweep(run.client, run)
    preflight = {name: run.preflight[name].as_dict() if name in run.preflight
                 else {"status": "not needed"} for name in SERVICES}
    # An interrupted run judged only part of what it meant to: it is never complete.
    complete = run.complete and not interrupted
    results = build_results(
        run.catalogue, run.records, run.target_info,
        {"prefix": run.prefix, "complete": complete, "interrupted": interrupted,
         **({"command_line": json.loads(os.environ[COMMAND_LINE])}
            if os.environ.get(COMMAND_LINE) else {}),
         "cleanup_removed": removed, "preflight": preflight},
        run.started,
    )
    verdicts = {r["id"]: r["verdict"] for r in results["requirements"]}
    reasons = {r["id"]: r["reason"] for r in results["requirements"]}
    if config.getoption("update_expectations") and run.expectations_path:
        # Verdicts of a run that could not reach its own services describe the setup,
        # not the engine: they must not become its expectations.
        updated = not interrupted and not run.unreachable
        if updated:
            expectations.write(run.expectations_path, run.target_info, verdicts, reasons,
                               prefix=run.prefix)
        results["expectations"] = {"file": str(run.expectations_path), "updated": updated}
    elif run.expected is not None:
        run.gate = expectations.gate(verdicts, run.expected, complete,
                                     strict=config.getoption("strict_gate"))
        run.mismatches = run.gate.mismatches
        results["expectations"] = {"file": str(run.expectations_path),
                                   "mismatches": run.mismatches} | run.gate.as_dict()
        if not run.gate.passed and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if run.unreachable and not interrupted:
        session.exitstatus = CHILD_SUITE_UNREACHABLE
    results = scrub(results, run.secrets)
    run.results = results
    paths = write_reports(run.report_dir, results)
    _emit(run, event="reports", paths=[str(p) for p in paths])
    run.client.close()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from .summary import terminal_lines

    run = config.stash.get(RUN, None)
    if run is None or run.results is None:
        return
    terminalreporter.section("conformance verdicts")
    for line, bad in terminal_lines(run.results, run.report_dir):
        terminalreporter.write_line(line, red=bad)
