"""Faults on demand, Basic auth, and the request journal."""

from __future__ import annotations

import hashlib
import socket
import time

import httpx
import pytest

from lab_registry import (
    Catalogue,
    CorruptBlob,
    CutShort,
    ErrorStatus,
    LabRegistry,
    Throttle,
    UnsupportedManifest,
    basic_header,
)
from lab_registry import mediatypes as mt

ACCEPT = {"Accept": f"{mt.DOCKER_MANIFEST}, {mt.DOCKER_MANIFEST_LIST}, {mt.OCI_MANIFEST}"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class TestErrorStatus:
    @pytest.mark.parametrize(
        ("status", "code"),
        [(401, "UNAUTHORIZED"), (403, "DENIED"), (404, "MANIFEST_UNKNOWN"),
         (429, "TOOMANYREQUESTS"), (500, "UNKNOWN"), (503, "UNAVAILABLE")],
    )  # fmt: skip
    def test_status_with_oci_body(
        self, lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue, status: int, code: str
    ) -> None:
        name = lab_catalogue.name("single")
        with lab.fault(ErrorStatus(status), repository=name):
            r = http.get(f"/v2/{name}/manifests/v1", headers=ACCEPT)
            assert r.status_code == status
            assert r.json()["errors"][0]["code"] == code
            assert r.json()["errors"][0]["message"]
            if status == 401:
                assert r.headers["WWW-Authenticate"] == 'Basic realm="lab"'
            # Other repositories are untouched.
            other = http.get(f"/v2/{lab_catalogue.name('oci')}/manifests/latest", headers=ACCEPT)
            assert other.status_code == 200
        assert http.get(f"/v2/{name}/manifests/v1", headers=ACCEPT).status_code == 200

    def test_blob_404_is_blob_unknown(
        self, lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue
    ) -> None:
        blob = lab_catalogue.image("single", "v1").config
        lab.fault(ErrorStatus(404), prefix=f"/v2/{lab_catalogue.name('single')}/blobs/")
        r = http.get(f"/v2/{lab_catalogue.name('single')}/blobs/{blob.digest}")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
        # ...while manifests, outside the prefix, still work.
        assert http.head(f"/v2/{lab_catalogue.name('single')}/manifests/v1").status_code == 200

    def test_times_then_recovers(
        self, lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue
    ) -> None:
        url = f"/v2/{lab_catalogue.name('single')}/manifests/v1"
        rule = lab.fault(ErrorStatus(503, retry_after=2), repository=lab_catalogue.name("single"),
                         times=2)  # fmt: skip
        first = http.get(url, headers=ACCEPT)
        assert first.status_code == 503 and first.headers["Retry-After"] == "2"
        assert http.get(url, headers=ACCEPT).status_code == 503
        assert http.get(url, headers=ACCEPT).status_code == 200
        assert rule.spent and lab.faults.rules() == []

    def test_prefix_covers_the_base_endpoint(self, lab: LabRegistry, http: httpx.Client) -> None:
        lab.fault(ErrorStatus(500, message="boom"), prefix="/v2/")
        r = http.get("/v2/")
        assert r.status_code == 500 and r.json()["errors"][0] == {"code": "UNKNOWN",
                                                                    "message": "boom"}  # fmt: skip
        lab.faults.clear()
        assert http.get("/v2/").status_code == 200

    def test_rejects_non_error_status(self) -> None:
        with pytest.raises(ValueError):
            ErrorStatus(200)


def test_throttle(lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue) -> None:
    layer = lab_catalogue.image("large", "latest").layers[0]
    url = f"/v2/{lab_catalogue.name('large')}/blobs/{layer.digest}"
    lab.fault(Throttle(512 * 1024), repository=lab_catalogue.name("large"))
    t0 = time.monotonic()
    r = http.get(url, headers={"Range": "bytes=0-262143"})
    elapsed = time.monotonic() - t0
    assert r.status_code == 206 and len(r.content) == 262144
    assert r.content == layer.read()[:262144]
    assert 0.4 < elapsed < 3, f"256 KiB at 512 KiB/s took {elapsed:.2f}s"


def test_cut_short(lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue) -> None:
    layer = lab_catalogue.image("large", "latest").layers[0]
    url = f"/v2/{lab_catalogue.name('large')}/blobs/{layer.digest}"
    mark = lab.journal.mark()
    with lab.fault(CutShort(1000), repository=lab_catalogue.name("large")):
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(url)
    entry = lab.journal.wait_for(lambda e: e.kind == "blob", mark=mark)
    assert entry is not None
    assert entry.cut_short and not entry.client_hung_up and not entry.complete
    assert (entry.bytes_sent, entry.body_size) == (1000, layer.size)
    assert http.get(url).status_code == 200  # the fault is gone with the block


def test_fault_after_another_is_spent(
    lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue
) -> None:
    layer = lab_catalogue.image("large", "latest").layers[0]
    url = f"/v2/{lab_catalogue.name('large')}/blobs/{layer.digest}"
    cut = lab.fault(CutShort(1000), prefix=url, times=1)
    gone = lab.fault(ErrorStatus(404), prefix=url, after=cut)
    try:
        assert http.head(url).status_code == 200  # a HEAD spends no body fault
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(url)
        assert [http.get(url).status_code for _ in range(2)] == [404, 404]
    finally:
        gone.remove()


def test_cut_short_manifest(lab: LabRegistry, lab_catalogue: Catalogue) -> None:
    lab.fault(CutShort(10), repository=lab_catalogue.name("single"))
    url = f"{lab.url}/v2/{lab_catalogue.name('single')}/manifests/v1"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url, headers=ACCEPT)


