"""pytest integration: options, fixtures, verdicts and reports.

Loaded by the project's root ``conftest.py``; ``pytest --target URL suites/``
then judges a target. A suite check is an ordinary test marked with its
requirement::

    @pytest.mark.requirement("IMPORT-001")
    def test_import_creates_image(client, images, archive):
        ...

Verdicts (decided in :mod:`engine_conformance.judge.verdicts`, which this module only
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

import json
import secrets as _secrets
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import pytest

from engine_conformance.base.exits import CHILD_SUITE_UNREACHABLE, CHILD_USAGE, Refusal
from engine_conformance.base.redact import scrub
from engine_conformance.catalogue.requirements import Catalogue, CatalogueError, Requirement
from engine_conformance.engine.fileserver import FileServer
from engine_conformance.engine.target import Client
from engine_conformance.judge.cleanup import Images, left_behind, sweep
from engine_conformance.judge.preflight import Probe, probe_file_server, probe_registry
from engine_conformance.judge.verdicts import (
    Precondition,
    Record,
    classify,
    merge,
    tolerated,
)
from engine_conformance.reports.report import write_reports
from engine_conformance.run.lane import Lane, LaneContext
from engine_conformance.run.options import add_to_plugin
from engine_conformance.run.options import apply as apply_run_config
from engine_conformance.run.session import (
    SERVICES,
    Run,
    connect,
    emit,
    finish,
    progress_channel,
    waited,
)
from engine_conformance.run.xdist import (
    WORKER_OUTPUT,
    merge_workers,
    registry_port,
    suite_counts,
    turn,
    worker_id,
)

RUN = pytest.StashKey[Run]()
ITEM_START = pytest.StashKey[int]()
ITEM_CLOCK = pytest.StashKey[float]()
ITEM_DURATION = pytest.StashKey[float]()
ITEM_OBS = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_to_plugin(parser.getgroup("engine-conformance"))  # the one table (run/options.py)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a cancelled CI job) cleans up like Ctrl-C


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requirement(id): the catalogue requirement this suite check judges"
    )
    config.addinivalue_line(
        "markers", "exclusive: under pytest-xdist, no other check may run at the same time"
    )
    config.addinivalue_line(
        "markers",
        "busy: the check works mostly on the suite's side (generating requests): the run "
        "puts it first, beside the lane's waits",
    )
    config.addinivalue_line(
        "markers",
        "ahead(key, scenario, wait=SECONDS): the check reads scenario(lane context), which "
        "only waits on the engine (about SECONDS on Docker): the run starts it in its lane "
        "once the checks are collected (run/lane.py)",
    )
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
        # Python leaves SIGINT ignored when it was ignored at launch (a `nohup ... &` shell):
        # Ctrl-C, or the CLI passing one on, must still stop the run and clean up.
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    engine = None
    if config.getoption("run_config"):
        # `engine-conformance run` settled all of it: its options, the target, the engine.
        try:
            engine = apply_run_config(config.option, config.getoption("run_config"))
        except (OSError, ValueError) as exc:
            raise pytest.UsageError(str(exc)) from None
    try:
        catalogue = Catalogue.load()
    except CatalogueError as exc:
        raise pytest.UsageError(f"requirement catalogue: {exc}") from None
    prefix = config.getoption("run_prefix") or f"ectest-{_secrets.token_hex(4)}"
    if worker_id(config):
        # Each pytest-xdist worker names, sweeps and cleans up under a prefix of its own:
        # one worker's end-of-session sweep must not remove what another still uses.
        prefix = f"{prefix}-{worker_id(config)}"
    report_dir = Path(
        config.getoption("report_dir")
        or Path(config.rootpath) / "reports" / time.strftime("%Y%m%d-%H%M%S")
    )
    config.stash[RUN] = Run(
        catalogue=catalogue,
        prefix=prefix,
        report_dir=report_dir,
        progress=progress_channel(),
        engine=engine,
    )


def _refuse(config: pytest.Config, message: str, code: int) -> None:
    """Stop the session with one line for the user and the plugin's exit status ``code``."""
    emit(config.stash.get(RUN, None), event="refusal", message=message, code=code)
    pytest.exit(message, code)


