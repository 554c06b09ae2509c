"""What deviant rows match and how they rewrite: the vocabulary every suite's rows share.

>>> from deviant_proxy.predicates import is_pull, success_stream
>>> Deviation("lies", match=is_pull, answer=success_stream)      # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from .proxy import Request, Response


def is_create(req: Request) -> bool:
    return req.endpoint == "/images/create"


def is_pull(req: Request) -> bool:
    return is_create(req) and req.param("fromImage") is not None


def is_body_import(req: Request) -> bool:
    return is_create(req) and req.param("fromSrc") == "-"


def is_url_import(req: Request) -> bool:
    return is_create(req) and (req.param("fromSrc") or "").startswith("http")


def pulling(*fragments: str) -> Callable[[Request], bool]:
    """Matches a pull whose ``fromImage`` holds any of ``fragments`` (a check's repository)."""

    def match(req: Request) -> bool:
        image = req.param("fromImage") or ""
        return is_create(req) and any(f in image for f in fragments)

    return match


def inspected_name(req: Request) -> str | None:
    """The name in ``GET /images/{name}/json`` (None for any other request)."""
    ep = req.endpoint
    if req.method != "GET" or ep == "/images/json":
        return None
    if not (ep.startswith("/images/") and ep.endswith("/json")):
        return None
    return unquote(ep[len("/images/") : -len("/json")])


def split_name(from_image: str) -> tuple[str, str | None, str | None]:
    """``(name, tag, digest)`` of a reference (a port colon is not a tag)."""
    name, _, digest = from_image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest or None


def success_stream(req: Request) -> Response:
    """What a successful pull looks like, whatever the request was."""
    ref = req.param("fromImage") or ""
    return Response.stream(
        [
            {"status": f"Pulling from {ref}", "id": req.param("tag") or "latest"},
            {"status": "Digest: sha256:" + "2" * 64},
            {"status": f"Status: Downloaded newer image for {ref}"},
        ]
    )


def has_error_line(resp: Response) -> bool:
    return any("error" in line or "errorDetail" in line for line in resp.lines())


def refused(resp: Response) -> bool:
    """An error status, or a 200 stream with an error line."""
    return resp.status >= 400 or (resp.status == 200 and has_error_line(resp))


def rewrite_json(resp: Response, edit: Callable[[dict[str, Any]], object]) -> Response:
    """A 200 JSON answer with ``edit`` applied to its object (others as they are)."""
    if resp.status != 200:
        return resp
    obj = json.loads(resp.body)
    edit(obj)
    return resp.replace(body=json.dumps(obj).encode() + b"\n")
