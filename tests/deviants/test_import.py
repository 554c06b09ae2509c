"""Each import-suite requirement fails against an engine that deviates in exactly that way.

Rows without a deviation are plain Docker 20.10; where Docker itself deviates
(STOPSIGNAL, and the architecture of an import at API >= 1.42), a fixing proxy
shows that the check passes on an engine that conforms. A proxy that changes what
an engine records (an image's Os, say) edits the inspect answers for the images
it imported (:func:`recording`).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from urllib.parse import unquote_plus

import pytest

from deviant_proxy import Deviation, Request, Response
from deviant_proxy.cases import Case, check
from deviant_proxy.predicates import (
    inspected_name,
    is_body_import,
    is_create,
    is_url_import,
    rewrite_json,
)
from deviant_proxy.streaming import StreamDeviation
from engine_conformance.base import archives

# -- helpers ---------------------------------------------------------------------------


def is_archive(body: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
            tar.getmembers()
        return True
    except (tarfile.TarError, EOFError, OSError):
        return False


def drop_changes(prefixes: tuple[str, ...]):
    """A request rewrite that leaves out the changes starting with ``prefixes``."""

    def rewrite(req: Request) -> Request:
        kept = [c for c in req.params("changes") if not c.upper().startswith(prefixes)]
        return req.with_params(changes=kept)

    return rewrite


def has_change(prefix: str):
    return lambda req: (
        is_create(req) and any(c.upper().startswith(prefix) for c in req.params("changes"))
    )


def recording(
    name: str,
    imports: Callable[[Request], bool],
    edit: Callable[[dict, Request], None],
    forward: Callable[[Request], Request] = lambda req: req,
) -> Deviation:
    """An engine that records the images of the imports ``imports`` matches differently:
    ``edit(inspected, import_request)`` changes the inspect answer for each one's repo.
    ``forward`` rewrites what those imports send to the real engine."""
    sent: dict[str, Request] = {}

    def on_request(req: Request) -> Request:
        if not imports(req):
            return req
        sent[req.param("repo") or ""] = req
        return forward(req)

    def on_response(req: Request, resp: Response) -> Response:
        name = inspected_name(req)
        if name not in sent:
            return resp
        return rewrite_json(resp, lambda obj: edit(obj, sent[name]))

    return Deviation(
        name,
        match=lambda req: imports(req) or inspected_name(req) in sent,
        request=on_request,
        response=on_response,
    )


def checks_import(label: str, url: bool = False) -> Callable[[Request], bool]:
    """Matches the imports of the checks whose images are named ``<prefix>/<label>-N``
    (never the preflight's canary), from the body or, with ``url``, from a URL."""

    def match(req: Request) -> bool:
        kind = is_url_import(req) if url else is_body_import(req)
        return kind and f"/{label}" in (req.param("repo") or "")

    return match


def with_last_message(obj: dict):
    def rewrite(req: Request, resp: Response) -> Response:
        lines = resp.lines()
        if resp.status != 200 or not lines:
            return resp
        return Response.stream(lines[:-1] + [obj], resp.status)

    return rewrite


ERROR_LINE = b'{"errorDetail":{"message":"not an archive"},"error":"not an archive"}\r\n'
OTHER_TAR = archives.rootfs({"etc/substituted-by-the-proxy": b"not what the suite sent\n"})

# -- IMPORT-001/002: the image and its ID -----------------------------------------------

# Claims a successful import without importing anything.
CLAIMS_SUCCESS = Deviation(
    "claims-success",
    match=is_body_import,
    answer=lambda req: Response.stream([{"status": "sha256:" + "0" * 64}]),
)
# Imports, but names another ID in the last message.
WRONG_ID = Deviation(
    "wrong-last-id", match=is_create, response=with_last_message({"status": "sha256:" + "1" * 64})
)
# Imports, but ends the stream with a plain status instead of the ID.
NO_ID = Deviation(
    "no-id-in-last-message",
    match=is_create,
    response=with_last_message({"status": "Import complete"}),
)

# -- IMPORT-003..006: names and message ---------------------------------------------------

IGNORES_REPO = Deviation(
    "ignores-repo", match=is_create, request=lambda req: req.with_params(repo=None)
)
IGNORES_TAG = Deviation(
    "ignores-tag",
    match=lambda req: is_create(req) and bool(req.param("tag")),
    request=lambda req: req.with_params(tag=None),
)
IGNORES_MESSAGE = Deviation(
    "ignores-message",
    match=lambda req: is_create(req) and bool(req.param("message")),
    request=lambda req: req.with_params(message=None),
)
# Records no comment at all for an import.
BLANK_COMMENT = Deviation(
    "blank-history-comment",
    match=lambda req: req.method == "GET" and req.endpoint.endswith("/history"),
    response=lambda req, resp: (
        resp.replace(body=json.dumps([e | {"Comment": ""} for e in json.loads(resp.body)]).encode())
        if resp.status == 200
        else resp
    ),
)

# -- IMPORT-008..014: changes -----------------------------------------------------------------

IGNORES_ONBUILD = Deviation(
    "ignores-onbuild", match=has_change("ONBUILD"), request=drop_changes(("ONBUILD",))
)
# Reads one value of a repeated key, as a form reader's Get() would.
FIRST_CHANGE_ONLY = Deviation(
    "first-change-only",
    match=lambda req: is_create(req) and len(req.params("changes")) > 1,
    request=lambda req: req.with_params(changes=req.params("changes")[:1]),
)
# URI-decodes the values a second time.
DECODES_TWICE = Deviation(
    "decodes-twice",
    match=lambda req: is_create(req) and bool(req.params("changes")),
    request=lambda req: req.with_params(changes=[unquote_plus(c) for c in req.params("changes")]),
)
IGNORES_HEALTHCHECK = Deviation(
    "ignores-healthcheck", match=has_change("HEALTHCHECK"), request=drop_changes(("HEALTHCHECK",))
)
IGNORES_LABEL = Deviation(
    "ignores-label", match=has_change("LABEL"), request=drop_changes(("LABEL",))
)

# A conforming engine for IMPORT-013, where Docker 20.10 refuses STOPSIGNAL: the
# proxy keeps the change from Docker and shows it in the inspected configuration.
_STOPSIGNALS: dict[str, str] = {}


def _stopsignal_request(req: Request) -> Request:
    if not is_create(req):
        return req
    for change in req.params("changes"):
        if change.upper().startswith("STOPSIGNAL"):
            _STOPSIGNALS[req.param("repo") or ""] = change.split(None, 1)[1]
    return drop_changes(("STOPSIGNAL",))(req)


def _stopsignal_response(req: Request, resp: Response) -> Response:
    name = inspected_name(req)
    if name not in _STOPSIGNALS:
        return resp
    return rewrite_json(
        resp, lambda obj: obj["Config"].__setitem__("StopSignal", _STOPSIGNALS[name])
    )


STOPSIGNAL_FIXED = Deviation(
    "stopsignal-fixed",
    match=lambda req: has_change("STOPSIGNAL")(req) or bool(inspected_name(req)),
    request=_stopsignal_request,
    response=_stopsignal_response,
)

DISALLOWED = ("RUN", "FROM", "COPY", "ADD")
# Accepts any instruction (it drops what it cannot apply and imports).
ACCEPTS_ANY_CHANGE = Deviation(
    "accepts-any-change",
    match=lambda req: any(has_change(p)(req) for p in DISALLOWED),
    request=drop_changes(DISALLOWED),
)
# Refuses a bad instruction as a server error.
BAD_CHANGE_IS_500 = Deviation(
    "bad-change-is-500",
    match=ACCEPTS_ANY_CHANGE.match,
    answer=lambda req: Response.json(500, {"message": "invalid change"}),
)

# -- IMPORT-015: compressed archives --------------------------------------------------------

COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
# Imports something else than the compressed archive holds.
ALTERS_COMPRESSED = Deviation(
    "alters-compressed-content",
    match=lambda req: is_body_import(req) and req.body.startswith(COMPRESSED_MAGIC),
    request=lambda req: req.replace(body=OTHER_TAR),
)
NO_XZ = Deviation(
    "no-xz",
    match=lambda req: is_body_import(req) and req.body.startswith(b"\xfd7zXZ\x00"),
    answer=lambda req: Response.json(500, {"message": "unsupported compression"}),
)

# -- IMPORT-016..018: platform ---------------------------------------------------------------

HOST_PLATFORM_ONLY = Deviation(
    "host-platform-only",
    match=lambda req: is_create(req) and "/" in (req.param("platform") or ""),
    answer=lambda req: Response.json(400, {"message": "only the host platform is supported"}),
)


def _as_version(version: str):
    def rewrite(req: Request) -> Request:
        return req.replace(path=f"/v{version}{req.endpoint}") if req.version else req

    return rewrite


# The suite speaks 1.42 to Docker 20.10 (API 1.41), which ignores the architecture.
SPEAKS_142_AS_141 = Deviation(
    "api-1.42-served-as-1.41", match=lambda req: req.version == "1.42", request=_as_version("1.41")
)

# Both rows' engine says it serves 1.42, or the suite would refuse to pin 1.42 at all.
CLAIMS_142 = Deviation(
    "claims-api-1.42",
    match=lambda req: req.endpoint == "/version",
    response=lambda req, resp: rewrite_json(resp, lambda obj: obj.update(ApiVersion="1.42")),
)

# ... and an engine at 1.42 that applies the whole platform, as documented.
_PLATFORMS: dict[str, str] = {}


def _platform_request(req: Request) -> Request:
    if is_create(req) and req.param("platform"):
        _PLATFORMS[req.param("repo") or ""] = req.param("platform") or ""
    return _as_version("1.41")(req)


def _apply_platform(obj: dict, platform: str) -> None:
    parts = platform.split("/")
    obj["Os"] = parts[0]
    if len(parts) > 1:
        obj["Architecture"] = parts[1]
    if len(parts) > 2:
        obj["Variant"] = parts[2]


def _platform_response(req: Request, resp: Response) -> Response:
    name = inspected_name(req)
    if name not in _PLATFORMS:
        return resp
    return rewrite_json(resp, lambda obj: _apply_platform(obj, _PLATFORMS[name]))


PLATFORM_AT_142 = Deviation(
    "api-1.42-with-platform",
    match=SPEAKS_142_AS_141.match,
    request=_platform_request,
    response=_platform_response,
)

# Ignores a platform it cannot parse and imports anyway.
IGNORES_BAD_PLATFORM = Deviation(
    "ignores-bad-platform",
    match=lambda req: is_create(req) and bool(req.param("platform")),
    request=lambda req: req.with_params(platform=None),
)


# The imports of IMPORT-020/021 only: the preflight's canary import must go through.
def checks_url_import(req: Request) -> bool:
    return is_url_import(req) and "/imp-url" in (req.param("repo") or "")


# -- IMPORT-019..021: failures -----------------------------------------------------------------

GARBAGE_OK = Deviation(
    "non-archive-answers-empty-200",
    match=lambda req: is_body_import(req) and not is_archive(req.body),
    answer=lambda req: Response(200, {"Content-Type": "application/json"}, b""),
)
# Reports the error, but has imported something under the name anyway.
GARBAGE_LEAVES_IMAGE = Deviation(
    "non-archive-leaves-image",
    match=GARBAGE_OK.match,
    request=lambda req: req.replace(body=OTHER_TAR),
    response=lambda req, resp: resp.replace(body=resp.body + ERROR_LINE),
)
# Fetches another URL than the one given.
OTHER_URL = Deviation(
    "fetches-another-url",
    match=checks_url_import,
    request=lambda req: req.with_params(fromSrc=(req.param("fromSrc") or "") + ".other"),
)
# Never fetches the URL: imports something else under the name.
IGNORES_URL = Deviation(
    "ignores-url",
    match=checks_url_import,
    request=lambda req: req.with_params(fromSrc="-").replace(body=OTHER_TAR),
)
# Hides a failed download behind a 200 stream with no error.
HIDES_404 = Deviation(
    "hides-url-404",
    match=checks_url_import,
    response=lambda req, resp: (
        Response.stream([{"status": f"Downloading from {req.param('fromSrc')}"}])
        if resp.status >= 400
        else resp
    ),
)
# Tries the URL (the file server answers 404) and reports the failed download, but
# leaves an image under the name.
URL_404_LEAVES_IMAGE = StreamDeviation(
    "url-404-leaves-image",
    match=checks_url_import,
    prelude=lambda req: req.with_params(repo=None),
    request=lambda req: req.with_params(fromSrc="-").replace(body=OTHER_TAR),
    response=lambda req, resp: Response.json(404, {"message": "failed to GET: 404 Not Found"}),
)

# -- IMPORT-022: zeros after the archive ------------------------------------------------------

# Reads the zeros after the end-of-archive blocks as more archive, and fails.
REFUSES_PADDING = Deviation(
    "refuses-zero-padding",
    match=lambda req: is_body_import(req) and req.body.endswith(bytes(1 << 20)),
    answer=lambda req: Response.stream(
        [{"errorDetail": {"message": "invalid tar header"}, "error": "invalid tar header"}]
    ),
)

# -- IMPORT-023..026: platform values --------------------------------------------------------


def _swap_architecture(obj: dict, req: Request) -> None:
    obj["Architecture"] = "arm64" if obj.get("Architecture") != "arm64" else "amd64"


# Gives an import without a platform another architecture than the host's.
NO_PLATFORM_NOT_HOST = recording(
    "no-platform-not-the-hosts",
    lambda req: checks_import("imp-noplat")(req) and not req.param("platform"),
    _swap_architecture,
)
# Records the platform's OS as written, capitals and all.
KEEPS_OS_CASE = recording(
    "keeps-os-case",
    lambda req: (
        checks_import("imp-platcase")(req) and (req.param("platform") or "").split("/")[0].isupper()
    ),
    lambda obj, req: obj.update(Os=(req.param("platform") or "").split("/")[0]),
)


def _unsupported_os(req: Request) -> bool:
    return checks_import("imp-platos")(req) and (req.param("platform") or "").startswith("ectestos")


# Ignores a platform whose OS it cannot run, and imports for the host's.
UNSUPPORTED_OS_AS_HOST = Deviation(
    "unsupported-os-imported-as-host",
    match=_unsupported_os,
    request=lambda req: req.with_params(platform=None),
)
UNSUPPORTED_OS_IS_500 = Deviation(
    "unsupported-os-is-500",
    match=_unsupported_os,
    answer=lambda req: Response.json(500, {"message": "operating system is not supported"}),
)
# Imports it with that OS, as Docker's containerd image store does: conforms too.
UNSUPPORTED_OS_RECORDED = recording(
    "unsupported-os-recorded",
    _unsupported_os,
    lambda obj, req: _apply_platform(obj, req.param("platform") or ""),
    forward=lambda req: req.with_params(platform=None),
)

# -- IMPORT-027/028: fromSrc without a scheme, without a host ----------------------------------


def _schemeless(req: Request) -> bool:
    src = req.param("fromSrc") or ""
    return is_create(req) and src not in ("", "-") and "://" not in src


# Fetches a fromSrc without a scheme over https (the file server speaks http).
SCHEMELESS_AS_HTTPS = Deviation(
    "schemeless-fetched-over-https",
    match=_schemeless,
    request=lambda req: req.with_params(fromSrc="https://" + (req.param("fromSrc") or "")),
)
# Reads it as a path on the engine's own file system.
SCHEMELESS_AS_PATH = Deviation(
    "schemeless-read-as-a-path",
    match=_schemeless,
    answer=lambda req: Response.json(
        500, {"message": f"open {req.param('fromSrc')}: no such file or directory"}
    ),
)


def _hostless(req: Request) -> bool:
    return is_create(req) and (req.param("fromSrc") or "").startswith("http:///")


HOSTLESS_CLAIMS_SUCCESS = Deviation(
    "hostless-url-claims-success",
    match=_hostless,
    answer=lambda req: Response.stream([{"status": "sha256:" + "3" * 64}]),
)
# Reports the failure, but has imported something under the name anyway.
HOSTLESS_LEAVES_IMAGE = Deviation(
    "hostless-url-leaves-image",
    match=_hostless,
    request=lambda req: req.with_params(fromSrc="-").replace(body=OTHER_TAR),
    response=lambda req, resp: Response.json(500, {"message": "no Host in request URL"}),
)

# -- IMPORT-029: a changes value with a comma -----------------------------------------------------

# Splits each changes value at commas and applies the first part only.
SPLITS_AT_COMMAS = Deviation(
    "splits-changes-at-commas",
    match=lambda req: is_create(req) and any("," in c for c in req.params("changes")),
    request=lambda req: req.with_params(changes=[c.split(",")[0] for c in req.params("changes")]),
)

# -- IMPORT-030/031: what a URL import applies ------------------------------------------------

# Each forgets one parameter on a URL import only (a body import is applied in full).
URL_DROPS_CHANGES = Deviation(
    "url-import-drops-changes",
    match=checks_import("imp-", url=True),
    request=lambda req: req.with_params(changes=None),
)
URL_DROPS_MESSAGE = Deviation(
    "url-import-drops-message",
    match=checks_import("imp-", url=True),
    request=lambda req: req.with_params(message=None),
)
URL_DROPS_TAG = Deviation(
    "url-import-drops-tag",
    match=checks_import("imp-", url=True),
    request=lambda req: req.with_params(tag=None),
)

CASES = [
    Case("IMPORT-001", "pass"),
    Case("IMPORT-001", "fail", (CLAIMS_SUCCESS,), reason="no image exists"),
    Case("IMPORT-002", "pass"),
    Case("IMPORT-002", "fail", (WRONG_ID,), reason="the last message names"),
    Case("IMPORT-002", "fail", (NO_ID,), reason="the last stream message is"),
    Case("IMPORT-003", "pass"),
    Case("IMPORT-003", "fail", (IGNORES_REPO,), reason="does not exist"),
    Case("IMPORT-004", "pass"),
    Case("IMPORT-004", "fail", (IGNORES_TAG,), reason="does not exist"),
    Case("IMPORT-005", "pass"),
    Case("IMPORT-005", "fail", (IGNORES_TAG,), reason="did not name the image"),
    Case("IMPORT-006", "pass"),
    Case("IMPORT-006", "fail", (IGNORES_MESSAGE,), reason="the history comment is"),
    Case("IMPORT-007", "pass"),
    # INFO: judged fail, never fails a run
    Case("IMPORT-007", "fail", (BLANK_COMMENT,), reason="nothing says where"),
    Case("IMPORT-008", "pass"),
    Case("IMPORT-008", "fail", (IGNORES_ONBUILD,), reason="Config.OnBuild is"),
    Case("IMPORT-009", "pass"),
    Case("IMPORT-009", "fail", (FIRST_CHANGE_ONLY,), reason="not applied"),
    Case("IMPORT-010", "pass"),
    Case("IMPORT-010", "fail", (DECODES_TWICE,), reason="URI-encoded on the wire"),
    Case("IMPORT-011", "pass"),
    Case("IMPORT-011", "fail", (IGNORES_HEALTHCHECK,), reason="Config.Healthcheck is"),
    Case("IMPORT-012", "pass"),
    Case("IMPORT-012", "fail", (IGNORES_LABEL,), reason="Config.Labels is"),
    # Docker 20.10 refuses STOPSIGNAL: reported, not hidden
    Case("IMPORT-013", "fail", reason="stopsignal"),
    Case("IMPORT-013", "pass", (STOPSIGNAL_FIXED,)),
    Case("IMPORT-014", "pass"),
    Case("IMPORT-014", "fail", (ACCEPTS_ANY_CHANGE,), reason="expected HTTP 400"),
    Case("IMPORT-014", "fail", (BAD_CHANGE_IS_500,), reason="expected HTTP 400"),
    Case("IMPORT-015", "pass"),
    Case("IMPORT-015", "fail", (ALTERS_COMPRESSED,), reason="which is neither the"),
    Case("IMPORT-015", "fail", (NO_XZ,), reason="answered HTTP 500"),
    Case("IMPORT-016", "pass"),
    Case("IMPORT-016", "fail", (HOST_PLATFORM_ONLY,), reason="answered HTTP 400"),
    Case("IMPORT-017", "skip"),  # Docker 20.10 speaks 1.41: the requirement does not apply
    Case(
        "IMPORT-017",
        "fail",
        (SPEAKS_142_AS_141, CLAIMS_142),
        api_version="1.42",
        reason="the image has Os/Architecture/Variant",
    ),
    Case("IMPORT-017", "pass", (PLATFORM_AT_142, CLAIMS_142), api_version="1.42"),
    Case("IMPORT-018", "pass"),
    Case("IMPORT-018", "fail", (IGNORES_BAD_PLATFORM,), reason="expected HTTP 400"),
    Case("IMPORT-019", "pass"),
    Case("IMPORT-019", "fail", (GARBAGE_OK,), reason="a client cannot tell the request failed"),
    # Reports the failure, so IMPORT-019 holds; what it leaves is IMPORT-032's.
    Case("IMPORT-019", "pass", (GARBAGE_LEAVES_IMAGE,)),
    Case("IMPORT-032", "pass"),
    Case("IMPORT-032", "fail", (GARBAGE_LEAVES_IMAGE,), reason="left an image behind"),
    Case("IMPORT-032", "fail", (URL_404_LEAVES_IMAGE,), reason="left an image behind"),
    Case("IMPORT-032", "error", (GARBAGE_OK,), reason="IMPORT-019 judges that"),
    Case("IMPORT-020", "pass"),
    Case("IMPORT-020", "fail", (OTHER_URL,), reason="never fetched that URL"),
    Case("IMPORT-020", "fail", (IGNORES_URL,), reason="never fetched that URL"),
    Case("IMPORT-021", "pass"),
    Case("IMPORT-021", "fail", (HIDES_404,), reason="a client cannot tell the request failed"),
    Case("IMPORT-021", "pass", (URL_404_LEAVES_IMAGE,)),
    Case("IMPORT-022", "pass"),
    Case("IMPORT-022", "fail", (REFUSES_PADDING,), reason="MiB of zeros did not import"),
    Case("IMPORT-023", "pass"),
    Case("IMPORT-023", "fail", (NO_PLATFORM_NOT_HOST,), reason="not the host's"),
    Case("IMPORT-024", "pass"),
    Case("IMPORT-024", "fail", (KEEPS_OS_CASE,), reason="the image's Os is 'LINUX'"),
    Case("IMPORT-025", "skip"),  # Docker 20.10 speaks 1.41 and applies only the OS
    Case(
        "IMPORT-025",
        "fail",
        (SPEAKS_142_AS_141, CLAIMS_142),
        api_version="1.42",
        reason="the image has Os/Architecture",
    ),
    Case("IMPORT-025", "pass", (PLATFORM_AT_142, CLAIMS_142), api_version="1.42"),
    Case("IMPORT-026", "pass"),  # Docker 20.10 refuses it with 400
    Case("IMPORT-026", "pass", (UNSUPPORTED_OS_RECORDED,)),
    Case(
        "IMPORT-026",
        "fail",
        (UNSUPPORTED_OS_AS_HOST,),
        reason="neither refused (400) nor recorded as given",
    ),
    Case("IMPORT-026", "fail", (UNSUPPORTED_OS_IS_500,), reason="expected HTTP 400"),
    Case("IMPORT-027", "pass"),
    Case("IMPORT-027", "fail", (SCHEMELESS_AS_HTTPS,), reason="the engine did not fetch it"),
    Case("IMPORT-027", "fail", (SCHEMELESS_AS_PATH,), reason="the engine did not fetch it"),
    Case("IMPORT-028", "pass"),
    Case(
        "IMPORT-028",
        "fail",
        (HOSTLESS_CLAIMS_SUCCESS,),
        reason="a client cannot tell the request failed",
    ),
    Case("IMPORT-028", "fail", (HOSTLESS_LEAVES_IMAGE,), reason="left an image behind"),
    Case("IMPORT-029", "pass"),
    Case("IMPORT-029", "fail", (SPLITS_AT_COMMAS,), reason="Config.Entrypoint is"),
    Case("IMPORT-030", "pass"),
    Case("IMPORT-030", "fail", (URL_DROPS_CHANGES,), reason="imported from a URL: changes='CMD"),
    Case(
        "IMPORT-030",
        "fail",
        (URL_DROPS_MESSAGE,),
        reason="imported from a URL: the history comment is",
    ),
    Case("IMPORT-031", "pass"),
    Case("IMPORT-031", "fail", (URL_DROPS_TAG,), reason="imported from a URL: repo="),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_import_verdicts(case, judge):
    check(case, judge(case))
