"""Protocol errors answered the way Go's ``net/http`` server answers them, byte for byte.

``http.server`` answers a request line it cannot parse HTTP/0.9-style: an HTML
page with no status line. A client that sent a TLS ClientHello to a plain-HTTP
port then cannot tell what happened. Go's TLS client (Docker's containerd image
store, containerd, Podman) falls back to plain HTTP only when the answer starts
with ``HTTP/`` ("server gave HTTP response to HTTPS client"), which a Go server
and the distribution registry always give:

    >>> go_error(400).split(b"\\r\\n")[::2]
    [b'HTTP/1.1 400 Bad Request', b'Connection: close', b'400 Bad Request']
    >>> request_line_problem(b"GET /v2/\\r\\n")
    (400, None)
    >>> request_line_problem(b"GET /v2/ HTTP/1.1\\r\\n") is None
    True

``GoProtocolErrors`` puts this in a ``BaseHTTPRequestHandler``: the request
line is checked the way Go's ``readRequest`` checks it, an HTTP/1.1 request
needs one ``Host``, and every error ``http.server`` itself raises goes out with
a status line and Go's plain-text body, then the connection closes.

Given a server with a ``tls_context``, it also serves HTTPS the way Go's
``ListenAndServeTLS`` does: the handshake runs in the connection's own thread
(a slow client never stalls the accept loop), a plain-HTTP request gets Go's
plain-text 400, and a failed handshake is appended to the server's
``tls_failures`` (an engine that rejects the certificate shows up there).
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

_ERROR_HEADERS = b"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Go's StatusText where it differs from Python's phrase.
_GO_PHRASES = {414: "URI Too Long"}
# The explanations Go's server adds to its own status errors.
_GO_TEXT = {505: "unsupported protocol version"}
# What Go's TLS server answers a plain-HTTP request with (net/http, server.go).
PLAIN_HTTP_TO_TLS = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
_LOOKS_LIKE_HTTP = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")
_TLS_HANDSHAKE_RECORD = 0x16
HANDSHAKE_TIMEOUT = 30.0


class HandshakeFailures(list[str]):
    """The failed TLS handshakes of a server, one line each; ``wait`` blocks for them.

    The server notes a failure after the client has given up, so a test that
    has just seen an engine refuse the certificate waits here for the record.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()

    def append(self, failure: str) -> None:
        with self._cond:
            super().append(failure)
            self._cond.notify_all()

    def wait(self, count: int = 1, timeout: float = 10.0) -> bool:
        """True once at least ``count`` failures are recorded; False after ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self) >= count, timeout)


def go_error(status: int, text: str | None = None) -> bytes:
    """The whole response Go's server writes for a request it refuses to read."""
    phrase = _GO_PHRASES.get(status) or HTTPStatus(status).phrase
    public = f"{status} {phrase}" + (f": {text}" if text else "")
    return b"HTTP/1.1 " + public.encode() + _ERROR_HEADERS + public.encode()


def request_line_problem(raw: bytes) -> tuple[int, str | None] | None:
    """``(status, text)`` Go answers for this request line, or None if Go reads on.

    Go splits at the first two single spaces, wants a token method, a
    ``HTTP/d.d`` version (only 1.x served) and a request URI that parses.
    """
    line = raw.decode("latin-1")
    line = line[:-1] if line.endswith("\n") else line
    line = line[:-1] if line.endswith("\r") else line
    method, sp1, rest = line.partition(" ")
    uri, sp2, proto = rest.partition(" ")
    if not (sp1 and sp2) or not _TOKEN.fullmatch(method):
        return 400, None
    version = _VERSION.fullmatch(proto)
    if version is None:
        return 400, None
    if not _request_uri_ok(uri):
        return 400, None
    if version.group(1) != "1":
        return 505, _GO_TEXT[505]
    return None


def _request_uri_ok(uri: str) -> bool:
    # url.ParseRequestURI: "*", an absolute path, or an absolute URL; no control bytes.
    if not uri or _CONTROL.search(uri):
        return False
    return uri == "*" or uri.startswith("/") or _SCHEME.match(uri) is not None


class GoProtocolErrors(BaseHTTPRequestHandler):
    """Mixin for an ``http.server`` handler: Go's answers to requests that do not parse.

    ``tls_version`` is the negotiated protocol ("TLSv1.3") on an HTTPS
    connection, None on plain HTTP.
    """

    tls_version: str | None = None
    _tls_refused = False

    def setup(self) -> None:
        context: ssl.SSLContext | None = getattr(self.server, "tls_context", None)
        if context is not None:
            self.request = self._start_tls(context)
        super().setup()

    def handle(self) -> None:
        if self._tls_refused:
            self.close_connection = True
            return
        super().handle()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            # The wrapped socket owns the descriptor now; socketserver only
            # closes the plain one it accepted.
            if isinstance(self.request, ssl.SSLSocket):
                self.request.close()

    def _start_tls(self, context: ssl.SSLContext) -> socket.socket:
        raw: socket.socket = self.request
        raw.settimeout(HANDSHAKE_TIMEOUT)
        try:
            first = raw.recv(5, socket.MSG_PEEK | socket.MSG_WAITALL)
            if not first or first[0] != _TLS_HANDSHAKE_RECORD:
                self._tls_refused = True
                if first[:5] in _LOOKS_LIKE_HTTP:
                    raw.sendall(PLAIN_HTTP_TO_TLS)
                    self._tls_failure("plain HTTP request on the HTTPS port")
                return raw
            wrapped = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        except OSError as exc:
            self._tls_refused = True
            self._tls_failure(f"before the handshake: {exc}")
            return raw
        try:
            wrapped.do_handshake()
        except (OSError, ValueError) as exc:
            self._tls_refused = True
            self._tls_failure(f"handshake: {exc}")
            return wrapped
        wrapped.settimeout(None)
        self.tls_version = wrapped.version()
        return wrapped

    def _tls_failure(self, what: str) -> None:
        failures = getattr(self.server, "tls_failures", None)
        if failures is not None:
            failures.append(f"{self.client_address[0]}: {what}")

    def parse_request(self) -> bool:
        # Set by BaseHTTPRequestHandler.handle_one_request; typeshed leaves it out.
        problem = request_line_problem(self.raw_requestline)  # type: ignore[attr-defined]
        if problem is not None:
            # Not typed below: BaseHTTPRequestHandler's own reset of a bad request line.
            self.command = None  # type: ignore[assignment]
            self.requestline = ""
            self._refuse(*problem)
            return False
        if not super().parse_request():
            return False
        hosts = self.headers.get_all("Host") or []
        if self.request_version != "HTTP/1.0" and not hosts:
            self._refuse(400, "missing required Host header")
            return False
        if len(hosts) > 1:
            self._refuse(400, "too many Host headers")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Only http.server calls this (header too long, no such method...): the
        # handler's own answers are never HTML pages either.
        self._refuse(code, _GO_TEXT.get(code))

    def _refuse(self, status: int, text: str | None) -> None:
        self.close_connection = True
        self.wfile.write(go_error(status, text))
