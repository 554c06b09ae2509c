"""Deterministic image building: same input, same bytes, same digests, every run.

    >>> from lab_registry.images import build_image, build_index, Platform
    >>> img = build_image({"lab/hello.txt": "hi\\n"}, env={"GREETING": "hi"})
    >>> img.media_type
    'application/vnd.docker.distribution.manifest.v2+json'
    >>> img.digest == build_image({"lab/hello.txt": "hi\\n"}, env={"GREETING": "hi"}).digest
    True
    >>> arm = build_image({"lab/p": "arm"}, platform="linux/arm/v7", fmt="oci")
    >>> idx = build_index([img, arm], fmt="oci")
    >>> idx.for_platform("linux/arm/v7") is arm
    True

Determinism comes from fixing everything a tar or gzip stream would otherwise
take from the machine: tar mtimes, uid/gid and owner names, entry order, the
gzip header's mtime and OS byte, and JSON key order. The large image
(``build_large_image``) writes its layer to a file in a caller-given directory
from a seeded generator, uncompressed by default, because gzip in Python runs at
tens of MB/s and a 256 MiB layer must build in seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lab_registry import mediatypes as mt
from lab_registry.blobs import Blob

Format = Literal["docker", "oci"]

#: Every image claims this creation time, so configs (and so image IDs) never drift.
CREATED = "2024-01-01T00:00:00Z"
#: The same instant as a Unix time, for tar entries.
MTIME = 1704067200
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RECORD = tarfile.RECORDSIZE  # tarfile pads archives to this; the large layer does too


@dataclass(frozen=True, order=True)
class Platform:
    """An OS/architecture/variant triple, parsed from and printed as ``os/arch[/variant]``.

    >>> Platform.parse("linux/arm/v7")
    Platform(os='linux', architecture='arm', variant='v7')
    >>> str(Platform("linux", "amd64"))
    'linux/amd64'
    """

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str | Platform) -> Platform:
        if isinstance(text, Platform):
            return text
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform must be os/arch[/variant], not {text!r}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def as_json(self) -> dict[str, str]:
        """The ``platform`` object of an index entry."""
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out


@dataclass(frozen=True)
class Image:
    """A single-platform image: manifest, config and layer blobs.

    ``manifest.data`` holds the exact manifest bytes served (and hashed).
    """

    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    diff_ids: tuple[str, ...]
    platform: Platform

    @property
    def digest(self) -> str:
        """The manifest digest (what ``RepoDigests`` ends with)."""
        return self.manifest.digest

    @property
    def media_type(self) -> str:
        return self.manifest.media_type

    @property
    def config_digest(self) -> str:
        """The config digest, which Docker reports as the image ``Id``."""
        return self.config.digest

    @property
    def config_json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.config.read())
        return parsed

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Config and layers: what a registry must hold besides the manifest."""
        return (self.config, *self.layers)

    @property
    def size(self) -> int:
        """Bytes a pull transfers: manifest, config and layers."""
        return self.manifest.size + sum(b.size for b in self.blobs)


@dataclass(frozen=True)
class Index:
    """A multi-platform index (Docker manifest list or OCI image index)."""

    manifest: Blob
    images: tuple[Image, ...] = field(default=())

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def media_type(self) -> str:
        return self.manifest.media_type

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return tuple(i.platform for i in self.images)

    @property
    def blobs(self) -> tuple[Blob, ...]:
        seen: dict[str, Blob] = {}
        for image in self.images:
            for blob in image.blobs:
                seen.setdefault(blob.digest, blob)
        return tuple(seen.values())

    def for_platform(self, platform: str | Platform) -> Image:
        """The child image for ``platform``; KeyError if the index has none."""
        wanted = Platform.parse(platform)
        for image in self.images:
            if image.platform == wanted:
                return image
        # "linux/arm64" matches an entry that spells out the default variant v8.
        for image in self.images:
            p = image.platform
            if (p.os, p.architecture) == (wanted.os, wanted.architecture) and not wanted.variant:
                return image
        raise KeyError(f"no {wanted} image in index {self.digest}")


