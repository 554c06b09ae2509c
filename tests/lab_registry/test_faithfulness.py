"""Faithfulness: the lab registry answers like the real distribution registry.

Two levels. Protocol: the same requests to both registries, holding the same
images, get the same status, headers and bytes. Engine: a private dockerd pulls
the same image from each, and what it reports (Id, RepoDigests, platform,
Config, stream) is the same.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from collections.abc import Iterator

import httpx
import pytest

from lab_registry import Catalogue, LabRegistry, basic_header
from lab_registry import mediatypes as mt
from lab_registry.distribution import DistributionRegistry

# Headers a client acts on; Date/Server and friends differ by nature.
COMPARED_HEADERS = (
    "content-type", "content-length", "docker-content-digest", "docker-distribution-api-version",
    "etag", "accept-ranges", "content-range", "location",
)  # fmt: skip

ACCEPTS = [
    mt.DOCKER_MANIFEST,
    f"{mt.DOCKER_MANIFEST}, {mt.DOCKER_MANIFEST_LIST}",
    f"{mt.DOCKER_MANIFEST}, {mt.OCI_MANIFEST}",
    f"{mt.DOCKER_MANIFEST}, {mt.DOCKER_MANIFEST_LIST}, {mt.OCI_MANIFEST}, {mt.OCI_INDEX}",
]


def _requests(cat: Catalogue) -> Iterator[tuple[str, str, dict[str, str]]]:
    # Every Accept here names schema 2: where it does not, distribution down-converts
    # to schema 1, the one deliberate difference (see server._negotiate).
    for repository, tag, artifact in cat.artifacts():
        for accept in ACCEPTS:
            for method in ("GET", "HEAD"):
                yield method, f"/v2/{repository}/manifests/{tag}", {"Accept": accept}
                yield method, f"/v2/{repository}/manifests/{artifact.digest}", {"Accept": accept}
        for blob in artifact.blobs:
            yield "GET", f"/v2/{repository}/blobs/{blob.digest}", {}
            yield "HEAD", f"/v2/{repository}/blobs/{blob.digest}", {}
        yield "GET", f"/v2/{repository}/tags/list", {}
    single = cat.name("single")
    large = cat.image("large", "latest").layers[0].digest
    zero = "sha256:" + "0" * 64
    yield "GET", "/v2/", {}
    yield "GET", "/v2", {}
    yield "GET", "/v2/_catalog", {}
    yield "GET", f"/v2/{cat.name('large')}/blobs/{large}", {"Range": "bytes=10-2000"}
    yield "GET", f"/v2/{cat.name('large')}/blobs/{large}", {"Range": "bytes=4096-"}
    yield "GET", f"/v2/{single}/manifests/nope", {"Accept": mt.DOCKER_MANIFEST}
    yield "HEAD", f"/v2/{single}/manifests/nope", {"Accept": mt.DOCKER_MANIFEST}
    yield "GET", f"/v2/{single}/manifests/{zero}", {"Accept": mt.DOCKER_MANIFEST}
    yield "GET", f"/v2/{single}/blobs/{zero}", {}
    yield "HEAD", f"/v2/{single}/blobs/{zero}", {}
    yield "GET", f"/v2/{single}/blobs/sha256:abc", {}
    yield "GET", f"/v2/{single}/blobs/latest", {}
    yield "GET", f"/v2/{single}/manifests/bad%20tag", {}
    yield "GET", f"/v2/{cat.name('nope')}/tags/list", {}
    yield "GET", f"/v2/{cat.name('nope')}/manifests/latest", {"Accept": mt.DOCKER_MANIFEST}
    # Blobs are linked per repository in both.
    yield "GET", f"/v2/{single}/blobs/{cat.config_digest('oci', 'latest')}", {}
    # Not accepted at all: OCI answers "manifest unknown", a list falls back to amd64.
    for accept in (None, "*/*", mt.DOCKER_MANIFEST):
        headers = {"Accept": accept} if accept else {}
        yield "GET", f"/v2/{cat.name('oci')}/manifests/latest", headers
        yield "GET", f"/v2/{cat.name('multi-oci')}/manifests/latest", headers


def _summary(r: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    return r.status_code, {h: r.headers.get(h, "") for h in COMPARED_HEADERS}, r.content


def test_same_answers_as_distribution(
    lab: LabRegistry, lab_catalogue: Catalogue, distribution: DistributionRegistry
) -> None:
    differences = []
    count = 0
    with httpx.Client(base_url=lab.url) as mine, httpx.Client(base_url=distribution.url) as real:
        for method, path, headers in _requests(lab_catalogue):
            count += 1
            got = _summary(mine.request(method, path, headers=headers))
            want = _summary(real.request(method, path, headers=headers))
            if got != want:
                differences.append(f"{method} {path} {headers}:\n  lab:  {got}\n  real: {want}")
    assert count > 100
    assert not differences, "\n".join(differences[:5])


# --- what a client that does not speak HTTP/1.x gets back ---------------------------


def client_hello() -> bytes:
    """The first flight of a TLS client, as an engine trying HTTPS first sends it."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def raw_exchange(address: str, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    host, port = address.rsplit(":", 1)
    received = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            received += chunk
    return received


