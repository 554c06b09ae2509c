"""Engines that never reach the suite's registry or file server are never judged.

Two such engines, each a proxy in front of Docker: one that never contacts them (it
answers every pull and every import from a URL itself, with a stream claiming
success), and one that cannot reach them (it rewrites the address in ``fromImage``
and ``fromSrc`` to a port nothing listens on, so Docker's own attempt fails). Every
requirement whose checks need the registry or the file server must then be
``error``: the engine could not be judged, so neither ``fail`` nor ``pass``.
"""

from __future__ import annotations

import re

import pytest

from deviant_proxy import Deviation, Request, Response
from deviant_proxy.predicates import is_pull, is_url_import, success_stream
from deviant_proxy.streaming import StreamingProxy
from engine_conformance.catalogue.requirements import Catalogue
from engine_conformance.engine.engines import free_port
from engine_conformance.run.runner import run_suite

# Refused before any lookup (an invalid reference, scratch, a platform that does not
# parse): judged without the registry.
NEEDS_NO_REGISTRY = {"PULL-013", "PULL-014", "PULL-017"}
DEPENDENT = sorted(
    rid
    for rid in Catalogue.load()
    if rid.split("-")[0] in ("PULL", "AUTH", "FAULTS") and rid not in NEEDS_NO_REGISTRY
) + ["IMPORT-020", "IMPORT-021"]

_HOST_PORT = re.compile(r"^(?:[a-z]+://)?[^/]*:\d+")


def _claims_success(req: Request) -> Response:
    if is_pull(req):
        return success_stream(req)
    return Response.stream([{"status": "sha256:" + "3" * 64}])


# Answers for the engine, which never contacts the registry or the file server.
NEVER_CONTACTS = Deviation(
    "never-contacts-them",
    match=lambda req: is_pull(req) or is_url_import(req),
    answer=_claims_success,
)


def cannot_reach() -> Deviation:
    """Sends the engine to a port nothing listens on, where it looked for the suite."""
    dead = free_port()

    def moved(value: str) -> str:
        scheme = "http://" if value.startswith("http://") else ""
        return _HOST_PORT.sub(f"{scheme}127.0.0.1:{dead}", value, count=1)

    def request(req: Request) -> Request:
        if is_url_import(req):
            return req.with_params(fromSrc=moved(req.param("fromSrc") or ""))
        return req.with_params(fromImage=moved(req.param("fromImage") or ""))

    return Deviation(
        "cannot-reach-them",
        match=lambda req: (
            (is_pull(req) and bool(_HOST_PORT.match(req.param("fromImage") or "")))
            or is_url_import(req)
        ),
        request=request,
    )


@pytest.mark.parametrize("deviation", [NEVER_CONTACTS, cannot_reach()], ids=lambda d: d.name)
def test_unreached_services_give_error_never_fail_or_pass(docker, tmp_path, deviation):
    with StreamingProxy(docker.target, [deviation]) as proxy:
        outcome = run_suite(proxy.target, tmp_path, requirements=DEPENDENT, timeout=1800)
    assert deviation.hits, f"{deviation.name} never applied: the proxy matched nothing"
    judged = {rid: outcome.requirement(rid) for rid in DEPENDENT}
    wrong = [
        f"{rid} {r['verdict']}: {r['reason'][:200]}"
        for rid, r in judged.items()
        if r["verdict"] in ("fail", "pass")
    ]
    assert not wrong, (
        f"{len(wrong)} of {len(DEPENDENT)} requirements that need the registry or the file "
        f"server were judged although the engine ({deviation.name}) never reached them:\n"
        + "\n".join(wrong)
    )
