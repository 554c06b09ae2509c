"""``python -m lab_registry serve``: serves until Ctrl-C, fails in one line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.lab_registry.conftest import serving_cli

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab_registry", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_serve_until_ctrl_c() -> None:
    # As from `nohup bash .ci/run &`: the child starts with SIGINT ignored.
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    with serving_cli(
        ["--listen", "127.0.0.1:0", "--prefix", "ectest-cli"], preexec_fn=ignore_sigint
    ) as (process, url):
        assert process.stdout is not None
        listing = []
        for _ in range(20):  # the catalogue, sorted: single:v1 is among its last lines
            listing.append(process.stdout.readline())
            if "/ectest-cli/single:v1" in listing[-1]:
                break
        assert any("/ectest-cli/single:v1" in line for line in listing), listing
        r = httpx.get(f"{url}/v2/ectest-cli/multi/tags/list")
        assert r.json() == {"name": "ectest-cli/multi", "tags": ["latest"]}
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "Traceback" not in err and "stopped" in out


def test_bad_option_is_one_line() -> None:
    for args in (
        ["serve", "--listen", "nowhere"],
        ["serve", "--bogus"],
        ["serve", "--prefix", "UP"],
    ):
        result = _run(*args)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_busy_port_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run("serve", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen" in lines[0], result.stderr
