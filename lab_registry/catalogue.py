"""What a registry serves: repositories, their tags, and the facts tests compare.

    >>> from lab_registry.catalogue import standard
    >>> cat = standard("ectest-1a2b3c")
    >>> cat.repositories()[:2]
    ['ectest-1a2b3c/arm-only', 'ectest-1a2b3c/multi']
    >>> facts = cat.facts("single", "v1")          # short or full repository name
    >>> facts.reference, facts.os, facts.architecture
    ('ectest-1a2b3c/single:v1', 'linux', 'amd64')
    >>> cat.facts("multi", "latest", platform="linux/arm/v7").variant
    'v7'

A ``Catalogue`` is thread-safe and may change while a registry serves it
(``add``/``remove``). Blobs are linked per repository, like in the real
distribution registry: a blob of another repository is BLOB_UNKNOWN here.

The standard catalogue's content does not depend on the prefix, so its digests
are the same in every run (the prefix only names repositories).

A catalogue remembers how it differs from where it started (``standard`` or
empty): ``changes()`` lists the tags added, replaced or removed since, and
``large_recipe(digest)`` how an ``add_large`` image was made, which is what
``lab_registry.content`` describes instead of the bytes.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lab_registry.blobs import Blob, is_digest
from lab_registry.images import (
    Artifact,
    Format,
    Image,
    Index,
    Platform,
    build_image,
    build_index,
    build_large_image,
)

# The distribution reference grammar for a repository path (lowercase only).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")

#: The platforms of the standard multi-platform repositories.
MULTI_PLATFORMS = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7")
#: The platform Docker picks when an index is served to a client that cannot take one.
DEFAULT_PLATFORM = Platform("linux", "amd64")


@dataclass(frozen=True)
class LargeRecipe:
    """How ``Catalogue.add_large`` built an image: the same recipe makes the same bytes."""

    size: int
    seed: int = 0
    fmt: Format = "docker"
    compress: bool = False


def valid_name(name: str) -> bool:
    """True if ``name`` is a valid (lowercase) repository name; slashes allowed."""
    return len(name) <= 255 and NAME_RE.match(name) is not None


@dataclass(frozen=True)
class ImageFacts:
    """What an engine should report after pulling ``reference`` (for one platform).

    ``repo_digest`` is what ``RepoDigests`` ends with: the index digest for a
    multi-platform tag, otherwise the manifest digest. ``image_id`` is the
    config digest, which Docker reports as ``Id``.
    """

    repository: str
    tag: str
    repo_digest: str
    manifest_digest: str
    manifest_media_type: str
    config_digest: str
    os: str
    architecture: str
    variant: str | None
    config: Mapping[str, Any] = field(repr=False)
    layer_digests: tuple[str, ...] = ()
    diff_ids: tuple[str, ...] = ()

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def image_id(self) -> str:
        return self.config_digest

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)


@dataclass
class _Repository:
    tags: dict[str, Artifact] = field(default_factory=dict)
    manifests: dict[str, Blob] = field(default_factory=dict)
    blobs: dict[str, Blob] = field(default_factory=dict)

    def relink(self) -> None:
        # Rebuilt from the tags on every change: catalogues are small, and it
        # means a removed tag's blobs really stop being served.
        self.manifests.clear()
        self.blobs.clear()
        for artifact in self.tags.values():
            self.manifests[artifact.digest] = artifact.manifest
            children = artifact.images if isinstance(artifact, Index) else ()
            for child in children:
                self.manifests[child.digest] = child.manifest
            for blob in artifact.blobs:
                self.blobs[blob.digest] = blob


class Catalogue:
    """Repositories and tags, with look-ups for served content and expected facts.

    ``prefix`` lets look-ups take a short name (``"single"`` for
    ``"<prefix>/single"``). Large images built with ``add_large`` keep their
    layer in a private temporary directory removed by ``close()`` (or when the
    catalogue is garbage-collected).
    """

    def __init__(self, prefix: str = "") -> None:
        if prefix and not valid_name(prefix):
            raise ValueError(f"invalid repository prefix {prefix!r} (lowercase, a-z0-9._-/)")
        self.prefix = prefix
        self._repos: dict[str, _Repository] = {}
        self._lock = threading.RLock()
        self._workdir: Path | None = None
        self._finalizer: weakref.finalize[..., Catalogue] | None = None
        # What changed since the baseline (``standard`` or empty): (repository, tag) ->
        # the artifact served now, or None for a baseline tag no longer served.
        self._standard = False
        self._baseline: dict[tuple[str, str], str] = {}
        self._changes: dict[tuple[str, str], Artifact | None] = {}
        self._changes_view: tuple[tuple[str, str, Artifact | None], ...] | None = ()
        self._recipes: dict[str, LargeRecipe] = {}

    # --- building -------------------------------------------------------------------

    def name(self, short: str) -> str:
        """The full repository name for ``short`` (``<prefix>/<short>``)."""
        return f"{self.prefix}/{short}" if self.prefix else short

    def add(self, repository: str, tag: str, artifact: Artifact) -> Artifact:
        """Serve ``artifact`` as ``repository:tag`` (replacing what the tag had)."""
        if not valid_name(repository):
            raise ValueError(f"invalid repository name {repository!r}")
        if not TAG_RE.match(tag):
            raise ValueError(f"invalid tag {tag!r}")
        with self._lock:
            repo = self._repos.setdefault(repository, _Repository())
            repo.tags[tag] = artifact
            repo.relink()
            self._note(repository, tag, artifact)
        return artifact

    def remove(self, repository: str, tag: str | None = None) -> None:
        """Stop serving one tag, or the whole repository when ``tag`` is None."""
        repository = self.full_name(repository)
        with self._lock:
            if tag is None:
                gone = self._repos.pop(repository, None)
                for old in gone.tags if gone is not None else ():
                    self._note(repository, old, None)
                return
            repo = self._repos.get(repository)
            if repo is not None:
                if repo.tags.pop(tag, None) is not None:
                    self._note(repository, tag, None)
                repo.relink()
                if not repo.tags:
                    del self._repos[repository]

    @property
    def workdir(self) -> Path:
        """A private temporary directory for big blobs (made on first use)."""
        with self._lock:
            if self._workdir is None:
                self._workdir = Path(tempfile.mkdtemp(prefix="lab-registry-"))
                self._finalizer = weakref.finalize(
                    self, shutil.rmtree, str(self._workdir), ignore_errors=True
                )
            return self._workdir

    def add_large(
        self,
        repository: str,
        tag: str,
        size: int,
        *,
        seed: int = 0,
        fmt: Format = "docker",
        compress: bool = False,
    ) -> Image:
        """Build a ``size``-byte-layer image into ``workdir`` and serve it."""
        image = build_large_image(size, self.workdir, seed=seed, fmt=fmt, compress=compress)
        with self._lock:
            self._recipes[image.digest] = LargeRecipe(size, seed, fmt, compress)
        self.add(repository, tag, image)
        return image

    # --- what changed (for lab_registry.content) -----------------------------------------

    def _note(self, repository: str, tag: str, artifact: Artifact | None) -> None:
        # Called with the lock held, on every change.
        key = (repository, tag)
        base = self._baseline.get(key)
        if artifact is None:
            if base is None:
                self._changes.pop(key, None)
            else:
                self._changes[key] = None
        elif base == artifact.digest:
            self._changes.pop(key, None)
        else:
            self._changes[key] = artifact
        self._changes_view = None

    def _mark_standard(self) -> None:
        """Take the content served now as the baseline of ``changes()`` (``standard`` does)."""
        with self._lock:
            self._standard = True
            self._baseline = {
                (name, tag): artifact.digest
                for name, repo in self._repos.items()
                for tag, artifact in repo.tags.items()
            }
            self._changes.clear()
            self._changes_view = ()

    @property
    def is_standard(self) -> bool:
        """True if this catalogue started as ``standard(prefix)`` (else it started empty)."""
        return self._standard

    def changes(self) -> tuple[tuple[str, str, Artifact | None], ...]:
        """``(repository, tag, artifact or None)``, sorted: how the content differs from the
        start. None marks a standard tag removed; an artifact, a tag added or replaced.

        Cheap: kept up to date by ``add``/``remove`` and cached between changes.
        """
        with self._lock:
            if self._changes_view is None:
                self._changes_view = tuple(
                    (name, tag, self._changes[(name, tag)]) for name, tag in sorted(self._changes)
                )
            return self._changes_view

    def large_recipe(self, digest: str) -> LargeRecipe | None:
        """The recipe of an image ``add_large`` built (by manifest digest), or None."""
        with self._lock:
            return self._recipes.get(digest)

    def close(self) -> None:
        """Remove the work directory (large layers). The catalogue stays usable for small images."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._workdir = None
            self._finalizer = None

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- serving --------------------------------------------------------------------

    def repositories(self) -> list[str]:
        with self._lock:
            return sorted(self._repos)

    def tags(self, repository: str) -> list[str] | None:
        """Sorted tags, or None for an unknown repository."""
        with self._lock:
            repo = self._repos.get(repository)
            return None if repo is None else sorted(repo.tags)

    def manifest(self, repository: str, reference: str) -> Blob | None:
        """The manifest served for a tag or digest (index children count), or None."""
        with self._lock:
            repo = self._repos.get(repository)
            if repo is None:
                return None
            if is_digest(reference):
                return repo.manifests.get(reference)
            artifact = repo.tags.get(reference)
            return None if artifact is None else artifact.manifest

    def blob(self, repository: str, digest: str) -> Blob | None:
        """A config or layer blob linked to ``repository``, or None."""
        with self._lock:
            repo = self._repos.get(repository)
            return None if repo is None else repo.blobs.get(digest)

    def artifacts(self) -> list[tuple[str, str, Artifact]]:
        """Every (repository, tag, artifact), sorted: what a pusher copies."""
        with self._lock:
            return [
                (name, tag, repo.tags[tag])
                for name, repo in sorted(self._repos.items())
                for tag in sorted(repo.tags)
            ]

    # --- look-ups for tests ----------------------------------------------------------

    def full_name(self, repository: str) -> str:
        """``repository`` itself if served, else ``<prefix>/<repository>`` if that is served.

        Lets every look-up take ``"single"`` as well as ``"ectest-1a2b3c/single"``;
        a name served under neither comes back unchanged.
        """
        with self._lock:
            if repository in self._repos or not self.prefix:
                return repository
            full = self.name(repository)
            return full if full in self._repos else repository

    _full = full_name  # the name it had first; engine_conformance.engine.registries uses it

    def artifact(self, repository: str, tag: str) -> Artifact:
        """What ``repository:tag`` serves; KeyError if nothing."""
        full = self.full_name(repository)
        with self._lock:
            try:
                return self._repos[full].tags[tag]
            except KeyError:
                raise KeyError(f"{full}:{tag} is not in the catalogue") from None

    def image(self, repository: str, tag: str, platform: str | Platform | None = None) -> Image:
        """The single-platform image an engine pulls for ``platform`` (default linux/amd64)."""
        artifact = self.artifact(repository, tag)
        if isinstance(artifact, Index):
            return artifact.for_platform(platform or DEFAULT_PLATFORM)
        if platform is not None:
            wanted, have = Platform.parse(platform), artifact.platform
            # A variant is not compared: an engine asked for "linux/arm64" takes a v8 image.
            if (wanted.os, wanted.architecture) != (have.os, have.architecture):
                raise KeyError(f"{repository}:{tag} is {have}, not {wanted}")
        return artifact

    def manifest_digest(self, repository: str, tag: str) -> str:
        """The digest ``repository:tag`` resolves to (an index digest for multi-platform)."""
        return self.artifact(repository, tag).digest

    def config_digest(
        self, repository: str, tag: str, platform: str | Platform | None = None
    ) -> str:
        """The config digest (Docker's image ``Id``) of the image pulled for ``platform``."""
        return self.image(repository, tag, platform).config_digest

    def facts(
        self, repository: str, tag: str, platform: str | Platform | None = None
    ) -> ImageFacts:
        """Everything an inspect of the pulled image should agree with."""
        full = self.full_name(repository)
        artifact = self.artifact(full, tag)
        image = self.image(full, tag, platform)
        cfg = image.config_json
        return ImageFacts(
            repository=full,
            tag=tag,
            repo_digest=artifact.digest,
            manifest_digest=image.digest,
            manifest_media_type=image.media_type,
            config_digest=image.config_digest,
            os=cfg["os"],
            architecture=cfg["architecture"],
            variant=cfg.get("variant"),
            config=cfg["config"],
            layer_digests=tuple(b.digest for b in image.layers),
            diff_ids=image.diff_ids,
        )


