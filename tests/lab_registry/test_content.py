"""``lab_registry.content``: snapshot, write, load and serve the lab's content, and the CLI.

Every round trip is a real lab registry changed as the suites change it, its
snapshot written to a directory (and through ``json``), then served again and
asked over HTTP: the same manifests and blob digests, the same challenges, the
same faults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    build_image,
    build_index,
    content,
    standard,
)
from lab_registry import mediatypes as mt
from lab_registry.content import FaultState, Snapshot
from tests.lab_registry.conftest import serving_cli

ROOT = Path(__file__).resolve().parents[2]
ACCEPT = {
    "Accept": ", ".join(
        (mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.OCI_INDEX)
    )
}
LARGE = 3 << 20


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def source() -> Iterator[LabRegistry]:
    """A lab registry of its own (the standard catalogue under a fresh prefix), for changing."""
    with standard(f"ectest-{secrets.token_hex(3)}") as catalogue:
        with LabRegistry(catalogue) as registry:
            yield registry


@contextmanager
def replayed(registry: LabRegistry, directory: Path) -> Iterator[LabRegistry]:
    """``registry``'s content written, passed through JSON, and served again."""
    description = json.loads(json.dumps(content.write(content.snapshot(registry), directory)))
    assert description["format"] == 1
    with content.serve(description, directory) as again:
        yield again


