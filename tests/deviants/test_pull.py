"""Each pull-suite requirement fails against an engine that deviates in exactly that way.

The proxy cannot reach the lab registry: every deviation bends the engine's side
(what is forwarded, what comes back, or the inspect that follows). Rows without
a deviation are plain Docker 20.10; where Docker itself deviates (PULL-019, INFO),
a fixing proxy shows the check passes on an engine that behaves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from urllib.parse import quote

import httpx
import pytest

from deviant_proxy import Deviation, Request, Response
from deviant_proxy.cases import Case, check
from deviant_proxy.platforms import host_views
from deviant_proxy.predicates import (
    has_error_line,
    inspected_name,
    is_pull,
    pulling,
    refused,
    rewrite_json,
    split_name,
    success_stream,
)
from engine_conformance.engine.target import Target

# -- helpers --------------------------------------------------------------------------------


def failures_as(make):
    """A response rewrite: every failed pull (status or error line) becomes ``make(req, resp)``."""

    def rewrite(req: Request, resp: Response) -> Response:
        return make(req, resp) if refused(resp) else resp

    return rewrite


def json_error(status: int):
    def make(req: Request, resp: Response) -> Response:
        return Response.json(status, {"message": f"pull failed (was HTTP {resp.status})"})

    return make


def in_stream_error(req: Request, resp: Response) -> Response:
    message = "manifest unknown"
    return Response.stream(
        [
            {"status": f"Pulling from {req.param('fromImage')}"},
            {"errorDetail": {"message": message}, "error": message},
        ]
    )


# -- PULL-001..007: naming what to pull -----------------------------------------------------

# Pulls v2 when asked for v1.
WRONG_TAG = Deviation(
    "pulls-another-tag",
    match=lambda req: is_pull(req) and req.param("tag") == "v1",
    request=lambda req: req.with_params(tag="v2"),
)


def _ignore_tag_in_name(req: Request) -> Request:
    name, _, _ = split_name(req.param("fromImage") or "")
    return req.with_params(fromImage=name, tag="latest")


# Reads only the repository from fromImage: its tag is lost.
IGNORES_TAG_IN_NAME = Deviation(
    "ignores-tag-in-fromImage",
    match=lambda req: (
        is_pull(req)
        and not req.param("tag")
        and split_name(req.param("fromImage") or "")[1] is not None
    ),
    request=_ignore_tag_in_name,
)
# Lets the tag inside fromImage win: the tag parameter is dropped.
NAME_TAG_WINS = Deviation(
    "tag-in-fromImage-wins",
    match=lambda req: (
        is_pull(req)
        and bool(req.param("tag"))
        and split_name(req.param("fromImage") or "")[1] is not None
    ),
    request=lambda req: req.with_params(tag=None),
)


def _digest_to_v1(req: Request) -> Request:
    name, _, _ = split_name(req.param("fromImage") or "")
    return req.with_params(fromImage=f"{name}:v1")


# Drops the digest of fromImage and pulls a tag instead.
DROPS_DIGEST = Deviation(
    "drops-digest-in-fromImage",
    match=lambda req: (
        is_pull(req) and "@" in (req.param("fromImage") or "") and not req.param("tag")
    ),
    request=_digest_to_v1,
)
# Drops the digest, whether in fromImage or given as tag: with no tag left, every tag is
# pulled, the one the digest names among them.
STRIPS_DIGEST = Deviation(
    "strips-digest-pulls-every-tag",
    match=lambda req: (
        is_pull(req)
        and (
            "@" in (req.param("fromImage") or "") or (req.param("tag") or "").startswith("sha256:")
        )
    ),
    request=lambda req: req.with_params(
        fromImage=split_name(req.param("fromImage") or "")[0], tag=None
    ),
)
# Takes a digest given as tag for a tag name it does not have: pulls v1.
DIGEST_TAG_AS_V1 = Deviation(
    "digest-as-tag-ignored",
    match=lambda req: is_pull(req) and (req.param("tag") or "").startswith("sha256:"),
    request=lambda req: req.with_params(tag="v1"),
)
# Lets tag win over a digest in fromImage.
TAG_BEATS_DIGEST = Deviation(
    "tag-beats-digest",
    match=lambda req: (
        is_pull(req) and "@" in (req.param("fromImage") or "") and bool(req.param("tag"))
    ),
    request=lambda req: req.with_params(fromImage=split_name(req.param("fromImage") or "")[0]),
)
# Pulls only latest when no tag is given.
ONLY_LATEST = Deviation(
    "no-tag-pulls-latest-only",
    match=lambda req: (
        is_pull(req)
        and not req.param("tag")
        and split_name(req.param("fromImage") or "")[1:] == (None, None)
    ),
    request=lambda req: req.with_params(tag="latest"),
)

# -- PULL-008: Id and RepoDigests -----------------------------------------------------------


def _rewrite_inspect(edit):
    return lambda req, resp: rewrite_json(resp, edit)


NO_REPO_DIGESTS = Deviation(
    "no-repo-digests",
    match=lambda req: bool(inspected_name(req)),
    response=_rewrite_inspect(lambda o: o.__setitem__("RepoDigests", [])),
)
# Records the config digest where the manifest digest belongs.
CONFIG_AS_REPO_DIGEST = Deviation(
    "config-digest-in-repo-digests",
    match=lambda req: bool(inspected_name(req)),
    response=_rewrite_inspect(
        lambda o: o.__setitem__(
            "RepoDigests", [d.split("@")[0] + "@" + o["Id"] for d in o.get("RepoDigests") or []]
        )
    ),
)

# -- PULL-009/010: pulling again ------------------------------------------------------------

# Where the engine behind the proxy is, for a deviation that acts on it (set by the test).
ENGINE: dict[str, str] = {}


def redownloads() -> Deviation:
    """An engine that forgets what it has: the image is removed before a repeat pull."""
    seen: set[tuple[str | None, str | None]] = set()

    def request(req: Request) -> Request:
        key = (req.param("fromImage"), req.param("tag"))
        if key in seen:
            name = key[0] + (f":{key[1]}" if key[1] else "")
            with Target.parse(ENGINE["target"]).http_client(httpx.Timeout(30.0)) as http:
                http.delete(f"/images/{quote(name, safe='/:@')}", params={"force": "1"})
        seen.add(key)
        return req

    return Deviation("redownloads-on-repeat", match=is_pull, request=request)


REDOWNLOADS = redownloads()
SAYS_DOWNLOADED = Deviation(
    "repeat-says-downloaded",
    match=is_pull,
    response=lambda req, resp: resp.replace(
        body=resp.body.replace(b"Image is up to date", b"Downloaded newer image")
    ),
)

# -- PULL-011..014, 020: failures -----------------------------------------------------------

HIDES_FAILURE = Deviation(
    "failure-as-200-success",
    match=is_pull,
    response=failures_as(lambda req, resp: success_stream(req)),
)
IN_STREAM_FAILURE = Deviation(
    "failure-as-200-error-line", match=is_pull, response=failures_as(in_stream_error)
)
FAILURE_IS_500 = Deviation("failure-as-500", match=is_pull, response=failures_as(json_error(500)))
FAILURE_IS_TEXT_404 = Deviation(
    "failure-as-text-404",
    match=is_pull,
    response=failures_as(
        lambda req, resp: Response(404, {"Content-Type": "text/plain"}, b"not found\n")
    ),
)
# The engine never sees scratch: the proxy answers for it.
SCRATCH_IS_404 = Deviation(
    "scratch-is-404",
    match=lambda req: is_pull(req) and req.param("fromImage") == "scratch",
    answer=lambda req: Response.json(404, {"message": "repository scratch not found"}),
)

# -- PULL-015..019: platform ----------------------------------------------------------------

DROPS_PLATFORM = Deviation(
    "drops-platform",
    match=lambda req: is_pull(req) and bool(req.param("platform")),
    request=lambda req: req.with_params(platform=None),
)
# Pulls the right manifest, but its inspect does not report the variant.
NO_VARIANT = Deviation(
    "inspect-without-variant",
    match=lambda req: bool(inspected_name(req)),
    response=_rewrite_inspect(lambda o: o.pop("Variant", None)),
)
# The default view shows another image than the one pulled (its layers are not the platform's).
DEFAULT_VIEW_ANOTHER = Deviation(
    "default-inspect-shows-another-image",
    match=lambda req: "/multi" in (inspected_name(req) or "") and not req.param("platform"),
    response=_rewrite_inspect(
        lambda o: o.__setitem__("RootFS", {"Type": "layers", "Layers": ["sha256:" + "e" * 64]})
    ),
)


def _as_host_image(obj: dict) -> None:
    obj.update(Os="linux", Architecture="amd64")
    obj.pop("Variant", None)
    obj["RootFS"] = {"Type": "layers", "Layers": ["sha256:" + "e" * 64]}


# Docker 29 (containerd image store) after a pull for a platform that is not the host's: the
# default inspect is the host's view of the index, empty (Os "", Architecture "", no layers);
# the platform-aware one (?platform=, API 1.49 on) shows the image. Docker 20.10 behind a proxy
# that claims API 1.49 and blanks that default view; it ignores platform= and shows the image.
DOCKER29_VIEWS = host_views("1.49", "1.41")
# ... judged at 1.44, where the engine serves no platform-aware view.
DOCKER29_VIEWS_AT_144 = host_views("1.49", "1.41", name="host-views-of-docker-29-judged-at-1.44")
# ... whose platform-aware view shows another image (the host's), or drops the Variant.
PLATFORM_VIEW_ANOTHER = host_views(
    "1.49", "1.41", platform_view=_as_host_image, name="platform-view-shows-the-host-image"
)
PLATFORM_VIEW_NO_VARIANT = host_views(
    "1.49",
    "1.41",
    platform_view=lambda o: o.pop("Variant", None),
    name="platform-view-without-variant",
)
MISSING_FALLS_BACK = Deviation(
    "missing-platform-falls-back",
    match=lambda req: is_pull(req) and req.param("platform") == "linux/s390x",
    request=lambda req: req.with_params(platform=None),
)
BAD_PLATFORM_IN_STREAM = Deviation(
    "bad-platform-in-stream",
    match=lambda req: is_pull(req) and bool(req.param("platform")),
    response=lambda req, resp: in_stream_error(req, resp) if resp.status == 400 else resp,
)
READS_PLATFORM_AT_131 = Deviation(
    "reads-platform-at-1.31",
    match=lambda req: is_pull(req) and req.version == "1.31",
    request=lambda req: req.replace(path=f"/v1.41{req.endpoint}"),
)
_WARN = re.compile(rb"warn", re.IGNORECASE)


def _add_warning(req: Request, resp: Response) -> Response:
    if resp.status != 200 or _WARN.search(resp.body) or has_error_line(resp):
        return resp
    warning = {
        "status": f"WARNING: {req.param('fromImage')} does not match the specified "
        f"platform {req.param('platform')}"
    }
    return Response.stream(resp.lines() + [warning])


# A conforming engine for PULL-019, where Docker pulls single (amd64) for linux/arm64
# without a word: the proxy adds the warning.
WARNS_ON_MISMATCH = Deviation(
    "warns-on-mismatch",
    match=lambda req: is_pull(req) and bool(req.param("platform")),
    response=_add_warning,
)
STRIPS_WARNINGS = Deviation(
    "strips-warnings",
    match=lambda req: is_pull(req) and bool(req.param("platform")),
    response=lambda req, resp: (
        Response.stream([m for m in resp.lines() if not _WARN.search(json.dumps(m).encode())])
        if resp.status == 200
        else resp
    ),
)

# -- PULL-022..025: what the registry decides (issue 13) -------------------------------------

# Answers a pull by digest from the other repository from what it holds: never asks.
TRUSTS_HELD_DIGEST = Deviation(
    "answers-digest-from-what-it-holds", match=pulling("/oci@sha256:"), answer=success_stream
)


def repeated(fragment: str) -> Callable[[Request], bool]:
    """Matches a pull of ``fragment``'s repository that was pulled before (the re-pull)."""
    seen: set[tuple[str | None, str | None]] = set()
    first = pulling(fragment)

    def match(req: Request) -> bool:
        if not first(req):
            return False
        key = (req.param("fromImage"), req.param("tag"))
        if key in seen:
            return True
        seen.add(key)
        return False

    return match


