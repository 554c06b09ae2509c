"""curl reproducers: the request they send is the request the suite sent, byte for byte."""

from __future__ import annotations

import shlex
import socketserver
import subprocess
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

import pytest

from engine_conformance.engine.target import TLS, Target
from engine_conformance.judge.reproducer import curl

PARAMS = [
    ("fromSrc", "-"),
    ("changes", "ENV A=1 ü"),
    ("changes", 'CMD ["/bin/true"]'),
    ("message", "a&b=c%d +e\t"),
    ("repo", "ectest-1/prop-1"),
]


def test_socket_target_uses_unix_socket(tmp_path):
    line = curl(
        Target.parse("unix:///tmp/ec/docker.sock"),
        "POST",
        "/v1.44/images/create",
        PARAMS,
        {"Content-Type": "application/octet-stream"},
        tmp_path / "b.body",
    )
    words = shlex.split(line)
    assert words[words.index("--unix-socket") + 1] == "/tmp/ec/docker.sock"
    assert words[-1].startswith("http://localhost/v1.44/images/create?fromSrc=-&changes=")
    assert words[words.index("--data-binary") + 1] == f"@{tmp_path / 'b.body'}"


def test_tls_target_carries_the_client_certificate(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    target = Target(
        "https://engine:2376", "https://engine:2376", tls=TLS.from_cert_path(str(tmp_path))
    )
    words = shlex.split(curl(target, "POST", "/v1.44/images/create", [("fromImage", "a")], {}))
    assert words[words.index("--cacert") + 1] == str(tmp_path / "ca.pem")
    assert words[words.index("--cert") + 1] == str(tmp_path / "cert.pem")
    assert words[words.index("--key") + 1] == str(tmp_path / "key.pem")
    assert words[-1] == "https://engine:2376/v1.44/images/create?fromImage=a"
    assert "--unix-socket" not in words


class _UnixHTTP(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def socket_server(tmp_path):
    seen: list[tuple[str, dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((self.path, dict(self.headers), body))
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"message":"boom"}\n')

        def address_string(self):
            return "unix"

        def log_message(self, *args):
            pass

    path = tmp_path / "engine.sock"
    server = _UnixHTTP(str(path), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path, seen
    server.shutdown()
    server.server_close()


def test_the_reproducer_sends_the_same_request(socket_server, tmp_path):
    path, seen = socket_server
    body = bytes(range(256)) * 4
    body_file = tmp_path / "SCHEMA-004-1.body"
    body_file.write_bytes(body)
    secret = "eyJwYXNzd29yZCI6ImVjLXNlY3JldCJ9"
    line = curl(
        Target.parse(f"unix://{path}"),
        "POST",
        "/v1.44/images/create",
        PARAMS,
        {"Content-Type": "application/octet-stream", "X-Registry-Auth": secret},
        body_file,
    )
    shown = subprocess.run(line, shell=True, capture_output=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(b"HTTP/1.0 500"), shown.stdout[:200]
    (sent_path, headers, sent_body) = seen[0]
    assert urlsplit(sent_path).path == "/v1.44/images/create"
    assert parse_qsl(urlsplit(sent_path).query, keep_blank_values=True) == PARAMS
    assert headers["X-Registry-Auth"] == secret
    assert sent_body == body


def test_no_body_file_no_data(tmp_path):
    words = shlex.split(
        curl(
            Target.parse("tcp://127.0.0.1:2375"),
            "POST",
            "/v1.44/images/create",
            [("fromImage", "x")],
            {},
        )
    )
    assert "--data-binary" not in words
    assert words[-1] == "http://127.0.0.1:2375/v1.44/images/create?fromImage=x"