UNREADABLE = {
    # The supported_groups extension (type 0x000a) puts a newline in every
    # ClientHello, so a server reading a request line answers at once.
    "tls-client-hello": client_hello,
    "garbage-request-line": lambda: b"\x00\x01 garbage\r\n\r\n",
    "http-0.9-request": lambda: b"GET /v2/\r\n",
    "bad-version": lambda: b"GET /v2/ HTTX/1.1\r\nHost: lab\r\n\r\n",
    "http-2.0-request-line": lambda: b"GET /v2/ HTTP/2.0\r\nHost: lab\r\n\r\n",
    "http-1.1-without-host": lambda: b"GET /v2/ HTTP/1.1\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_requests_answered_like_distribution(
    lab: LabRegistry, distribution: DistributionRegistry, case: str
) -> None:
    # Docker's containerd store falls back from HTTPS to HTTP only on an answer
    # that starts with "HTTP/": the status line is what matters, and Go's error
    # reply (no Date) is the same bytes throughout.
    data = UNREADABLE[case]()
    assert b"\n" in data
    real = raw_exchange(distribution.address, data)
    mine = raw_exchange(lab.address, data)
    assert real.startswith(b"HTTP/1.1 "), real[:80]
    assert mine.split(b"\r\n", 1)[0] == real.split(b"\r\n", 1)[0]
    assert mine == real


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_file_server_answers_unreadable_requests_like_the_lab(lab: LabRegistry, case: str) -> None:
    # Engines fetch fromSrc URLs from the file server: the same fallback rule
    # applies, and the lab's answers are the distribution registry's (above).
    from engine_conformance.engine.fileserver import FileServer

    data = UNREADABLE[case]()
    with FileServer() as files:
        answer = raw_exchange(files.base_url.removeprefix("http://"), data)
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    assert answer == raw_exchange(lab.address, data)


# --- the same pull through a real engine ------------------------------------------


def _registry_auth(username: str, password: str, server: str) -> str:
    doc = {"username": username, "password": password, "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def _pull(
    api: httpx.Client,
    image: str,
    tag: str,
    platform: str | None = None,
    auth: str | None = None,
) -> tuple[int, list[dict]]:
    params = {"fromImage": image, "tag": tag}
    if platform:
        params["platform"] = platform
    headers = {"X-Registry-Auth": auth} if auth else {}
    with api.stream("POST", "/images/create", params=params, headers=headers) as r:
        body = r.read()
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    return r.status_code, lines


def _assert_pulled(status: int, lines: list[dict], reference: str) -> None:
    assert status == 200, lines
    assert not [line for line in lines if "error" in line or "errorDetail" in line], lines
    assert lines[-1]["status"] in (
        f"Status: Downloaded newer image for {reference}",
        f"Status: Image is up to date for {reference}",
    ), lines[-1]


def _inspect(api: httpx.Client, reference: str) -> dict:
    r = api.get(f"/images/{reference}/json")
    assert r.status_code == 200, r.text
    return r.json()


def _delete(api: httpx.Client, reference: str) -> None:
    api.delete(f"/images/{reference}", params={"force": "1"})


def _repo_digest(inspect: dict, name: str) -> str:
    found = [d.split("@", 1)[1] for d in inspect["RepoDigests"] if d.split("@", 1)[0] == name]
    assert len(found) == 1, inspect["RepoDigests"]
    return found[0]