def _up_to_date(req: Request) -> Response:
    ref = f"{req.param('fromImage')}:{req.param('tag')}"
    return Response.stream(
        [
            {"status": f"Pulling from {req.param('fromImage')}", "id": req.param("tag")},
            {"status": f"Status: Image is up to date for {ref}"},
        ]
    )


def _drop_held_image(req: Request) -> Request:
    """Deletes the image the pull's name names now, by its ID, and lets the pull go on."""
    name = f"{req.param('fromImage')}:{req.param('tag')}"
    with Target.parse(ENGINE["target"]).http_client(httpx.Timeout(30.0)) as http:
        found = http.get(f"/images/{quote(name, safe='/:@')}/json")
        if found.status_code == 200:
            http.delete(f"/images/{found.json()['Id']}", params={"force": "1"})
    return req


# Keeps the tag where it was: a re-pull asks nothing and says "up to date".
STALE_TAG = Deviation("re-pull-keeps-the-old-image", match=repeated("/moving"), answer=_up_to_date)
# Deletes the image a tag named when the re-pull moves the tag.
DROPS_OLD_IMAGE = Deviation(
    "re-pull-deletes-the-old-image", match=repeated("/moving"), request=_drop_held_image
)


def _refuse_after_reading(req: Request, resp: Response) -> Response:
    """The engine read the manifest, then refused it: the image goes, an error line ends."""
    _drop_held_image(req)
    return Response.stream(
        [
            {"status": f"Pulling from {req.param('fromImage')}", "id": req.param("tag")},
            {"errorDetail": {"message": "no layers in manifest"}, "error": "no layers in manifest"},
        ]
    )


