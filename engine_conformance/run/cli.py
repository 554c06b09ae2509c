"""``engine-conformance``: judge an engine's ``POST /images/create``.

    engine-conformance run        # DOCKER_HOST, the standard socket, or a managed Docker
    engine-conformance run --target tcp://10.0.0.5:2376 --report-dir out/
    engine-conformance run --managed podman --expectations auto
    engine-conformance requirements --format json
    engine-conformance compare a/results.json b/results.json --out matrix/

The terminal shows progress per suite, then the verdict table, the totals and
where the reports are; pytest's own detail goes to ``REPORT_DIR/pytest.log``
(and to the terminal with ``-v``).

Exit codes (the table in docs/ci.md):

====  =====================================================================
0     no MUST/SHOULD requirement failed and none errored; with
      ``--expectations``: the release gate passed (no regression, no change;
      a requirement that newly passes is "fixed: update the expectations")
1     requirements failed or errored; with ``--expectations``: a regression
      or change (or, with ``--strict``, a fix)
2     usage: a bad option, API version or expectation file
3     the target engine cannot be reached
4     no engine to test
5     the harness itself failed
6     the engine cannot reach the suite's lab registry or file server
      (the preflight failed; the message says how to fix the setup)
130   interrupted (Ctrl-C or SIGTERM), after clean-up
====  =====================================================================
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from engine_conformance.base.exits import (
    CHILD_SUITE_UNREACHABLE,
    CHILD_TARGET_UNREACHABLE,
    CHILD_USAGE,
    EXIT_FAIL,
    EXIT_HARNESS,
    EXIT_INTERRUPTED,
    EXIT_NO_ENGINE,
    EXIT_OK,
    EXIT_SUITE_UNREACHABLE,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    PYTEST_INTERNAL_ERROR,
    PYTEST_INTERRUPTED,
    PYTEST_NO_TESTS,
    PYTEST_USAGE_ERROR,
    Refusal,
    UsageError,
)
from engine_conformance.base.paths import ROOT
from engine_conformance.base.versions import api_version_problem
from engine_conformance.catalogue.requirements import Catalogue, CatalogueError
from engine_conformance.engine.certsd import EntryTaken
from engine_conformance.engine.engines import (
    ENGINES,
    EngineUnavailable,
    ManagedEngine,
    ManagedPodman,
    free_port,
)
from engine_conformance.engine.fetch import RELEASES, FetchError, fetch
from engine_conformance.engine.target import Client, Target, TargetError, Timeouts
from engine_conformance.engine.tls import host_port, prepare_run
from engine_conformance.judge.budget import Budget
from engine_conformance.reports.summary import LOG_FILE, terminal_lines
from engine_conformance.run.options import add_to_command, write_run_config
from engine_conformance.run.runner import (
    COMMAND_LINE,
    PROGRESS_FD,
    child_command,
    child_environment,
)

if TYPE_CHECKING:
    from engine_conformance.run.doctor import Serving

# The property phase (hypothesis, schemathesis), the doctor and the lane are imported
# where they are used: a run's CLI waits on its imports before its child starts.


def main(argv: list[str] | None = None) -> int:
    # Python leaves SIGINT ignored when it was ignored at launch (`nohup ... &`, a CI
    # shell): Ctrl-C must still stop the run, with its clean-up, whoever started it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "requirements":
            return _requirements(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "engines":
            return _engines(args)
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "compare":
            from engine_conformance.reports.compare import main as compare_main

            return compare_main(args)
        return _run(args)
    except Refusal as exc:
        print(f"engine-conformance: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("engine-conformance: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `engine-conformance requirements | head`: the reader has all it wanted.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a cancelled CI job (SIGTERM) cleans up like Ctrl-C


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line, not a usage block."""

    # Not typed below: argparse types error() as NoReturn; this one exits too, by sys.exit.
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="engine-conformance",
        description="Conformance suite for the Docker Engine API endpoint POST /images/create.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run the suites against a target engine")
    add_to_command(run, "run")  # the options a suite run shares with the plugin: one table
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    doc = sub.add_parser(
        "doctor",
        help="only the preflight: is the engine ready to be "
        "judged, and if not, the one-time steps for it",
    )
    add_to_command(doc, "doctor")
    eng = sub.add_parser(
        "engines",
        help="the engines --managed starts: list them, or fetch "
        "the Debian Dockers it unpacks (not installs)",
    )
    eng_sub = eng.add_subparsers(dest="engines_command", required=True, parser_class=_Parser)
    eng_sub.add_parser("list", help="each managed engine and whether it is here")
    fetch = eng_sub.add_parser(
        "fetch", help="download and unpack Debian's docker.io and containerd for these engines"
    )
    fetch.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        choices=sorted(RELEASES),
        help=f"one of {', '.join(sorted(RELEASES))}",
    )
    req = sub.add_parser("requirements", help="list the requirement catalogue")
    req.add_argument("--format", choices=("text", "json"), default="text")
    req.add_argument(
        "--where",
        metavar="ID",
        help="one requirement: its level and basis per API version range, "
        "its check (file:line) and its deviant rows",
    )
    rep = sub.add_parser(
        "reproduce",
        help="replay a report's reproducer bundles of one "
        "requirement: does the engine still deviate?",
    )
    rep.add_argument("report_dir", type=Path, metavar="REPORT_DIR")
    rep.add_argument("requirement", metavar="ID")
    rep.add_argument(
        "--target",
        help="the engine to replay against (default: $DOCKER_HOST, "
        "else unix:///var/run/docker.sock)",
    )
    rep.add_argument(
        "--verbose", action="store_true", help="also each request's answer beside the recorded one"
    )
    cmp = sub.add_parser("compare", help="a matrix of verdicts across runs (Markdown and HTML)")
    cmp.add_argument("results", nargs="+", type=Path, metavar="RESULTS.json")
    cmp.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        help="directory for comparison.md and comparison.html (default: .)",
    )
    cmp.add_argument(
        "--label",
        action="append",
        default=[],
        help="a column's name, in the order of the files (default: the engine)",
    )
    return parser