def served(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Every repository:tag over HTTP: manifest digest and bytes' digest, blobs' digests."""
    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, headers=headers or {}, timeout=10) as http:
        for repository in http.get("/v2/_catalog").json()["repositories"]:
            for tag in http.get(f"/v2/{repository}/tags/list").json()["tags"]:
                r = http.get(f"/v2/{repository}/manifests/{tag}", headers=ACCEPT)
                assert r.status_code == 200, (repository, tag, r.text)
                doc = r.json()
                children = [m["digest"] for m in doc.get("manifests", [])]
                blobs = {}
                for child in children:
                    c = http.get(f"/v2/{repository}/manifests/{child}", headers=ACCEPT)
                    assert sha256(c.content) == child
                    doc_child = c.json()
                    for d in [doc_child["config"], *doc_child["layers"]]:
                        blobs[d["digest"]] = _blob_digest(http, repository, d["digest"])
                if not children:
                    for d in [doc["config"], *doc["layers"]]:
                        blobs[d["digest"]] = _blob_digest(http, repository, d["digest"])
                out[f"{repository}:{tag}"] = {
                    "digest": r.headers["Docker-Content-Digest"],
                    "body": sha256(r.content),
                    "type": r.headers["Content-Type"],
                    "blobs": blobs,
                }
    return out


def _blob_digest(http: httpx.Client, repository: str, digest: str) -> str:
    r = http.get(f"/v2/{repository}/blobs/{digest}")
    assert r.status_code == 200, (repository, digest)
    return sha256(r.content)


def small(label: str, platform: str = "linux/amd64", fmt: str = "docker"):
    return build_image({"lab/who.txt": f"{label} {platform}\n"}, platform=platform, fmt=fmt,
                       env={"LAB_LABEL": label})  # fmt: skip


def same_content(snap: Snapshot, again: LabRegistry) -> None:
    """The replay's own snapshot is the original one, but for where it listens."""
    replay = content.snapshot(again)
    assert dataclasses.replace(replay, host=snap.host, port=snap.port) == snap


# --- snapshot ------------------------------------------------------------------------------


def test_snapshot_equality_follows_the_lab(source: LabRegistry) -> None:
    catalogue = source.catalogue
    first = content.snapshot(source)
    assert content.snapshot(source) == first
    assert first.standard and first.prefix == catalogue.prefix
    assert (first.added, first.removed, first.basic, first.faults) == ((), (), (), ())

    catalogue.add(catalogue.name("extra"), "v1", small("extra"))
    added = content.snapshot(source)
    assert added != first and [a.tag for a in added.added] == ["v1"]
    catalogue.remove(catalogue.name("extra"))
    assert content.snapshot(source) == first  # back to the standard catalogue

    catalogue.remove("oci")
    removed = content.snapshot(source)
    assert removed.removed == ((catalogue.name("oci"), "latest"),)
    catalogue.add(catalogue.name("oci"), "latest", standard(catalogue.prefix).artifact(
        "oci", "latest"))  # fmt: skip
    assert content.snapshot(source) == first  # the same image again: no change

    rule = source.fault(ErrorStatus(500), repository=catalogue.name("single"), times=2)
    faulted = content.snapshot(source)
    assert faulted != first and faulted.faults[0].times == 2
    httpx.get(f"{source.url}/v2/{catalogue.name('single')}/tags/list")
    used = content.snapshot(source)
    assert used != faulted and used.faults[0].times == 1  # one use left
    rule.remove()
    assert content.snapshot(source) == first

    source.require_auth("u", "p")
    assert content.snapshot(source) != first
    source.require_token_auth(users={"alice": "pw"})
    assert content.snapshot(source).token.rules[0].users == (("alice", "pw"),)
    source.reset()
    assert content.snapshot(source) == first
    assert "pw" not in repr(content.snapshot(source))


def test_snapshot_costs_changes_not_catalogue(source: LabRegistry) -> None:
    catalogue = source.catalogue
    for n in range(200):
        catalogue.add(catalogue.name(f"many-{n}"), "v1", small(f"many-{n}"))
    for n in range(200):
        catalogue.remove(catalogue.name(f"many-{n}"))
    start = time.perf_counter()
    for _ in range(1000):
        content.snapshot(source)
    # Nothing changed in the end: a snapshot is a few small tuples (well under 1 ms).
    assert time.perf_counter() - start < 2.0


# --- round trips: content ------------------------------------------------------------------


def test_round_trip_catalogue(source: LabRegistry, tmp_path: Path) -> None:
    catalogue = source.catalogue
    catalogue.add(catalogue.name("moving"), "v1", small("moving"))
    catalogue.add(catalogue.name("moving"), "v2", small("moving-2", fmt="oci"))
    children = [small("both", p) for p in ("linux/amd64", "linux/arm64/v8")]
    catalogue.add(catalogue.name("both"), "latest", build_index(children, "oci"))
    catalogue.add(catalogue.name("single"), "v1", small("replaced"))  # a standard tag replaced
    catalogue.add_large(catalogue.name("large"), "v1", LARGE, seed=7)
    catalogue.add_large(catalogue.name("large-too"), "v1", LARGE, seed=7)
    catalogue.remove("multi")  # a whole repository
    catalogue.remove("single", "v2")  # one tag
    snap = content.snapshot(source)
    expected = served(source.url)
    assert f"{catalogue.name('multi')}:latest" not in expected

    with replayed(source, tmp_path) as again:
        assert served(again.url) == expected
        same_content(snap, again)
    blobs = list((tmp_path / "blobs" / "sha256").iterdir())
    assert blobs and all(f.stat().st_size < LARGE for f in blobs)  # large: a recipe only


def test_description_is_small_and_deterministic(source: LabRegistry, tmp_path: Path) -> None:
    catalogue = source.catalogue
    catalogue.add_large(catalogue.name("large"), "v1", LARGE, seed=3)
    catalogue.add(catalogue.name("moving"), "v1", small("moving"))
    snap = content.snapshot(source)
    one = content.write(snap, tmp_path / "one")
    two = content.write(snap, tmp_path / "two")
    assert json.dumps(one) == json.dumps(two)
    large = next(a for a in one["added"] if "large" in a)
    assert large["large"] == {"size": LARGE, "seed": 3, "fmt": "docker", "compress": False}
    assert len(json.dumps(one)) < 10_000


def test_recorded_port_is_used_when_free(source: LabRegistry, tmp_path: Path) -> None:
    description = content.write(content.snapshot(source), tmp_path)
    port = source.port
    assert content.address(description) == source.address
    with content.serve(description, tmp_path) as busy:  # the source still holds the port
        assert busy.port != port
    source.stop()
    with content.serve(description, tmp_path) as again:
        assert again.port == port


def test_bad_descriptions_are_value_errors(source: LabRegistry, tmp_path: Path) -> None:
    catalogue = source.catalogue
    catalogue.add(catalogue.name("moving"), "v1", small("moving"))
    description = content.write(content.snapshot(source), tmp_path)
    with pytest.raises(ValueError, match="format"):
        content.load({**description, "format": 2}, tmp_path)
    with pytest.raises(ValueError, match="malformed"):
        content.load({**description, "added": [{"tag": "v1"}]}, tmp_path)
    with pytest.raises(ValueError, match="cannot read"):
        content.load(description, tmp_path / "elsewhere")
    config = description["added"][0]["image"]["config"]["digest"]
    content.blob_path(tmp_path, config).write_bytes(b"other bytes")
    with pytest.raises(ValueError, match="other bytes"):
        content.load(description, tmp_path)


def test_undescribable_fault_is_named() -> None:
    class Gremlin:
        pass

    snap = Snapshot(prefix="p", standard=True, faults=(FaultState(Gremlin()),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot describe fault .*Gremlin"):
        content.write(snap, Path("/nonexistent"))


# --- round trips: auth -----------------------------------------------------------------------


def test_round_trip_basic_auth(source: LabRegistry, tmp_path: Path) -> None:
    catalogue = source.catalogue
    private = catalogue.name("single")
    source.require_auth("ectest-user", "ectest-pass", repository=private, realm="lab-private")
    snap = content.snapshot(source)
    with replayed(source, tmp_path) as again:
        same_content(snap, again)
        url = f"{again.url}/v2/{private}/manifests/v1"
        r = httpx.get(url, headers=ACCEPT)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Basic realm="lab-private"'
        wrong = httpx.get(url, headers={**ACCEPT, "Authorization": basic_header("x", "y")})
        assert wrong.status_code == 401
        auth = basic_header("ectest-user", "ectest-pass")
        ok = httpx.get(url, headers={**ACCEPT, "Authorization": auth})
        assert ok.status_code == 200
        assert ok.headers["Docker-Content-Digest"] == catalogue.manifest_digest("single", "v1")
        other = httpx.get(f"{again.url}/v2/{catalogue.name('oci')}/tags/list")
        assert other.status_code == 200  # unprotected stays open


def test_round_trip_token_auth(source: LabRegistry, tmp_path: Path) -> None:
    catalogue = source.catalogue
    private = catalogue.name("single")
    source.require_token_auth(
        repository=private, users={"alice": "s3cret"}, refresh_tokens=["identity-token"]
    )
    source.require_token_auth(repository=catalogue.name("oci"), public=True)
    snap = content.snapshot(source)
    scope = f"repository:{private}:pull"
    with replayed(source, tmp_path) as again, httpx.Client(base_url=again.url) as http:
        same_content(snap, again)
        url = f"/v2/{private}/manifests/v1"
        r = http.get(url, headers=ACCEPT)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == (
            f'Bearer realm="{again.url}/token",service="lab-registry",scope="{scope}"'
        )

        def pull_with(token: str) -> int:
            return http.get(url, headers={**ACCEPT, "Authorization": f"Bearer {token}"}).status_code

        wrong = http.get("/token", params={"scope": scope},
                         headers={"Authorization": basic_header("alice", "nope")})  # fmt: skip
        assert wrong.status_code == 401
        by_password = http.get(
            "/token",
            params={"scope": scope, "service": "lab-registry"},
            headers={"Authorization": basic_header("alice", "s3cret")},
        )
        assert by_password.status_code == 200
        assert pull_with(by_password.json()["token"]) == 200
        by_refresh = http.post("/token", data={
            "grant_type": "refresh_token", "refresh_token": "identity-token",
            "service": "lab-registry", "scope": scope, "client_id": "test"})  # fmt: skip
        assert by_refresh.status_code == 200
        assert pull_with(by_refresh.json()["access_token"]) == 200
        anonymous = http.get("/token", params={"scope": f"repository:{catalogue.name('oci')}:pull"})
        assert anonymous.json()["scope"]  # public: granted to anyone


def test_issued_refresh_tokens_are_kept(source: LabRegistry, tmp_path: Path) -> None:
    private = source.catalogue.name("single")
    source.require_token_auth(repository=private, users={"alice": "s3cret"})
    grant = source.tokens.grant_password("alice", "s3cret", offline=True)
    assert grant.refresh_token is not None
    with replayed(source, tmp_path) as again:
        form = {"grant_type": "refresh_token", "refresh_token": grant.refresh_token,
                "service": "lab-registry", "scope": f"repository:{private}:pull"}  # fmt: skip
        assert httpx.post(f"{again.url}/token", data=form).status_code == 200


# --- round trips: faults -----------------------------------------------------------------------


def test_round_trip_error_status(source: LabRegistry, tmp_path: Path) -> None:
    catalogue = source.catalogue
    source.fault(ErrorStatus(500), repository=catalogue.name("single"))
    source.fault(ErrorStatus(503, retry_after=7), kinds=["token"], methods=("GET", "POST"))
    snap = content.snapshot(source)
    with replayed(source, tmp_path) as again:
        same_content(snap, again)
        r = httpx.get(f"{again.url}/v2/{catalogue.name('single')}/manifests/v1", headers=ACCEPT)
        assert r.status_code == 500 and r.json()["errors"][0]["code"] == "UNKNOWN"
        assert httpx.get(f"{again.url}/v2/{catalogue.name('oci')}/tags/list").status_code == 200
        token = httpx.post(f"{again.url}/token", data={"grant_type": "password"})
        assert token.status_code == 503 and token.headers["Retry-After"] == "7"


def test_round_trip_throttle(source: LabRegistry, tmp_path: Path) -> None:
    catalogue = source.catalogue
    layer = catalogue.image("single", "v1").layers[0]
    path = f"/v2/{catalogue.name('single')}/blobs/{layer.digest}"
    rate = max(1, layer.size * 2)  # the whole layer in about half a second
    source.fault(Throttle(rate), prefix=path)
    snap = content.snapshot(source)
    with replayed(source, tmp_path) as again:
        same_content(snap, again)
        start = time.monotonic()
        r = httpx.get(f"{again.url}{path}")
        assert r.status_code == 200 and sha256(r.content) == layer.digest
        assert time.monotonic() - start >= 0.3


def test_round_trip_cut_short_then_404(source: LabRegistry, tmp_path: Path) -> None:
    catalogue = source.catalogue
    catalogue.add_large(catalogue.name("large"), "v1", LARGE, seed=11)
    layer = catalogue.image("large", "v1").layers[0]
    path = f"/v2/{catalogue.name('large')}/blobs/{layer.digest}"
    cut = source.fault(CutShort(1000), prefix=path, times=1)
    source.fault(ErrorStatus(404), prefix=path, after=cut)
    snap = content.snapshot(source)
    assert snap.faults[1].after == 0
    with replayed(source, tmp_path) as again, httpx.Client(base_url=again.url) as http:
        same_content(snap, again)
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(path)
        assert [http.get(path).status_code for _ in range(2)] == [404, 404]


def test_spent_and_dormant_rules(source: LabRegistry, tmp_path: Path) -> None:
    catalogue = source.catalogue
    path = f"/v2/{catalogue.name('single')}/tags/list"
    first = source.fault(ErrorStatus(503), prefix=path, times=1)
    source.fault(ErrorStatus(404), prefix=path, after=first)
    removed = source.fault(ErrorStatus(500), prefix="/v2/nowhere/", times=1)
    source.fault(ErrorStatus(502), prefix="/v2/nowhere/", after=removed)
    removed.remove()  # its follower can never apply: not described
    assert httpx.get(f"{source.url}{path}").status_code == 503  # spends the first
    snap = content.snapshot(source)
    assert [f.fault.status for f in snap.faults] == [404]  # type: ignore[union-attr]
    assert snap.faults[0].after is None
    with replayed(source, tmp_path) as again:
        assert httpx.get(f"{again.url}{path}").status_code == 404


def test_round_trip_corrupt_blob(source: LabRegistry, tmp_path: Path) -> None:
    catalogue = source.catalogue
    layer = catalogue.image("single", "v2").layers[0]
    path = f"/v2/{catalogue.name('single')}/blobs/{layer.digest}"
    source.fault(CorruptBlob(), prefix=path)
    snap = content.snapshot(source)
    with replayed(source, tmp_path) as again:
        same_content(snap, again)
        r = httpx.get(f"{again.url}{path}")
        assert r.status_code == 200 and len(r.content) == layer.size
        assert sha256(r.content) != layer.digest


def test_round_trip_unsupported_manifest(source: LabRegistry, tmp_path: Path) -> None:
    catalogue = source.catalogue
    source.fault(UnsupportedManifest(), repository=catalogue.name("oci"))
    snap = content.snapshot(source)
    with replayed(source, tmp_path) as again:
        same_content(snap, again)
        r = httpx.get(f"{again.url}/v2/{catalogue.name('oci')}/manifests/latest", headers=ACCEPT)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == mt.UNSUPPORTED_MANIFEST


# --- the command line ----------------------------------------------------------------------------


def _written(registry: LabRegistry, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    description = content.write(content.snapshot(registry), directory)
    file = directory / "lab-1.json"
    file.write_text(json.dumps(description, indent=1, sort_keys=True) + "\n")
    return file


def test_cli_serves_content_until_sigterm(source: LabRegistry, tmp_path: Path) -> None:
    catalogue: Catalogue = source.catalogue
    name = catalogue.name("moving")
    image = catalogue.add(name, "v1", small("moving"))
    source.require_token_auth(repository=catalogue.name("oci"), users={"alice": "pw"})
    file = _written(source, tmp_path / "bundle")
    with serving_cli(["--content", str(file), "--listen", "127.0.0.1:0"]) as (process, url):
        assert process.stdout is not None
        assert url != source.url
        lines = [process.stdout.readline() for _ in range(2)]
        assert lines[0].startswith("  token auth: realm ")
        while f"/{name}:v1" not in lines[-1]:
            lines.append(process.stdout.readline())
            assert lines[-1], lines
        assert lines[-1].split()[-1] == image.digest
        r = httpx.get(f"{url}/v2/{name}/manifests/v1", headers=ACCEPT)
        assert r.headers["Docker-Content-Digest"] == image.digest
        assert sha256(r.content) == image.digest
        assert httpx.get(f"{url}/v2/{catalogue.name('oci')}/tags/list").status_code == 401
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "lab registry stopped" in out


def test_cli_bad_content_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"format": 99}))
    for file in (tmp_path / "missing.json", broken, future):
        result = subprocess.run(
            [sys.executable, "-m", "lab_registry", "serve", "--content", str(file)],
            cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"error: cannot read content {file}: " in lines[0], lines
