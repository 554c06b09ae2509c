"""Each schema-suite requirement fails against an engine that deviates in exactly that way.

The schema suite sends the same generated cases every run (fixed seed), so a
deviation that matches a kind of request is sure to meet one: every row below
matches something the explicit cases of suites/test_schema.py always send.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from deviant_proxy import Deviation, Response
from deviant_proxy.cases import Case, check
from deviant_proxy.common import TEXT_ERRORS
from deviant_proxy.predicates import is_body_import, is_create
from engine_conformance.determinism import no_local_constants


def _on_200(rewrite):
    return lambda req, resp: rewrite(resp) if resp.status == 200 else resp


# SCHEMA-001: an engine with a status of its own for requests carrying a message.
TEAPOT = Deviation(
    "teapot-418",
    match=lambda req: is_create(req) and req.param("message") is not None,
    answer=lambda req: Response.json(418, {"message": "I'm a teapot"}),
)

# SCHEMA-002: errors in plain text; errors as JSON without `message`.
ERRORS_WITHOUT_MESSAGE = Deviation(
    "errors-without-message",
    response=lambda req, resp: Response.json(resp.status, {"error": "something went wrong"})
    if resp.status >= 400 else resp,
)

# SCHEMA-003: a progress line of the wrong type, a line that is not JSON, and a
# 200 answer without Content-Type (what Podman 4.3 sends for a pull).
STRING_PROGRESS = Deviation(
    "string-progress-current",
    match=is_body_import,
    response=_on_200(lambda resp: resp.replace(
        body=b'{"status":"Extracting","progressDetail":{"current":"12","total":24}}\r\n'
        + resp.body
    )),
)
NON_JSON_LINE = Deviation(
    "non-json-line",
    match=is_body_import,
    response=_on_200(lambda resp: resp.replace(body=b"Extracting 12/24\r\n" + resp.body)),
)
NO_CONTENT_TYPE = Deviation(
    "200-without-content-type",
    match=is_body_import,
    response=_on_200(lambda resp: Response(
        resp.status,
        {k: v for k, v in resp.headers.items() if k.lower() != "content-type"},
        resp.body,
    )),
)

# SCHEMA-004: an engine that answers 500 where Docker refuses an import's parameters with 400.
IMPORT_REFUSALS_ARE_500 = Deviation(
    "import-refusals-500",
    match=is_body_import,
    response=lambda req, resp: resp.replace(status=500) if resp.status == 400 else resp,
)

CASES = [
    Case("SCHEMA-001", "pass"),
    Case("SCHEMA-001", "fail", (TEAPOT,), reason="with a status outside"),
    Case("SCHEMA-002", "pass"),
    Case("SCHEMA-002", "fail", (TEXT_ERRORS,), reason="not an ErrorResponse"),
    Case("SCHEMA-002", "fail", (ERRORS_WITHOUT_MESSAGE,),
         reason="not an ErrorResponse"),
    Case("SCHEMA-003", "pass"),
    Case("SCHEMA-003", "fail", (STRING_PROGRESS,), reason="not a CreateImageInfo stream"),
    Case("SCHEMA-003", "fail", (NON_JSON_LINE,), reason="not a CreateImageInfo stream"),
    Case("SCHEMA-003", "fail", (NO_CONTENT_TYPE,), reason="not application/json"),
    Case("SCHEMA-004", "pass"),
    Case("SCHEMA-004", "fail", (IMPORT_REFUSALS_ARE_500,),
         reason="imports of a valid archive were answered 5xx"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_schema_verdicts(case, judge):
    check(case, judge(case))


# -- the suite's own safety and repeatability (no engine needed) ---------------------------

_SUITE = Path(__file__).resolve().parents[2] / "suites" / "test_schema.py"
_PULL = re.compile(r"127\.0\.0\.1:9/gen/[a-z0-9]{1,40}")


@pytest.fixture(scope="module")
def schema_suite():
    """suites/test_schema.py as a module (suites/ is not a package); not named ``suite``,
    which tests/conftest.py parametrizes over the engines."""
    loaded = importlib.util.spec_from_file_location("schema_suite_under_test", _SUITE)
    module = importlib.util.module_from_spec(loaded)
    sys.modules[loaded.name] = module  # its dataclasses look their module up
    loaded.loader.exec_module(module)
    return module


def _assert_safe(schema_suite, case) -> None:
    safe = schema_suite.make_safe(case, "ectest-0000/gen-1")
    query = safe.query
    assert set(query) <= set(schema_suite.QUERY)
    assert query["repo"] == "ectest-0000/gen-1"
    assert query.get("fromSrc", "-") == "-", query
    assert (safe.body is not None) == ("fromSrc" in query)
    assert not ("fromSrc" in query and "fromImage" in query), query
    if "fromImage" in query:
        assert _PULL.fullmatch(query["fromImage"]), query["fromImage"]
    assert set(safe.headers) <= {"X-Registry-Auth"}
    for value in [*query.values(), *safe.headers.values()]:
        for item in value if isinstance(value, list) else [value]:
            item.encode("utf-8")  # sendable: no lone surrogates
    assert safe.kind == ("pull" if "fromImage" in query
                         else "import" if "fromSrc" in query else "neither")


def test_every_case_the_suite_sends_is_made_safe(schema_suite):
    cases = schema_suite.generated_cases()
    assert len(cases) == len(schema_suite.EXPLICIT) + schema_suite.EXAMPLES
    for case in cases:
        _assert_safe(schema_suite, case)


def test_any_generated_case_is_made_safe(schema_suite):
    """Not only the suite's fixed cases: whatever schemathesis draws (another seed)."""

    @seed(schema_suite.SEED + 1)
    @settings(max_examples=300, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(schema_suite.operation().as_strategy())
    def safe(case):
        _assert_safe(schema_suite, case)

    with no_local_constants():
        safe()


def test_generation_is_repeatable(schema_suite):
    first = schema_suite.generated_cases()
    schema_suite.generated_cases.cache_clear()
    again = schema_suite.generated_cases()
    assert first is not again
    assert schema_suite.cases_digest(first) == schema_suite.cases_digest(again)
    assert [dict(c.query or {}) for c in first] == [dict(c.query or {}) for c in again]
