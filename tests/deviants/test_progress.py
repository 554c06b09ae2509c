"""Each progress-suite requirement fails against an engine whose stream deviates in that way.

Rows without a deviation are plain Docker 20.10, which conforms to every
PROGRESS requirement. The deviations rewrite the (buffered) answers to the pulls
suites/test_progress.py always sends: the throttled ``progress-large`` pull, whose
stream has many Downloading lines, and the pulls the lab registry makes fail
(``progress-corrupt-layer``, ``progress-layer-unknown``,
``progress-unsupported-manifest``), whose streams end with an error line.
"""

from __future__ import annotations

import json

import pytest

from deviant_proxy import Deviation, Request, Response
from deviant_proxy.cases import Case, check
from deviant_proxy.predicates import pulling

FAILING = ("progress-corrupt-layer", "progress-layer-unknown", "progress-unsupported-manifest")


def on_stream(edit):
    """A response rewrite applying ``edit(lines) -> lines`` to a 200 stream's JSON lines."""
    def rewrite(req: Request, resp: Response) -> Response:
        if resp.status != 200:
            return resp
        return resp.replace(body=b"".join(_line(o) for o in edit(resp.lines())))
    return rewrite


def _line(obj: object) -> bytes:
    return obj if isinstance(obj, bytes) else json.dumps(obj).encode() + b"\r\n"


def _progress(obj: dict) -> bool:
    detail = obj.get("progressDetail")
    return isinstance(detail, dict) and "current" in detail and "total" in detail


def after_last_progress(extra):
    """Insert ``extra(first, last)`` after the last line with progressDetail current and total."""
    def edit(lines: list[dict]) -> list:
        marks = [i for i, o in enumerate(lines) if o.get("status") == "Downloading"
                 and _progress(o)]
        if len(marks) < 2:
            return lines
        first, last = lines[marks[0]], lines[marks[-1]]
        return lines[:marks[-1] + 1] + [extra(first, last)] + lines[marks[-1] + 1:]
    return edit


def _over_total(first: dict, last: dict) -> dict:
    total = last["progressDetail"]["total"]
    return last | {"progressDetail": {"current": total + 1024, "total": total}}


def _backwards(first: dict, last: dict) -> dict:
    return dict(first)


# PROGRESS-001: pull streams sent as text/plain.
TEXT_PLAIN = Deviation(
    "pull-stream-as-text-plain",
    match=pulling("progress-large"),
    response=lambda req, resp: resp.replace(headers={"Content-Type": "text/plain"})
    if resp.status == 200 else resp,
)
# PROGRESS-002: a progress line that is not JSON.
TEXT_LINE = Deviation(
    "text-progress-line",
    match=pulling("progress-large"),
    response=on_stream(after_last_progress(lambda first, last: b"Downloading 12/24\r\n")),
)
# PROGRESS-003: progressDetail.current as a string.
STRING_CURRENT = Deviation(
    "string-current",
    match=pulling("progress-large"),
    response=on_stream(after_last_progress(
        lambda first, last: last | {"progressDetail": {"current": "12", "total": 24}})),
)
# PROGRESS-004: more done than the total.
OVER_TOTAL = Deviation(
    "current-over-total",
    match=pulling("progress-large"),
    response=on_stream(after_last_progress(_over_total)),
)
# PROGRESS-005: Downloading goes back to where it started.
BACKWARDS = Deviation(
    "downloading-goes-backwards",
    match=pulling("progress-large"),
    response=on_stream(after_last_progress(_backwards)),
)
# PROGRESS-006: a successful pull that also reports an error.
ERROR_ON_SUCCESS = Deviation(
    "error-on-success",
    match=pulling("progress-large"),
    response=on_stream(lambda lines: lines + [
        {"errorDetail": {"message": "ectest: injected error"}, "error": "ectest: injected error"}]),
)
# PROGRESS-007: failed pulls that look like success; errors only in the deprecated field.
DROP_ERRORS = Deviation(
    "drop-error-lines",
    match=pulling(*FAILING),
    response=on_stream(lambda lines: [o for o in lines
                                      if "errorDetail" not in o and "error" not in o]),
)
ERROR_FIELD_ONLY = Deviation(
    "error-without-errordetail",
    match=pulling(*FAILING),
    response=on_stream(lambda lines: [{k: v for k, v in o.items() if k != "errorDetail"}
                                      for o in lines]),
)
# PROGRESS-008: a success status after the error.
LINE_AFTER_ERROR = Deviation(
    "line-after-error",
    match=pulling(*FAILING),
    response=on_stream(lambda lines: lines + [{"status": "Status: Image is up to date"}]),
)

# PROGRESS-009: the stream held back and sent whole when the pull has ended (any answer
# rewrite reads the engine's whole answer first).
BUFFERS_STREAM = Deviation(
    "buffers-whole-stream", match=pulling("progress-large"), response=lambda req, resp: resp,
)

CASES = [
    Case("PROGRESS-001", "pass"),
    Case("PROGRESS-001", "fail", (TEXT_PLAIN,), reason="not application/json"),
    Case("PROGRESS-002", "pass"),
    Case("PROGRESS-002", "fail", (TEXT_LINE,), reason="not one JSON object"),
    Case("PROGRESS-003", "pass"),
    Case("PROGRESS-003", "fail", (STRING_CURRENT,), reason="not CreateImageInfo"),
    Case("PROGRESS-004", "pass"),
    Case("PROGRESS-004", "fail", (OVER_TOTAL,), reason="more progress than the total"),
    Case("PROGRESS-005", "pass"),
    Case("PROGRESS-005", "fail", (BACKWARDS,), reason="progress going backwards"),
    Case("PROGRESS-006", "pass"),
    Case("PROGRESS-006", "fail", (ERROR_ON_SUCCESS,), reason="succeeded report an error"),
    Case("PROGRESS-007", "pass"),
    Case("PROGRESS-007", "fail", (DROP_ERRORS,), reason="do not end with errorDetail"),
    Case("PROGRESS-007", "fail", (ERROR_FIELD_ONLY,), reason="do not end with errorDetail"),
    Case("PROGRESS-008", "pass"),
    Case("PROGRESS-008", "fail", (LINE_AFTER_ERROR,), reason="go on after their error line"),
    Case("PROGRESS-009", "pass"),
    Case("PROGRESS-009", "fail", (BUFFERS_STREAM,), reason="the stream is held back"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_progress_verdicts(case, judge):
    check(case, judge(case))
