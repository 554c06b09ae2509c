"""The tool installs the ways the README says: on Debian's own python3, and as a wheel.

Debian marks its python3 as externally managed (PEP 668): ``pip install`` into it
refuses, so scripts/setup must work through a virtual environment. A wheel must
carry the catalogue, the checks and the spec, and work from any directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine_conformance.catalogue.requirements import Catalogue
from engine_conformance.run.runner import ROOT

DEBIAN_PYTHON = Path("/usr/bin/python3")
PLAIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _checkout_copy(dest: Path) -> Path:
    """The working tree as a fresh clone would have it, plus uncommitted files."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _catalogue_size(tree: Path) -> int:
    return len(Catalogue.load(tree / "suites" / "requirements"))


def _requirements_count(program: Path, cwd: Path) -> str:
    out = subprocess.run(
        [str(program), "requirements"], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason="no Debian python3 at /usr/bin/python3")
def test_setup_works_with_debians_python(tmp_path):
    refused = subprocess.run(
        [str(DEBIAN_PYTHON), "-m", "pip", "install", "--dry-run", "six"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if refused.returncode == 0:
        pytest.skip("this machine's /usr/bin/python3 is not externally managed")
    tree = _checkout_copy(tmp_path / "checkout")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYENV", "VIRTUAL_ENV"))}
    env["PATH"] = PLAIN_PATH  # Debian's python3 first, as on a stock machine
    env.pop("EC_VENV", None)
    setup = subprocess.run(
        ["bash", "scripts/setup"], cwd=tree, env=env, capture_output=True, text=True, timeout=900
    )
    assert setup.returncode == 0, setup.stderr[-3000:]
    venv_python = tree / ".venv/bin/python"
    base = subprocess.run(
        [str(venv_python), "-c", "import sys; print(sys.base_prefix)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert base == "/usr", f"the venv was made from {base}, not Debian's python3"
    line = _requirements_count(tree / ".venv/bin/engine-conformance", tmp_path)
    assert line == f"{_catalogue_size(tree)} requirements"


def test_wheel_carries_the_suites_and_runs_from_elsewhere(docker, tmp_path):
    wheels, src = tmp_path / "wheels", _checkout_copy(tmp_path / "src")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(src)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    (wheel,) = wheels.glob("engine_conformance-*.whl")
    subprocess.run(
        [
            str(venv / "bin/python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    program = venv / "bin/engine-conformance"
    assert _requirements_count(program, elsewhere) == f"{_catalogue_size(src)} requirements"

    run = subprocess.run(
        [str(program), "run", "--target", docker.target, "--requirement", "ERRORS-001"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (results,) = (elsewhere / "reports").glob("*/results.json")
    verdicts = {r["id"]: r["verdict"] for r in json.loads(results.read_text())["requirements"]}
    assert verdicts == {"ERRORS-001": "pass"}