def _small_image(short: str, tag: str, platform: str, fmt: Format) -> Image:
    # Content names the short repository, tag and platform but never the
    # prefix, so digests are identical across runs with different prefixes.
    who = f"{short}:{tag} {platform}"
    return build_image(
        {"lab/image.txt": f"{who}\n", "lab/bin/hello.sh": f"#!/bin/sh\necho '{who}'\n"},
        platform=platform,
        fmt=fmt,
        env={"LAB_IMAGE": short, "LAB_TAG": tag, "LAB_PLATFORM": platform},
        cmd=["/lab/bin/hello.sh"],
        labels={"org.opencontainers.image.title": short, "lab.tag": tag},
    )


def _no_layer_image(short: str, tag: str) -> Image:
    # No layer at all: the configuration (environment, labels) is the whole image.
    return build_image(
        layers=[],
        env={"LAB_IMAGE": short, "LAB_TAG": tag},
        cmd=None,
        labels={"org.opencontainers.image.title": short, "lab.tag": tag},
    )


def standard(prefix: str) -> Catalogue:
    """The catalogue a conformance run needs, under ``<prefix>/``:

    - ``single``: Docker schema 2, linux/amd64, tags ``v1``, ``v2``, ``latest`` (all different)
    - ``oci``: OCI image manifest, linux/amd64, tag ``latest``
    - ``multi``: Docker manifest list of linux/amd64, linux/arm64/v8, linux/arm/v7, tag ``latest``
    - ``multi-oci``: the same platforms as an OCI image index, tag ``latest``
    - ``arm-only``: Docker schema 2, linux/arm64/v8 only, tag ``latest``
    - ``no-layers``: Docker schema 2, linux/amd64, tag ``latest``, a manifest whose
      ``layers`` list is empty (a configuration only, as ``FROM scratch`` + ``ENV`` builds)
    """
    cat = Catalogue(prefix)
    for tag in ("v1", "v2", "latest"):
        cat.add(cat.name("single"), tag, _small_image("single", tag, "linux/amd64", "docker"))
    cat.add(cat.name("oci"), "latest", _small_image("oci", "latest", "linux/amd64", "oci"))
    formats: tuple[tuple[str, Literal["docker", "oci"]], ...] = (
        ("multi", "docker"),
        ("multi-oci", "oci"),
    )
    for short, fmt in formats:
        children = [_small_image(short, "latest", p, fmt) for p in MULTI_PLATFORMS]
        cat.add(cat.name(short), "latest", build_index(children, fmt))
    cat.add(
        cat.name("arm-only"),
        "latest",
        _small_image("arm-only", "latest", "linux/arm64/v8", "docker"),
    )
    cat.add(cat.name("no-layers"), "latest", _no_layer_image("no-layers", "latest"))
    cat._mark_standard()
    return cat