# Fetches the manifest of an image without layers and refuses it.
REFUSES_NO_LAYERS = Deviation(
    "refuses-an-image-without-layers", match=pulling("/no-layers"), response=_refuse_after_reading
)

# Pulls every tag when asked for one.
ONE_TAG_PULLS_EVERY_TAG = Deviation(
    "one-tag-pulls-every-tag",
    match=lambda req: pulling("/single")(req) and req.param("tag") == "v1",
    request=lambda req: req.with_params(tag=None),
)

NOT_THERE = "does not exist"
CANNOT_TELL = "a client cannot tell the request failed"

CASES = [
    Case("PULL-001", "pass"),
    Case("PULL-001", "fail", (WRONG_TAG,), reason=NOT_THERE),
    Case("PULL-002", "pass"),
    Case("PULL-002", "fail", (IGNORES_TAG_IN_NAME,), reason=NOT_THERE),
    Case("PULL-003", "pass"),
    Case("PULL-003", "fail", (NAME_TAG_WINS,), reason=NOT_THERE),
    Case("PULL-004", "pass"),
    Case("PULL-004", "fail", (DROPS_DIGEST,), reason=NOT_THERE),
    Case("PULL-004", "fail", (STRIPS_DIGEST,), reason="must pull exactly the manifest"),
    Case("PULL-005", "pass"),
    Case("PULL-005", "fail", (DIGEST_TAG_AS_V1,), reason=NOT_THERE),
    Case("PULL-005", "fail", (STRIPS_DIGEST,), reason="must pull exactly the manifest"),
    Case("PULL-006", "pass"),
    Case("PULL-006", "fail", (TAG_BEATS_DIGEST,), reason="the digest did not win over tag"),
    Case("PULL-007", "pass"),
    Case("PULL-007", "fail", (ONLY_LATEST,), reason="were not pulled"),
    Case("PULL-008", "pass"),
    Case("PULL-008", "fail", (NO_REPO_DIGESTS,), reason="RepoDigests of"),
    Case("PULL-008", "fail", (CONFIG_AS_REPO_DIGEST,), reason="RepoDigests of"),
    Case("PULL-009", "pass"),
    Case("PULL-009", "fail", (REDOWNLOADS,), reason="fetched layer blob(s)"),
    Case("PULL-010", "pass"),
    # INFO: judged fail, never fails a run
    Case("PULL-010", "fail", (SAYS_DOWNLOADED,), reason="do not say the image is up to date"),
    Case("PULL-011", "pass"),
    Case("PULL-011", "fail", (HIDES_FAILURE,), reason="expected HTTP 404"),
    Case("PULL-011", "fail", (IN_STREAM_FAILURE,), reason="expected HTTP 404"),
    Case("PULL-011", "fail", (FAILURE_IS_TEXT_404,), reason="not an ErrorResponse"),
    Case("PULL-012", "pass"),
    Case("PULL-012", "fail", (FAILURE_IS_500,), reason="expected HTTP 404"),
    Case("PULL-013", "pass"),
    Case("PULL-013", "fail", (FAILURE_IS_500,), reason="expected HTTP 400"),
    Case("PULL-014", "pass"),
    Case("PULL-014", "fail", (SCRATCH_IS_404,), reason="expected HTTP 403"),
    Case("PULL-015", "pass"),
    # the journal shows the native manifest fetched, not the one asked for
    Case(
        "PULL-015",
        "fail",
        (DROPS_PLATFORM,),
        reason="journal shows the index's linux/amd64 manifest(s) fetched",
    ),
    Case("PULL-015", "fail", (DEFAULT_VIEW_ANOTHER,), reason="the default view shows another"),
    # the empty default view is no evidence: the journal and the platform-aware view decide
    Case("PULL-015", "pass", DOCKER29_VIEWS, api_version="1.49"),
    Case("PULL-015", "pass", DOCKER29_VIEWS_AT_144, api_version="1.44"),
    Case(
        "PULL-015",
        "fail",
        PLATFORM_VIEW_ANOTHER,
        api_version="1.49",
        reason="the platform-aware view (?platform=",
    ),
    Case("PULL-016", "pass"),
    Case("PULL-016", "fail", (MISSING_FALLS_BACK,), reason=CANNOT_TELL),
    Case("PULL-016", "fail", (HIDES_FAILURE,), reason=CANNOT_TELL),
    Case("PULL-017", "pass"),
    Case("PULL-017", "fail", (BAD_PLATFORM_IN_STREAM,), reason="expected HTTP 400"),
    Case("PULL-018", "pass"),
    Case("PULL-018", "fail", (READS_PLATFORM_AT_131,), reason="platform was read below 1.32"),
    # INFO: Docker pulls single for linux/arm64 without a warning
    Case("PULL-019", "fail", reason="gave no warning"),
    Case("PULL-019", "pass", (WARNS_ON_MISMATCH,)),
    Case("PULL-019", "fail", (STRIPS_WARNINGS,), reason="gave no warning"),
    Case("PULL-020", "pass"),
    Case("PULL-020", "fail", (HIDES_FAILURE,), reason=CANNOT_TELL),
    Case("PULL-021", "pass"),
    Case("PULL-021", "fail", (NO_VARIANT,), reason="is inspected with Variant"),
    Case("PULL-021", "pass", DOCKER29_VIEWS, api_version="1.49"),  # the platform-aware view
    Case(
        "PULL-021",
        "fail",
        PLATFORM_VIEW_NO_VARIANT,
        api_version="1.49",
        reason="is inspected with Variant None (the platform-aware view)",
    ),
    # at 1.44 Docker 29 serves no view of the image pulled: nothing to read the Variant from
    Case(
        "PULL-021",
        "error",
        DOCKER29_VIEWS_AT_144,
        api_version="1.44",
        reason="so its Variant cannot be read",
    ),
    Case("PULL-022", "pass"),
    Case("PULL-022", "fail", (TRUSTS_HELD_DIGEST,), reason="did not ask the registry's"),
    Case("PULL-022", "fail", (HIDES_FAILURE,), reason=CANNOT_TELL),
    Case("PULL-023", "pass"),
    Case("PULL-023", "fail", (STALE_TAG,), reason="(it is still the old one)"),
    Case("PULL-023", "fail", (DROPS_OLD_IMAGE,), reason="no longer exists"),
    Case("PULL-024", "pass"),
    Case("PULL-024", "fail", (REFUSES_NO_LAYERS,), reason="stream reports an error"),
    Case("PULL-025", "pass"),
    Case("PULL-025", "fail", (ONE_TAG_PULLS_EVERY_TAG,), reason="must pull v1 only"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_pull_verdicts(case, judge, docker):
    ENGINE["target"] = docker.target
    check(case, judge(case))