def _reproduce(args: argparse.Namespace) -> int:
    from engine_conformance.run.replay import reproduce

    try:
        outcomes = reproduce(
            args.report_dir,
            args.requirement,
            args.target,
            detail=sys.stdout if args.verbose else None,
        )
    except ValueError as exc:
        raise Refusal(str(exc), EXIT_USAGE) from None
    if not outcomes:
        raise Refusal(
            f"{args.requirement} has no reproducer bundle in {args.report_dir} "
            "(it did not fail there)",
            EXIT_USAGE,
        )
    if any(o.deviates is None for o in outcomes):
        return EXIT_UNREACHABLE if all(o.deviates is None for o in outcomes) else EXIT_FAIL
    return EXIT_FAIL if any(o.deviates for o in outcomes) else EXIT_OK


def _engines(args: argparse.Namespace) -> int:
    if args.engines_command == "fetch":
        for name in args.names:
            try:
                fetch(name, log=lambda line: print(f"engine-conformance: {line}", file=sys.stderr))
            except FetchError as exc:
                raise Refusal(f"engines fetch {name}: {exc}", EXIT_NO_ENGINE) from None
        return EXIT_OK
    for name, factory in sorted(ENGINES.items()):
        engine = factory()
        state = "ready" if engine.available() else f"missing: {engine.missing}"
        print(f"{name:22} {state}")
    return EXIT_OK


def _serving(args: argparse.Namespace) -> Serving:
    from engine_conformance.run.doctor import Serving

    for name in ("registry_port", "file_server_port"):
        port = getattr(args, name)
        if not 0 <= port <= 65535:
            raise Refusal(f"--{name.replace('_', '-')} {port} is not a port", EXIT_USAGE)
    return Serving(
        args.serve_host,
        args.registry_port,
        args.file_server_port,
        str(Path(args.tls_dir).resolve()) if args.tls_dir else "",
        bool(args.serve_tls or args.tls_dir),
    )