def _run(config: pytest.Config) -> Run:
    return config.stash[RUN]


def _requirement_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("requirement")
    return str(marker.args[0]) if marker and marker.args else None


def check_links(items: list[pytest.Item]) -> dict[str, list[dict[str, Any]]]:
    """Per requirement, the checks its marker names: file (from the rootdir), line, test name.

    The marker is the link: whatever carries ``requirement(ID)`` at collection is the
    requirement's check, wherever it is written.
    """
    links: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        rid = _requirement_of(item)
        path, line, name = item.location
        entry = {"file": path, "line": (line or 0) + 1, "name": name.split("[")[0]}
        if rid and entry not in links.setdefault(rid, []):
            links[rid].append(entry)
    return links


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
    links_out = config.getoption("links_out")
    if links_out:
        Path(links_out).write_text(json.dumps(check_links(suite_items)))
        items[:] = []
        return
    if not suite_items:
        return
    # Checks that mostly work on the suite's side go first, while the lane's scenarios
    # wait on the engine; checks that read a scenario run ahead go last: by then it has
    # had the whole run.
    items.sort(
        key=lambda i: (
            i.get_closest_marker("ahead") is not None,
            i.get_closest_marker("busy") is None,
        )
    )
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
    emit(
        run,
        event="collected",
        suites=per_suite,
        target=f"{t['engine']} {t['version']} (API {t['api_version']}) at {t['url']}",
    )
    # The lane's scenarios start now, with what is left to run; a pytest-xdist worker
    # has none (another worker's whole-list view would see its images).
    if not worker_id(session.config) and not session.config.option.collectonly:
        run.lane = _open_lane(session, run)


def pytest_deselected(items: list[pytest.Item]) -> None:
    run = items[0].config.stash.get(RUN, None) if items else None
    if run is not None:
        run.complete = False


def _connect(config: pytest.Config, run: Run) -> None:
    try:
        connect(run, config.getoption)
    except Refusal as exc:
        _refuse(config, str(exc), exc.code)


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
def target_info(run_state: Run, client: Client) -> dict[str, Any]:
    return run_state.target_info


@pytest.fixture(scope="session")
def file_server(
    request: pytest.FixtureRequest, run_state: Run, client: Client, target_info: dict[str, Any]
) -> Iterator[FileServer]:
    """A :class:`FileServer` for ``fromSrc=<URL>`` imports, on ``--serve-host``.

    Proven reachable by the engine first; if it is not, this fixture raises
    :class:`Precondition` for every check that uses it (pytest re-raises a session
    fixture's failure), so those checks are ``error`` with one shared reason.
    """
    from engine_conformance.engine.tls import server_context_for

    config = request.config
    tls = server_context_for(
        config.getoption("serve_tls"),
        run_state.report_dir,
        config.getoption("serve_host"),
        config.getoption("tls_dir"),
    )
    try:
        # The socket is bound here: a port that is taken is the user's to fix.
        server = FileServer(
            config.getoption("serve_host"), config.getoption("file_server_port"), tls=tls
        )
    except OSError as exc:
        _refuse(config, f"cannot serve the file server: {exc}", CHILD_USAGE)
    with server:
        run_state.files = server  # what a reproducer bundle copies of an import's source
        _preflight(
            run_state,
            lambda: probe_file_server(
                client,
                server,
                target_info,
                run_state.prefix,
                run_state.created.add,
                _ca(config, run_state),
            ),
        )
        yield server


