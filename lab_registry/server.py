"""The lab registry: the read side of the OCI distribution API, in a background thread.

    >>> from lab_registry import LabRegistry, standard
    >>> with LabRegistry(standard("ectest-1a2b3c")) as registry:      # doctest: +SKIP
    ...     registry.address                       # '127.0.0.1:41234'
    ...     registry.reference("single", "v1")     # '127.0.0.1:41234/ectest-1a2b3c/single:v1'
    ...     mark = registry.journal.mark()
    ...     with registry.fault(ErrorStatus(503), repository="ectest-1a2b3c/single"):
    ...         ...                                # pulls of single now answer 503
    ...     registry.journal.since(mark)

Served: ``GET /v2/``, ``GET|HEAD /v2/<name>/manifests/<tag|digest>``,
``GET|HEAD /v2/<name>/blobs/<digest>`` (with single ``Range``),
``GET /v2/<name>/tags/list`` (``n``/``last``) and ``GET /v2/_catalog``; and
``GET|POST /token``, the token endpoint of distribution's token auth (see ``token``).
Write methods answer 405 UNSUPPORTED; unknown paths 404, as distribution does.

Faithful to distribution 2.8 by test (tests/lab_registry/test_faithfulness.py:
same status, headers and bytes for the same requests), with two deliberate
differences: no down-conversion to schema 1 for clients that do not accept
schema 2 (they get schema 2), and pagination (``n``/``last``) of tags/list.

Why it is fast enough to be compared with the Go registry: every connection has
its own thread, responses are HTTP/1.1 keep-alive, Nagle is off, and an
on-disk blob goes out with ``os.sendfile`` in one call per socket-buffer-full,
so Python never touches the bytes of a big layer.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lab_registry import mediatypes as mt
from lab_registry.auth import AuthRule, AuthTable
from lab_registry.blobs import Blob, is_digest, sha256_digest
from lab_registry.catalogue import DEFAULT_PLATFORM, TAG_RE, Catalogue, valid_name
from lab_registry.faults import ErrorStatus, Fault, FaultRule, FaultTable, Selected
from lab_registry.gohttp import GoProtocolErrors, HandshakeFailures
from lab_registry.images import Index, canonical_json
from lab_registry.journal import Journal, JournalEntry
from lab_registry.token import (
    TOKEN_PATH,
    TokenAuth,
    TokenError,
    TokenRequest,
    TokenRule,
    error_document,
)
from lab_registry.token import redacted_query as _redacted_query

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")
JSON_TYPE = "application/json; charset=utf-8"

# The messages the CNCF distribution registry uses, so engines print the same text.
MESSAGES = {
    "BLOB_UNKNOWN": "blob unknown to registry",
    "DENIED": "requested access to the resource is denied",
    "DIGEST_INVALID": "provided digest did not match uploaded content",
    "MANIFEST_UNKNOWN": "manifest unknown",
    "NAME_INVALID": "invalid repository name",
    "NAME_UNKNOWN": "repository name not known to registry",
    "TOOMANYREQUESTS": "too many requests",
    "UNAUTHORIZED": "authentication required",
    "UNAVAILABLE": "service unavailable",
    "UNKNOWN": "unknown error",
    "UNSUPPORTED": "The operation is unsupported.",
}

_ROUTES = [
    ("manifest", re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")),
    ("blob", re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<ref>[^/]+)$")),
    ("tags", re.compile(r"^/v2/(?P<name>.+)/tags/list$")),
]
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_DISCONNECT = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
_MAX_DISCARD = 64 << 20
_MAX_TOKEN_FORM = 64 << 10
# The last piece of a body is sent after the journal entry is written (see _commit).
_FINAL_PIECE = 64 << 10


def route(path: str) -> tuple[str, str | None, str | None]:
    """``(kind, repository, reference)`` for a request path.

    >>> route("/v2/a/b/manifests/v1")
    ('manifest', 'a/b', 'v1')
    >>> route("/v2/")
    ('base', None, None)
    """
    if path == "/v2/":
        return "base", None, None
    if path in ("/", "/v2"):
        return "root", None, None
    if path == "/v2/_catalog":
        return "catalog", None, None
    if path == TOKEN_PATH:
        return "token", None, None
    for kind, pattern in _ROUTES:
        m = pattern.match(path)
        if m and valid_name(m.group("name")):
            return kind, m.group("name"), m.groupdict().get("ref")
    return "other", None, None


def accepted_types(headers: list[str]) -> set[str]:
    """The media types an ``Accept`` header list names.

    Engines send one type per header or a comma list, with ``q=`` parameters
    that registries ignore. Like distribution 2.8, ``*/*`` (or no header) is not
    taken to mean "any manifest type": those are only the types named.
    """
    types: set[str] = set()
    for header in headers:
        for part in header.split(","):
            media = part.split(";", 1)[0].strip().lower()
            if media:
                types.add(media)
    return types


def error_body(code: str, message: str | None = None, detail: Any = None) -> bytes:
    """An OCI distribution error document."""
    error: dict[str, Any] = {"code": code, "message": message or MESSAGES.get(code, code.lower())}
    if detail is not None:
        error["detail"] = detail
    return json_body({"errors": [error]})


def json_body(doc: Any) -> bytes:
    """JSON the way Go's encoder writes it (compact, newline-terminated), as distribution does."""
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


class _Server(ThreadingHTTPServer):
    """A threading server that can drop its open keep-alive connections on stop."""

    daemon_threads = True  # a stuck client never keeps the process alive
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], lab: LabRegistry) -> None:
        self.lab = lab
        self.tls_context = lab.tls
        self.tls_failures = lab.tls_failures
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def drop_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(GoProtocolErrors):
    protocol_version = "HTTP/1.1"  # keep-alive: engines reuse connections
    server_version = "lab-registry/1"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _Server
    _headers_buffer: list[bytes]  # BaseHTTPRequestHandler's own, which typeshed leaves out

    # --- connection life cycle --------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        # Silence: the journal is the log, and stderr lines would leak into test output.
        pass

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # --- one request ----------------------------------------------------------------

    def _handle(self) -> None:
        lab = self.server.lab
        split = urlsplit(self.path)
        kind, repository, reference = route(split.path)
        self._seq = lab.journal.next_seq()
        self._started = time.time()
        self._route = (split.path, split.query, kind, repository, reference)
        self._selected = Selected()
        self._status = 0
        self._body_size = 0
        self._sent = 0
        self._hung_up = False
        self._cut = False
        self._committed: JournalEntry | None = None
        self._head = b""
        self._token_request: TokenRequest | None = None
        try:
            body = self._discard_request_body(keep=kind == "token")
            self._selected = lab.faults.select(self.command, split.path, repository, kind)
            if kind == "token" and self._selected.status is None:
                self._serve_token(split.query, body)
            else:
                self._dispatch(kind, split.path, repository, reference, split.query, self._selected)
        except _DISCONNECT:
            self._hung_up = True
            self.close_connection = True
        except Exception as exc:
            # A bug here must not kill the connection thread silently, nor leave
            # the client waiting: answer 500 if nothing was sent yet, then close.
            self.close_connection = True
            if self._status == 0:
                self._send_error(
                    500, "UNKNOWN", message=f"lab registry error: {type(exc).__name__}"
                )
            raise
        finally:
            entry = self._entry()
            if self._committed is None:
                lab.journal.record(entry)
            elif entry != self._committed:  # the last byte did not make it after all
                lab.journal.update(entry)

    def _entry(self, pending: int = 0) -> JournalEntry:
        path, query, kind, repository, reference = self._route
        authorization = self.headers.get("Authorization")
        if kind == "token":  # the journal never holds a password or a token
            authorization, query = None, _redacted_query(query)
        return JournalEntry(
            seq=self._seq,
            time=self._started,
            method=self.command,
            path=path,
            query=query,
            repository=repository,
            kind=kind,
            reference=reference,
            status=self._status,
            body_size=self._body_size,
            bytes_sent=self._sent + pending,
            client_hung_up=self._hung_up,
            cut_short=self._cut,
            accept=", ".join(self.headers.get_all("Accept") or []) or None,
            user_agent=self.headers.get("User-Agent"),
            fault=self._selected.describe(),
            authorization=authorization,
            tls=self.tls_version,
            token=self._token_request,
        )

    def _commit(self, pending: int = 0) -> None:
        """Journal the request as answered, before its last ``pending`` bytes go out.

        A client has the whole response only once the last byte arrives, so
        a test reading the journal right after a response always finds its
        entry. Should those bytes fail, ``_handle`` corrects the entry.
        """
        if self._committed is None:
            self._committed = self._entry(pending)
            self.server.lab.journal.record(self._committed)

    def _discard_request_body(self, keep: bool = False) -> bytes:
        # A read-only registry still has to consume a pushed body to keep the
        # connection usable; a chunked or huge one just ends the connection.
        # Only a token request's form is kept (``keep``), and only a small one.
        if self.headers.get("Transfer-Encoding"):
            if keep and self.headers["Transfer-Encoding"].strip().lower() == "chunked":
                # Podman (containers/image) posts its refresh-token form chunked.
                return self._read_chunked_form()
            self.close_connection = True
            return b""
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_DISCARD:
            self.close_connection = True
            return b""
        kept: list[bytes] = []
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)
            if keep and sum(map(len, kept)) < _MAX_TOKEN_FORM:
                kept.append(chunk)
        return b"".join(kept)[:_MAX_TOKEN_FORM]

    def _read_chunked_form(self) -> bytes:
        """A small chunked body; an oversized or malformed one ends the connection."""
        data = b""
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                self.close_connection = True
                return data
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return data
            if len(data) + size > _MAX_TOKEN_FORM:
                self.close_connection = True
                return data
            data += self.rfile.read(size)
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _dispatch(
        self,
        kind: str,
        path: str,
        repository: str | None,
        reference: str | None,
        query: str,
        selected: Selected,
    ) -> None:
        lab = self.server.lab
        if selected.status is not None:
            self._send_fault_status(selected.status, kind, repository, reference)
            return
        if kind == "root":
            # What distribution answers here, auth or not: a health-check friendly
            # 200, and a redirect for the slash-less base.
            if path == "/v2":
                body = b'<a href="/v2/">Moved Permanently</a>.\n\n'
                self._send(301, body, "text/html; charset=utf-8", {"Location": "/v2/"})
            else:
                self._send(200, b"", "text/plain; charset=utf-8", {"Cache-Control": "no-cache"})
            return
        if kind == "other":
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        if lab.tokens.protects(repository):
            action = "pull" if self.command in ("GET", "HEAD") else "pull,push"
            error = lab.tokens.authorize(
                self.headers.get("Authorization"), repository, action.split(",")[-1]
            )
            if error is not None:
                challenge = lab.tokens.challenge(lab.token_realm, repository, action, error or None)
                # Distribution's token challenge of the ping carries "detail":null.
                error_doc = {"code": "UNAUTHORIZED", "message": MESSAGES["UNAUTHORIZED"]}
                error_doc["detail"] = _access_detail(repository)
                body = json_body({"errors": [error_doc]})
                self._send(401, body, JSON_TYPE, {"WWW-Authenticate": challenge})
                return
        elif (realm := lab.auth.challenge(repository)) is not None and not lab.auth.allows(
            repository, self.headers.get("Authorization")
        ):
            self._send_error(
                401,
                "UNAUTHORIZED",
                detail=_access_detail(repository),
                extra={"WWW-Authenticate": f'Basic realm="{realm}"'},
            )
            return
        if self.command not in ("GET", "HEAD"):
            self._send_error(405, "UNSUPPORTED")
            return
        if kind == "base":
            self._send(200, b"{}", JSON_TYPE)
        elif kind == "catalog":
            self._send_json({"repositories": lab.catalogue.repositories()})
        elif kind == "tags":
            assert repository is not None
            self._serve_tags(repository, query)
        elif kind == "manifest":
            assert repository is not None and reference is not None
            self._serve_manifest(repository, reference, selected)
        else:
            assert repository is not None and reference is not None
            self._serve_blob(repository, reference, selected)

    # --- endpoints ------------------------------------------------------------------

    def _serve_token(self, query: str, body: bytes) -> None:
        tokens = self.server.lab.tokens
        self._token_request, outcome = tokens.handle(
            self.command, query, body, self.headers.get("Authorization")
        )
        oauth = self.command == "POST"
        if isinstance(outcome, TokenError):
            self._send(outcome.status, error_document(outcome, oauth), JSON_TYPE)
        else:
            self._send(200, json_body(outcome.body(oauth)), JSON_TYPE)

    def _serve_tags(self, repository: str, query: str) -> None:
        tags = self.server.lab.catalogue.tags(repository)
        if tags is None:
            self._send_error(404, "NAME_UNKNOWN", detail={"name": repository})
            return
        params = parse_qs(query)
        last = params.get("last", [""])[0]
        if last:
            tags = [t for t in tags if t > last]
        headers: dict[str, str] = {}
        n = params.get("n", [""])[0]
        if n.isdigit() and int(n) < len(tags):
            tags = tags[: int(n)]
            if tags:
                headers["Link"] = f'</v2/{repository}/tags/list?last={tags[-1]}&n={n}>; rel="next"'
        self._send_json({"name": repository, "tags": tags}, headers)

    def _serve_manifest(self, repository: str, reference: str, selected: Selected) -> None:
        catalogue = self.server.lab.catalogue
        by_digest = is_digest(reference)
        if not by_digest and ":" in reference:
            self._send_error(400, "DIGEST_INVALID", detail={})
            return
        if not by_digest and not TAG_RE.match(reference):
            # Distribution's router has no route for a malformed tag.
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        manifest = catalogue.manifest(repository, reference)
        if manifest is None:
            detail = (
                {"Name": repository, "Revision": reference} if by_digest else {"Tag": reference}
            )
            self._send_error(404, "MANIFEST_UNKNOWN", detail=detail)
            return
        if selected.unsupported is not None:
            manifest = _unsupported_manifest(selected.unsupported.media_type, manifest)
        else:
            negotiated = self._negotiate(repository, reference, manifest, by_digest)
            if negotiated is None:
                return
            manifest = negotiated
        headers = {"Docker-Content-Digest": manifest.digest, "Etag": f'"{manifest.digest}"'}
        body = manifest.read()
        self._start(200, manifest.media_type, len(body), headers)
        if self.command == "GET":
            self._send_body(manifest, 0, len(body), selected)

    def _negotiate(
        self, repository: str, reference: str, manifest: Blob, by_digest: bool
    ) -> Blob | None:
        """What to serve for the client's ``Accept``; None once an error was sent.

        Mirrors distribution 2.8, checked against it: an OCI manifest or index
        the client does not name is MANIFEST_UNKNOWN (by tag or digest); a
        Docker manifest list the client does not name, fetched by tag, is
        answered with its linux/amd64 image. One deliberate difference: where
        distribution would down-convert schema 2 to the long-dead schema 1, the
        lab serves schema 2 as it is.
        """
        accepted = accepted_types(self.headers.get_all("Accept") or [])
        media_type = manifest.media_type
        if media_type in accepted:
            return manifest
        if media_type in (mt.OCI_MANIFEST, mt.OCI_INDEX):
            what = "OCI manifest" if media_type == mt.OCI_MANIFEST else "OCI index"
            plural = "OCI manifests" if media_type == mt.OCI_MANIFEST else "OCI indexes"
            self._send_error(
                404,
                "MANIFEST_UNKNOWN",
                f"{what} found, but accept header does not support {plural}",
            )
            return None
        if media_type == mt.DOCKER_MANIFEST_LIST and not by_digest:
            artifact = self.server.lab.catalogue.artifact(repository, reference)
            try:
                assert isinstance(artifact, Index)
                return artifact.for_platform(DEFAULT_PLATFORM).manifest
            except (AssertionError, KeyError):
                self._send_error(404, "MANIFEST_UNKNOWN")
                return None
        return manifest

    def _serve_blob(self, repository: str, digest: str, selected: Selected) -> None:
        if not is_digest(digest):
            if ":" in digest:
                self._send_error(400, "DIGEST_INVALID", detail={})
            else:  # not even digest-shaped: distribution has no route for it
                self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        blob = self.server.lab.catalogue.blob(repository, digest)
        if blob is None:
            self._send_error(404, "BLOB_UNKNOWN", detail=digest)
            return
        headers = {
            "Docker-Content-Digest": blob.digest,
            "Etag": f'"{blob.digest}"',
            "Accept-Ranges": "bytes",
            "Cache-Control": "max-age=31536000",
        }
        start, length, status = 0, blob.size, 200
        range_header = self.headers.get("Range")
        if range_header:
            parsed = _parse_range(range_header, blob.size)
            if parsed is None:
                headers["Content-Range"] = f"bytes */{blob.size}"
                self._send(416, b"", "text/plain; charset=utf-8", headers)
                return
            start, length = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{blob.size}"
        self._start(status, "application/octet-stream", length, headers)
        if self.command == "GET":
            self._send_body(blob, start, length, selected)

    # --- sending --------------------------------------------------------------------

    def _start(self, status: int, content_type: str, length: int, headers: dict[str, str]) -> None:
        """Prepare the status line and headers.

        With no body they go out at once. With a body they are held back and
        leave in the same ``send`` as its first bytes: a client that hangs up
        right after reading headers (Docker's ``/v2/`` ping does) has then
        still been sent a whole small response.
        """
        self.send_response(status)
        self.send_header(*API_VERSION_HEADER)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in headers.items():
            self.send_header(name, value)
        self._status = status
        self._body_size = length if self.command != "HEAD" else 0
        if self._body_size == 0:
            self._commit()  # the headers are the whole answer
            self.end_headers()
            return
        self._headers_buffer.append(b"\r\n")
        self._head = b"".join(self._headers_buffer)
        self._headers_buffer = []

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._start(status, content_type, len(body), headers or {})
        if self._body_size:
            self._send_final(lambda: self._write(body), len(body))

    def _send_json(self, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send(200, json_body(doc), JSON_TYPE, headers)

    def _send_error(
        self,
        status: int,
        code: str,
        message: str | None = None,
        detail: Any = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self._send(status, error_body(code, message, detail), JSON_TYPE, extra)

    def _send_fault_status(
        self, fault: ErrorStatus, kind: str, repository: str | None, reference: str | None
    ) -> None:
        if fault.delay:
            time.sleep(fault.delay)
        extra: dict[str, str] = {}
        if fault.status == 401:
            extra["WWW-Authenticate"] = f'Basic realm="{fault.realm}"'
        if fault.retry_after is not None:
            extra["Retry-After"] = str(fault.retry_after)
        code = fault.code_for(kind)
        detail = _access_detail(repository) if code in ("UNAUTHORIZED", "DENIED") else None
        self._send_error(fault.status, code, fault.message, detail, extra)

    def _send_final(self, send: Callable[[], None], pending: int) -> None:
        """Journal the request, then send its last ``pending`` body bytes with ``send``."""
        self._commit(pending)
        send()

    def _write(self, data: bytes | memoryview) -> None:
        """Send held-back headers and ``data``; count body bytes even if the client leaves."""
        head, self._head = self._head, b""
        view = memoryview(head + bytes(data)) if head else memoryview(data)
        skip = len(head)
        while view:
            n = self.connection.send(view)
            view = view[n:]
            if skip:
                used = min(skip, n)
                skip -= used
                n -= used
            self._sent += n

    def _flush_head(self) -> None:
        # MSG_MORE lets the kernel put the headers in one segment with the
        # sendfile data that follows, as if they had been written together.
        if self.tls_version:
            return  # no sendfile under TLS: the head leaves with the first body bytes
        head, self._head = self._head, b""
        if head:
            self.connection.sendall(head, socket.MSG_MORE)

    def _send_body(self, source: Blob, start: int, length: int, selected: Selected) -> None:
        if selected.throttle or selected.cut_short or selected.corrupt:
            self._send_shaped(source, start, length, selected)
            return
        # All but the final piece, then the journal entry, then the final piece.
        final = min(length, _FINAL_PIECE)
        self._send_range(source, start, length - final)
        end = start + length - final
        self._send_final(lambda: self._send_range(source, end, final), final)

    def _send_range(self, blob: Blob, offset: int, count: int) -> None:
        if count <= 0:
            return
        if blob.path is None:
            assert blob.data is not None
            self._write(memoryview(blob.data)[offset : offset + count])
            return
        if self.tls_version:
            # The kernel cannot encrypt: the bytes go through the TLS socket.
            for chunk in blob.chunks(offset, count, 1 << 20):
                self._write(chunk)
            return
        self._flush_head()
        # The kernel copies file pages straight to the socket: no Python per chunk.
        out_fd = self.connection.fileno()
        with open(blob.path, "rb") as f:
            in_fd, done = f.fileno(), 0
            while done < count:
                n = os.sendfile(out_fd, in_fd, offset + done, count - done)
                if n == 0:  # the file shrank under us: nothing more to give
                    break
                done += n
                self._sent += n

    def _send_shaped(self, blob: Blob, start: int, length: int, selected: Selected) -> None:
        limit = length
        if selected.cut_short is not None:
            limit = min(length, selected.cut_short.after_bytes)
        rate = selected.throttle.bytes_per_second if selected.throttle else None
        # Small chunks under a throttle keep the rate smooth (about 20 writes a second).
        chunk_size = max(1, min(1 << 16, rate // 20)) if rate else 1 << 20
        t0 = time.monotonic()
        first = True
        for chunk in _limited(blob.chunks(start, length, chunk_size), limit):
            if first and selected.corrupt is not None and chunk:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            first = False
            if self._sent + len(chunk) == length:  # the final piece waits for the journal
                self._send_final(functools.partial(self._write, chunk), len(chunk))
            else:
                self._write(chunk)
            if rate:
                delay = t0 + self._sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        if limit < length:
            self._cut = True
            self.close_connection = True
            self._write(b"")  # headers, if not even one body byte was to be sent
            self._commit()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _limited(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    left = limit
    for chunk in chunks:
        if left <= 0:
            return
        if len(chunk) > left:
            chunk = chunk[:left]
        left -= len(chunk)
        yield chunk


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, length)`` for a single ``bytes=`` range, or None if unsatisfiable."""
    m = _RANGE_RE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix range: the last N bytes
        n = min(int(m.group(2)), size)
        return (size - n, n) if n else None
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else size - 1
    if first >= size or last < first:
        return None
    last = min(last, size - 1)
    return first, last - first + 1


def _access_detail(repository: str | None) -> Any:
    if repository is None:
        return None
    return [{"Type": "repository", "Class": "", "Name": repository, "Action": "pull"}]


def _unsupported_manifest(media_type: str, real: Blob) -> Blob:
    # A well-formed document of an unknown type: the client must fail on the
    # type, not on a digest mismatch, so Docker-Content-Digest is its own digest.
    body = canonical_json(
        {"schemaVersion": 2, "mediaType": media_type, "lab": {"replaces": real.digest}}
    )
    return Blob(sha256_digest(body), len(body), media_type, data=body)


class LabRegistry:
    """A distribution registry (read side) serving a ``Catalogue`` in a background thread.

    Listens on ``host:port`` (port 0, the default, picks a free one; or use
    ``LabRegistry.listening_on("HOST:PORT")``). ``catalogue``, ``journal``,
    ``faults`` and ``auth`` may all be changed while it runs. With ``tls`` (a
    server-side ``ssl.SSLContext``) it speaks HTTPS only; each journal entry
    then names the TLS version, and failed handshakes land in ``tls_failures``.
    """

    #: Always False: tells apart a registry the suite controls from an external one.
    external = False

    def __init__(
        self,
        catalogue: Catalogue | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.catalogue = catalogue if catalogue is not None else Catalogue()
        self.journal = Journal()
        self.faults = FaultTable()
        self.auth = AuthTable()
        #: Token auth (distribution's token spec), a sibling of ``auth``; its rules win.
        self.tokens = TokenAuth()
        self.tls = tls
        #: Connections whose TLS handshake failed (an engine that does not trust the CA).
        self.tls_failures = HandshakeFailures()
        self._requested = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def listening_on(
        cls, listen: str, catalogue: Catalogue | None = None, tls: ssl.SSLContext | None = None
    ) -> LabRegistry:
        """A registry for ``"HOST:PORT"`` (``"[::1]:5000"`` for IPv6)."""
        host, port = parse_listen(listen)
        return cls(catalogue, host, port, tls)

    # --- life cycle -----------------------------------------------------------------

    def start(self) -> LabRegistry:
        """Bind and serve in a daemon thread; OSError if the address is taken."""
        if self._server is not None:
            return self
        host, port = self._requested
        server_class: type[_Server] = _Server
        if ":" in host:

            class _Server6(_Server):
                address_family = socket.AF_INET6

            server_class = _Server6
        self._server = server_class((host, port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for the loop's next poll
            name=f"lab-registry-{self.address}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections, free the port. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LabRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    # --- where ----------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._bound()[0]

    @property
    def port(self) -> int:
        return self._bound()[1]

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"``: the registry part of an image reference."""
        host, port = self._bound()
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def url(self) -> str:
        """``"http://127.0.0.1:PORT"`` (``https://`` when serving TLS)."""
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def _bound(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the lab registry is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def reference(self, repository: str, tag: str | None = None, digest: str | None = None) -> str:
        """``ADDRESS/<repository>[:tag][@digest]``; a short name takes the catalogue prefix."""
        name = self.catalogue.full_name(repository)
        ref = f"{self.address}/{name}"
        if tag:
            ref += f":{tag}"
        if digest:
            ref += f"@{digest}"
        return ref

    # --- shorthands -----------------------------------------------------------------

    def fault(self, fault: Fault, **where: Any) -> FaultRule:
        """``faults.add(fault, repository=..., prefix=..., times=...)``; usable with ``with``."""
        return self.faults.add(fault, **where)

    def require_auth(
        self, username: str, password: str, repository: str | None = None, realm: str = "lab"
    ) -> AuthRule:
        """Require Basic credentials for ``repository`` (None: the whole registry)."""
        return self.auth.require(username, password, repository, realm)

    def require_token_auth(
        self,
        repository: str | None = None,
        users: dict[str, str] | None = None,
        refresh_tokens: dict[str, str] | list[str] | None = None,
        public: bool = False,
    ) -> TokenRule:
        """Require a Bearer token for ``repository`` (None: the whole registry).

        The lab's ``/token`` grants pull tokens to ``users`` (name: password,
        as Basic or ``grant_type=password``), to holders of ``refresh_tokens``
        (token: user, or a list standing for the first user) and, if
        ``public``, to anyone. ``registry.tokens.remove(rule)`` or ``reset()`` undo it.
        """
        return self.tokens.require(repository, users, refresh_tokens, public)

    @property
    def token_realm(self) -> str:
        """The token endpoint's URL, the ``realm`` of the Bearer challenge."""
        return self.tokens.realm or f"{self.url}{TOKEN_PATH}"

    def reset(self) -> None:
        """Clear faults, auth rules (Basic and token) and the journal (between tests)."""
        self.faults.clear()
        self.auth.clear()
        self.tokens.clear()
        self.journal.clear()
        self.tls_failures.clear()

    def __repr__(self) -> str:
        where = self.address if self.running else "stopped"
        return f"<LabRegistry {where} repositories={len(self.catalogue.repositories())}>"


def parse_listen(listen: str) -> tuple[str, int]:
    """``("127.0.0.1", 5000)`` from ``"127.0.0.1:5000"``; ``[::1]:5000`` for IPv6.

    >>> parse_listen("127.0.0.1:0")
    ('127.0.0.1', 0)
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address must be HOST:PORT, not {listen!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)