def test_corrupt_blob(lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue) -> None:
    name = lab_catalogue.name("single")
    layer = lab_catalogue.image("single", "v1").layers[0]
    lab.fault(CorruptBlob(), repository=name)
    r = http.get(f"/v2/{name}/blobs/{layer.digest}")
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == layer.digest
    assert len(r.content) == layer.size and sha256(r.content) != layer.digest
    # Manifests are not blobs: they stay intact.
    m = http.get(f"/v2/{name}/manifests/v1", headers=ACCEPT)
    assert sha256(m.content) == m.headers["Docker-Content-Digest"]


def test_corrupt_large_blob(lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue) -> None:
    layer = lab_catalogue.image("large", "latest").layers[0]
    lab.fault(CorruptBlob(), prefix=f"/v2/{lab_catalogue.name('large')}/blobs/")
    r = http.get(f"/v2/{lab_catalogue.name('large')}/blobs/{layer.digest}")
    assert len(r.content) == layer.size and sha256(r.content) != layer.digest


def test_unsupported_manifest(
    lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue
) -> None:
    name = lab_catalogue.name("single")
    with lab.fault(UnsupportedManifest(), repository=name):
        r = http.get(f"/v2/{name}/manifests/v1", headers=ACCEPT)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == mt.UNSUPPORTED_MANIFEST
        assert r.json()["mediaType"] == mt.UNSUPPORTED_MANIFEST
        assert r.headers["Docker-Content-Digest"] == sha256(r.content)
        head = http.head(f"/v2/{name}/manifests/v1", headers=ACCEPT)
        assert head.headers["Content-Type"] == mt.UNSUPPORTED_MANIFEST


