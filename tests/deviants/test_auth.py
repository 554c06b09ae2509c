"""Each auth-suite requirement fails against an engine that deviates in exactly that way;
and no password reaches a report, even from an engine that echoes credentials back.

Rows without a deviation are plain Docker 20.10. Docker itself deviates on AUTH-003
(it answers 500 where the document gives 404), on AUTH-005 and AUTH-013 (INFO: it drops
an unpadded or standard-base64 header) and on AUTH-011 (INFO: it sends credentials named
for another registry); fixing proxies show those checks pass on an engine that conforms.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from deviant_proxy import DeviantProxy, Deviation, Request, Response
from deviant_proxy.cases import Case, check
from deviant_proxy.predicates import is_pull, refused, split_name, success_stream
from deviant_proxy.streaming import StreamDeviation
from engine_conformance.base import archives
from engine_conformance.base.paths import ROOT
from engine_conformance.run.runner import run_suite

_SUITE = ROOT / "suites" / "test_auth.py"


def _suite():
    """The auth suite module, for the lab credentials it uses."""
    loaded = importlib.util.spec_from_file_location("auth_suite_under_test", _SUITE)
    module = importlib.util.module_from_spec(loaded)
    sys.modules[loaded.name] = module
    loaded.loader.exec_module(module)
    return module


SUITE = _suite()

# -- helpers --------------------------------------------------------------------------------


def auth_header(req: Request) -> str | None:
    return req.headers.get("x-registry-auth")


def decoded_auth(req: Request) -> dict | None:
    """The JSON X-Registry-Auth carries, decoded leniently (None: it does not decode)."""
    value = auth_header(req)
    if value is None:
        return None
    try:
        obj = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, binascii.Error):
        return None
    return obj if isinstance(obj, dict) else None


def with_auth(req: Request, value: str | None) -> Request:
    headers = {k: v for k, v in req.headers.items() if k != "x-registry-auth"}
    if value is not None:
        headers["x-registry-auth"] = value
    return req.replace(headers=headers)


# -- deviations -----------------------------------------------------------------------------

# Never passes the credentials on.
STRIPS_AUTH = Deviation(
    "strips-x-registry-auth",
    match=lambda req: is_pull(req) and auth_header(req) is not None,
    request=lambda req: with_auth(req, None),
)


def _standard_alphabet(req: Request) -> Request:
    obj = decoded_auth(req)
    return (
        req if obj is None else with_auth(req, base64.b64encode(json.dumps(obj).encode()).decode())
    )


# Decodes with the standard base64 alphabet (modelled by re-encoding the header so):
# the "-" and "_" of base64url are not understood and the credentials are lost.
STANDARD_ALPHABET = Deviation(
    "standard-base64-alphabet",
    match=lambda req: is_pull(req) and decoded_auth(req) is not None,
    request=_standard_alphabet,
)
# Reports a refused pull as a success.
REFUSAL_AS_SUCCESS = Deviation(
    "refusal-as-success",
    match=is_pull,
    response=lambda req, resp: success_stream(req) if refused(resp) else resp,
)
# A conforming engine for AUTH-003: a refused pull answers the documented 404.
REFUSAL_AS_404 = Deviation(
    "refusal-as-404",
    match=is_pull,
    response=lambda req, resp: (
        Response.json(404, {"message": "repository does not exist or no read access"})
        if refused(resp)
        else resp
    ),
)
# Refuses a header it cannot decode (Podman 4.3 answers 400).
STRICT_HEADER = Deviation(
    "rejects-undecodable-header",
    match=lambda req: is_pull(req) and auth_header(req) is not None and decoded_auth(req) is None,
    answer=lambda req: Response.json(400, {"message": "failed to parse X-Registry-Auth"}),
)
# A conforming engine for AUTH-005: the header is padded before Docker reads it.
REPADS = Deviation(
    "repads-header",
    match=lambda req: is_pull(req) and auth_header(req) is not None,
    request=lambda req: with_auth(req, auth_header(req) + "=" * (-len(auth_header(req)) % 4)),
)
# Requires padding (as Docker 29 does) and says so.
REQUIRES_PADDING = Deviation(
    "requires-padding",
    match=lambda req: is_pull(req) and len(auth_header(req) or "") % 4 != 0,
    answer=lambda req: Response.json(400, {"message": "X-Registry-Auth: illegal base64 data"}),
)
# Falls over on the identity-token form.
TOKEN_CRASH = Deviation(
    "identity-token-crash",
    match=lambda req: is_pull(req) and "identitytoken" in (decoded_auth(req) or {}),
    answer=lambda req: Response(500, {"Content-Type": "text/plain"}, b"panic: nil pointer\n"),
)


def _echo_credentials(req: Request, resp: Response) -> Response:
    """Echo the decoded header (password and all) and the raw header in every answer."""
    leak = f"credentials {json.dumps(decoded_auth(req))} header {auth_header(req)}"
    if resp.status >= 400:
        return Response.json(resp.status, {"message": leak})
    return Response.stream(resp.lines() + [{"status": leak}])


# Leaks what it was given into its answers: reports must still hold no secret.
LEAKS_CREDENTIALS = Deviation(
    "echoes-credentials",
    match=lambda req: is_pull(req) and auth_header(req) is not None,
    response=_echo_credentials,
)


def _mangle_identity_token(req: Request) -> Request:
    obj = dict(decoded_auth(req) or {})
    obj["identitytoken"] = obj["identitytoken"] + "-mangled"
    return with_auth(req, base64.urlsafe_b64encode(json.dumps(obj).encode()).decode())


# Passes on an identity token other than the one it was given.
MANGLES_IDENTITY_TOKEN = Deviation(
    "mangles-identity-token",
    match=lambda req: is_pull(req) and "identitytoken" in (decoded_auth(req) or {}),
    request=_mangle_identity_token,
)


def _another_repository(req: Request) -> Request:
    name, _, _ = split_name(req.param("fromImage") or "")
    # A tag no repository has: the engine asks for a token, then nothing is left behind.
    return req.with_params(fromImage=name.rsplit("/", 1)[0] + "/multi", tag="ec-no-such-tag")


# Asks the token endpoint for more than the pulled repository (modelled by the engine
# reading another repository of the same registry on the way).
WIDER_SCOPE = StreamDeviation(
    "asks-another-repository-scope",
    match=lambda req: (
        is_pull(req)
        and auth_header(req) is not None
        and "/single" in (req.param("fromImage") or "")
    ),
    prelude=_another_repository,
)


def _host(reference: str) -> str:
    return reference.split("/", 1)[0]


# Sends credentials only to the registry their serveraddress names (as the containerd
# image store does).
SCOPED_CREDENTIALS = Deviation(
    "credentials-only-for-their-registry",
    match=lambda req: (
        is_pull(req)
        and "serveraddress" in (decoded_auth(req) or {})
        and decoded_auth(req)["serveraddress"] != _host(req.param("fromImage") or "")
    ),
    request=lambda req: with_auth(req, None),
)
# Reads base64url, unpadded base64url and standard base64 alike (re-encoded for Docker).
LENIENT_DECODER = Deviation(
    "decodes-any-base64",
    match=lambda req: is_pull(req) and decoded_auth(req) is not None,
    request=lambda req: with_auth(
        req, base64.urlsafe_b64encode(json.dumps(decoded_auth(req)).encode()).decode()
    ),
)


def _append_password(req: Request, resp: Response) -> Response:
    password = (decoded_auth(req) or {}).get("password")
    if not password or not refused(resp):
        return resp
    if resp.status >= 400:
        try:
            message = json.loads(resp.body).get("message", "")
        except ValueError:
            message = resp.body.decode("utf-8", "replace")
        return Response.json(resp.status, {"message": f"{message} (password {password})"})
    lines = resp.lines()
    last = dict(lines[-1])
    text = f"{last.get('error', '')} (password {password})"
    last.update(error=text, errorDetail={"message": text})
    return Response.stream(lines[:-1] + [last])


def _import_under_pulled_name(req: Request) -> Request:
    """An import that makes an image under the name being pulled."""
    name = f"{req.param('fromImage')}:{req.param('tag')}"
    return Request(
        method="POST",
        path=req.path,
        query=(("fromSrc", "-"), ("repo", name)),
        headers={"content-type": "application/x-tar"},
        body=archives.rootfs({"etc/ectest-left-behind": f"{name}\n".encode()}),
    )


# Leaves an image under the name of a pull of the protected repository (an import the proxy
# sends first): the refusal is still reported (AUTH-002), the image is left (AUTH-015).
REFUSED_PULL_LEAVES_IMAGE = StreamDeviation(
    "refused-pull-leaves-an-image",
    match=lambda req: is_pull(req) and "/single" in (req.param("fromImage") or ""),
    prelude=_import_under_pulled_name,
)


# Appends the password it was given to its error messages.
PASSWORD_IN_ERRORS = Deviation(
    "password-in-error-messages",
    match=lambda req: is_pull(req) and auth_header(req) is not None,
    response=_append_password,
)

NO_CREDENTIALS = "the registry did not receive the credentials given"
NO_TOKEN_CREDENTIALS = "the token endpoint did not receive the credentials given"

CASES = [
    Case("AUTH-001", "pass"),
    Case("AUTH-001", "fail", (STRIPS_AUTH,), reason=NO_CREDENTIALS),
    Case("AUTH-001", "fail", (STANDARD_ALPHABET,), reason=NO_CREDENTIALS),
    Case("AUTH-002", "pass"),
    Case(
        "AUTH-002", "fail", (REFUSAL_AS_SUCCESS,), reason="a client cannot tell the request failed"
    ),
    # Reports the refusal: what it leaves is AUTH-015's.
    Case("AUTH-002", "pass", (REFUSED_PULL_LEAVES_IMAGE,)),
    # Docker 20.10 answers 500: reported, not hidden
    Case("AUTH-003", "fail", reason="expected HTTP 404"),
    Case("AUTH-003", "pass", (REFUSAL_AS_404,)),
    Case("AUTH-004", "pass"),
    Case("AUTH-004", "fail", (STRICT_HEADER,), reason="answered HTTP 400"),
    # INFO: Docker 20.10 drops the last partial base64 group
    Case("AUTH-005", "fail", reason="answered HTTP 500"),
    Case("AUTH-005", "pass", (REPADS,)),
    Case("AUTH-005", "fail", (REQUIRES_PADDING,), reason="answered HTTP 400"),
    Case("AUTH-006", "pass"),
    Case("AUTH-006", "fail", (TOKEN_CRASH,), reason="answered HTTP 500"),
    Case("AUTH-007", "pass"),
    Case("AUTH-007", "fail", (STRIPS_AUTH,), reason=NO_TOKEN_CREDENTIALS),
    Case("AUTH-007", "fail", (STANDARD_ALPHABET,), reason=NO_TOKEN_CREDENTIALS),
    Case("AUTH-008", "pass"),
    Case(
        "AUTH-008",
        "fail",
        (MANGLES_IDENTITY_TOKEN,),
        reason="no refresh-token grant with the identity token given",
    ),
    Case("AUTH-009", "pass"),
    Case("AUTH-009", "fail", (STRIPS_AUTH,), reason="not sent as the Bearer token"),
    Case("AUTH-010", "pass"),
    Case("AUTH-010", "fail", (WIDER_SCOPE,), reason="the scope must be"),
    # INFO: Docker 20.10 sends credentials to any registry
    Case("AUTH-011", "fail", reason="were sent to this one's token endpoint"),
    Case("AUTH-011", "pass", (SCOPED_CREDENTIALS,)),
    Case("AUTH-012", "pass"),
    Case("AUTH-012", "fail", (STRICT_HEADER,), reason="answered HTTP 400"),
    # INFO: Docker 20.10 drops unpadded and standard-base64 credentials
    Case("AUTH-013", "fail", reason=NO_TOKEN_CREDENTIALS),
    Case("AUTH-013", "pass", (LENIENT_DECODER,)),
    Case("AUTH-014", "pass"),
    Case(
        "AUTH-014",
        "fail",
        (PASSWORD_IN_ERRORS,),
        reason="shows what X-Registry-Auth carried: ['the password in",
    ),
    Case("AUTH-015", "pass"),
    Case(
        "AUTH-015", "fail", (REFUSED_PULL_LEAVES_IMAGE,), reason="the engine left an image behind"
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_auth_verdicts(case, judge):
    check(case, judge(case))


# -- secrets --------------------------------------------------------------------------------

SECRETS = (SUITE.PASSWORD, SUITE.WRONG_PASSWORD, SUITE.IDENTITY_TOKEN)
_B64_RUN = re.compile(r"[A-Za-z0-9+/_=-]{16,}")


def secret_leaks(text: str) -> list[str]:
    """Where a lab secret shows in ``text``: as is, JSON-escaped, or inside base64."""
    found = []
    for secret in SECRETS:
        forms = {
            secret,
            json.dumps(secret)[1:-1],
            secret.replace(">", "\\u003e"),
            json.dumps(json.dumps(secret)[1:-1])[1:-1],
        }
        found += [f"{secret[:4]}… as {form[:12]!r}" for form in forms if form in text]
    for run in _B64_RUN.findall(text):
        for decode in (base64.urlsafe_b64decode, base64.b64decode):
            try:
                decoded = decode(run + "=" * (-len(run) % 4))
            except (ValueError, binascii.Error):
                continue
            found += [
                f"{s[:4]}… inside base64 {run[:12]}…" for s in SECRETS if s.encode() in decoded
            ]
    return found


def report_texts(report_dir: Path) -> dict[str, str]:
    return {
        p.name: p.read_text(errors="replace") for p in sorted(report_dir.iterdir()) if p.is_file()
    }


def test_secret_scan_finds_what_it_looks_for():
    header = base64.urlsafe_b64encode(json.dumps({"password": SUITE.PASSWORD}).encode())
    assert secret_leaks(f"x {SUITE.PASSWORD} y")
    assert secret_leaks(json.dumps({"m": header.decode().rstrip("=")}))
    assert not secret_leaks("nothing to see, <redacted>")


def test_full_run_reports_hold_no_password(docker_suite):
    results = docker_suite.outcome.results
    assert results is not None
    ran = {r["id"] for r in results["requirements"]}
    assert {"AUTH-001", "AUTH-002", "AUTH-005", "AUTH-006"} <= ran, ran
    leaks = secret_leaks(json.dumps(results)) + secret_leaks(docker_suite.outcome.output)
    assert not leaks, f"the full run's results.json or output shows a secret: {leaks}"


def test_echoed_credentials_are_redacted(docker, tmp_path):
    with DeviantProxy(docker.target, [LEAKS_CREDENTIALS]) as proxy:
        out = run_suite(
            proxy.target,
            tmp_path,
            requirements=["AUTH-001", "AUTH-002", "AUTH-003", "AUTH-005", "AUTH-006"],
        )
    assert LEAKS_CREDENTIALS.hits, "the proxy never saw an X-Registry-Auth header"
    assert out.results is not None, out.output[-3000:]
    texts = report_texts(tmp_path)
    assert "results.json" in texts, sorted(texts)
    assert "<redacted>" in texts["results.json"], "nothing was echoed into the report"
    leaks = {name: secret_leaks(text) for name, text in texts.items()}
    leaks["output"] = secret_leaks(out.output)
    assert not any(leaks.values()), f"an echoed secret reached a report: {leaks}"
