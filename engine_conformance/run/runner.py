"""Run the suites in a child pytest and read back what they judged.

    >>> outcome = run_suite("unix:///tmp/d/docker.sock", requirements=["ERRORS-001"],
    ...                     report_dir=Path("/tmp/r"))          # doctest: +SKIP
    >>> outcome.verdict("ERRORS-001")                          # doctest: +SKIP
    'pass'

Both the CLI and the harness's own tests go through here, so a suite run is
started one way only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine_conformance.base.paths import ROOT, SUITES

PROGRESS_FD = "EC_PROGRESS_FD"
"""Environment variable: a file descriptor the plugin writes progress events to (JSON lines)."""

COMMAND_LINE = "EC_COMMAND_LINE"
"""Environment variable: the user's command line (JSON list) that started the suite run."""


@dataclass
class Outcome:
    returncode: int
    results: dict[str, Any] | None
    output: str

    def verdict(self, requirement: str) -> str | None:
        for r in (self.results or {}).get("requirements", []):
            if r["id"] == requirement:
                verdict: str = r["verdict"]
                return verdict
        return None

    def requirement(self, requirement: str) -> dict[str, Any]:
        for r in (self.results or {}).get("requirements", []):
            if r["id"] == requirement:
                found: dict[str, Any] = r
                return found
        raise KeyError(f"{requirement} not in results; output:\n{self.output[-3000:]}")


def suite_files(requirements: Sequence[str]) -> list[Path]:
    """The suite modules that hold the checks of ``requirements`` (``suites/test_<suite>.py``),
    or the whole suites folder when one is unknown (the plugin then says so).

    Collecting only those spares a narrow run importing every suite (the property
    phase's Hypothesis and schemathesis among them): about half its start-up.
    """
    if not requirements:  # a whole run: no catalogue to read on the way to it
        return [SUITES]
    from engine_conformance.catalogue.requirements import Catalogue, CatalogueError

    try:
        catalogue = Catalogue.load()
    except CatalogueError:
        return [SUITES]
    if any(rid not in catalogue for rid in requirements):
        return [SUITES]
    files = sorted({SUITES / f"test_{catalogue[rid].suite}.py" for rid in requirements})
    return files if all(f.is_file() for f in files) else [SUITES]


# A failing check's traceback in pytest.log as Python prints it. pytest's own styles
# parse the test module's source for every entry of every failure: some 0.3 s of a run
# that judges eight deviations, spent after the engine has answered. The verdict's
# reason is the assertion's message either way; ``-- --tb=long`` still gives pytest's.
TRACEBACKS = ("--tb=native",)


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child pytest: ``base`` (default: this process's) without autoload.

    pytest marks every module of every installed pytest plugin (hypothesis, schemathesis,
    anyio, xdist: some 280 modules) for assertion rewriting; with no bytecode cache
    (PYTHONDONTWRITEBYTECODE, a read-only install) each child recompiles them all, about
    3 s a run. The suites need none of those plugins, so the child loads only the ones
    :func:`pytest_command` names.

    >>> child_environment({"PATH": "/bin"})["PYTEST_DISABLE_PLUGIN_AUTOLOAD"]
    '1'
    """
    env = dict(os.environ if base is None else base)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


def child_pytest(paths: Iterable[str]) -> list[str]:
    """The start of every child pytest's command line (:mod:`.child`), collecting ``paths``
    with the suite plugin; the caller adds the target, the run's options, ``extra``.

    The plugin and options are given here, not only by the checkout's conftest.py and
    pyproject.toml: an installed wheel has neither. ``-o addopts=``: a checkout's
    pyproject.toml runs the harness's own tests under pytest-xdist; a suite run is
    distributed only when asked (``-n``).
    """
    return [
        sys.executable,
        "-m",
        "engine_conformance.run.child",
        *paths,
        "--rootdir",
        str(ROOT),
        "-o",
        "addopts=",
        "-p",
        "engine_conformance.run.plugin",
        "-p",
        "no:cacheprovider",
        "--import-mode=importlib",
        *TRACEBACKS,
    ]


def pytest_command(
    target: str,
    report_dir: Path,
    *,
    requirements: Sequence[str] = (),
    api_version: str | None = None,
    expectations: str | None = None,
    update_expectations: bool = False,
    keyword: str | None = None,
    prefix: str | None = None,
    cases: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    """The child pytest's command line; ``cases`` (node IDs such as
    ``suites/test_auth.py::test_refused_pull[no-header]``) narrow it to those checks."""
    paths = [str(ROOT / c) for c in cases] or [str(f) for f in suite_files(requirements)]
    cmd = [
        *child_pytest(paths),
        "--target",
        target,
        "--report-dir",
        str(report_dir),
    ]
    for rid in requirements:
        cmd += ["--requirement", rid]
    if api_version:
        cmd += ["--api-version", api_version]
    if expectations:
        cmd += ["--expectations", expectations]
    if update_expectations:
        cmd.append("--update-expectations")
    if keyword:
        cmd += ["-k", keyword]
    if prefix:
        cmd += ["--run-prefix", prefix]
    if "-n" in extra:
        cmd += ["-p", "xdist.plugin"]  # not autoloaded in the child (child_environment)
    return cmd + list(extra)


def child_command(
    run_config: Path,
    *,
    keyword: str | None = None,
    extra: Sequence[str] = (),
    requirements: Sequence[str] = (),
) -> list[str]:
    """The child pytest of ``engine-conformance run``: everything it needs is in
    ``run_config`` (:func:`engine_conformance.run.options.write_run_config`);
    ``requirements`` only narrows what it collects (:func:`suite_files`)."""
    cmd = [
        *child_pytest(str(f) for f in suite_files(requirements)),
        "--run-config",
        str(run_config),
    ]
    if keyword:
        cmd += ["-k", keyword]
    if "-n" in extra:
        cmd += ["-p", "xdist.plugin"]  # not autoloaded in the child (child_environment)
    return cmd + list(extra)


def run_suite(
    target: str,
    report_dir: Path,
    *,
    timeout: float = 900,
    env: dict[str, Any] | None = None,
    extra: Sequence[str] = (),
    **options: object,
) -> Outcome:
    """Run the suites against ``target`` quietly; options as in :func:`pytest_command`."""
    # Not typed below: options are pytest_command's keywords, checked by it.
    cmd = pytest_command(target, report_dir, extra=["-q", *extra], **options)  # type: ignore[arg-type]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=child_environment(env)
    )
    results_path = Path(report_dir) / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else None
    return Outcome(proc.returncode, results, proc.stdout + proc.stderr)