def _new_report_dir(parent: Path) -> Path:
    """``parent/<timestamp>/``, made now; ``-2``, ``-3``… after it when runs start in one second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in itertools.count(1):
        path = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")


def _doctor(args: argparse.Namespace) -> int:
    from engine_conformance.run.doctor import diagnose

    serving = _serving(args)
    if args.request_timeout <= 0:
        raise Refusal("--timeout must be positive", EXIT_USAGE)
    try:
        target = Target.parse(args.target) if args.target else Target.default()
    except UsageError as exc:
        raise Refusal(f"bad target: {exc}", EXIT_USAGE) from None
    if target is None:
        raise Refusal("no target: give --target or set DOCKER_HOST", EXIT_NO_ENGINE)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ec-doctor-") as scratch:
        try:
            report = diagnose(
                target,
                serving,
                timeout=args.request_timeout,
                api_version=os.environ.get("DOCKER_API_VERSION"),
                report_dir=Path(scratch),
            )
        except TargetError as exc:
            raise Refusal(str(exc), EXIT_UNREACHABLE) from None
        except OSError as exc:
            raise Refusal(
                f"cannot serve on --serve-host {args.serve_host}: {exc.strerror or exc}", EXIT_USAGE
            ) from None
    print("\n".join(report.lines()))
    return EXIT_OK if report.ready else EXIT_SUITE_UNREACHABLE


def _requirements(args: argparse.Namespace) -> int:
    try:
        catalogue = Catalogue.load()
    except CatalogueError as exc:
        raise Refusal(f"requirement catalogue: {exc}", EXIT_HARNESS) from None
    catalogue = catalogue.unresolved()
    if args.where:
        from engine_conformance.run import links

        req = catalogue.get(args.where.upper())
        if req is None:
            raise Refusal(f"no requirement {args.where} in the catalogue", EXIT_USAGE)
        try:
            found = links.where(req)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise Refusal(str(exc), EXIT_HARNESS) from None
        print(
            json.dumps(found, indent=2)
            if args.format == "json"
            else "\n".join(links.where_lines(found))
        )
        return EXIT_OK
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in catalogue.values()], indent=2))
        return EXIT_OK
    print("(level per API version range; `requirements --where ID` gives the basis)")
    for r in catalogue.values():
        levels = ", ".join(f"{level} {span}" for span, level, _ in r.levels())
        print(f"{r.id:16} {levels:28} {r.title}")
    print(f"{len(catalogue)} requirements")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    if args.update_expectations and not args.expectations:
        raise Refusal("--update-expectations needs --expectations FILE|auto", EXIT_USAGE)
    if args.strict_gate and not args.expectations:
        raise Refusal("--strict needs --expectations FILE|auto", EXIT_USAGE)
    if args.request_timeout <= 0:
        raise Refusal("--timeout must be positive", EXIT_USAGE)
    if args.workers < 1:
        raise Refusal("--workers must be at least 1", EXIT_USAGE)
    try:
        Budget.parse(args.property_budget)
    except ValueError as exc:
        raise Refusal(str(exc), EXIT_USAGE) from None
    if args.workers > 1 and args.serve_tls:
        # The run's CA is placed for one lab registry address; each worker serves its own.
        raise Refusal(
            "--workers and --serve-tls do not go together yet: use one of them", EXIT_USAGE
        )
    for version in [args.api_version] if args.api_version else _listed(args.api_versions):
        problem = api_version_problem(version, None, None)
        if problem:
            raise Refusal(
                problem if args.api_version else problem.replace("--api-version ", "API version "),
                EXIT_USAGE,
            )
    if (
        args.expectations
        and args.expectations != "auto"
        and not args.update_expectations
        and not Path(args.expectations).is_file()
    ):
        raise Refusal(f"--expectations {args.expectations}: no such file", EXIT_USAGE)
    serving = _serving(args)
    args.serve_tls = serving.tls
    if args.workers > 1 and args.registry_port:
        raise Refusal(
            "--workers and --registry-port do not go together yet: each worker "
            "serves a registry of its own",
            EXIT_USAGE,
        )
    managed: ManagedEngine | None = None
    cleanups: list[Callable[[], None]] = []
    # The lab registry's port is fixed up front: a managed Podman must be
    # told before it starts that this address is a plain-HTTP registry.
    try:
        ports = (
            [args.registry_port]
            if args.registry_port
            else [free_port(args.serve_host) for _ in range(args.workers)]
            if args.registry is None
            else [0]
        )
        registry_port = ports[0]
        # ... and so are the lane's (run/lane.py), which Podman must be told of alike.
        from engine_conformance.run.lane import WIDTH as LANE_WIDTH

        lane_ports = (
            [free_port(args.serve_host) for _ in range(LANE_WIDTH)]
            if args.managed == "podman" and args.registry is None and not args.serve_tls
            else []
        )
    except OSError as exc:
        raise Refusal(
            f"cannot listen on --serve-host {args.serve_host}: {exc.strerror}", EXIT_USAGE
        ) from None
    try:
        target, managed = _resolve_target(args, ports + lane_ports)
        # DOCKER_API_VERSION pins the version as --api-version does, checked here like it.
        pinned = args.api_version or os.environ.get("DOCKER_API_VERSION") or None
        if pinned and not args.api_versions:
            problem = api_version_problem(pinned, None, None)
            if problem:
                raise Refusal(
                    problem.replace("--api-version", "DOCKER_API_VERSION")
                    if not args.api_version
                    else problem,
                    EXIT_USAGE,
                )
        version_info, engine_info = _reachable(target, None if args.api_versions else pinned)
        info = version_info
        axis = _axis(args.api_versions, info) if args.api_versions else []
        # Under the current directory: an installed package's own folder is no place for output.
        # Absolute: the suites run with the package's directory as theirs, not this one.
        report_dir = (
            Path(args.report_dir) if args.report_dir else _new_report_dir(Path("reports"))
        ).resolve()
        prefix = f"ectest-{secrets.token_hex(4)}"
        if args.serve_tls:
            lab = None if args.registry else host_port(args.serve_host, registry_port)
            try:
                _, advice = prepare_run(
                    report_dir,
                    args.serve_host,
                    lab,
                    target,
                    managed,
                    tls_dir=serving.tls_dir or None,
                )
            except EntryTaken as exc:
                # Someone else's certs.d entry for the lab's address: never overwritten.
                raise Refusal(
                    f"{exc}: remove it, or run again (the port is picked anew)", EXIT_USAGE
                ) from None
            if advice:
                print(f"engine-conformance: {advice}", file=sys.stderr)

        scratch = Path(tempfile.mkdtemp(prefix="ec-run-"))
        cleanups.append(lambda: shutil.rmtree(scratch, ignore_errors=True))

        def judge(directory: Path, api_version: str | None, gated: bool) -> int:
            # What the child must not work out again: the target, the version, the engine.
            settled = {
                "options": {
                    "target": target.url,
                    "report_dir": str(directory),
                    "api_version": api_version,
                    "run_prefix": prefix,
                    "registry_port": registry_port,
                    "serve_tls": args.serve_tls,
                    "tls_dir": serving.tls_dir or None,
                    "expectations": (
                        str(Path(args.expectations).resolve())
                        if args.expectations and args.expectations != "auto"
                        else args.expectations
                    )
                    if gated
                    else None,
                    "update_expectations": args.update_expectations and gated,
                    "strict_gate": args.strict_gate and gated,
                    **({"registry_ports": ",".join(map(str, ports))} if args.workers > 1 else {}),
                    **({"lane_ports": ",".join(map(str, lane_ports))} if lane_ports else {}),
                },
                "engine": {"version": version_info, "info": engine_info},
            }
            config = write_run_config(
                scratch / f"run-{len(list(scratch.iterdir()))}.json", vars(args), settled
            )
            cmd = child_command(
                config,
                keyword=args.keyword,
                requirements=args.requirement or [],
                extra=[
                    *(["-n", str(args.workers), "--dist", "loadfile"] if args.workers > 1 else []),
                    *args.pytest_args,
                ],
            )
            child = _child(cmd, directory, verbose=args.verbose)
            if child.refusal is not None:
                raise Refusal(child.refusal, _REFUSAL_CODES.get(child.code, EXIT_HARNESS))
            return _verdict_code(child.code, directory)

        if axis:
            result = _across_versions(judge, report_dir, axis)
        else:
            result = judge(report_dir, pinned, True)
        _show(report_dir)
        _show_findings(report_dir, args.seed)
        return EXIT_OK if args.update_expectations and result == EXIT_FAIL else result
    finally:
        for cleanup in cleanups:
            cleanup()
        if managed is not None:
            managed.stop()


def _resolve_target(
    args: argparse.Namespace, registry_ports: list[int]
) -> tuple[Target, ManagedEngine | None]:
    try:
        if args.target:
            return Target.parse(args.target), None
        if args.managed == "podman":
            labs = (
                [args.registry]
                if args.registry
                else [f"{args.serve_host}:{port}" for port in registry_ports]
            )
            # Over TLS it must verify the run's CA: an insecure entry would skip that.
            insecure = [] if args.serve_tls and not args.registry else labs
            return _start(ManagedPodman(insecure_registries=insecure))
        if args.managed:
            return _start(ENGINES[args.managed]())
        default = Target.default()
    except UsageError as exc:
        raise Refusal(f"bad target: {exc}", EXIT_USAGE) from None
    if default is not None and (os.environ.get("DOCKER_HOST") or _answers(default)):
        return default, None
    engine = ENGINES["docker"]()
    if not engine.available():
        raise Refusal(
            "no engine to test: give --target URL, set DOCKER_HOST, or install Docker "
            "(apt-get install docker.io) so that a managed one can be started",
            EXIT_NO_ENGINE,
        )
    print(
        "engine-conformance: no engine at DOCKER_HOST or /var/run/docker.sock; "
        "starting a managed Docker",
        file=sys.stderr,
    )
    return _start(engine)


def _start(engine: ManagedEngine) -> tuple[Target, ManagedEngine]:
    try:
        engine.start()
    except EngineUnavailable as exc:
        raise Refusal(f"could not start a managed {engine.name}: {exc}", EXIT_NO_ENGINE) from None
    return Target.parse(engine.target), engine


def _answers(target: Target) -> bool:
    try:
        with Client(target, timeouts=Timeouts(connect=2.0, read=5.0)) as client:
            client.negotiate()
        return True
    except TargetError:
        return False


def _listed(spec: str | None) -> list[str]:
    if not spec or spec == "all":
        return []
    return [v.strip() for v in spec.split(",") if v.strip()]


def _axis(spec: str, info: dict[str, Any]) -> list[str]:
    """The API versions ``--api-versions`` names on this engine, lowest first."""
    from engine_conformance.reports.axis import all_versions

    low, high = info.get("MinAPIVersion"), info.get("ApiVersion")
    if spec == "all":
        versions = all_versions(low, high)
        if not versions:
            raise Refusal(
                f"the engine serves no API version the suite judges ({low} to {high})", EXIT_USAGE
            )
        return versions
    versions = sorted(set(_listed(spec)), key=lambda v: tuple(int(p) for p in v.split(".")))
    for version in versions:
        problem = api_version_problem(version, low, high)
        if problem:
            raise Refusal(problem.replace("--api-version ", "API version "), EXIT_USAGE)
    return versions


def _across_versions(judge: Any, report_dir: Path, versions: list[str]) -> int:
    """One run per API version (each in ``api-<version>/``), merged into one report.

    The highest version is the primary run: its verdicts are the report's, and only
    it is held against the expectations (they record the negotiated version's).
    """
    from engine_conformance.reports.axis import merge_versions
    from engine_conformance.reports.report import write_reports

    codes: dict[str, int] = {}
    runs: dict[str, Any] = {}
    for version in versions:
        sub = report_dir / f"api-{version}"
        sub.mkdir(parents=True, exist_ok=True)
        if (report_dir / "tls").is_dir() and not (sub / "tls").exists():
            (sub / "tls").symlink_to(report_dir / "tls")  # one CA for the whole run
        print(f"API {version}:", flush=True)
        codes[version] = judge(sub, version, version == versions[-1])
        runs[version] = json.loads((sub / "results.json").read_text())
    write_reports(report_dir, merge_versions(runs))
    worst = [c for c in codes.values() if c not in (EXIT_OK, EXIT_FAIL)]
    if worst:
        return worst[0]
    primary = codes[versions[-1]]
    gated = "passed" in (runs[versions[-1]].get("expectations") or {})
    return primary if gated else max(codes.values())


def _reachable(target: Target, api_version: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine's ``/version`` and ``/info``: the one time a run asks (the child is told)."""
    try:
        with Client(target, api_version=api_version, timeouts=Timeouts(read=15.0)) as client:
            client.negotiate()
            info = client.version_info
            about = client.info()
    except TargetError as exc:
        raise Refusal(str(exc), EXIT_UNREACHABLE) from None
    if api_version:
        problem = api_version_problem(
            api_version, info.get("MinAPIVersion"), info.get("ApiVersion")
        )
        if problem:
            raise Refusal(problem, EXIT_USAGE)
    return info, about


_REFUSAL_CODES = {CHILD_USAGE: EXIT_USAGE, CHILD_TARGET_UNREACHABLE: EXIT_UNREACHABLE}


class _Child:
    """The child pytest's exit status and what it told the CLI on the progress channel."""

    def __init__(self) -> None:
        self.code = 0
        self.refusal: str | None = None


def _child(cmd: list[str], report_dir: Path, verbose: bool = False) -> _Child:
    """Run pytest with its output in ``pytest.log``, showing progress from its events.

    The child has a session of its own, so a terminal's Ctrl-C reaches this process
    only, which passes one SIGINT on to the child's group and waits for the clean-up
    (a second Ctrl-C abandons it): a second signal would interrupt the clean-up itself.
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    log = open(report_dir / LOG_FILE, "wb")
    read_fd, write_fd = os.pipe()
    env = dict(
        child_environment(),
        **{
            PROGRESS_FD: str(write_fd),
            COMMAND_LINE: json.dumps(["engine-conformance", *sys.argv[1:]]),
        },
    )
    try:
        child = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            env=env,
            start_new_session=True,
        )
    finally:
        os.close(write_fd)
    state = _Child()
    progress = _Progress(sys.stdout)
    threads = [
        threading.Thread(target=_tee, args=(child.stdout, log, verbose), daemon=True),
        threading.Thread(target=_events, args=(read_fd, progress, state), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        state.code = child.wait()
    except KeyboardInterrupt:
        progress.interrupted()
        try:
            # The child's whole group: pytest-xdist workers clean up what they created too.
            os.killpg(child.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            child.wait(120)
        except KeyboardInterrupt:
            child.kill()
            child.wait()
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    finally:
        for t in threads:
            t.join(5)
        log.close()
    return state


def _tee(stream: IO[bytes] | None, log: IO[bytes], verbose: bool) -> None:
    if stream is None:
        return
    for line in iter(stream.readline, b""):
        log.write(line)
        if verbose:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
    stream.close()


def _events(fd: int, progress: _Progress, state: _Child) -> None:
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as channel:
        for line in channel:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "refusal":
                state.refusal = str(event.get("message"))
            progress.event(event)


class _Progress:
    """Per suite, how many checks ran and how they went.

    A line per suite when it completes; on a terminal, a status line of the suites
    under way meanwhile (several at once under pytest-xdist).
    """

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.live = out.isatty()
        self.totals: dict[str, int] = {}
        self.done: dict[str, dict[str, int]] = {}
        self.status = False  # a status line is showing
        self.lock = threading.Lock()

    def event(self, event: dict[str, Any]) -> None:
        with self.lock:
            kind = event.get("event")
            if kind == "collected":
                self.totals = {str(k): int(v) for k, v in event["suites"].items()}
                self._write(
                    f"judging {event.get('target')}: {sum(self.totals.values())} checks "
                    f"in {len(self.totals)} suites\n"
                )
            elif kind == "item":
                self._item(str(event["suite"]), str(event["verdict"]))
            elif kind == "finishing":
                self._unfinished()
                if event.get("interrupted"):
                    self._write("cleaning up what the run created…\n")

    def interrupted(self) -> None:
        with self.lock:
            self._unfinished()
            self._write(
                "interrupted: stopping the checks and cleaning up "
                "(Ctrl-C again abandons the clean-up)\n"
            )

    def _item(self, suite: str, verdict: str) -> None:
        counts = self.done.setdefault(suite, {})
        counts[verdict] = counts.get(verdict, 0) + 1
        self._clear()
        if sum(counts.values()) == self.totals.get(suite, -1):
            self._write(self._line(suite) + "\n")
        if self.live:
            under_way = [
                f"{name} {sum(c.values())}/{self.totals.get(name, '?')}"
                for name, c in self.done.items()
                if not self._complete(name)
            ]
            if under_way:
                self._write("  … " + " · ".join(under_way))
                self.status = True

    def _complete(self, suite: str) -> bool:
        return sum(self.done.get(suite, {}).values()) >= self.totals.get(suite, 0)

    def _unfinished(self) -> None:
        self._clear()
        for suite in self.done:
            if not self._complete(suite):
                self._write(self._line(suite) + "\n")
                self.totals[suite] = sum(self.done[suite].values())  # shown once

    def _line(self, suite: str) -> str:
        counts = self.done.get(suite, {})
        n = sum(counts.values())
        detail = ", ".join(
            f"{counts[v]} {v}" for v in ("pass", "fail", "error", "skip") if counts.get(v)
        )
        return f"  {suite:10} {n:3}/{self.totals.get(suite, n):<3} {detail}"

    def _clear(self) -> None:
        if self.status:
            self._write("\r\033[K")
            self.status = False

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            pass


def _show(report_dir: Path) -> None:
    """The verdict table, totals, gate and report paths, from ``results.json``."""
    path = report_dir / "results.json"
    if not path.is_file():
        return
    results = json.loads(path.read_text())
    red = sys.stdout.isatty()
    for line, bad in terminal_lines(results, report_dir):
        print(f"\033[31m{line}\033[0m" if red and bad else line)


def _show_findings(report_dir: Path, seed: int) -> None:
    """The property phase's findings with their reproducers, and the seed that replays them."""
    from engine_conformance.judge.property_phase import finding_lines

    path = report_dir / "results.json"
    lines = list(finding_lines(json.loads(path.read_text()))) if path.is_file() else []
    if lines:
        print("property phase findings (reproduce with the curl line):")
        for line in lines:
            print(line)
    print(f"seed: {seed} (replay with --seed {seed})")


def _verdict_code(pytest_code: int, report_dir: Path) -> int:
    """The CLI's exit code for the child pytest's status and the results it wrote."""
    if pytest_code == CHILD_TARGET_UNREACHABLE:
        return EXIT_UNREACHABLE
    if pytest_code in (CHILD_USAGE, PYTEST_USAGE_ERROR):
        # pytest's own refusal (an unknown --requirement, a bad -k) is in its log only.
        log = report_dir / LOG_FILE
        text = log.read_text(errors="replace") if log.is_file() else ""
        said = [ln for ln in text.splitlines() if ln.startswith("ERROR: ")]
        if said:
            raise Refusal(said[-1].removeprefix("ERROR: "), EXIT_USAGE)
        return EXIT_USAGE
    if pytest_code == PYTEST_INTERRUPTED:
        # A Ctrl-C reaches this process too and ends in main(); here, pytest stopped on
        # its own: most often a suite module that did not import.
        raise Refusal(
            f"the suites stopped before judging (a collection error: see {report_dir / LOG_FILE})",
            EXIT_HARNESS,
        )
    if pytest_code == PYTEST_INTERNAL_ERROR:
        raise Refusal(f"pytest failed internally (see {report_dir / LOG_FILE})", EXIT_HARNESS)
    if pytest_code == PYTEST_NO_TESTS:
        raise Refusal("no check matches the -k / --requirement given", EXIT_USAGE)
    results_path = report_dir / "results.json"
    if not results_path.is_file():
        raise Refusal(
            f"the suites wrote no results (pytest exit {pytest_code}: see {report_dir / LOG_FILE})",
            EXIT_HARNESS,
        )
    results = json.loads(results_path.read_text())
    if pytest_code == CHILD_SUITE_UNREACHABLE:
        failed = [
            p["reason"]
            for p in results["run"].get("preflight", {}).values()
            if p.get("status") == "failed"
        ]
        raise Refusal(" | ".join(failed) or "the preflight failed", EXIT_SUITE_UNREACHABLE)
    gate = results.get("expectations") or {}
    if "passed" in gate:
        return EXIT_OK if gate["passed"] else EXIT_FAIL
    bad = results["summary"]["gating_failures"] + results["summary"]["error"]
    return EXIT_FAIL if bad else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
