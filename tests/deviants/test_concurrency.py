"""Each concurrency requirement fails against an engine that mishandles requests at once.

Rows without a deviation are plain Docker 20.10: it carries out both requests, but
fetches the image configuration once per pull (CONCURRENCY-002, INFO); a proxy that
holds the second pull back until the first has ended shows that check passing. Two
pulls that succeed but add a second image beside the one pulled (an import the proxy
sends first) fail CONCURRENCY-006 and pass CONCURRENCY-001. Two
pulls the registry refuses (CONCURRENCY-004/005) are bent by hiding the later one's
failure, or by an image left under the name (an import the proxy sends first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from deviant_proxy import Deviation, Request, Response
from deviant_proxy.cases import Case, check
from deviant_proxy.predicates import is_body_import, pulling, refused, success_stream
from deviant_proxy.streaming import StreamDeviation
from engine_conformance.base import archives

_CONCURRENT = pulling("/concurrent")


class EverySecond:
    """Matches every second pull ``match`` picks (default: the concurrency suite's image),
    the later of a pair."""

    def __init__(self, match: Callable[[Request], bool] = _CONCURRENT) -> None:
        self._match = match
        self._count = 0
        self._lock = threading.Lock()

    def __call__(self, req: Request) -> bool:
        if not self._match(req):
            return False
        with self._lock:
            self._count += 1
            return self._count % 2 == 0


class OneAtATime:
    """Holds a pull of the image until the one before it has been answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def request(self, req: Request) -> Request:
        self._lock.acquire()
        return req

    def response(self, req: Request, resp: Response) -> Response:
        self._lock.release()
        return resp


_BUSY = {"message": "another pull is in progress, try again later"}

# Refuses a pull of an image another request is pulling.
REFUSES_SECOND_PULL = Deviation(
    "refuses-a-second-pull", match=EverySecond(), answer=lambda req: Response.json(500, _BUSY)
)
_SERIAL = OneAtATime()
# Serves one pull at a time: the second finds the image there and fetches nothing.
SERIAL_PULLS = Deviation(
    "one-pull-at-a-time", match=_CONCURRENT, request=_SERIAL.request, response=_SERIAL.response
)
# Refuses an import while a pull is under way.
REFUSES_IMPORT = Deviation(
    "refuses-import-during-pull",
    match=lambda req: is_body_import(req) and "concurrent-import" in (req.param("repo") or ""),
    answer=lambda req: Response.json(500, _BUSY),
)

_REFUSED = pulling("/concurrent-refused-")


def _as_success(req: Request, resp: Response) -> Response:
    return success_stream(req) if refused(resp) else resp


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


def _import_another_image(req: Request) -> Request:
    """An import that makes a new image under another tag of the repository being pulled."""
    return _import_under_pulled_name(req.with_params(tag="ectest-extra"))


# Adds a second image to the engine's list beside the one each pull makes.
ADDS_AN_IMAGE = StreamDeviation(
    "pull-adds-a-second-image", match=_CONCURRENT, prelude=_import_another_image
)
# Answers the later of two refused pulls as a success.
HIDES_SECOND_REFUSAL = Deviation(
    "hides-the-second-refusal", match=EverySecond(_REFUSED), response=_as_success
)
# Leaves an image under the name of a refused pull.
LEAVES_IMAGE = StreamDeviation(
    "refused-pull-leaves-an-image", match=_REFUSED, prelude=_import_under_pulled_name, limit=1
)

CASES = [
    Case("CONCURRENCY-001", "pass"),
    Case("CONCURRENCY-001", "fail", (REFUSES_SECOND_PULL,), reason="answered HTTP 500"),
    # Both pulls succeed and the image is the registry's: the second image is CONCURRENCY-006's.
    Case("CONCURRENCY-001", "pass", (ADDS_AN_IMAGE,)),
    # INFO: Docker 20.10 fetches the configuration once per pull
    Case("CONCURRENCY-002", "fail", reason="fetched blobs more than once"),
    Case("CONCURRENCY-002", "pass", (SERIAL_PULLS,)),
    Case("CONCURRENCY-003", "pass"),
    Case("CONCURRENCY-003", "fail", (REFUSES_IMPORT,), reason="answered HTTP 500"),
    Case("CONCURRENCY-004", "pass"),
    Case(
        "CONCURRENCY-004",
        "fail",
        (HIDES_SECOND_REFUSAL,),
        reason="a client cannot tell the request failed",
    ),
    Case("CONCURRENCY-005", "pass"),
    Case("CONCURRENCY-005", "fail", (LEAVES_IMAGE,), reason="left an image under the name"),
    Case("CONCURRENCY-006", "pass"),
    Case("CONCURRENCY-006", "fail", (ADDS_AN_IMAGE,), reason="new images"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_concurrency_verdicts(case, judge):
    check(case, judge(case))