class TestAuth:
    def test_whole_registry(self, lab: LabRegistry, http: httpx.Client) -> None:
        lab.require_auth("alice", "s3cret")
        r = http.get("/v2/")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Basic realm="lab"'
        assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
        good = {"Authorization": basic_header("alice", "s3cret")}
        assert http.get("/v2/", headers=good).status_code == 200
        bad = {"Authorization": basic_header("alice", "wrong")}
        assert http.get("/v2/", headers=bad).status_code == 401
        assert http.get("/v2/", headers={"Authorization": "Bearer x"}).status_code == 401

    def test_one_repository(
        self, lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue
    ) -> None:
        private = lab_catalogue.name("oci")
        lab.require_auth("bob", "pw", repository=private)
        creds = {"Authorization": basic_header("bob", "pw"), **ACCEPT}
        r = http.get(f"/v2/{private}/manifests/latest", headers=ACCEPT)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="lab"'
        detail = r.json()["errors"][0]["detail"][0]
        assert detail == {"Type": "repository", "Class": "", "Name": private, "Action": "pull"}
        assert http.get(f"/v2/{private}/manifests/latest", headers=creds).status_code == 200
        # Unprotected repositories need nothing; the ping challenges so engines learn the scheme.
        public = http.get(f"/v2/{lab_catalogue.name('single')}/manifests/v1", headers=ACCEPT)
        assert public.status_code == 200
        assert http.get("/v2/").status_code == 401
        assert http.get("/v2/", headers=creds).status_code == 200

    def test_password_never_in_repr(self, lab: LabRegistry, http: httpx.Client) -> None:
        rule = lab.require_auth("carol", "hunter2-secret")
        assert "hunter2-secret" not in repr(rule) and "hunter2-secret" not in repr(lab.auth)
        header = basic_header("carol", "hunter2-secret")
        http.get("/v2/", headers={"Authorization": header})
        entry = lab.journal.entries()[-1]
        assert entry.authorization == header and entry.auth_username == "carol"
        assert header not in repr(entry) and "hunter2" not in repr(entry)


class TestJournal:
    def test_records_requests(
        self, lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue
    ) -> None:
        name = lab_catalogue.name("single")
        mark = lab.journal.mark()
        m = http.get(f"/v2/{name}/manifests/v1", headers={**ACCEPT, "Authorization": "Basic eDp5"})
        http.head(f"/v2/{name}/blobs/sha256:{'0' * 64}")
        entries = lab.journal.since(mark)
        assert [(e.method, e.kind, e.status) for e in entries] == [
            ("GET", "manifest", 200),
            ("HEAD", "blob", 404),
        ]
        first = entries[0]
        assert first.path == f"/v2/{name}/manifests/v1"
        assert (first.repository, first.reference) == (name, "v1")
        assert first.authorization == "Basic eDp5" and first.auth_username == "x"
        assert first.bytes_sent == first.body_size == len(m.content) and first.complete
        assert not first.client_hung_up and not first.cut_short
        assert entries[1].authorization is None and entries[1].bytes_sent == 0

    def test_mark_since_clear(self, lab: LabRegistry, http: httpx.Client) -> None:
        http.get("/v2/")
        mark = lab.journal.mark()
        http.get("/v2/")
        http.get("/v2/_catalog")
        assert [e.kind for e in lab.journal.since(mark)] == ["base", "catalog"]
        assert len(lab.journal.entries()) == 3
        lab.journal.clear()
        assert lab.journal.entries() == [] and len(lab.journal) == 0
        http.get("/v2/")
        assert len(lab.journal.since(mark)) == 1  # marks survive a clear

    def test_records_faults(
        self, lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue
    ) -> None:
        lab.fault(ErrorStatus(429), prefix="/v2/_catalog")
        http.get("/v2/_catalog")
        assert lab.journal.entries()[-1].fault == "ErrorStatus(429)"
        assert lab.journal.entries()[-1].status == 429

    def test_client_hang_up(self, lab: LabRegistry, lab_catalogue: Catalogue) -> None:
        layer = lab_catalogue.image("large", "latest").layers[0]
        path = f"/v2/{lab_catalogue.name('large')}/blobs/{layer.digest}"
        # Throttled, so the body is certainly still in flight when we leave.
        lab.fault(Throttle(256 * 1024), repository=lab_catalogue.name("large"))
        mark = lab.journal.mark()
        with socket.create_connection((lab.host, lab.port)) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            time.sleep(0.2)
            # RST instead of FIN: the server's next write fails at once.
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        entry = lab.journal.wait_for(lambda e: e.kind == "blob", timeout=10, mark=mark)
        assert entry is not None and entry.client_hung_up and not entry.complete
        assert 0 < entry.bytes_sent < layer.size and entry.status == 200
