"""``engine-conformance``: judge an engine's ``POST /images/create``.

    engine-conformance run        # DOCKER_HOST, the standard socket, or a managed Docker
    engine-conformance run --target tcp://10.0.0.5:2376 --report-dir out/
    engine-conformance run --managed podman --expectations auto
    engine-conformance requirements --format json

Exit codes: 0 no MUST/SHOULD requirement failed and none errored (or, with
``--expectations``, the verdicts matched); 1 requirements failed, errored or
differed from the expectations; 2 bad option; 3 target unreachable; 4 no
engine to test; 5 the harness itself failed; 6 the engine cannot reach the
suite's lab registry or file server (the preflight failed: the checks that
need them are ``error``, and the message says how to fix the setup); 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from .engines import ENGINES, EngineUnavailable, ManagedEngine, ManagedPodman, free_port
from .requirements import Catalogue, CatalogueError
from .runner import (
    CHILD_SUITE_UNREACHABLE,
    CHILD_TARGET_UNREACHABLE,
    CHILD_USAGE,
    ROOT,
    pytest_command,
)
from .target import Client, Target, TargetError, Timeouts, UsageError
from .tls import host_port, prepare_run

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_NO_ENGINE, EXIT_HARNESS = 0, 1, 2, 3, 4, 5
EXIT_SUITE_UNREACHABLE = 6
EXIT_INTERRUPTED = 130

# pytest's own exit statuses (pytest.ExitCode), named here without importing pytest.
PYTEST_INTERRUPTED, PYTEST_INTERNAL_ERROR, PYTEST_USAGE_ERROR, PYTEST_NO_TESTS = 2, 3, 4, 5


class Refusal(Exception):
    """One line for the user and the exit code that goes with it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "requirements":
            return _requirements(args)
        return _run(args)
    except Refusal as exc:
        print(f"engine-conformance: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("engine-conformance: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line, not a usage block."""

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
    where = run.add_mutually_exclusive_group()
    where.add_argument("--target", help="unix:///path, tcp://host:port or https://host:port "
                       "(default: DOCKER_HOST, then /var/run/docker.sock, then a managed Docker)")
    where.add_argument("--managed", choices=sorted(ENGINES),
                       help="start this engine in a private directory and judge it")
    run.add_argument("--api-version", help="pin the API version (default: negotiate, at most 1.44)")
    run.add_argument("--report-dir", type=Path, help="default: reports/<timestamp>/")
    run.add_argument("-k", dest="keyword", help="only checks whose names match (pytest -k)")
    run.add_argument("--requirement", action="append", default=[], metavar="ID",
                     help="judge only this requirement (repeatable)")
    run.add_argument("--expectations", metavar="FILE|auto",
                     help="fail when verdicts differ from this expectation file")
    run.add_argument("--update-expectations", action="store_true",
                     help="write the verdicts to the expectation file (with --expectations)")
    run.add_argument("--serve-host", default="127.0.0.1", metavar="ADDRESS",
                     help="address the suite's lab registry and file server listen on; "
                          "the engine must reach it (default 127.0.0.1, for a local engine)")
    run.add_argument("--serve-tls", action="store_true",
                     help="serve the lab registry and file server over HTTPS with a CA made for "
                          "the run (REPORT_DIR/tls/ca.crt); a managed engine is given it, your "
                          "own engine must trust it (the run says where)")
    run.add_argument("--registry", metavar="HOST:PORT",
                     help="pull from this external registry (plain HTTP, push allowed) "
                          "instead of the lab registry; journal and fault checks then skip")
    run.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    req = sub.add_parser("requirements", help="list the requirement catalogue")
    req.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def _requirements(args: argparse.Namespace) -> int:
    try:
        catalogue = Catalogue.load()
    except CatalogueError as exc:
        raise Refusal(f"requirement catalogue: {exc}", EXIT_HARNESS) from None
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in catalogue.values()], indent=2))
        return EXIT_OK
    for r in catalogue.values():
        print(f"{r.id:12} {r.level:6} {r.versions:10} {r.title}")
    print(f"{len(catalogue)} requirements")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    if args.update_expectations and not args.expectations:
        raise Refusal("--update-expectations needs --expectations FILE|auto", EXIT_USAGE)
    if args.timeout <= 0:
        raise Refusal("--timeout must be positive", EXIT_USAGE)
    managed: ManagedEngine | None = None
    # The lab registry's port is fixed up front: a managed Podman must be
    # told before it starts that this address is a plain-HTTP registry.
    try:
        registry_port = free_port(args.serve_host) if args.registry is None else 0
    except OSError as exc:
        raise Refusal(f"cannot listen on --serve-host {args.serve_host}: {exc.strerror}",
                      EXIT_USAGE) from None
    try:
        target, managed = _resolve_target(args, registry_port)
        _reachable(target, args.api_version)
        # Under the current directory: an installed package's own folder is no place for output.
        report_dir = args.report_dir or Path.cwd() / "reports" / time.strftime("%Y%m%d-%H%M%S")
        prefix = f"ectest-{secrets.token_hex(4)}"
        if args.serve_tls:
            lab = None if args.registry else host_port(args.serve_host, registry_port)
            _, advice = prepare_run(report_dir, args.serve_host, lab, target, managed)
            if advice:
                print(f"engine-conformance: {advice}", file=sys.stderr)
        cmd = pytest_command(
            target.url,
            report_dir,
            requirements=args.requirement,
            api_version=args.api_version,
            expectations=args.expectations,
            update_expectations=args.update_expectations,
            keyword=args.keyword,
            prefix=prefix,
            extra=["--request-timeout", str(args.timeout), "--serve-host", args.serve_host,
                   "--registry-port", str(registry_port),
                   *(["--registry", args.registry] if args.registry else []),
                   *(["--serve-tls"] if args.serve_tls else []),
                   *args.pytest_args],
        )
        code = _child(cmd)
        result = _verdict_code(code, report_dir)
        return EXIT_OK if args.update_expectations and result == EXIT_FAIL else result
    finally:
        if managed is not None:
            managed.stop()


def _resolve_target(
    args: argparse.Namespace, registry_port: int
) -> tuple[Target, ManagedEngine | None]:
    try:
        if args.target:
            return Target.parse(args.target), None
        if args.managed == "podman":
            lab = args.registry or f"{args.serve_host}:{registry_port}"
            # Over TLS it must verify the run's CA: an insecure entry would skip that.
            insecure = [] if args.serve_tls and not args.registry else [lab]
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
            "(apt-get install docker.io) so that a managed one can be started", EXIT_NO_ENGINE)
    print("engine-conformance: no engine at DOCKER_HOST or /var/run/docker.sock; "
          "starting a managed Docker", file=sys.stderr)
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


def _reachable(target: Target, api_version: str | None) -> None:
    try:
        with Client(target, api_version=api_version, timeouts=Timeouts(read=15.0)) as client:
            client.negotiate()
    except TargetError as exc:
        raise Refusal(str(exc), EXIT_UNREACHABLE) from None


def _child(cmd: list[str]) -> int:
    """Run pytest; on Ctrl-C let it finish its clean-up rather than abandon it."""
    child = subprocess.Popen(cmd, cwd=ROOT)
    try:
        return child.wait()
    except KeyboardInterrupt:
        # The terminal sent SIGINT to the child as well; if it came from
        # elsewhere, pass it on. Either way wait for the child's clean-up.
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
        try:
            child.wait(120)
        except subprocess.TimeoutExpired:
            child.kill()
        raise


def _verdict_code(pytest_code: int, report_dir: Path) -> int:
    """The CLI's exit code for the child pytest's status and the results it wrote."""
    if pytest_code == CHILD_TARGET_UNREACHABLE:
        return EXIT_UNREACHABLE
    if pytest_code in (CHILD_USAGE, PYTEST_USAGE_ERROR):
        return EXIT_USAGE
    if pytest_code == PYTEST_INTERRUPTED:
        # A Ctrl-C reaches this process too and ends in main(); here, pytest stopped on
        # its own: most often a suite module that did not import.
        raise Refusal("the suites stopped before judging (a collection error or an "
                      "interrupt: see pytest's output above)", EXIT_HARNESS)
    if pytest_code == PYTEST_INTERNAL_ERROR:
        raise Refusal("pytest failed internally (see its output above)", EXIT_HARNESS)
    if pytest_code == PYTEST_NO_TESTS:
        raise Refusal("no check matches the -k / --requirement given", EXIT_USAGE)
    results_path = report_dir / "results.json"
    if not results_path.is_file():
        raise Refusal(f"the suites wrote no results (pytest exit {pytest_code})", EXIT_HARNESS)
    results = json.loads(results_path.read_text())
    if pytest_code == CHILD_SUITE_UNREACHABLE:
        failed = [p["reason"] for p in results["run"].get("preflight", {}).values()
                  if p.get("status") == "failed"]
        raise Refusal(" | ".join(failed) or "the preflight failed", EXIT_SUITE_UNREACHABLE)
    mismatches = (results.get("expectations") or {}).get("mismatches")
    if mismatches is not None:
        return EXIT_FAIL if mismatches else EXIT_OK
    bad = results["summary"]["gating_failures"] + results["summary"]["error"]
    return EXIT_FAIL if bad else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
