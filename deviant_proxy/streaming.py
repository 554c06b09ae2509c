"""Deviations that act on an exchange as it happens, not on a buffered answer.

:class:`~deviant_proxy.proxy.DeviantProxy` rewrites an answer only after reading
all of it (``Deviation.response``): right for bending what a stream says, but it
cannot bend what happens while the stream flows, such as whether a client's
hang-up reaches the engine. :class:`StreamingProxy` forwards exactly like
DeviantProxy, plain :class:`Deviation` rows included, and also honours
:class:`StreamDeviation`:

    >>> deaf = StreamDeviation("keeps-reading", keep_reading=True)
    >>> with StreamingProxy("unix:///tmp/d/docker.sock", [deaf]) as proxy:  # doctest: +SKIP
    ...     proxy.target        # a client hanging up here is never noticed by the engine

``keep_reading`` keeps the engine's answer flowing into the proxy after the
client has gone, so the engine never learns of the hang-up. ``drop_line`` leaves
out the stream lines for which it holds, as they flow (an engine that reports
no progress). ``unterminated`` ends a 200 answer by closing the connection
after the engine's last line, so that every line arrives but the message is
incomplete (RFC 9112 §8): ``"chunked"`` leaves out HTTP's last chunk
(``0\\r\\n\\r\\n``), ``"content-length"`` sends the engine's whole answer under a
Content-Length 1024 bytes larger than it. ``prelude`` sends
the engine one extra request before the real one (its answer is discarded): a
way to make an engine look as if it had done something it did not, such as
leaving an image behind.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import httpx

from .proxy import _HOP_BY_HOP, DeviantProxy, Deviation, Request, Response, send_chunked_head

_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
SHORT_BY = 1024
"""How many bytes more than it sends an ``unterminated="content-length"`` answer declares."""


@dataclass
class StreamDeviation(Deviation):
    """A :class:`Deviation` with hooks on the live exchange (see the module docstring).

    ``client_left`` is set when the client hung up on a streamed answer, and
    ``drained`` once a ``keep_reading`` proxy has read the engine's answer to its
    end after that.
    """

    keep_reading: bool = False
    drop_line: Callable[[bytes], bool] | None = None
    unterminated: str = ""  # "", "chunked" or "content-length"
    prelude: Callable[[Request], Request | None] | None = None
    client_left: threading.Event = field(default_factory=threading.Event)
    drained: threading.Event = field(default_factory=threading.Event)


class StreamingProxy(DeviantProxy):
    """A :class:`DeviantProxy` that also applies :class:`StreamDeviation` hooks."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._picked = threading.local()  # the deviation of the request a thread is handling
        # Not typed below: DeviantProxy's arguments, passed through as given.
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _deviation_for(self, req: Request) -> Deviation | None:
        deviation = super()._deviation_for(req)
        self._picked.deviation = deviation
        if isinstance(deviation, StreamDeviation) and deviation.prelude is not None:
            extra = deviation.prelude(req)
            if extra is not None:
                self._http.send(self._outgoing(extra)).close()
        return deviation

    def _forward_streaming(self, req: Request, handler: BaseHTTPRequestHandler) -> None:
        deviation = getattr(self._picked, "deviation", None)
        self._picked.deviation = None
        if isinstance(deviation, StreamDeviation) and deviation.unterminated == "content-length":
            self._forward_short(req, handler)
        elif isinstance(deviation, StreamDeviation) and (
            deviation.keep_reading or deviation.drop_line is not None or deviation.unterminated
        ):
            self._forward_deaf(req, handler, deviation)
        else:
            super()._forward_streaming(req, handler)

    def _forward_deaf(
        self, req: Request, handler: BaseHTTPRequestHandler, deviation: StreamDeviation
    ) -> None:
        """Stream the answer through, without the lines ``drop_line`` picks; if the client
        hangs up, go on reading it to its end when ``keep_reading``, else hang up too.
        An ``unterminated`` 200 answer ends with the connection closed, not the last chunk."""
        resp = self._http.send(self._outgoing(req), stream=True)
        gone = False
        pending = b""
        try:
            try:
                send_chunked_head(handler, resp)
            except _GONE:
                gone = True
            for raw in resp.iter_raw():
                if gone and not deviation.keep_reading:
                    break  # closing our side passes the hang-up on
                if gone or not raw:
                    continue  # the engine goes on writing to us; nobody reads it
                chunk = raw
                if deviation.drop_line is not None:
                    lines = (pending + raw).split(b"\n")
                    pending = lines.pop()
                    chunk = b"".join(
                        line + b"\n" for line in lines if not deviation.drop_line(line)
                    )
                    if not chunk:
                        # Nothing to write, so no write can fail: ask the socket instead.
                        gone = _client_gone(handler)
                        if gone:
                            deviation.client_left.set()
                        continue
                try:
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    handler.wfile.flush()
                except _GONE:
                    gone = True
                    deviation.client_left.set()
            if gone:
                deviation.drained.set()
            else:
                if pending and not (deviation.drop_line and deviation.drop_line(pending)):
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(pending), pending))
                if deviation.unterminated and resp.status_code == 200:
                    handler.wfile.flush()
                    handler.close_connection = True  # the server closes it: EOF, no last chunk
                else:
                    handler.wfile.write(b"0\r\n\r\n")
        except _GONE:
            pass
        except (OSError, httpx.HTTPError):
            pass  # the proxy is stopping: its client to the engine was closed under us
        finally:
            resp.close()

    def _forward_short(self, req: Request, handler: BaseHTTPRequestHandler) -> None:
        """The engine's whole answer; a 200 one under a Content-Length larger than its
        body, after which the connection is closed (the message is incomplete)."""
        resp = self._http.send(self._outgoing(req))
        if resp.status_code != 200:
            # Not typed below: the handler class is made in DeviantProxy._handler; _send is its own.
            handler._send(Response(resp.status_code, dict(resp.headers), resp.content))  # type: ignore[attr-defined]
            return
        try:
            handler.send_response(200)
            for key, value in resp.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(resp.content) + SHORT_BY))
            handler.end_headers()
            handler.wfile.write(resp.content)
            handler.wfile.flush()
        except _GONE:
            pass
        handler.close_connection = True


def _client_gone(handler: BaseHTTPRequestHandler) -> bool:
    """Whether the client closed its connection (it sends nothing more on a live one)."""
    conn = handler.connection
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
