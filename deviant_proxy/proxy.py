"""The proxy server and the vocabulary for describing a deviation."""

from __future__ import annotations

import json
import os
import re
import socketserver
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from engine_conformance.engine.target import Target

_VERSIONED = re.compile(r"^/v(\d+\.\d+)(/.*)$")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


@dataclass(frozen=True)
class Request:
    """A request as the client sent it; ``endpoint`` is the path without ``/vX.Y``."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str]
    body: bytes = b""

    @property
    def endpoint(self) -> str:
        m = _VERSIONED.match(self.path)
        return m.group(2) if m else self.path

    @property
    def version(self) -> str | None:
        m = _VERSIONED.match(self.path)
        return m.group(1) if m else None

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    def params(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]

    def with_params(self, **changes: str | list[str] | None) -> Request:
        """A copy with query keys replaced (a list repeats the key; None drops it)."""
        query = [(k, v) for k, v in self.query if k not in changes]
        for key, value in changes.items():
            if isinstance(value, list):
                query += [(key, v) for v in value]
            elif value is not None:
                query.append((key, value))
        return replace(self, query=tuple(query))

    def replace(self, **kw: Any) -> Request:
        return replace(self, **kw)


@dataclass(frozen=True)
class Response:
    """A whole answer (the proxy buffers it when a deviation rewrites it)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, obj: object) -> Response:
        return cls(status, {"Content-Type": "application/json"}, json.dumps(obj).encode() + b"\n")

    @classmethod
    def stream(cls, objs: Iterable[object], status: int = 200) -> Response:
        body = b"".join(json.dumps(o).encode() + b"\r\n" for o in objs)
        return cls(status, {"Content-Type": "application/json"}, body)

    def lines(self) -> list[dict[str, Any]]:
        """The JSON objects of a progress stream (lines that are not JSON are dropped)."""
        out = []
        for line in self.body.splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def replace(self, **kw: Any) -> Response:
        if "headers" in kw:
            merged = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in {h.lower() for h in kw["headers"]}
            }
            kw["headers"] = merged | dict(kw["headers"])
        return replace(self, **kw)


@dataclass
class Deviation:
    """One way of not conforming.

    ``match`` picks the exchanges it applies to (default: every
    ``/images/create``); then, in order: ``request`` rewrites what is
    forwarded, ``answer`` answers instead of the engine (the engine never
    sees the request), ``response`` rewrites the engine's answer, and
    ``hang`` never answers at all. ``limit`` applies it to the first N
    matching exchanges only; ``seen`` is set at the first one, so a test can
    wait for the moment the deviation takes effect instead of sleeping.
    """

    name: str
    match: Callable[[Request], bool] = lambda req: req.endpoint == "/images/create"
    request: Callable[[Request], Request] | None = None
    answer: Callable[[Request], Response] | None = None
    response: Callable[[Request, Response], Response] | None = None
    hang: bool = False
    limit: int | None = None
    hits: int = 0
    seen: threading.Event = field(default_factory=threading.Event)


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class DeviantProxy:
    """Serves on ``127.0.0.1:<port>`` and forwards to ``engine`` (a target URL).

    ``unix=PATH`` serves on a unix socket at PATH instead, as a local engine does
    (``target`` is then ``unix://PATH``; the socket file is removed on ``stop``).
    """

    def __init__(
        self,
        engine: str,
        deviations: Iterable[Deviation] = (),
        host: str = "127.0.0.1",
        unix: str | None = None,
    ) -> None:
        self.engine = Target.parse(engine)
        self.deviations = list(deviations)
        self.unix = unix
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._http = self.engine.http_client(httpx.Timeout(300.0, connect=5.0))
        self._httpd: socketserver.BaseServer = (
            _UnixHTTPServer(unix, self._handler())
            if unix
            else ThreadingHTTPServer((host, 0), self._handler())
        )
        self._httpd.daemon_threads = True
        # stop() waits for the serving loop's next poll: 0.5 s by default, at every stop.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def target(self) -> str:
        if self.unix:
            return f"unix://{self.unix}"
        address = self._httpd.server_address
        assert isinstance(address, tuple)  # a TCP server's (host, port)
        return f"tcp://{address[0]}:{address[1]}"

    def start(self) -> DeviantProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._http.close()
        if self.unix and os.path.exists(self.unix):
            os.unlink(self.unix)

    def __enter__(self) -> DeviantProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _deviation_for(self, req: Request) -> Deviation | None:
        with self._lock:
            return self._pick(req)

    def _pick(self, req: Request) -> Deviation | None:
        for deviation in self.deviations:
            if deviation.limit is not None and deviation.hits >= deviation.limit:
                continue
            if deviation.match(req):
                deviation.hits += 1
                deviation.seen.set()
                return deviation
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                req = Request(
                    method=self.command,
                    path=parts.path,
                    query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self._read_body(),
                )
                deviation = proxy._deviation_for(req)
                if deviation and deviation.hang:
                    proxy._stopping.wait()
                    return
                if deviation and deviation.request:
                    req = deviation.request(req)
                if deviation and deviation.answer:
                    self._send(deviation.answer(req))
                    return
                if deviation and deviation.response:
                    self._send(deviation.response(req, proxy._forward_buffered(req)))
                    return
                proxy._forward_streaming(req, self)

            do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _handle

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return bytes(body)
                        body += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, resp: Response) -> None:
                self.send_response(resp.status)
                for key, value in resp.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def _outgoing(self, req: Request) -> httpx.Request:
        headers = {k: v for k, v in req.headers.items() if k not in _HOP_BY_HOP and k != "host"}
        url = req.path + ("?" + urlencode(list(req.query)) if req.query else "")
        return self._http.build_request(req.method, url, headers=headers, content=req.body or None)

    def _forward_buffered(self, req: Request) -> Response:
        resp = self._http.send(self._outgoing(req))
        return Response(resp.status_code, dict(resp.headers), resp.content)

    def _forward_streaming(self, req: Request, handler: BaseHTTPRequestHandler) -> None:
        resp = self._http.send(self._outgoing(req), stream=True)
        try:
            send_chunked_head(handler, resp)
            for chunk in resp.iter_raw():
                if chunk:
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: closing our side cancels the engine's work too
        finally:
            resp.close()


def send_chunked_head(handler: BaseHTTPRequestHandler, resp: httpx.Response) -> None:
    """Status and end-to-end headers of the engine's answer, re-framed as chunked."""
    handler.send_response(resp.status_code)
    for key, value in resp.headers.items():
        if key.lower() not in _HOP_BY_HOP:
            handler.send_header(key, value)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