@pytest.fixture(scope="session")
def lab(
    request: pytest.FixtureRequest, run_state: Run, client: Client, target_info: dict[str, Any]
) -> Iterator[Any]:
    """The registry the pull suites use, serving the standard catalogue under the run prefix.

    The lab registry listens on ``--serve-host``:``--registry-port``; with
    ``--registry`` it is an external one instead (``lab.external`` is True).
    Proven reachable by the engine first, like :func:`file_server`; the
    ``registry`` and ``lab_control`` fixtures inherit its failure.
    """
    from engine_conformance.engine.registries import serve
    from engine_conformance.engine.tls import server_context_for

    config = request.config
    tls = server_context_for(
        config.getoption("serve_tls"),
        run_state.report_dir,
        config.getoption("serve_host"),
        config.getoption("tls_dir"),
    )
    try:
        with serve(
            run_state.prefix,
            host=config.getoption("serve_host"),
            port=registry_port(config),
            external=config.getoption("registry"),
            tls=tls,
        ) as registry:
            if not registry.external:
                # Each request keeps the lab's content as it was sent (reproducer bundles).
                from lab_registry import content

                client.context["lab"] = lambda: content.snapshot(cast(Any, registry))
            _preflight(
                run_state,
                lambda: probe_registry(
                    client, registry, target_info, run_state.created.add, _ca(config, run_state)
                ),
            )
            try:
                yield registry
            finally:
                client.context.pop("lab", None)
    except OSError as exc:
        _refuse(config, f"cannot serve the lab registry: {exc}", CHILD_USAGE)


def _ca(config: pytest.Config, run: Run) -> Path | None:
    """The run's CA file when its servers speak HTTPS, for the preflight's advice."""
    from engine_conformance.engine.tls import CA_FILE, run_directory

    return (
        run_directory(run.report_dir, config.getoption("tls_dir")) / CA_FILE
        if config.getoption("serve_tls")
        else None
    )


def _preflight(run: Run, probe: Callable[[], Probe]) -> None:
    result = probe()
    run.preflight[result.service] = result
    if not result.ok:
        raise Precondition(result.reason)


def _open_lane(session: pytest.Session, run: Run) -> Lane | None:
    """The run's lane, its scenarios started (None: no check reads one, or no lab of ours)."""
    config = session.config
    ahead: dict[str, tuple[float, Callable[[LaneContext], Any]]] = {}
    assert run.client is not None
    for item in session.items:
        rid = _requirement_of(item)
        marker = item.get_closest_marker("ahead")
        if marker and rid and run.catalogue[rid].applies_to(run.client.api_version):
            key, scenario = marker.args
            ahead.setdefault(key, (float(marker.kwargs.get("wait", 0)), scenario))
    if not ahead or config.getoption("registry"):
        return None
    from engine_conformance.engine.tls import server_context_for

    lane = Lane(
        run,
        run.client,
        run.target_info,
        host=config.getoption("serve_host"),
        tls=server_context_for(
            config.getoption("serve_tls"),
            run.report_dir,
            config.getoption("serve_host"),
            config.getoption("tls_dir"),
        ),
        ca=_ca(config, run),
        secrets=run.secrets,
        ports=[int(p) for p in (config.getoption("lane_ports") or "").split(",") if p],
    )
    # The longest wait first: the lane then ends about when its longest scenario does.
    for key, (_, scenario) in sorted(ahead.items(), key=lambda kv: -kv[1][0]):
        lane.start(key, scenario)
    return lane


@pytest.fixture(scope="session")
def lane(run_state: Run) -> Lane | None:
    """The run's lane (:mod:`.lane`), or None: a check then runs its scenario itself."""
    return run_state.lane


@pytest.fixture
def registry(lab: Any) -> Iterator[Any]:
    """The run's registry with no faults or auth rules and an empty journal, for one check."""
    lab.reset()
    yield lab
    lab.reset()


@pytest.fixture
def lab_control(registry: Any) -> Any:
    """The in-process lab registry, for checks that read its journal or inject faults."""
    if registry.external:
        pytest.skip("an external registry is in use: its journal and faults are not ours")
    return registry


