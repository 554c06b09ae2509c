"""Each SCHEMA property fails against an engine that deviates in exactly that way.

The property phase draws its requests (suites/test_schema.py), so each deviation
below matches a kind of request the draw sends often: an import from the body,
an error answer. The rows run the phase with a budget of 40 examples
(``ENGINE_CONFORMANCE_PROPERTY_BUDGET``); the pass rows are Docker's full run.
The last tests show that the phase alone catches a proxy that turns a client
error into a 500 and one that breaks the stream framing, and that the reproducer
it reports, run as it is, shows the deviation.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import subprocess
from types import SimpleNamespace

import pytest

from deviant_proxy import Deviation, Response
from deviant_proxy.cases import Case, check
from deviant_proxy.common import TEXT_ERRORS
from deviant_proxy.predicates import is_body_import, is_create
from deviant_proxy.streaming import StreamingProxy
from engine_conformance.base.stream import StreamParser
from engine_conformance.engine.target import Client, Target
from engine_conformance.judge.cleanup import sweep
from engine_conformance.run.runner import run_suite

BUDGET = "40"  # examples, not seconds: the same draw on any machine


@pytest.fixture(autouse=True)
def _budget(monkeypatch):
    monkeypatch.setenv("ENGINE_CONFORMANCE_PROPERTY_BUDGET", BUDGET)


def _on_200(rewrite):
    return lambda req, resp: rewrite(resp) if resp.status == 200 else resp


# SCHEMA-001: a status of its own for imports from the body.
TEAPOT = Deviation(
    "teapot-418",
    match=is_body_import,
    answer=lambda req: Response.json(418, {"message": "I'm a teapot"}),
)

# SCHEMA-008: a successful import from the body answered 201 (the same stream), and
# refusals answered with a redirect.
CREATED_201 = Deviation(
    "import-created-201",
    match=is_body_import,
    response=_on_200(lambda resp: resp.replace(status=201)),
)
REFUSALS_REDIRECT = Deviation(
    "refusals-303",
    match=is_create,
    response=lambda req, resp: (
        Response(303, {"Location": "/images/json", "Content-Type": "application/json"}, resp.body)
        if resp.status >= 400
        else resp
    ),
)

# SCHEMA-002: errors as JSON without `message` (TEXT_ERRORS: errors in plain text).
ERRORS_WITHOUT_MESSAGE = Deviation(
    "errors-without-message",
    response=lambda req, resp: (
        Response.json(resp.status, {"error": "something went wrong"})
        if resp.status >= 400
        else resp
    ),
)

# SCHEMA-003: a progress line of the wrong type, a line that is not JSON, a 200
# answer without Content-Type (what Podman 4.3 sends for a pull), and lines run together.
STRING_PROGRESS = Deviation(
    "string-progress-current",
    match=is_body_import,
    response=_on_200(
        lambda resp: resp.replace(
            body=b'{"status":"Extracting","progressDetail":{"current":"12","total":24}}\r\n'
            + resp.body
        )
    ),
)
NON_JSON_LINE = Deviation(
    "non-json-line",
    match=is_body_import,
    response=_on_200(lambda resp: resp.replace(body=b"Extracting 12/24\r\n" + resp.body)),
)
NO_CONTENT_TYPE = Deviation(
    "200-without-content-type",
    match=is_body_import,
    response=_on_200(
        lambda resp: Response(
            resp.status,
            {k: v for k, v in resp.headers.items() if k.lower() != "content-type"},
            resp.body,
        )
    ),
)
LINES_RUN_TOGETHER = Deviation(
    "lines-run-together",
    match=is_body_import,
    response=_on_200(
        lambda resp: resp.replace(
            body=b'{"status":"Loading layer"}' + resp.body.replace(b"\r\n", b"", 1)
        )
    ),
)

# SCHEMA-004: 500 where Docker refuses an import's parameters with 400.
CLIENT_ERRORS_ARE_500 = Deviation(
    "import-refusals-500",
    match=is_body_import,
    response=lambda req, resp: resp.replace(status=500) if resp.status == 400 else resp,
)

# SCHEMA-005: an import's stream cut before its last line (the image ID); an error line
# that more lines follow (what Docker 26.1 sends for a URL import with changes=).
LAST_LINE_DROPPED = Deviation(
    "last-line-dropped",
    match=is_body_import,
    response=_on_200(
        lambda resp: resp.replace(
            body=b"".join(line + b"\r\n" for line in resp.body.splitlines()[:-1])
        )
    ),
)


def _auth(req) -> str:
    return next((v for k, v in req.headers.items() if k.lower() == "x-registry-auth"), "")


ERROR_NOT_LAST = Deviation(
    "error-line-not-last",
    match=is_body_import,
    response=_on_200(
        lambda resp: resp.replace(
            body=b'{"errorDetail":{"message":"boom"},"error":"boom"}\r\n' + resp.body
        )
    ),
)


def _decoded(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("utf-8")
    except ValueError:
        return value


# SCHEMA-006: an engine that says which credentials it could not use.
AUTH_ECHOED = Deviation(
    "auth-echoed",
    match=lambda req: is_create(req) and bool(_auth(req)),
    response=lambda req, resp: (
        Response.json(resp.status, {"message": f"cannot use credentials {_decoded(_auth(req))}"})
        if resp.status >= 400
        else resp
    ),
)

# SCHEMA-007: an import that ignores repo and tag (the image stays unnamed).
REPO_IGNORED = Deviation(
    "repo-ignored",
    match=is_body_import,
    request=lambda req: req.with_params(repo=None, tag=None),
)

CASES = [
    Case("SCHEMA-001", "pass"),
    Case("SCHEMA-001", "fail", (TEAPOT,), reason="a status outside"),
    Case("SCHEMA-002", "pass"),
    Case("SCHEMA-002", "fail", (TEXT_ERRORS,), reason="not an ErrorResponse"),
    Case("SCHEMA-002", "fail", (ERRORS_WITHOUT_MESSAGE,), reason="body not ErrorResponse"),
    Case("SCHEMA-003", "pass"),
    Case("SCHEMA-003", "fail", (STRING_PROGRESS,), reason="not a CreateImageInfo"),
    Case("SCHEMA-003", "fail", (NON_JSON_LINE,), reason="not one JSON object"),
    Case("SCHEMA-003", "fail", (NO_CONTENT_TYPE,), reason="Content-Type missing"),
    Case("SCHEMA-004", "pass"),
    Case("SCHEMA-004", "fail", (CLIENT_ERRORS_ARE_500,), reason="client's fault"),
    Case("SCHEMA-005", "pass"),
    Case("SCHEMA-005", "fail", (LAST_LINE_DROPPED,), reason="ends without success or errorDetail"),
    Case("SCHEMA-005", "fail", (ERROR_NOT_LAST,), reason="goes on after its error line"),
    Case("SCHEMA-006", "pass"),
    Case("SCHEMA-006", "fail", (AUTH_ECHOED,), reason="secret echoed"),
    Case("SCHEMA-007", "pass"),
    Case("SCHEMA-007", "fail", (REPO_IGNORED,), reason="not named under the run prefix"),
    Case("SCHEMA-008", "pass"),
    Case("SCHEMA-008", "fail", (CREATED_201,), reason="a success other than 200"),
    Case("SCHEMA-008", "fail", (REFUSALS_REDIRECT,), reason="nor an error status"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_schema_verdicts(case, judge):
    check(case, judge(case))


# -- the phase alone finds it, and its reproducer shows it --------------------------------


def _reproduce(docker, tmp_path, deviation: Deviation, requirement: str, shape: str) -> str:
    """Run the property phase behind the proxy; run the finding's curl line; its output."""
    with StreamingProxy(docker.target, [deviation]) as proxy:
        out = run_suite(proxy.target, tmp_path, requirements=[requirement])
        got = out.requirement(requirement)
        assert got["verdict"] == "fail", got["reason"][:500]
        findings = [f for f in got["observations"]["findings"] if shape in f["shape"]]
        assert findings, got["observations"]["findings"]
        finding = findings[0]
        assert "127.0.0.1" in finding["reproducer"] and "/images/create?" in finding["reproducer"]
        # People read it in report.html too, next to the finding's minimal request.
        page = (tmp_path / "report.html").read_text()
        assert html.escape(finding["reproducer"]) in page and "property phase:" in page
        hits = deviation.hits
        shown = subprocess.run(finding["reproducer"], shell=True, capture_output=True, timeout=120)
        assert deviation.hits > hits, "the reproducer did not reach the proxy"
    # The reproducer ran outside any suite run, so what it made is this test's to remove.
    run = SimpleNamespace(
        prefix=out.results["run"]["prefix"],
        counter=itertools.count(),
        created=set(),
        preexisting=frozenset(),
    )
    with Client(Target.parse(docker.target)) as client:
        client.negotiate()
        sweep(client, run)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.decode("utf-8", "replace")


def _head_and_body(output: str) -> tuple[str, bytes]:
    head, _, body = output.replace("\r\n", "\n").partition("\n\n")
    return head, body.encode()


def test_the_phase_reports_a_client_error_turned_500_with_a_reproducer(docker, tmp_path):
    output = _reproduce(docker, tmp_path, CLIENT_ERRORS_ARE_500, "SCHEMA-004", "-> HTTP 500")
    head, body = _head_and_body(output)
    assert head.startswith("HTTP/1.") and " 500" in head.splitlines()[0], head
    assert "message" in json.loads(body)


def test_the_phase_reports_broken_stream_framing_with_a_reproducer(docker, tmp_path):
    output = _reproduce(docker, tmp_path, LINES_RUN_TOGETHER, "SCHEMA-003", "not one JSON object")
    head, _ = _head_and_body(output)
    assert " 200" in head.splitlines()[0], head
    body = output.encode().split(b"\r\n\r\n", 1)[1]
    parser = StreamParser()
    parser.feed(body, 0.0)
    parser.close()
    assert parser.errors, f"the reproduced stream is well framed: {body[:300]!r}"
