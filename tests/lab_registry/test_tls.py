"""The lab registry over HTTPS (``tls=``): same answers, journal entries that name the
TLS version, Go's answer to plain HTTP on the HTTPS port, refused handshakes recorded."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine_conformance.engine.tls import ServeTLS
from lab_registry import Catalogue, LabRegistry
from lab_registry.gohttp import PLAIN_HTTP_TO_TLS


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> ServeTLS:
    return ServeTLS.create(tmp_path_factory.mktemp("tls"), "127.0.0.1")


@pytest.fixture(scope="module")
def tls_lab(lab_catalogue: Catalogue, material: ServeTLS) -> Iterator[LabRegistry]:
    with LabRegistry(lab_catalogue, tls=material.server_context()) as registry:
        yield registry


def test_serves_https_and_journals_the_tls_version(
    tls_lab: LabRegistry, lab_catalogue: Catalogue, material: ServeTLS
) -> None:
    assert tls_lab.url.startswith("https://")
    large = lab_catalogue.image("large", "latest").layers[0]
    blob = f"/v2/{lab_catalogue.name('large')}/blobs/{large.digest}"
    mark = tls_lab.journal.mark()
    with httpx.Client(base_url=tls_lab.url, verify=material.client_context()) as http:
        assert http.get("/v2/").json() == {}
        # An on-disk layer: sendfile cannot encrypt, so these bytes take the other way.
        whole = http.get(blob)
        part = http.get(blob, headers={"Range": "bytes=10-2000"})
    assert "sha256:" + hashlib.sha256(whole.content).hexdigest() == large.digest
    assert part.status_code == 206 and part.content == whole.content[10:2001]
    entries = tls_lab.journal.since(mark)
    assert [e.kind for e in entries] == ["base", "blob", "blob"]
    assert all(e.tls in ("TLSv1.2", "TLSv1.3") and e.complete for e in entries), entries


def test_plain_http_on_the_https_port_gets_gos_answer(tls_lab: LabRegistry) -> None:
    with socket.create_connection((tls_lab.host, tls_lab.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: lab\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer == PLAIN_HTTP_TO_TLS
    assert not [e for e in tls_lab.journal.entries() if e.tls is None]


def test_a_client_that_does_not_trust_the_ca_is_recorded(tls_lab: LabRegistry) -> None:
    tls_lab.reset()
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(tls_lab.url + "/v2/", verify=True)
    assert tls_lab.tls_failures.wait()
    assert "handshake" in tls_lab.tls_failures[0]


def test_material_is_reused_when_complete(tmp_path: Path) -> None:
    first = ServeTLS.ensure(tmp_path, "127.0.0.1")
    ca = first.ca_path.read_bytes()
    assert ServeTLS.ensure(tmp_path, "127.0.0.1").ca_path.read_bytes() == ca
    assert first.key_path.stat().st_mode & 0o077 == 0