Artifact = Image | Index


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with insertion-ordered keys: stable bytes, so stable digests."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _tar_info(name: str, size: int = 0, mode: int = 0o644, is_dir: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if is_dir:
        info.type = tarfile.DIRTYPE
    return info


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def tar_layer(files: Mapping[str, bytes | str]) -> bytes:
    """An uncompressed tar of ``files`` (path -> content), byte-for-byte reproducible.

    Parent directories get their own entries (mode 0755), entries are sorted,
    and paths are relative (no leading slash), as ``docker export`` writes them.
    Paths ending in ``.sh`` or under ``bin/`` are made executable.
    """
    entries: dict[str, bytes | None] = {}
    for raw_path, content in files.items():
        path = raw_path.lstrip("/")
        for parent in _parents(path):
            entries.setdefault(parent, None)
        entries[path] = content.encode() if isinstance(content, str) else bytes(content)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(entries):
            data = entries[path]
            if data is None:
                tar.addfile(_tar_info(path + "/", mode=0o755, is_dir=True))
                continue
            executable = path.endswith(".sh") or "/bin/" in f"/{path}"
            tar.addfile(
                _tar_info(path, len(data), 0o755 if executable else 0o644), io.BytesIO(data)
            )
    return buf.getvalue()


def gzip_bytes(data: bytes, level: int = 9) -> bytes:
    """gzip with a zero mtime and fixed header (zlib's wbits=31 writes both)."""
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def _layer_blob(tar: bytes, fmt: Format, compress: bool) -> tuple[Blob, str]:
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    body = gzip_bytes(tar) if compress else tar
    return Blob.from_bytes(body, mt.layer_type(fmt, compress)), diff_id


def _config(
    platform: Platform,
    diff_ids: Sequence[str],
    env: Mapping[str, str] | None,
    cmd: Sequence[str] | None,
    labels: Mapping[str, str] | None,
    entrypoint: Sequence[str] | None = None,
    working_dir: str = "/",
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "Env": [f"PATH={DEFAULT_PATH}", *(f"{k}={v}" for k, v in (env or {}).items())],
    }
    if entrypoint:
        container["Entrypoint"] = list(entrypoint)
    if cmd:
        container["Cmd"] = list(cmd)
    container["WorkingDir"] = working_dir
    if labels:
        container["Labels"] = dict(labels)
    config: dict[str, Any] = {
        "architecture": platform.architecture,
        "config": container,
        "created": CREATED,
        "history": [
            {"created": CREATED, "created_by": f"lab_registry: layer {i + 1}"}
            for i in range(len(diff_ids))
        ],
        "os": platform.os,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    if platform.variant:
        config["variant"] = platform.variant
    return config


def _descriptor(blob: Blob, platform: Platform | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": blob.media_type, "size": blob.size, "digest": blob.digest}
    if platform is not None:
        out["platform"] = platform.as_json()
    return out


def assemble_image(
    layers: Sequence[tuple[Blob, str]],
    *,
    platform: str | Platform = "linux/amd64",
    fmt: Format = "docker",
    env: Mapping[str, str] | None = None,
    cmd: Sequence[str] | None = ("/bin/sh",),
    entrypoint: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Image:
    """An image from ready layer blobs, each paired with its diff_id."""
    plat = Platform.parse(platform)
    diff_ids = [d for _, d in layers]
    config = Blob.from_bytes(
        canonical_json(_config(plat, diff_ids, env, cmd, labels, entrypoint)), mt.config_type(fmt)
    )
    manifest_type = mt.manifest_type(fmt)
    body = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": _descriptor(config),
            "layers": [_descriptor(b) for b, _ in layers],
        }
    )
    return Image(
        manifest=Blob.from_bytes(body, manifest_type),
        config=config,
        layers=tuple(b for b, _ in layers),
        diff_ids=tuple(diff_ids),
        platform=plat,
    )


def build_image(
    files: Mapping[str, bytes | str] | None = None,
    *,
    layers: Iterable[Mapping[str, bytes | str]] | None = None,
    platform: str | Platform = "linux/amd64",
    fmt: Format = "docker",
    env: Mapping[str, str] | None = None,
    cmd: Sequence[str] | None = ("/bin/sh",),
    entrypoint: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    compress: bool = True,
) -> Image:
    """A small single-platform image.

    Give ``files`` for one layer, or ``layers`` (a list of file maps) for several.
    ``fmt="docker"`` makes a schema 2 manifest, ``fmt="oci"`` an OCI manifest.
    """
    if (files is None) == (layers is None):
        raise ValueError("give exactly one of files= or layers=")
    file_maps = [files] if files is not None else list(layers or [])
    built = [_layer_blob(tar_layer(m), fmt, compress) for m in file_maps]
    return assemble_image(
        built, platform=platform, fmt=fmt, env=env, cmd=cmd, entrypoint=entrypoint, labels=labels
    )


def build_index(
    images: Sequence[Image],
    fmt: Format = "docker",
    annotations: Mapping[str, str] | None = None,
) -> Index:
    """A Docker manifest list (``fmt="docker"``) or an OCI index over ``images``."""
    media_type = mt.index_type(fmt)
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [_descriptor(i.manifest, i.platform) for i in images],
    }
    if annotations and fmt == "oci":
        doc["annotations"] = dict(annotations)
    return Index(manifest=Blob.from_bytes(canonical_json(doc), media_type), images=tuple(images))


