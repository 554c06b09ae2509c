"""Properties of POST /images/create over requests drawn from the OpenAPI fragment.

The property phase (:mod:`engine_conformance.judge.property_phase`) runs once per run,
before the first SCHEMA check: it draws requests from ``spec/images-create.yaml``
(schemathesis, positive and negative generation, steered to the lab registry, the
lab file server and generated archives), sends each, judges every property as the
answer arrives, and shrinks each distinct finding to a minimal request with a
``curl`` reproducer. Each check below is one property: it fails with the findings
for its requirement, each with its reproducer (in the check's observations:
``findings``). ``--seed N`` replays a run's draw; ``--property-budget`` bounds it.

Safety: every reference names the lab registry under the run prefix, every URL
the lab file server, every ``repo`` a fresh name under the run prefix; whatever a
request creates is removed before the next one is sent (SCHEMA-007 judges that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine_conformance.engine.target import Exchange
from engine_conformance.judge.property_phase import (
    Budget,
    Draft,
    PhaseResult,
    PropertyPhase,
    operation,
)

# Drawing requests takes the suite's own time more than the engine's: run it first,
# beside the lane's waits (engine_conformance/run/lane.py).
pytestmark = pytest.mark.busy


@pytest.fixture(scope="module")
def phase(
    request: pytest.FixtureRequest, client, run_state, lab, file_server
) -> Iterator[PhaseResult]:
    """The property phase's result, shared by the SCHEMA checks."""
    config = request.config
    budget = Budget.parse(config.getoption("property_budget"))
    yield PropertyPhase(
        client,
        run_state,
        lab,
        file_server,
        run_state.report_dir,
        seed=config.getoption("seed"),
        budget=budget,
    ).run()


Selector = Callable[[Draft, Exchange], bool]


def judge(
    client,
    phase: PhaseResult,
    observe: dict,
    requirement: str,
    what: str,
    *,
    only: Selector | None = None,
    none: str = "",
    extra: Callable[[list], dict[str, Any]] | None = None,
) -> None:
    """Judge ``requirement`` over the drawn requests ``only`` picks (default: all).

    Skips, saying ``none``, when no drawn request was of the kind judged; fails with
    the requirement's findings, each with its reproducer, if any.
    """
    judged = [(d, ex) for d, ex in phase.sent if only is None or only(d, ex)]
    if not judged and none:
        pytest.skip(f"no drawn request {none}")
    observe.update(phase.summary())
    observe.update(extra(judged) if extra else {})
    observe["judged"] = len(judged)
    findings = phase.findings_for(requirement)
    observe["findings"] = [f.to_dict() for f in findings]
    if phase.errors:
        observe["request_errors"] = phase.errors[:5]
    cited = [f.exchange for f in findings] or [ex for _, ex in judged[:3]]
    client.cite(cited[:6])
    assert not findings, (
        f"{len(findings)} distinct finding{'s' if len(findings) != 1 else ''} among {len(judged)} "
        f"{what}: "
        + " | ".join(
            f"{f.shape} ({f.count}x), minimal: {f.exchange.request_line[:200]} -> HTTP "
            f"{f.exchange.status}: {f.detail[:200]}; reproduce: {f.reproducer}"
            for f in findings[:3]
        )
    )


@pytest.mark.exclusive
@pytest.mark.requirement("SCHEMA-001")
def test_statuses_are_listed(client, phase, observe):
    statuses = ", ".join(sorted(operation().responses.status_codes))
    judge(client, phase, observe, "SCHEMA-001", f"drawn requests (a status outside {statuses})")


@pytest.mark.exclusive
@pytest.mark.requirement("SCHEMA-002")
def test_errors_are_error_responses(client, phase, observe):
    judge(
        client,
        phase,
        observe,
        "SCHEMA-002",
        "non-200 answers (not an ErrorResponse)",
        only=lambda d, ex: ex.status != 200,
        none="was answered with a status other than 200",
    )


@pytest.mark.exclusive
@pytest.mark.requirement("SCHEMA-003")
def test_streams_are_create_image_info(client, phase, observe):
    judge(
        client,
        phase,
        observe,
        "SCHEMA-003",
        "200 answers (not a CreateImageInfo stream)",
        only=lambda d, ex: ex.status == 200,
        none="was answered 200",
        extra=lambda judged: {"lines": sum(len(ex.messages) for _, ex in judged)},
    )


@pytest.mark.exclusive
@pytest.mark.requirement("SCHEMA-004")
def test_client_errors_are_not_server_errors(client, phase, observe):
    judge(
        client,
        phase,
        observe,
        "SCHEMA-004",
        "requests that are the client's fault (answered 5xx)",
        only=lambda d, ex: d.client_fault,
        none="was the client's fault",
    )


@pytest.mark.exclusive
@pytest.mark.requirement("SCHEMA-005")
def test_streams_end_in_success_or_error(client, phase, observe):
    judge(
        client,
        phase,
        observe,
        "SCHEMA-005",
        "200 streams (not ending in success or errorDetail)",
        only=lambda d, ex: ex.status == 200 and not ex.framing_errors,
        none="was answered with a well-framed 200 stream",
    )


@pytest.mark.exclusive
@pytest.mark.requirement("SCHEMA-006")
def test_secrets_are_not_echoed(client, phase, observe):
    judge(
        client,
        phase,
        observe,
        "SCHEMA-006",
        "requests with a secret in X-Registry-Auth (echoed back)",
        only=lambda d, ex: d.secret is not None,
        none="carried a secret in X-Registry-Auth",
    )


@pytest.mark.exclusive
@pytest.mark.requirement("SCHEMA-007")
def test_what_is_created_is_ours_and_removed(client, phase, observe):
    judge(
        client,
        phase,
        observe,
        "SCHEMA-007",
        "drawn requests (created outside the run prefix or left behind)",
    )


@pytest.mark.exclusive
@pytest.mark.requirement("SCHEMA-008")
def test_statuses_are_documented_success_or_errors(client, phase, observe):
    judge(
        client,
        phase,
        observe,
        "SCHEMA-008",
        "drawn requests (a success other than 200, or a status that is neither "
        "a success nor an error)",
    )