def _pull_and_inspect(
    api: httpx.Client, address: str, repository: str, tag: str, platform: str | None
) -> tuple[dict, list[dict]]:
    name = f"{address}/{repository}"
    reference = f"{name}:{tag}"
    try:
        status, lines = _pull(api, name, tag, platform)
        _assert_pulled(status, lines, reference)
        inspect = _inspect(api, reference)
        inspect["_repo_digest"] = _repo_digest(inspect, name)
        return inspect, lines
    finally:
        # Deleted at once, so that the next pull downloads every blob again.
        _delete(api, reference)


CROSS_CHECK = [
    ("single", "v1", None),
    ("single", "latest", None),
    ("oci", "latest", None),
    ("multi", "latest", None),
    ("multi", "latest", "linux/arm64"),
    ("multi-oci", "latest", "linux/arm/v7"),
    ("large", "latest", None),
]


@pytest.mark.engine
@pytest.mark.parametrize(("short", "tag", "platform"), CROSS_CHECK)
def test_docker_pulls_the_same_image_from_both(
    docker_api: httpx.Client,
    lab: LabRegistry,
    lab_catalogue: Catalogue,
    distribution: DistributionRegistry,
    short: str,
    tag: str,
    platform: str | None,
) -> None:
    repository = lab_catalogue.name(short)
    mine, mine_lines = _pull_and_inspect(docker_api, lab.address, repository, tag, platform)
    real, real_lines = _pull_and_inspect(
        docker_api, distribution.address, repository, tag, platform
    )

    for key in ("Id", "_repo_digest", "Os", "Architecture", "Variant", "Config", "RootFS"):
        assert mine.get(key) == real.get(key), key
    # And both agree with what the catalogue says an engine should see.
    facts = lab_catalogue.facts(short, tag, platform)
    assert mine["Id"] == facts.image_id
    assert mine["_repo_digest"] == facts.repo_digest
    assert (mine["Os"], mine["Architecture"], mine.get("Variant") or None) == (
        facts.os, facts.architecture, facts.variant,
    )  # fmt: skip
    assert mine["Config"]["Env"] == facts.config["Env"]
    assert mine["Config"]["Cmd"] == facts.config["Cmd"]
    assert mine["RootFS"]["Layers"] == list(facts.diff_ids)
    # The streams tell the same story: same digest line.
    digest_line = f"Digest: {facts.repo_digest}"
    assert any(line.get("status") == digest_line for line in mine_lines)
    assert any(line.get("status") == digest_line for line in real_lines)


@pytest.mark.engine
def test_docker_pull_records_in_the_journal(
    docker_api: httpx.Client, lab: LabRegistry, lab_catalogue: Catalogue
) -> None:
    mark = lab.journal.mark()
    _pull_and_inspect(docker_api, lab.address, lab_catalogue.name("single"), "v2", None)
    entries = lab.journal.since(mark)
    image = lab_catalogue.image("single", "v2")
    pulled = {e.reference for e in entries if e.kind == "blob" and e.status == 200}
    assert {b.digest for b in image.blobs} <= pulled
    bad = [
        (e.method, e.path[-20:], e.status, e.body_size, e.bytes_sent, e.client_hung_up)
        for e in entries
        if not e.complete or e.client_hung_up
    ]
    assert not bad, bad
    assert any(e.kind == "base" for e in entries)


@pytest.mark.engine
def test_docker_pulls_with_basic_auth(
    docker_api: httpx.Client, lab: LabRegistry, lab_catalogue: Catalogue
) -> None:
    repository = lab_catalogue.name("oci")
    name = f"{lab.address}/{repository}"
    lab.require_auth("alice", "s3cret-pw", repository=repository)
    try:
        status, lines = _pull(docker_api, name, "latest")
        assert status != 200 or any("error" in line for line in lines), lines
        mark = lab.journal.mark()
        status, lines = _pull(
            docker_api, name, "latest", auth=_registry_auth("alice", "s3cret-pw", lab.address)
        )
        _assert_pulled(status, lines, f"{name}:latest")
        manifests = [e for e in lab.journal.since(mark) if e.kind == "manifest"]
        assert manifests and all(e.auth_username == "alice" for e in manifests)
        assert manifests[0].authorization == basic_header("alice", "s3cret-pw")
    finally:
        _delete(docker_api, f"{name}:latest")