class _HashingWriter:
    """Writes to a file while hashing, so a big layer is read from disk zero extra times."""

    def __init__(self, f: io.BufferedWriter) -> None:
        self.f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.hash.update(data)
        self.size += len(data)


def write_large_layer(
    size: int, directory: Path, *, seed: int = 0, compress: bool = False
) -> tuple[Path, str, str]:
    """Write a tar layer holding one ``size``-byte file of seeded pseudo-random bytes.

    Returns ``(path, blob_digest, diff_id)``. The tar is written by hand, header
    then data, so no copy of the content is ever held whole in memory.
    Compression uses gzip level 1 (still slow: about 40 MB/s).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".large-{seed}-{size}-{os.getpid()}.tmp"
    rng = random.Random(seed)
    tar_hash = hashlib.sha256()
    gz = zlib.compressobj(1, zlib.DEFLATED, 31) if compress else None
    with open(tmp, "wb") as f:
        out = _HashingWriter(f)

        def emit(data: bytes) -> None:
            tar_hash.update(data)
            out.write(gz.compress(data) if gz else data)

        emit(_tar_info("lab/", mode=0o755, is_dir=True).tobuf(tarfile.GNU_FORMAT))
        emit(_tar_info("lab/large.bin", size).tobuf(tarfile.GNU_FORMAT))
        left = size
        while left:
            n = min(left, 1 << 20)
            emit(rng.randbytes(n))
            left -= n
        written = 512 * 2 + size
        pad = (-size) % 512 + 1024  # fill the last block, then two zero end blocks
        written += pad
        pad += (-written) % _RECORD
        emit(b"\0" * pad)
        if gz:
            out.write(gz.flush())
    digest = "sha256:" + out.hash.hexdigest()
    final = directory / f"{digest.split(':')[1]}.blob"
    os.replace(tmp, final)
    return final, digest, "sha256:" + tar_hash.hexdigest()


def build_large_image(
    size: int,
    directory: Path,
    *,
    seed: int = 0,
    fmt: Format = "docker",
    compress: bool = False,
    platform: str | Platform = "linux/amd64",
) -> Image:
    """An image whose one layer holds a ``size``-byte file; the layer lives in ``directory``.

    256 MiB builds in about 2 s (uncompressed). The layer blob is ``size`` plus
    a few KiB of tar framing.
    """
    path, digest, diff_id = write_large_layer(size, directory, seed=seed, compress=compress)
    layer = Blob.from_file(path, mt.layer_type(fmt, compress), digest=digest)
    return assemble_image(
        [(layer, diff_id)],
        platform=platform,
        fmt=fmt,
        env={"LAB_IMAGE": "large", "LAB_SIZE": str(size)},
        cmd=["/bin/sh"],
    )
