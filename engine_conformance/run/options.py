"""Every option of a suite run, declared once: ``engine-conformance run`` and the plugin
both read this table, and the command hands the child run what it settled as a file.

    >>> OPTIONS["request_timeout"].flags
    ('--request-timeout', '--timeout')
    >>> sorted(o.dest for o in OPTIONS.values() if o.scope == "plugin")
    ['lane_ports', 'links_out', 'registry_ports', 'run_config', 'run_prefix']

An option's ``scope``: ``both`` (the command and the plugin), ``cli`` (only the command:
it starts engines, runs workers, judges several API versions) or ``plugin`` (only the
child run, set by the command or by a user running pytest directly). ``doctor`` marks
the ones ``engine-conformance doctor`` takes too. Where pytest (or a common pytest
plugin) owns a spelling, the plugin declares only the first flag and the command
accepts the others too (``--timeout`` is pytest-timeout's).

The command connects once: it resolves the target, negotiates the API version and
reads ``/version`` and ``/info``; :func:`write_run_config` puts those facts and every
``both`` option in a file the child reads with ``--run-config`` (:func:`apply`), so
the child never negotiates again and never sees an option the command did not check.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine_conformance.engine.engines import ENGINES
from engine_conformance.judge.budget import DEFAULT_BUDGET, DEFAULT_SEED

PROPERTY_BUDGET_ENV = "ENGINE_CONFORMANCE_PROPERTY_BUDGET"


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    help: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    action: str | None = None
    metavar: str | None = None
    scope: str = "both"
    doctor: bool = False
    group: str | None = None  # mutually exclusive with the others of its group (the command)
    choices: tuple[str, ...] | None = None
    plugin_flags: int = 1  # how many of ``flags`` the plugin declares
    dest: str = field(default="")

    def __post_init__(self) -> None:
        if not self.dest:
            long = next((f for f in self.flags if f.startswith("--")), self.flags[0])
            object.__setattr__(self, "dest", long.lstrip("-").replace("-", "_"))

    def kwargs(self) -> dict[str, Any]:
        given = {"help": self.help, "dest": self.dest, "default": _value(self.default)}
        if self.action:
            given["action"] = self.action
        if self.type is not None:
            given["type"] = self.type
        if self.metavar:
            given["metavar"] = self.metavar
        if self.choices:
            given["choices"] = self.choices
        if self.action == "append":
            given["default"] = []
        return given


def _value(default: Any) -> Any:
    return default() if callable(default) else default


def _budget_default() -> str:
    return os.environ.get(PROPERTY_BUDGET_ENV, DEFAULT_BUDGET)


_TABLE = (
    Option(
        ("--target",),
        "the engine: unix:///path, tcp://host:port or https://host:port "
        "(default: DOCKER_HOST, then /var/run/docker.sock, then, for `run`, a managed Docker)",
        doctor=True,
        group="where",
    ),
    Option(
        ("--managed",),
        "start this engine in a private directory and judge it",
        scope="cli",
        group="where",
        choices=tuple(sorted(ENGINES)),
    ),
    Option(
        ("--api-version",),
        "pin the API version (default: DOCKER_API_VERSION, else negotiate, at most 1.44)",
        group="versions",
    ),
    Option(
        ("--api-versions",),
        "judge the catalogue at each of these API versions "
        "(1.24,1.41), or at every version the engine serves from its minimum (and the "
        "catalogue's) to the suite's maximum: one report, requirement x version",
        metavar="all|LIST",
        scope="cli",
        group="versions",
    ),
    Option(("--report-dir",), "where the reports go (default: reports/<timestamp>/)"),
    Option(
        ("--requirement",),
        "judge only this requirement (repeatable)",
        action="append",
        metavar="ID",
    ),
    Option(
        ("--expectations",),
        "fail when verdicts differ from this expectation file, or "
        "'auto' (the file for the engine judged)",
        metavar="FILE|auto",
    ),
    Option(
        ("--update-expectations",),
        "write the verdicts to the expectation file (with --expectations)",
        action="store_true",
    ),
    Option(
        ("--strict-gate", "--strict"),
        "with --expectations: a requirement that newly "
        "passes fails the gate too (default: reported as 'fixed: update the expectations')",
        action="store_true",
    ),
    Option(
        ("--request-timeout", "--timeout"),
        "seconds per request (default 60)",
        default=60.0,
        type=float,
        metavar="SECONDS",
        doctor=True,
    ),
    Option(
        ("--stream-timeout",),
        "seconds for a whole progress stream (default 300)",
        default=300.0,
        type=float,
        metavar="SECONDS",
    ),
    Option(
        ("--serve-host",),
        "address the suite's lab registry and file server listen on; "
        "the engine must reach it (default 127.0.0.1, for a local engine)",
        default="127.0.0.1",
        metavar="ADDRESS",
        doctor=True,
    ),
    Option(
        ("--registry-port",),
        "the lab registry's port (default: any free one); fix it "
        "when the engine was told about this registry once",
        default=0,
        type=int,
        metavar="PORT",
        doctor=True,
    ),
    Option(
        ("--file-server-port",),
        "the file server's port, for fromSrc URLs (default: any free one)",
        default=0,
        type=int,
        metavar="PORT",
        doctor=True,
    ),
    Option(
        ("--serve-tls",),
        "serve the lab registry and file server over HTTPS with a CA "
        "made for the run (REPORT_DIR/tls/ca.crt, or --tls-dir); a managed engine is given "
        "it, your own engine must trust it (the run says where)",
        action="store_true",
        doctor=True,
    ),
    Option(
        ("--tls-dir",),
        "with --serve-tls (implied): keep the CA and server key in DIR, "
        "made on first use and reused, so a CA copied once into the engine's certs.d "
        "serves every later run",
        metavar="DIR",
        doctor=True,
    ),
    Option(
        ("--registry",),
        "pull from this external registry (plain HTTP, push allowed) "
        "instead of the lab registry; journal and fault checks then skip",
        metavar="HOST:PORT",
    ),
    Option(
        ("--seed",),
        f"seed of the property phase (SCHEMA), to replay a run (default {DEFAULT_SEED})",
        default=DEFAULT_SEED,
        type=int,
    ),
    Option(
        ("--property-budget",),
        f"bound of the property phase: '60s' or '200' examples "
        f"(default {DEFAULT_BUDGET}, or {PROPERTY_BUDGET_ENV})",
        default=_budget_default,
        metavar="SECONDS|EXAMPLES",
    ),
    Option(
        ("-n", "--workers"),
        "judge with N parallel pytest-xdist workers, a suite file per "
        "worker at a time (default 1: serially, the fastest on one engine: only a "
        "serial run overlaps the engine's long waits in its lane)",
        default=1,
        type=int,
        metavar="N",
        scope="cli",
    ),
    Option(
        ("-v", "--verbose"),
        "show pytest's detail (tracebacks) on the terminal too",
        action="store_true",
        scope="cli",
    ),
    Option(("-k",), "only checks whose names match (pytest -k)", scope="cli", dest="keyword"),
    Option(("--run-prefix",), "name prefix for everything the run creates", scope="plugin"),
    Option(
        ("--registry-ports",),
        "under pytest-xdist: the lab registry's port for each "
        "worker (gw0, gw1, …), each declared insecure to a managed Podman",
        metavar="PORT,PORT",
        scope="plugin",
    ),
    Option(
        ("--lane-ports",),
        "the lab registries of the run's lane (scenarios run ahead) on these ports, each "
        "declared insecure to a managed Podman (default: free ones)",
        metavar="PORT,PORT",
        scope="plugin",
    ),
    Option(
        ("--links-out",),
        "collect only: write each requirement's checks (file:line) to "
        "FILE as JSON, connecting to nothing (`engine-conformance requirements --where` "
        "reads it)",
        metavar="FILE",
        scope="plugin",
    ),
    Option(
        ("--run-config",),
        "the settled configuration `engine-conformance run` hands its "
        "child run (a JSON file): options, target, API version, the engine's answers",
        metavar="FILE",
        scope="plugin",
    ),
)

OPTIONS: dict[str, Option] = {o.dest: o for o in _TABLE}


def add_to_command(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare on ``parser`` the options of ``command`` (``run`` or ``doctor``)."""
    groups: dict[str, Any] = {}
    for option in _TABLE:
        if option.scope == "plugin" or (command == "doctor" and not option.doctor):
            continue
        where: Any = parser
        if option.group and command == "run":
            if option.group not in groups:
                groups[option.group] = parser.add_mutually_exclusive_group()
            where = groups[option.group]
        kwargs = option.kwargs()
        if command == "doctor" and option.dest == "target":
            kwargs["help"] = kwargs["help"].replace(", then, for `run`, a managed Docker", "")
        where.add_argument(*option.flags, **kwargs)


