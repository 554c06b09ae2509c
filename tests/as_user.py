"""``engine-conformance`` run as a user runs it, for tests that follow its printed steps.

>>> run = cli("doctor", "--target", target)      # doctest: +SKIP
>>> run.returncode, run.steps()[:1]              # doctest: +SKIP
(6, ['run with --serve-host ADDRESS ...'])
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass

from engine_conformance.base.paths import ROOT


@dataclass
class CLI:
    """One ``engine-conformance`` invocation and what it printed."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def steps(self) -> list[str]:
        """``doctor``'s numbered steps, in order."""
        return [m[1] for m in re.finditer(r"^\s+\d+\) (.*)$", self.stdout, re.M)]

    def __str__(self) -> str:
        return (
            f"$ engine-conformance {' '.join(self.args)}\nexit {self.returncode} "
            f"({self.seconds:.0f} s)\n{self.stdout[-4000:]}\n{self.stderr[-3000:]}"
        )


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> CLI:
    """``engine-conformance ARGS`` as a user runs it, without the caller's DOCKER_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "engine_conformance", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CLI(list(args), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
