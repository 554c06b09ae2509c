"""One-line ``curl`` commands that replay a request against the same target.

    >>> target = Target.parse("unix:///run/docker.sock")
    >>> curl(target, "POST", "/v1.44/images/create", [("fromSrc", "-")],
    ...      {"Content-Type": "application/octet-stream"},
    ...      Path("/r/SCHEMA-004-1.body"))                     # doctest: +NORMALIZE_WHITESPACE
    "curl -sS -i --unix-socket /run/docker.sock -X POST -H 'Content-Type: application/octet-stream'
     --data-binary @/r/SCHEMA-004-1.body 'http://localhost/v1.44/images/create?fromSrc=-'"

schemathesis's own reproduction lines carry no ``--unix-socket`` and no client
certificate, so they do not reach a Docker socket or a TLS engine: this module
knows the three kinds of :class:`~engine_conformance.engine.target.Target`. A body is
never inlined: it is written to a file (an archive is binary) and sent with
``--data-binary @FILE``, byte for byte. ``X-Registry-Auth`` is kept as sent: the
property phase only ever sends credentials it made up.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from engine_conformance.base.paths import MANAGED_NAME
from engine_conformance.engine.target import Target

__all__ = ["curl", "curl_for_evidence", "url"]


def url(target: Target, path: str, params: Sequence[tuple[str, str]]) -> str:
    """The URL curl is given: ``http://localhost`` for a socket (curl needs some host)."""
    base = "http://localhost" if target.uds else target.base_url
    query = urlencode(list(params), quote_via=quote, safe="")
    return f"{base}{path}" + (f"?{query}" if query else "")


def curl(
    target: Target,
    method: str,
    path: str,
    params: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body_file: Path | None = None,
) -> str:
    """A shell command that sends the request and prints the answer with its status line.

    ``path`` is the path as sent (versioned); ``headers`` as sent, the secret ones
    included: a reproducer that leaves out ``X-Registry-Auth`` reproduces another request.
    """
    transport: list[str] = []
    if target.uds:
        transport += ["--unix-socket", target.uds]
    if target.tls:
        for option, path_ in (
            ("--cacert", target.tls.ca),
            ("--cert", target.tls.cert),
            ("--key", target.tls.key),
        ):
            if path_:
                transport += [option, path_]
        if not target.tls.verify:
            transport.append("-k")
    return _command(
        transport,
        method,
        url(target, path, params),
        headers,
        f"@{body_file}" if body_file is not None else None,
        show_status=True,
    )


def curl_for_evidence(target_url: str, evidence: Mapping[str, Any]) -> str:
    """A ``curl`` command that sends the request of a report's ``evidence`` again.

    A unix-socket target gets ``--unix-socket``; redacted headers stay redacted
    (fill in your own credentials); an import from the request body reads it
    from a file named ``rootfs.tar``; a TLS target's client certificate is the one
    in ``$DOCKER_CERT_PATH``.

        >>> curl_for_evidence("unix:///run/docker.sock",
        ...                   {"request": "POST /v1.41/images/create?fromImage=a"})
        "curl -sS --unix-socket /run/docker.sock -X POST 'http://localhost/v1.41/images/create?fromImage=a'"
    """
    method, _, path = str(evidence.get("request", "GET /")).partition(" ")
    parts = urlsplit(target_url)
    transport: list[str] = []
    if parts.scheme == "unix":
        # Not parts.path: a managed engine's socket reads unix://$ENGINE_DIR/docker.sock.
        transport += ["--unix-socket", target_url[len("unix://") :]]
        base = "http://localhost"
    else:
        scheme = "https" if parts.scheme == "https" else "http"
        base = f"{scheme}://{parts.netloc}"
        if scheme == "https":
            transport += [
                "--cacert",
                "$DOCKER_CERT_PATH/ca.pem",
                "--cert",
                "$DOCKER_CERT_PATH/cert.pem",
                "--key",
                "$DOCKER_CERT_PATH/key.pem",
            ]
    data = "@rootfs.tar" if method == "POST" and "fromSrc=-" in path else None
    return _command(
        transport,
        method,
        f"{base}{path}",
        evidence.get("request_headers") or {},
        data,
        show_status=False,
    )


# Headers curl sets itself, or that only describe the client that sent the request.
_NOT_REPEATED = frozenset(
    {"host", "content-length", "user-agent", "accept-encoding", "connection", "accept"}
)


def _command(
    transport: Sequence[str],
    method: str,
    full_url: str,
    headers: Mapping[str, str],
    data: str | None,
    *,
    show_status: bool,
) -> str:
    words = ["curl", "-sS", *(["-i"] if show_status else []), *transport]
    if method.upper() != "GET":
        words += ["-X", method.upper()]
    for name, value in headers.items():
        if name.lower() not in _NOT_REPEATED:
            words += ["-H", f"{name}: {value}"]
    if data is not None:
        words += ["--data-binary", data]
    words.append(full_url)
    # "$DOCKER_CERT_PATH/..." and "$ENGINE_DIR/..." stay expandable by the shell the
    # user pastes it into.
    return " ".join(f'"{w}"' if w.startswith(_EXPANDED) else shlex.quote(w) for w in words)


_EXPANDED = ("$DOCKER_CERT_PATH", MANAGED_NAME)
