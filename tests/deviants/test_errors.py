"""Each errors-suite requirement fails against an engine that deviates in exactly that way."""

from __future__ import annotations

import pytest

from deviant_proxy import Deviation, Response
from deviant_proxy.cases import Case, check
from deviant_proxy.common import TEXT_ERRORS

# An engine that accepts any version in the path, by answering as its own.
ANY_VERSION = Deviation(
    "any-version",
    match=lambda req: req.endpoint == "/images/create" and req.version == "9.999",
    request=lambda req: req.replace(path="/images/create"),
)
# An engine that serves only versioned paths.
VERSIONED_ONLY = Deviation(
    "versioned-only",
    match=lambda req: req.path == "/images/create",
    answer=lambda req: Response.json(404, {"message": "page not found"}),
)
# An engine that takes the unversioned path for an old version (1.24: platform ignored).
UNVERSIONED_IS_OLD = Deviation(
    "unversioned-is-1.24",
    match=lambda req: req.path == "/images/create",
    request=lambda req: req.replace(path="/v1.24/images/create"),
)
# An engine that rejects parameters it does not know.
STRICT_PARAMS = Deviation(
    "strict-params",
    match=lambda req: req.endpoint == "/images/create" and req.param("ectestUnknown") is not None,
    answer=lambda req: Response.json(400, {"message": "unknown parameter ectestUnknown"}),
)
# A conforming engine for ERRORS-005, where Docker itself answers 500.
NEITHER_IS_400 = Deviation(
    "neither-is-400",
    match=lambda req: (
        req.endpoint == "/images/create"
        and req.param("fromImage") is None
        and req.param("fromSrc") is None
    ),
    answer=lambda req: Response.json(400, {"message": "fromImage or fromSrc is required"}),
)
NEITHER_IS_TEXT_400 = Deviation(
    "neither-is-text-400",
    match=NEITHER_IS_400.match,
    answer=lambda req: Response(400, {"Content-Type": "text/plain"}, b"bad request\n"),
)

NOT_AN_ERROR_RESPONSE = "that is not an ErrorResponse"

CASES = [
    Case("ERRORS-001", "pass"),
    Case("ERRORS-001", "fail", (TEXT_ERRORS,), reason=NOT_AN_ERROR_RESPONSE),
    Case("ERRORS-002", "pass"),
    Case("ERRORS-002", "fail", (ANY_VERSION,), reason="expected HTTP 400"),
    Case("ERRORS-003", "pass"),
    Case("ERRORS-003", "fail", (VERSIONED_ONLY,), reason="the unversioned path does not work"),
    Case("ERRORS-003", "fail", (UNVERSIONED_IS_OLD,), reason="does not behave as the current"),
    Case("ERRORS-004", "pass"),
    Case("ERRORS-004", "fail", (STRICT_PARAMS,), reason="answered HTTP 400"),
    # Docker answers 500: reported, not hidden
    Case("ERRORS-005", "fail", reason="expected a 4xx client error"),
    Case("ERRORS-005", "pass", (NEITHER_IS_400,)),
    Case("ERRORS-005", "fail", (NEITHER_IS_TEXT_400,), reason=NOT_AN_ERROR_RESPONSE),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_errors_verdicts(case, judge):
    check(case, judge(case))