def add_to_plugin(group: Any) -> None:
    """Declare the plugin's options on a pytest option group."""
    for option in _TABLE:
        if option.scope != "cli":
            group.addoption(*option.flags[: option.plugin_flags], **option.kwargs())


def write_run_config(path: Path, options: Mapping[str, Any], settled: Mapping[str, Any]) -> Path:
    """The file ``--run-config`` reads: every option both sides know, and what the command
    settled (``target``, ``api_version``, ``engine``: the engine's ``/version`` and
    ``/info``)."""
    shared = {
        dest: options[dest] for dest, o in OPTIONS.items() if o.scope == "both" and dest in options
    }
    path.write_text(
        json.dumps(
            {"options": {**shared, **settled.get("options", {})}, "engine": settled.get("engine")},
            default=str,
        )
    )
    return path


def apply(option_namespace: Any, path: str) -> dict[str, Any] | None:
    """Set the child's options from the command's file; returns the engine facts in it."""
    data = json.loads(Path(path).read_text())
    for dest, value in data["options"].items():
        if dest not in OPTIONS or OPTIONS[dest].scope == "cli":
            raise ValueError(f"--run-config {path}: {dest} is not an option of a suite run")
        setattr(option_namespace, dest, value)
    engine = data.get("engine")
    return engine if isinstance(engine, dict) else None
