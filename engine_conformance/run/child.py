"""The child pytest of a run, without the interpreter's teardown.

    python -m engine_conformance.run.child ARGS     # as ``python -m pytest ARGS``

When pytest returns, the run is over: its reports are written and closed and the
engine is cleaned up. What an interpreter's normal exit does next is free the run's
objects one by one (some 130,000: the evidence, the catalogue, hypothesis's and
schemathesis's state), about 0.3 s that ``engine-conformance run``, the tests and a
CI job wait for, once per child. So the exit handlers run as usual (logging,
weakref finalizers such as temporary directories) and the process then ends at
once; the operating system takes its memory back whole.
"""

from __future__ import annotations

import atexit
import os
import sys

import pytest


def main(args: list[str]) -> int:
    return int(pytest.main(args))


if __name__ == "__main__":
    code = main(sys.argv[1:])
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
