"""The distribution API read side, spoken to with httpx."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from lab_registry import Catalogue, LabRegistry
from lab_registry import mediatypes as mt

ALL_MANIFESTS = ", ".join(
    [mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.OCI_INDEX]
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error_codes(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"].startswith("application/json")
    return [e["code"] for e in response.json()["errors"]]


def test_base_endpoint(http: httpx.Client) -> None:
    r = http.get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert r.json() == {}


def test_address_and_url(lab: LabRegistry) -> None:
    host, port = lab.address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert lab.url == f"http://{lab.address}"
    assert lab.reference("single", "v1") == f"{lab.address}/{lab.catalogue.name('single')}:v1"


@pytest.mark.parametrize(
    ("short", "tag"),
    [("single", "v1"), ("single", "v2"), ("single", "latest"), ("oci", "latest"),
     ("multi", "latest"), ("multi-oci", "latest"), ("arm-only", "latest")],
)  # fmt: skip
def test_manifest_by_tag_and_digest(
    http: httpx.Client, lab_catalogue: Catalogue, short: str, tag: str
) -> None:
    name = lab_catalogue.name(short)
    artifact = lab_catalogue.artifact(short, tag)
    headers = {"Accept": ALL_MANIFESTS}
    for reference in (tag, artifact.digest):
        r = http.get(f"/v2/{name}/manifests/{reference}", headers=headers)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == artifact.media_type
        assert r.headers["Docker-Content-Digest"] == artifact.digest == sha256(r.content)
        assert int(r.headers["Content-Length"]) == len(r.content)
        assert json.loads(r.content)["mediaType"] == artifact.media_type
        head = http.head(f"/v2/{name}/manifests/{reference}", headers=headers)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Docker-Content-Digest"] == artifact.digest
        assert head.headers["Content-Length"] == r.headers["Content-Length"]
        assert head.headers["Content-Type"] == artifact.media_type


def test_index_children_and_blobs_are_served(http: httpx.Client, lab_catalogue: Catalogue) -> None:
    name = lab_catalogue.name("multi-oci")
    index = http.get(f"/v2/{name}/manifests/latest", headers={"Accept": mt.OCI_INDEX}).json()
    for entry in index["manifests"]:
        child = http.get(
            f"/v2/{name}/manifests/{entry['digest']}", headers={"Accept": entry["mediaType"]}
        )
        assert child.status_code == 200 and sha256(child.content) == entry["digest"]
        doc = child.json()
        config = http.get(f"/v2/{name}/blobs/{doc['config']['digest']}")
        assert sha256(config.content) == doc["config"]["digest"]
        cfg = config.json()
        assert cfg["architecture"] == entry["platform"]["architecture"]
        assert cfg.get("variant") == entry["platform"].get("variant")
        for layer in doc["layers"]:
            blob = http.get(f"/v2/{name}/blobs/{layer['digest']}")
            assert blob.status_code == 200 and sha256(blob.content) == layer["digest"]
            assert len(blob.content) == layer["size"]


class TestNegotiation:
    def test_list_only_when_accepted(self, http: httpx.Client, lab_catalogue: Catalogue) -> None:
        name = lab_catalogue.name("multi")
        listed = http.get(f"/v2/{name}/manifests/latest", headers={"Accept": ALL_MANIFESTS})
        assert listed.headers["Content-Type"] == mt.DOCKER_MANIFEST_LIST
        # A schema-2-only client gets the linux/amd64 image instead, as from distribution.
        plain = http.get(f"/v2/{name}/manifests/latest", headers={"Accept": mt.DOCKER_MANIFEST})
        amd64 = lab_catalogue.image("multi", "latest", "linux/amd64")
        assert plain.status_code == 200
        assert plain.headers["Content-Type"] == mt.DOCKER_MANIFEST
        assert plain.headers["Docker-Content-Digest"] == amd64.digest == sha256(plain.content)

    def test_accept_as_separate_headers(self, http: httpx.Client, lab_catalogue: Catalogue) -> None:
        name = lab_catalogue.name("multi")
        headers = [("Accept", mt.DOCKER_MANIFEST), ("Accept", mt.DOCKER_MANIFEST_LIST + ";q=0.9")]
        r = http.get(f"/v2/{name}/manifests/latest", headers=headers)
        assert r.headers["Content-Type"] == mt.DOCKER_MANIFEST_LIST

    @pytest.mark.parametrize("accept", [None, mt.DOCKER_MANIFEST, "*/*"])
    def test_oci_index_only_when_accepted(
        self, http: httpx.Client, lab_catalogue: Catalogue, accept: str | None
    ) -> None:
        name = lab_catalogue.name("multi-oci")
        r = http.get(f"/v2/{name}/manifests/latest", headers={"Accept": accept} if accept else {})
        assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
        assert "OCI index found" in r.json()["errors"][0]["message"]

    def test_oci_manifest_only_when_accepted(
        self, http: httpx.Client, lab_catalogue: Catalogue
    ) -> None:
        name = lab_catalogue.name("oci")
        r = http.get(f"/v2/{name}/manifests/latest", headers={"Accept": mt.DOCKER_MANIFEST})
        assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
        ok = http.get(f"/v2/{name}/manifests/latest", headers={"Accept": mt.OCI_MANIFEST})
        assert ok.status_code == 200

    def test_list_by_digest_is_served_as_stored(
        self, http: httpx.Client, lab_catalogue: Catalogue
    ) -> None:
        name = lab_catalogue.name("multi")
        digest = lab_catalogue.manifest_digest("multi", "latest")
        r = http.get(f"/v2/{name}/manifests/{digest}", headers={"Accept": mt.DOCKER_MANIFEST})
        assert r.headers["Docker-Content-Digest"] == digest == sha256(r.content)


class TestBlobs:
    def test_get_and_head(self, http: httpx.Client, lab_catalogue: Catalogue) -> None:
        image = lab_catalogue.image("single", "v1")
        name = lab_catalogue.name("single")
        for blob in image.blobs:
            r = http.get(f"/v2/{name}/blobs/{blob.digest}")
            assert r.status_code == 200
            assert r.headers["Content-Type"] == "application/octet-stream"
            assert r.headers["Docker-Content-Digest"] == blob.digest == sha256(r.content)
            assert int(r.headers["Content-Length"]) == blob.size
            head = http.head(f"/v2/{name}/blobs/{blob.digest}")
            assert head.status_code == 200 and head.content == b""
            assert int(head.headers["Content-Length"]) == blob.size

    def test_large_blob_from_disk(self, http: httpx.Client, lab_catalogue: Catalogue) -> None:
        layer = lab_catalogue.image("large", "latest").layers[0]
        assert layer.on_disk
        with http.stream("GET", f"/v2/{lab_catalogue.name('large')}/blobs/{layer.digest}") as r:
            h = hashlib.sha256()
            for chunk in r.iter_bytes():
                h.update(chunk)
        assert "sha256:" + h.hexdigest() == layer.digest

    @pytest.mark.parametrize(
        ("header", "start", "end"),
        [("bytes=0-9", 0, 10), ("bytes=100-", 100, None), ("bytes=-16", -16, None)],
    )
    def test_range(
        self, http: httpx.Client, lab_catalogue: Catalogue, header: str, start: int, end: int | None
    ) -> None:
        name = lab_catalogue.name("large")
        layer = lab_catalogue.image("large", "latest").layers[0]
        whole = layer.read()
        r = http.get(f"/v2/{name}/blobs/{layer.digest}", headers={"Range": header})
        assert r.status_code == 206
        assert r.content == whole[start:end]
        first = start if start >= 0 else len(whole) + start
        assert r.headers["Content-Range"] == (
            f"bytes {first}-{first + len(r.content) - 1}/{len(whole)}"
        )

    def test_unsatisfiable_range(self, http: httpx.Client, lab_catalogue: Catalogue) -> None:
        blob = lab_catalogue.image("single", "v1").config
        r = http.get(
            f"/v2/{lab_catalogue.name('single')}/blobs/{blob.digest}",
            headers={"Range": f"bytes={blob.size + 5}-"},
        )
        assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{blob.size}"

    def test_blob_of_another_repository_is_unknown(
        self, http: httpx.Client, lab_catalogue: Catalogue
    ) -> None:
        # Blobs are linked per repository, as in the real registry.
        config = lab_catalogue.image("oci", "latest").config
        r = http.get(f"/v2/{lab_catalogue.name('single')}/blobs/{config.digest}")
        assert r.status_code == 404 and error_codes(r) == ["BLOB_UNKNOWN"]


def test_tags_list(http: httpx.Client, lab_catalogue: Catalogue) -> None:
    name = lab_catalogue.name("single")
    r = http.get(f"/v2/{name}/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": name, "tags": ["latest", "v1", "v2"]}
    page = http.get(f"/v2/{name}/tags/list", params={"n": 2})
    assert page.json()["tags"] == ["latest", "v1"] and 'rel="next"' in page.headers["Link"]
    rest = http.get(f"/v2/{name}/tags/list", params={"n": 2, "last": "v1"})
    assert rest.json()["tags"] == ["v2"]


def test_catalog(http: httpx.Client, lab_catalogue: Catalogue) -> None:
    assert http.get("/v2/_catalog").json() == {"repositories": lab_catalogue.repositories()}


class TestErrors:
    def test_unknown_tag(self, http: httpx.Client, lab_catalogue: Catalogue) -> None:
        r = http.get(f"/v2/{lab_catalogue.name('single')}/manifests/nope")
        assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
        assert r.json()["errors"][0]["detail"] == {"Tag": "nope"}

    def test_unknown_digest(self, http: httpx.Client, lab_catalogue: Catalogue) -> None:
        r = http.get(f"/v2/{lab_catalogue.name('single')}/manifests/sha256:{'0' * 64}")
        assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]

    def test_unknown_repository(self, http: httpx.Client, lab_catalogue: Catalogue) -> None:
        name = lab_catalogue.name("nope/deeper")
        tags = http.get(f"/v2/{name}/tags/list")
        assert tags.status_code == 404 and error_codes(tags) == ["NAME_UNKNOWN"]
        # Like distribution: a manifest in an unknown repository is MANIFEST_UNKNOWN.
        assert error_codes(http.get(f"/v2/{name}/manifests/latest")) == ["MANIFEST_UNKNOWN"]

    def test_unknown_blob(self, http: httpx.Client, lab_catalogue: Catalogue) -> None:
        r = http.get(f"/v2/{lab_catalogue.name('single')}/blobs/sha256:{'0' * 64}")
        assert r.status_code == 404 and error_codes(r) == ["BLOB_UNKNOWN"]
        head = http.head(f"/v2/{lab_catalogue.name('single')}/blobs/sha256:{'0' * 64}")
        assert head.status_code == 404 and head.content == b""

    def test_bad_digest(self, http: httpx.Client, lab_catalogue: Catalogue) -> None:
        r = http.get(f"/v2/{lab_catalogue.name('single')}/blobs/sha256:abc")
        assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]

    def test_uppercase_name_has_no_route(self, http: httpx.Client) -> None:
        assert http.get("/v2/Upper/tags/list").status_code == 404

    def test_write_methods_are_unsupported(
        self, http: httpx.Client, lab_catalogue: Catalogue
    ) -> None:
        r = http.put(f"/v2/{lab_catalogue.name('single')}/manifests/v9", content=b"{}")
        assert r.status_code == 405 and error_codes(r) == ["UNSUPPORTED"]
        # The connection stays usable after the discarded body.
        assert http.get("/v2/").status_code == 200


def test_catalogue_changes_while_serving(http: httpx.Client, lab_catalogue: Catalogue) -> None:
    image = lab_catalogue.image("single", "v1")
    lab_catalogue.add(lab_catalogue.name("single"), "extra", image)
    try:
        r = http.head(f"/v2/{lab_catalogue.name('single')}/manifests/extra")
        assert r.headers["Docker-Content-Digest"] == image.digest
    finally:
        lab_catalogue.remove(lab_catalogue.name("single"), "extra")
    assert http.head(f"/v2/{lab_catalogue.name('single')}/manifests/extra").status_code == 404


def test_concurrent_pulls(lab: LabRegistry, lab_catalogue: Catalogue) -> None:
    layer = lab_catalogue.image("large", "latest").layers[0]
    url = f"{lab.url}/v2/{lab_catalogue.name('large')}/blobs/{layer.digest}"

    def pull(_: int) -> str:
        with httpx.Client(timeout=30) as client:
            return sha256(client.get(url).content)

    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(pull, range(12))) == {layer.digest}


def test_stop_frees_the_port_and_is_idempotent(lab_catalogue: Catalogue) -> None:
    registry = LabRegistry(lab_catalogue).start()
    port = registry.port
    client = httpx.Client(base_url=registry.url)
    assert client.get("/v2/").status_code == 200  # leaves a keep-alive connection open
    registry.stop()
    registry.stop()
    client.close()
    with LabRegistry(lab_catalogue, port=port) as again:
        assert again.port == port
        assert httpx.get(f"{again.url}/v2/").status_code == 200


def test_busy_port_raises(lab: LabRegistry) -> None:
    with pytest.raises(OSError):
        LabRegistry(port=lab.port).start()


def test_listening_on_parses_host_port(lab_catalogue: Catalogue) -> None:
    with LabRegistry.listening_on("127.0.0.1:0", lab_catalogue) as registry:
        assert registry.host == "127.0.0.1" and registry.port > 0
    with pytest.raises(ValueError):
        LabRegistry.listening_on("127.0.0.1")
    with pytest.raises(RuntimeError):
        _ = registry.address  # stopped: no address any more


def test_thread_does_not_hang_the_process_at_exit() -> None:
    # Started, a keep-alive connection left open, never stopped: exit must still be prompt.
    code = (
        "import httpx\n"
        "from lab_registry import LabRegistry, standard\n"
        "r = LabRegistry(standard('x')).start()\n"
        "c = httpx.Client(base_url=r.url)\n"
        "assert c.get('/v2/').status_code == 200\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, timeout=20, capture_output=True)
    assert result.returncode == 0, result.stderr
