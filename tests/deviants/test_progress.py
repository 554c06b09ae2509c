"""Each progress-suite requirement fails against an engine whose stream deviates in that way.

Rows without a deviation are plain Docker 20.10, which conforms to every
PROGRESS requirement. The deviations rewrite the (buffered) answers to the pulls
suites/test_progress.py always sends: the throttled ``progress-large`` pull, whose
stream has many Downloading lines, and the pulls the lab registry makes fail
(``progress-corrupt-layer``, ``progress-layer-unknown``,
``progress-unsupported-manifest``), whose streams end with an error line.

PROGRESS-010's deviations end a 200 answer before its end (``StreamDeviation``'s
``unterminated``): every line arrives, the message is incomplete. The last test
runs the whole suite behind such a proxy: the cut is reported once, by
PROGRESS-010, and every other verdict is Docker's own.
"""

from __future__ import annotations

import json

import pytest

from deviant_proxy import Deviation, Request, Response
from deviant_proxy.cases import Case, check
from deviant_proxy.predicates import pulling
from deviant_proxy.streaming import StreamDeviation, StreamingProxy
from engine_conformance.run.runner import Outcome, run_suite

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
        marks = [
            i for i, o in enumerate(lines) if o.get("status") == "Downloading" and _progress(o)
        ]
        if len(marks) < 2:
            return lines
        first, last = lines[marks[0]], lines[marks[-1]]
        return lines[: marks[-1] + 1] + [extra(first, last)] + lines[marks[-1] + 1 :]

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
    response=lambda req, resp: (
        resp.replace(headers={"Content-Type": "text/plain"}) if resp.status == 200 else resp
    ),
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
    response=on_stream(
        after_last_progress(
            lambda first, last: last | {"progressDetail": {"current": "12", "total": 24}}
        )
    ),
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
    response=on_stream(
        lambda lines: (
            lines
            + [
                {
                    "errorDetail": {"message": "ectest: injected error"},
                    "error": "ectest: injected error",
                }
            ]
        )
    ),
)
# PROGRESS-007: failed pulls that look like success; errors only in the deprecated field.
DROP_ERRORS = Deviation(
    "drop-error-lines",
    match=pulling(*FAILING),
    response=on_stream(
        lambda lines: [o for o in lines if "errorDetail" not in o and "error" not in o]
    ),
)
ERROR_FIELD_ONLY = Deviation(
    "error-without-errordetail",
    match=pulling(*FAILING),
    response=on_stream(
        lambda lines: [{k: v for k, v in o.items() if k != "errorDetail"} for o in lines]
    ),
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
    "buffers-whole-stream",
    match=pulling("progress-large"),
    response=lambda req, resp: resp,
)

# PROGRESS-010: every 200 answer ends without HTTP's last chunk, or short of its
# Content-Length; every line the engine sent still arrives.
UNTERMINATED = StreamDeviation("unterminated-chunked", unterminated="chunked")
SHORT_LENGTH = StreamDeviation("short-content-length", unterminated="content-length")
# PROGRESS-007 judges a cut stream on what arrived: cut after its error line, it is judged
# (pass); cut with its error line gone, it cannot be (error, naming the cut).
CUT_FAILING = StreamDeviation(
    "failing-pulls-unterminated", match=pulling(*FAILING), unterminated="chunked"
)
CUT_ERROR_LINES = StreamDeviation(
    "failing-pulls-cut-without-error-lines",
    match=pulling(*FAILING),
    unterminated="chunked",
    drop_line=lambda line: b'"errorDetail"' in line or b'"error"' in line,
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
    Case("PROGRESS-010", "pass"),
    Case("PROGRESS-010", "fail", (UNTERMINATED,), reason="before the chunked body's last chunk"),
    Case("PROGRESS-010", "fail", (SHORT_LENGTH,), reason="body bytes its Content-Length declared"),
    Case("PROGRESS-007", "pass", (CUT_FAILING,)),
    Case("PROGRESS-007", "error", (CUT_ERROR_LINES,), reason="in an incomplete message"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_progress_verdicts(case, judge):
    check(case, judge(case))


def verdicts(outcome: Outcome) -> dict[str, str]:
    assert outcome.results is not None, outcome.output[-3000:]
    return {r["id"]: r["verdict"] for r in outcome.results["requirements"]}


def test_a_cut_stream_is_reported_once_and_judged_everywhere_else(
    docker, docker_suite, tmp_path, monkeypatch
):
    """Behind a proxy that ends every 200 answer of /images/create without its last chunk,
    the whole suite gives Docker's own verdicts, but for PROGRESS-010 (fail) and the one
    check that judges what a stream's end lacks (error): no other check turns into
    ``error`` because the message was incomplete, when every line it sent arrived."""
    # The property phase sees the cut too; 40 examples of it (not Docker's full 60 s)
    # are enough to show it does not turn the cut into a finding.
    monkeypatch.setenv("ENGINE_CONFORMANCE_PROPERTY_BUDGET", "40")
    cut = StreamDeviation("unterminated-chunked-whole-run", unterminated="chunked")
    with StreamingProxy(docker.target, [cut]) as proxy:
        out = run_suite(proxy.target, tmp_path)
    assert cut.hits > 50, f"the proxy cut {cut.hits} answers"
    own, behind = verdicts(docker_suite.outcome), verdicts(out)
    differ = {
        rid: f"{own.get(rid)} -> {verdict}"
        for rid, verdict in behind.items()
        if verdict != own.get(rid)
    }
    # PULL-019 judges that a pull ends without the warning it owed: the end of a cut
    # stream is exactly what may be missing, so it cannot be judged (error, naming the
    # cut). Every other check has its evidence in the lines that arrived.
    ends = {"PULL-019"}
    assert differ == {"PROGRESS-010": "pass -> fail"} | {
        rid: f"{own.get(rid)} -> error" for rid in ends
    }, {rid: out.requirement(rid)["reason"][:300] for rid in differ}
    errors = [rid for rid, verdict in behind.items() if verdict == "error"]
    assert not [
        rid for rid in errors if "incomplete" in out.requirement(rid)["reason"] and rid not in ends
    ]
    assert all("incomplete message" in out.requirement(rid)["reason"] for rid in ends)
