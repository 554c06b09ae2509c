"""The machinery of deviant tests: judge one requirement against a bent engine.

Each suite's deviant module lists :class:`Case` rows: a requirement, the
deviations a proxy in front of real Docker applies (none: Docker itself), and
the verdict the suite must give. The proxy is a :class:`StreamingProxy`, so
rows may also bend the live exchange (``StreamDeviation``). A row expecting
``fail`` shows the check can fail, for the reason the row names (a substring of
the verdict's reason, checked by :func:`deviant_proxy.cases.check`); a row expecting
``pass`` shows it passes on a conforming engine.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from deviant_proxy.cases import Case
from deviant_proxy.streaming import StreamingProxy
from engine_conformance.run.runner import Outcome, run_suite


@pytest.fixture
def judge(request, docker, tmp_path) -> Callable[[Case], Outcome]:
    def run(case: Case) -> Outcome:
        if not case.deviations and case.api_version is None:
            # Docker's own verdict: its full run (tests/conftest.py counts these rows in).
            return request.getfixturevalue("docker_suite").outcome
        if not case.deviations:
            return run_suite(
                docker.target,
                tmp_path,
                requirements=[case.requirement],
                api_version=case.api_version,
            )
        # Rows share deviation objects, so count this row's hits only.
        before = [d.hits for d in case.deviations]
        with StreamingProxy(docker.target, case.deviations) as proxy:
            out = run_suite(
                proxy.target,
                tmp_path,
                requirements=[case.requirement],
                api_version=case.api_version,
            )
        assert any(d.hits > b for d, b in zip(case.deviations, before, strict=True)), (
            f"no deviation of {case} ever applied: the proxy matched nothing"
        )
        return out

    return run
