"""The one target client: parsing, environment, negotiation, TLS, timeouts, answers cut short."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from deviant_proxy import DeviantProxy, Deviation, Response
from engine_conformance.engine.engines import ManagedDocker
from engine_conformance.engine.target import (
    Client,
    Exchange,
    Target,
    TargetError,
    Timeouts,
    UsageError,
)
from engine_conformance.run.runner import run_suite


@pytest.mark.parametrize(
    ("spec", "url", "uds"),
    [
        ("unix:///run/x.sock", "unix:///run/x.sock", "/run/x.sock"),
        ("/run/x.sock", "unix:///run/x.sock", "/run/x.sock"),
        ("tcp://10.1.2.3:2375", "http://10.1.2.3:2375", None),
        ("tcp://engine", "http://engine:2375", None),
        ("http://127.0.0.1:80", "http://127.0.0.1:80", None),
        ("tcp://[::1]:2375", "http://[::1]:2375", None),
    ],
)
def test_parse(spec, url, uds):
    target = Target.parse(spec, env={})
    assert (target.url, target.uds) == (url, uds)


@pytest.mark.parametrize("spec", ["ftp://x", "unix://", "tcp://", "tcp://h:notaport"])
def test_parse_refuses_nonsense(spec):
    with pytest.raises(UsageError):
        Target.parse(spec, env={})


def test_default_prefers_docker_host(tmp_path):
    assert Target.default({"DOCKER_HOST": "tcp://h:1"}).url == "http://h:1"


def test_tls_from_environment_needs_certificates(tmp_path):
    with pytest.raises(UsageError, match="lacks"):
        Target.parse(
            "tcp://h:2376", env={"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)}
        )


def test_negotiates_the_lower_of_spec_and_engine(docker):
    with Client(Target.parse(docker.target)) as client:
        assert client.negotiate() == "1.41"  # Docker 20.10's maximum, below the spec's 1.44


def test_negotiation_never_exceeds_the_spec_version(docker):
    newer = Deviation(
        "newer-engine",
        match=lambda req: req.path == "/version",
        response=lambda req, resp: Response.json(200, resp_json(resp) | {"ApiVersion": "1.50"}),
    )
    with DeviantProxy(docker.target, [newer]) as proxy, Client(Target.parse(proxy.target)) as c:
        assert c.negotiate() == "1.44"


def resp_json(resp: Response) -> dict:
    import json

    return json.loads(resp.body)


def test_pinned_version_is_used(docker):
    with Client(Target.parse(docker.target), api_version="1.30") as client:
        client.negotiate()
        ex = client.request("GET", "/_ping")
    assert ex.path == "/v1.30/_ping"


def test_docker_api_version_environment_pins_the_suite(docker, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_API_VERSION", "1.40")
    out = run_suite(docker.target, tmp_path, requirements=["ERRORS-003"])
    assert out.results["target"]["api_version"] == "1.40", out.output[-2000:]


def test_unreachable_target_is_an_error_not_a_traceback(tmp_path):
    with Client(Target.parse(f"unix://{tmp_path}/none.sock")) as client:
        with pytest.raises(TargetError, match="cannot reach"):
            client.negotiate()


def test_hung_engine_gives_an_error(docker):
    hang = Deviation("hang", hang=True)
    with DeviantProxy(docker.target, [hang]) as proxy:
        with Client(Target.parse(proxy.target), timeouts=Timeouts(read=1.0)) as client:
            client.negotiate()
            with pytest.raises(TargetError, match="did not answer"):
                client.create_image({"fromImage": "x"})


def test_hung_engine_is_an_error_verdict_not_a_fail(docker, tmp_path):
    hang = Deviation("hang", hang=True)
    with DeviantProxy(docker.target, [hang]) as proxy:
        out = run_suite(
            proxy.target, tmp_path, requirements=["ERRORS-003"], extra=["--request-timeout", "1"]
        )
    assert out.verdict("ERRORS-003") == "error", out.output[-2000:]


# -- an answer cut short: an incomplete message, not a failure to reach the engine --------------


HEAD_200 = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)
LINES = b'{"status":"Pulling from ectest/x"}\r\n{"status":"Digest: sha256:0"}\r\n'


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@contextmanager
def raw_engine(answer: bytes, *, hang: bool = False) -> Iterator[str]:
    """A one-answer "engine" on loopback: it reads a request, sends ``answer`` (bytes as
    they go on the wire) and closes the connection, or with ``hang`` keeps it open."""
    server = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            conn.sendall(answer)
            if hang:
                release.wait(30)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        release.set()
        server.close()
        thread.join(5)


def _create(target: str, read: float = 5.0) -> Exchange:
    with Client(Target.parse(target, env={}), timeouts=Timeouts(read=read)) as client:
        return client.create_image({"fromImage": "ectest/x"})


def test_a_chunked_answer_without_its_last_chunk_keeps_every_line():
    with raw_engine(HEAD_200 + _chunk(LINES)) as target:
        ex = _create(target)
    assert ex.status == 200
    assert [m.obj["status"] for m in ex.messages] == ["Pulling from ectest/x", "Digest: sha256:0"]
    assert ex.framing_errors == []
    assert ex.framing == "chunked"
    assert "before the chunked body's last chunk" in ex.incomplete
    assert f"after {len(LINES)} body bytes" in ex.incomplete
    assert ex.evidence()["incomplete"] == ex.incomplete


def test_a_cut_inside_a_line_is_no_framing_error():
    with raw_engine(HEAD_200 + _chunk(LINES + b'{"status":"Downl')) as target:
        ex = _create(target)
    assert len(ex.messages) == 2
    assert ex.framing_errors == []
    assert "ends inside a line (16 bytes" in ex.incomplete


def test_a_cut_inside_a_chunk_keeps_what_arrived():
    with raw_engine(HEAD_200 + b"%x\r\n" % (len(LINES) + 100) + LINES) as target:
        ex = _create(target)
    assert len(ex.messages) == 2
    assert "last chunk" in ex.incomplete


def test_a_chunked_body_that_cannot_be_decoded_is_incomplete():
    with raw_engine(HEAD_200 + _chunk(LINES) + b"zz\r\n") as target:
        ex = _create(target)
    assert len(ex.messages) == 2
    assert "could not be decoded" in ex.incomplete


def test_a_body_short_of_its_content_length_is_incomplete():
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
        len(LINES) + 10
    )
    with raw_engine(head + LINES) as target:
        ex = _create(target)
    assert len(ex.messages) == 2
    assert ex.framing == "content-length"
    assert (
        f"the connection closed after {len(LINES)} of the {len(LINES) + 10} body bytes"
        in ex.incomplete
    )


def test_a_whole_answer_is_not_incomplete():
    with raw_engine(HEAD_200 + _chunk(LINES) + b"0\r\n\r\n") as target:
        ex = _create(target)
    assert (len(ex.messages), ex.incomplete) == (2, "")
    assert ex.evidence()["incomplete"] is None


def test_a_connection_closed_before_the_status_line_is_still_unreachable():
    with raw_engine(b"") as target, pytest.raises(TargetError, match="cannot reach"):
        _create(target)


def test_a_cut_is_not_a_hang_and_a_hang_is_still_an_error():
    # The same lines, but the connection stays open: the read timeout, not an outcome.
    with raw_engine(HEAD_200 + _chunk(LINES), hang=True) as target:
        started = time.monotonic()
        with pytest.raises(TargetError, match="did not answer"):
            _create(target, read=1.0)
    assert time.monotonic() - started < 10


@pytest.fixture(scope="module")
def tls_docker():
    engine = ManagedDocker(tls=True)
    if not engine.available():
        pytest.skip("dockerd is not installed")
    with engine:
        yield engine


def test_mutual_tls(tls_docker, tmp_path):
    env = {"DOCKER_CERT_PATH": tls_docker.cert_path, "DOCKER_TLS_VERIFY": "1"}
    target = Target.parse(tls_docker.tls_target.replace("https", "tcp"), env=env)
    with Client(target) as client:
        assert client.negotiate() == "1.41"
    out = run_suite(target.url, tmp_path, requirements=["ERRORS-003"], env=_env(env))
    assert out.verdict("ERRORS-003") == "pass", out.output[-2000:]


def test_tls_without_client_certificate_is_refused(tls_docker, tmp_path):
    import shutil
    from pathlib import Path

    only_ca = tmp_path / "certs"
    only_ca.mkdir()
    shutil.copy(Path(tls_docker.cert_path) / "ca.pem", only_ca / "ca.pem")
    from engine_conformance.engine.target import TLS

    target = Target(
        url=tls_docker.tls_target,
        base_url=tls_docker.tls_target,
        tls=TLS(ca=str(only_ca / "ca.pem")),
    )
    with Client(target) as client, pytest.raises(TargetError):
        client.negotiate()


def _env(extra: dict) -> dict:
    import os

    return dict(os.environ) | extra