@pytest.fixture
def observe(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A dict whose entries are shown as the check's observations in the report."""
    observed: dict[str, Any] = request.node.stash.setdefault(ITEM_OBS, {})
    return observed


@pytest.fixture
def secret(run_state: Run) -> Callable[[str], str]:
    """Register a string that must never appear in output or reports."""

    def register(value: str) -> str:
        run_state.secrets.add(value)
        return value

    return register


@pytest.fixture
def images(client: Client, run_state: Run) -> Iterator[Images]:
    """Creates names under the run prefix and removes those images after the check."""
    tracker = Images(client, run_state)
    yield tracker
    tracker.cleanup()


# -- verdicts ---------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Under pytest-xdist: exclusive checks alone, the others side by side."""
    run = item.config.stash.get(RUN, None)
    if run is None or not worker_id(item.config) or not _requirement_of(item):
        return (yield)
    with turn(item, run.report_dir):
        return (yield)


def pytest_runtest_setup(item: pytest.Item) -> None:
    rid = _requirement_of(item)
    if not rid:
        return
    run = _run(item.config)
    if run.client is not None:
        item.stash[ITEM_START] = len(run.client.exchanges)
        item.stash[ITEM_CLOCK] = time.monotonic()
    req = run.catalogue[rid]
    if run.client is not None and not req.applies_to(run.client.api_version):
        pytest.skip(f"applies to API {req.versions}; the target speaks {run.client.api_version}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
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
    # Every phase's time counts, a passing setup's (a module fixture's work) too.
    item.stash[ITEM_DURATION] = item.stash.get(ITEM_DURATION, 0.0) + report.duration
    verdict, reason = classify(report.when, report.outcome, *_raised(report, call))
    if verdict is None:
        if report.when == "teardown":
            _tag_finished(report, run.catalogue[rid].suite, _finished(item, run, rid))
        return report
    if call.excinfo is not None and call.excinfo.errisinstance(Precondition):
        # The reason says what did not hold and the fix; a traceback into a fixture,
        # repeated for every check the preflight stopped, would only bury it.
        report.longrepr = reason
    record = Record(item.nodeid, verdict, reason, report.duration)
    if run.client is not None:
        start = item.stash.get(ITEM_START, 0)
        record.evidence = [ex.evidence() for ex in run.client.exchanges[start:]][-6:]
    observed: dict[str, Any] = item.stash.get(ITEM_OBS, {})
    record.observations = dict(observed)
    records = run.records.setdefault(rid, [])
    previous = next((i for i, r in enumerate(records) if r.nodeid == item.nodeid), None)
    if previous is None:
        records.append(record)
    else:
        records[previous] = merge(records[previous], record)
        record = records[previous]
    if record.verdict == "fail" and not record.reproducer and run.client is not None:
        record.reproducer = _bundle(item, run, req, record)
    _reshape(report, req, verdict, run)
    if report.when == "teardown":
        _tag_finished(report, req.suite, _finished(item, run, rid))
    return report


def _bundle(item: pytest.Item, run: Run, req: Requirement, record: Record) -> str:
    """Write the reproducer bundle of a failing check; its path relative to the report dir."""
    from engine_conformance.judge.bundles import Case, write_case

    assert run.client is not None
    config = item.config
    # What the run was told about where to serve: an engine set up once for fixed ports
    # (Podman's registries.conf, an insecure-registries entry) needs them again.
    options = ["--serve-host", config.getoption("serve_host")]
    for name in ("registry_port", "file_server_port"):
        if config.getoption(name):
            options += [f"--{name.replace('_', '-')}", str(config.getoption(name))]
    case = Case(
        req.id,
        req.title,
        req.level,
        req.judged_at or run.client.api_version,
        [b.to_dict() for b in req.basis],
        item.nodeid,
        record.reason,
        {k: v for k, v in run.target_info.items() if k != "url"},
        run.prefix,
        options,
        config.getoption("seed", None),
    )
    exchanges = run.client.exchanges[item.stash.get(ITEM_START, 0) :]
    try:
        bundle = write_case(
            run.report_dir,
            case,
            exchanges,
            files=run.files,
            target_url=str(run.target_info.get("url") or ""),
        )
    except (OSError, ValueError) as exc:
        # A bundle is a courtesy to the maintainer; the verdict stands without it.
        record.observations["reproducer"] = f"not written: {exc}"
        return ""
    return str(bundle.relative_to(run.report_dir))


def _tag_finished(report: pytest.TestReport, suite: str, verdict: str | None) -> None:
    # A pytest-xdist controller sees only reports: the item's verdict travels with its last.
    if verdict is not None:
        report.user_properties.append(("ec-finished", f"{suite} {verdict}"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Progress under pytest-xdist: the controller relays its workers' finished items."""
    if report.when != "teardown" or not hasattr(report, "node"):
        return
    run = report.node.config.stash.get(RUN, None)
    for key, value in report.user_properties:
        if key == "ec-finished":
            suite, verdict = str(value).split(" ", 1)
            emit(run, event="item", suite=suite, verdict=verdict)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    run = node.config.stash.get(RUN, None)
    if run is None or run.workers.get("collected"):
        return
    run.workers["collected"] = {"count": len(ids)}
    emit(
        run,
        event="collected",
        suites=suite_counts(ids),
        target=f"{node.config.getoption('target')} (pytest-xdist workers)",
    )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """A pytest-xdist worker finished: keep what it judged for the controller's reports."""
    run = node.config.stash.get(RUN, None)
    output = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT)
    if run is not None and output:
        run.workers[str(node.gateway.id)] = json.loads(output)


def _finished(item: pytest.Item, run: Run, rid: str) -> str | None:
    """After an item's last phase: its time waiting on the engine, and a progress event."""
    record = next((r for r in run.records.get(rid, []) if r.nodeid == item.nodeid), None)
    if record is None:
        return None
    record.duration = item.stash.get(ITEM_DURATION, record.duration)
    if run.client is not None:
        record.engine_wait = waited(
            run.client.exchanges[item.stash.get(ITEM_START, 0) :], item.stash.get(ITEM_CLOCK, 0.0)
        )
    emit(run, event="item", suite=run.catalogue[rid].suite, requirement=rid, verdict=record.verdict)
    return record.verdict


def _raised(
    report: pytest.TestReport, call: pytest.CallInfo[None]
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
    why = tolerated(
        verdict, gating=req.gating, expected=expected, checking=run.expected is not None
    )
    if why is not None:
        report.outcome = "passed"
        report.user_properties.append((why, verdict))


# -- end of session ---------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN, None)
    if run is None:
        return
    config = session.config
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    if run.client is not None:
        emit(run, event="finishing", interrupted=interrupted)
        if run.lane is not None:
            run.lane.close(wait=not interrupted)
        removed = sweep(run.client, run)
        run.left_behind = left_behind(run.client, run)
        preflight = {
            name: run.preflight[name].as_dict()
            if name in run.preflight
            else {"status": "not needed"}
            for name in SERVICES
        }
        if worker_id(config):
            # pytest-xdist gives a worker's config workeroutput; typeshed knows nothing of it.
            config.workeroutput[WORKER_OUTPUT] = json.dumps(  # type: ignore[attr-defined]
                scrub(
                    {
                        "records": {
                            rid: [asdict(r) for r in recs] for rid, recs in run.records.items()
                        },
                        "target": run.target_info,
                        "preflight": preflight,
                        "removed": removed,
                        "complete": run.complete,
                        "expectations": str(run.expectations_path or ""),
                    },
                    run.secrets,
                ),
                default=str,
            )
            run.client.close()
            return
        records, target_info, complete = run.records, run.target_info, run.complete
    elif any(k != "collected" for k in run.workers):
        records, target_info, preflight, removed, complete = merge_workers(run, config)
    else:
        return
    results, code = finish(
        run, config.getoption, records, target_info, preflight, removed, complete, interrupted
    )
    if code == CHILD_SUITE_UNREACHABLE or (code is not None and session.exitstatus == 0):
        session.exitstatus = code
    paths = write_reports(run.report_dir, results)
    emit(run, event="reports", paths=[str(p) for p in paths])
    if run.client is not None:
        run.client.close()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from engine_conformance.reports.summary import terminal_lines

    run = config.stash.get(RUN, None)
    if run is None or run.results is None:
        return
    terminalreporter.section("conformance verdicts")
    for line, bad in terminal_lines(run.results, run.report_dir):
        terminalreporter.write_line(line, red=bad)
