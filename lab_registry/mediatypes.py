"""Media types of the Docker schema 2 and OCI image formats.

    >>> from lab_registry import mediatypes as mt
    >>> mt.is_index(mt.OCI_INDEX), mt.is_index(mt.DOCKER_MANIFEST)
    (True, False)

Kept in one place so that the builder, the server and the tests agree on the
exact strings: a single typo here is the difference between a pull and a
"manifest unknown".
"""

from __future__ import annotations

# Docker image manifest schema 2 and its manifest list.
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"

# OCI image spec v1.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"

# What the "unsupported manifest" fault answers with: no engine knows it.
UNSUPPORTED_MANIFEST = "application/vnd.lab-registry.unsupported.v1+json"

INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
IMAGE_MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
MANIFEST_TYPES = INDEX_TYPES | IMAGE_MANIFEST_TYPES


def is_index(media_type: str) -> bool:
    """True for a Docker manifest list or an OCI image index."""
    return media_type in INDEX_TYPES


def layer_type(fmt: str, compressed: bool) -> str:
    """The layer media type for ``fmt`` ("docker" or "oci")."""
    if fmt == "docker":
        return DOCKER_LAYER_GZIP if compressed else DOCKER_LAYER_TAR
    return OCI_LAYER_GZIP if compressed else OCI_LAYER_TAR


def manifest_type(fmt: str) -> str:
    """The single-platform manifest media type for ``fmt``."""
    return DOCKER_MANIFEST if fmt == "docker" else OCI_MANIFEST


def index_type(fmt: str) -> str:
    """The multi-platform index media type for ``fmt``."""
    return DOCKER_MANIFEST_LIST if fmt == "docker" else OCI_INDEX


def config_type(fmt: str) -> str:
    """The image config media type for ``fmt``."""
    return DOCKER_CONFIG if fmt == "docker" else OCI_CONFIG
