"""A tiny HTTP server for ``fromSrc=<URL>`` imports: serves bytes the suite registers.

    >>> with FileServer("127.0.0.1") as files:                 # doctest: +SKIP
    ...     url = files.add("rootfs.tar", data)  # http://127.0.0.1:PORT/<token>/rootfs.tar
    ...     files.requests                       # [("GET", "/<token>/rootfs.tar", 200)]

Anything not registered answers 404, which the suite also relies on. It
listens on an address the engine can reach (``--serve-host``). With ``tls`` (a
server-side ``ssl.SSLContext``) it serves HTTPS only, so a request in
``requests`` came over TLS; failed handshakes land in ``tls_failures``.
"""

from __future__ import annotations

import secrets
import ssl
import threading
from http.server import ThreadingHTTPServer

from lab_registry.gohttp import GoProtocolErrors, HandshakeFailures


class FileServer:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.tls = tls
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.tls_failures = HandshakeFailures()
        self._lock = threading.Lock()
        server = self

        class Handler(GoProtocolErrors):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                data = server.files.get(self.path)
                status = 200 if data is not None else 404
                with server._lock:
                    server.requests.append(("GET", self.path, status))
                body = data if data is not None else b"not found\n"
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass  # quiet: the journal above is the record

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        # Not typed below: read by the handler through self.server: ThreadingHTTPServer has no such
        # slot.
        self._httpd.tls_context = tls  # type: ignore[attr-defined]
        self._httpd.tls_failures = self.tls_failures  # type: ignore[attr-defined]
        # stop() waits for the serving loop's next poll: 0.5 s by default, at every stop.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    def add(self, name: str, data: bytes) -> str:
        """Serve ``data``; returns its URL (under an unguessable path)."""
        path = f"/{secrets.token_hex(6)}/{name}"
        self.files[path] = data
        return self.base_url + path

    def missing(self, name: str) -> str:
        """A URL on this server that answers 404."""
        return f"{self.base_url}/{secrets.token_hex(6)}/{name}"

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
