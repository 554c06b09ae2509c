"""Deterministic image building: same input, same bytes, valid configs."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from lab_registry import Platform, build_image, build_index, build_large_image, standard
from lab_registry import mediatypes as mt
from lab_registry.catalogue import MULTI_PLATFORMS, Catalogue
from lab_registry.images import CREATED, MTIME


def _digests(catalogue: Catalogue) -> list[tuple[str, str, str]]:
    out = []
    for repository, tag, artifact in catalogue.artifacts():
        short = repository.removeprefix(catalogue.prefix + "/")
        out.append((short, tag, artifact.digest))
        for blob in artifact.blobs:
            out.append((short, tag, blob.digest))
    return out


def test_two_builds_give_the_same_digests() -> None:
    assert _digests(standard("ectest-aaaaaa")) == _digests(standard("ectest-aaaaaa"))


def test_the_prefix_does_not_change_content() -> None:
    # Content never names the prefix, so every run serves the same digests.
    assert _digests(standard("ectest-aaaaaa")) == _digests(standard("ectest-bbbbbb/deeper"))


def test_standard_digests_are_pinned() -> None:
    # Pinned so that an accidental change to the builder (tar flags, JSON key
    # order) shows up here rather than as a puzzling engine difference. Only
    # what zlib does not touch is pinned: gzip output may vary with zlib's version.
    facts = standard("x").facts("single", "v1")
    assert facts.config_digest == (
        "sha256:7930a1cbbb09d07568179317df3333841a8765d667beb04d3fe66d738130cfce"
    )
    assert facts.diff_ids == (
        "sha256:f604a20a8ecdf20cb0373bfe3e6fbeb410d806ef91d82486deb69c98599d3311",
    )


def test_tags_have_different_content() -> None:
    cat = standard("ectest-aaaaaa")
    digests = {cat.manifest_digest("single", t) for t in ("v1", "v2", "latest")}
    configs = {cat.config_digest("single", t) for t in ("v1", "v2", "latest")}
    assert len(digests) == 3 and len(configs) == 3


def _layer_tar(blob_bytes: bytes, media_type: str) -> bytes:
    return gzip.decompress(blob_bytes) if media_type.endswith("gzip") else blob_bytes


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_config_is_a_valid_image_config(fmt: str) -> None:
    image = build_image(
        {"lab/a.txt": "a\n", "lab/bin/run.sh": "#!/bin/sh\n"},
        fmt=fmt,
        env={"K": "V"},
        cmd=["/lab/bin/run.sh"],
        platform="linux/arm/v7",
    )
    cfg = image.config_json
    assert cfg["created"] == CREATED
    assert (cfg["os"], cfg["architecture"], cfg["variant"]) == ("linux", "arm", "v7")
    assert "K=V" in cfg["config"]["Env"] and cfg["config"]["Cmd"] == ["/lab/bin/run.sh"]
    assert cfg["rootfs"]["type"] == "layers"
    diff_ids = [
        "sha256:" + hashlib.sha256(_layer_tar(b.read(), b.media_type)).hexdigest()
        for b in image.layers
    ]
    assert cfg["rootfs"]["diff_ids"] == diff_ids == list(image.diff_ids)
    assert len(cfg["history"]) == len(image.layers)

    manifest = json.loads(image.manifest.read())
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == mt.manifest_type(fmt) == image.media_type
    assert manifest["config"] == {
        "mediaType": mt.config_type(fmt),
        "size": image.config.size,
        "digest": image.config.digest,
    }
    for entry, blob in zip(manifest["layers"], image.layers, strict=True):
        assert entry["digest"] == "sha256:" + hashlib.sha256(blob.read()).hexdigest()
        assert entry["size"] == len(blob.read())
        assert entry["mediaType"] == mt.layer_type(fmt, compressed=True)


def test_layer_tar_and_gzip_are_reproducible() -> None:
    image = build_image({"lab/one.txt": "1", "lab/sub/two.txt": b"2"})
    raw = image.layers[0].read()
    assert raw[4:8] == b"\0\0\0\0", "gzip header mtime must be 0"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["lab", "lab/one.txt", "lab/sub", "lab/sub/two.txt"]
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (MTIME, 0, 0, "", "")


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_index_lists_each_platform(fmt: str) -> None:
    cat = standard("ectest-aaaaaa")
    index = cat.artifact("multi" if fmt == "docker" else "multi-oci", "latest")
    doc = json.loads(index.manifest.read())
    assert doc["mediaType"] == mt.index_type(fmt) == index.media_type
    platforms = [
        "/".join(filter(None, (e["platform"]["os"], e["platform"]["architecture"],
                               e["platform"].get("variant"))))
        for e in doc["manifests"]
    ]  # fmt: skip
    assert platforms == list(MULTI_PLATFORMS)
    for entry, child in zip(doc["manifests"], index.images, strict=True):
        assert entry["digest"] == child.digest and entry["size"] == child.manifest.size
        assert entry["mediaType"] == mt.manifest_type(fmt)
        cfg = child.config_json
        assert Platform(cfg["os"], cfg["architecture"], cfg.get("variant")) == child.platform
    # Per-platform content: every child has its own layer and config.
    assert len({c.layers[0].digest for c in index.images}) == 3
    assert len({c.config_digest for c in index.images}) == 3


def test_index_platform_lookup() -> None:
    amd = build_image({"a": "amd"})
    arm64 = build_image({"a": "arm64"}, platform="linux/arm64/v8")
    index = build_index([amd, arm64])
    assert index.for_platform("linux/arm64") is arm64  # variant v8 is the default
    assert index.for_platform(Platform("linux", "amd64")) is amd
    with pytest.raises(KeyError):
        index.for_platform("linux/s390x")


def test_facts_follow_platforms() -> None:
    cat = standard("ectest-aaaaaa")
    facts = cat.facts("multi", "latest", platform="linux/arm/v7")
    assert (facts.os, facts.architecture, facts.variant) == ("linux", "arm", "v7")
    assert facts.repo_digest == cat.manifest_digest("multi", "latest")
    assert facts.manifest_digest != facts.repo_digest
    default = cat.facts("multi", "latest")
    assert default.architecture == "amd64"
    assert cat.facts("single", "v1").repo_digest == cat.facts("single", "v1").manifest_digest
    assert cat.facts("ectest-aaaaaa/single", "v1") == cat.facts("single", "v1")
    with pytest.raises(KeyError):
        cat.facts("arm-only", "latest", platform="linux/amd64")
    with pytest.raises(KeyError):
        cat.facts("single", "nope")


def test_names_must_be_lowercase() -> None:
    with pytest.raises(ValueError):
        standard("ECTest-1")
    cat = Catalogue()
    with pytest.raises(ValueError):
        cat.add("Upper/case", "v1", build_image({"a": "b"}))
    with pytest.raises(ValueError):
        cat.add("ok/name", "bad tag", build_image({"a": "b"}))


def test_large_image_is_deterministic_and_on_disk(tmp_path: Path) -> None:
    size = 2 << 20
    one = build_large_image(size, tmp_path / "one", seed=3)
    two = build_large_image(size, tmp_path / "two", seed=3)
    other = build_large_image(size, tmp_path / "three", seed=4)
    assert one.digest == two.digest and one.layers[0].digest == two.layers[0].digest
    assert one.layers[0].digest != other.layers[0].digest
    layer = one.layers[0]
    assert layer.on_disk and layer.path is not None and layer.data is None
    assert layer.media_type == mt.DOCKER_LAYER_TAR
    data = layer.path.read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layer.digest == one.diff_ids[0]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember("lab/large.bin")
        assert member.size == size and member.mtime == MTIME
        assert len(tar.extractfile(member).read()) == size  # type: ignore[union-attr]


def test_large_image_compressed(tmp_path: Path) -> None:
    image = build_large_image(1 << 20, tmp_path, seed=1, fmt="oci", compress=True)
    layer = image.layers[0]
    assert layer.media_type == mt.OCI_LAYER_GZIP
    tar = gzip.decompress(layer.read())
    assert "sha256:" + hashlib.sha256(tar).hexdigest() == image.diff_ids[0]


def test_catalogue_workdir_is_removed_on_close() -> None:
    cat = Catalogue("ectest-aaaaaa")
    image = cat.add_large(cat.name("large"), "latest", 1 << 16)
    assert image.layers[0].path is not None and image.layers[0].path.exists()
    workdir = cat.workdir
    cat.close()
    assert not workdir.exists()
