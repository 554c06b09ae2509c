"""One-line ``curl`` commands that replay a request against the same target.

    >>> target = Target.parse("unix:///run/docker.sock")
    >>> curl(target, "POST", "/v1.44/images/create", [("fromSrc", "-")],
    ...      {"Content-Type": "application/octet-stream"},
    ...      Path("/r/SCHEMA-004-1.body"))                     # doctest: +NORMALIZE_WHITESPACE
    "curl -sS -i --unix-socket /run/docker.sock -X POST -H 'Content-Type: application/octet-stream'
     --data-binary @/r/SCHEMA-004-1.body 'http://localhost/v1.44/images/create?fromSrc=-'"

schemathesis's own reproduction lines carry no ``--unix-socket`` and no client
certificate, so they do not reach a Docker socket or a TLS engine: this module
knows the three kinds of :class:`~engine_conformance.target.Target`. A body is
never inlined: it is written to a file (an archive is binary) and sent with
``--data-binary @FILE``, byte for byte. ``X-Registry-Auth`` is kept as sent: the
property phase only ever sends credentials it made up.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlencode

from .target import Target

__all__ = ["curl", "url"]


def url(target: Target, path: str, params: Sequence[tuple[str, str]]) -> str:
    """The URL curl is given: ``http://localhost`` for a socket (curl needs some host)."""
    base = "http://localhost" if target.uds else target.base_url
    query = urlencode(list(params), quote_via=quote, safe="")
    return f"{base}{path}" + (f"?{query}" if query else "")


def curl(target: Target, method: str, path: str, params: Sequence[tuple[str, str]],
         headers: Mapping[str, str], body_file: Path | None = None) -> str:
    """A shell command that sends the request and prints the answer with its status line.

    ``path`` is the path as sent (versioned); ``headers`` as sent, the secret ones
    included: a reproducer that leaves out ``X-Registry-Auth`` reproduces another request.
    """
    words = ["curl", "-sS", "-i"]
    if target.uds:
        words += ["--unix-socket", target.uds]
    if target.tls:
        if target.tls.ca:
            words += ["--cacert", target.tls.ca]
        if target.tls.cert:
            words += ["--cert", target.tls.cert]
        if target.tls.key:
            words += ["--key", target.tls.key]
        if not target.tls.verify:
            words.append("-k")
    words += ["-X", method.upper()]
    for name, value in headers.items():
        if name.lower() in ("content-length", "host"):
            continue
        words += ["-H", f"{name}: {value}"]
    if body_file is not None:
        words += ["--data-binary", f"@{body_file}"]
    words.append(url(target, path, params))
    return " ".join(shlex.quote(w) for w in words)
