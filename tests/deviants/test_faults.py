"""Each faults-suite requirement fails against an engine that hides a failed pull in that way.

Rows without a deviation are plain Docker 20.10, which conforms to every FAULTS
requirement. Deviations match the pull of the one scenario they bend, by the
repository suites/test_faults.py serves for it (``faults-<label>``). An engine that
leaves an image behind after a failed or cancelled pull fails FAULTS-011 (and
FAULTS-008 for its own scenarios) while the scenario's own MUST still passes.

The shared ``judge`` puts a StreamingProxy in front of Docker, whose
live-exchange hooks cancellation (a proxy deaf to the client's hang-up) and a
left-behind image need.
"""

from __future__ import annotations

import json

import pytest

from deviant_proxy import Deviation, Request, Response
from deviant_proxy.cases import Case, check
from deviant_proxy.predicates import pulling
from deviant_proxy.streaming import StreamDeviation
from engine_conformance.base import archives


def faults(label: str):
    """Matches the pull of the check that serves ``faults-<label>``."""
    return pulling(f"/faults-{label}")


def _as_success(req: Request, resp: Response) -> Response:
    """An error status answered instead as 200 with the stream of a pull that worked."""
    if resp.status < 400:
        return resp
    ref = f"{req.param('fromImage')}:{req.param('tag')}"
    return Response.stream(
        [
            {"status": f"Pulling from {req.param('fromImage')}", "id": req.param("tag")},
            {"status": "Digest: sha256:" + "0" * 64},
            {"status": f"Status: Downloaded newer image for {ref}"},
        ]
    )


def status_as_success(label: str) -> Deviation:
    return Deviation(f"{label}-answered-200-success", match=faults(label), response=_as_success)


def _drop_errors(req: Request, resp: Response) -> Response:
    if resp.status != 200:
        return resp
    kept = [o for o in resp.lines() if "errorDetail" not in o and "error" not in o]
    return resp.replace(body=b"".join(json.dumps(o).encode() + b"\r\n" for o in kept))


def errors_dropped(label: str) -> Deviation:
    return Deviation(f"{label}-error-lines-dropped", match=faults(label), response=_drop_errors)


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


# FAULTS-008: the engine keeps an image under the name although the pull failed.
LEAVES_IMAGE = StreamDeviation(
    "digest-mismatch-leaves-an-image",
    match=faults("digest-layer-swapped"),
    prelude=_import_under_pulled_name,
)
# FAULTS-011: the engine keeps an image under the name of a pull the registry refused (404 on
# the manifest) and of one the client hung up on; FAULTS-006 and FAULTS-010 still hold.
FAILED_PULL_LEAVES_IMAGE = StreamDeviation(
    "failed-pull-leaves-an-image",
    match=lambda req: faults("status-404")(req) or faults("cancel")(req),
    prelude=_import_under_pulled_name,
)
# FAULTS-010: a proxy that never passes the client's hang-up on to the engine ...
DEAF_TO_HANG_UP = StreamDeviation("deaf-to-hang-up", match=faults("cancel"), keep_reading=True)
# ... and, as a control, the same streaming path passing it on.
PASSES_HANG_UP = StreamDeviation("passes-hang-up-on", match=faults("cancel"))
# An engine that reports nothing while it pulls (no line but an error): the client hangs
# up on its silence, and the registry tells whether the transfer was under way.
SILENT = StreamDeviation(
    "silent-pull", match=faults("cancel"), drop_line=lambda line: b'"error' not in line
)

CANNOT_TELL = "a client cannot tell the request failed"
LEFT_IMAGE = "the engine left an image behind"
NOT_CANCELLED = "the pull was not cancelled when the client hung up"

CASES = [
    Case("FAULTS-001", "pass"),
    Case("FAULTS-001", "fail", (status_as_success("status-500"),), reason=CANNOT_TELL),
    Case("FAULTS-002", "pass"),
    Case("FAULTS-002", "fail", (status_as_success("status-503"),), reason=CANNOT_TELL),
    Case("FAULTS-003", "pass"),
    Case("FAULTS-003", "fail", (status_as_success("status-429"),), reason=CANNOT_TELL),
    Case("FAULTS-004", "pass"),
    Case("FAULTS-004", "fail", (status_as_success("auth"),), reason=CANNOT_TELL),
    Case("FAULTS-005", "pass"),
    Case("FAULTS-005", "fail", (status_as_success("status-403"),), reason=CANNOT_TELL),
    Case("FAULTS-006", "pass"),
    Case("FAULTS-006", "fail", (status_as_success("status-404"),), reason=CANNOT_TELL),
    # Reports the failure: what it leaves is FAULTS-011's.
    Case("FAULTS-006", "pass", (FAILED_PULL_LEAVES_IMAGE,)),
    Case("FAULTS-007", "pass"),
    Case("FAULTS-007", "fail", (errors_dropped("cut"),), reason=CANNOT_TELL),
    Case("FAULTS-008", "pass"),
    Case("FAULTS-008", "fail", (errors_dropped("digest-"),), reason=CANNOT_TELL),
    Case("FAULTS-008", "fail", (LEAVES_IMAGE,), reason=LEFT_IMAGE),
    Case("FAULTS-009", "pass"),
    Case("FAULTS-009", "fail", (errors_dropped("unsupported"),), reason=CANNOT_TELL),
    Case("FAULTS-010", "pass"),
    Case("FAULTS-010", "pass", (PASSES_HANG_UP,)),
    Case("FAULTS-010", "pass", (SILENT,)),
    # Cancelled, so FAULTS-010 holds; the image it leaves is FAULTS-011's.
    Case("FAULTS-010", "pass", (FAILED_PULL_LEAVES_IMAGE,)),
    Case("FAULTS-011", "pass"),
    Case("FAULTS-011", "fail", (FAILED_PULL_LEAVES_IMAGE,), reason=LEFT_IMAGE),
    # Last: Docker goes on retrying the layer after a deaf row, and a later pull of the
    # same layer (the same in every run) would join that download instead of starting one.
    Case("FAULTS-010", "fail", (DEAF_TO_HANG_UP,), reason=NOT_CANCELLED),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_faults_verdicts(case, judge):
    check(case, judge(case))
