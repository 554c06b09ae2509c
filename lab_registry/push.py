"""Push images into any distribution registry over its HTTP API (with httpx).

    >>> import httpx
    >>> from lab_registry.push import push, push_catalogue
    >>> with httpx.Client(base_url="http://127.0.0.1:5000") as client:   # doctest: +SKIP
    ...     push(client, "ectest-1a2b3c/single", "v1", image)
    ...     push_catalogue(client, catalogue)

Used to load the real registry with the very bytes the lab registry serves, so
that the two can be compared. Blobs go up monolithically (POST, then PUT with
``?digest=``); an on-disk blob is streamed from its file with a
``Content-Length``, never read whole.
"""

from __future__ import annotations

import httpx

from lab_registry.blobs import Blob
from lab_registry.catalogue import Catalogue
from lab_registry.images import Artifact, Image, Index

_CHUNK = 4 << 20


class PushError(RuntimeError):
    """The registry refused part of a push."""


def _check(response: httpx.Response, expected: tuple[int, ...], what: str) -> httpx.Response:
    if response.status_code not in expected:
        raise PushError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response


def push_blob(client: httpx.Client, repository: str, blob: Blob) -> None:
    """Upload ``blob`` unless the registry already has it in ``repository``."""
    head = client.head(f"/v2/{repository}/blobs/{blob.digest}")
    if head.status_code == 200:
        return
    started = _check(
        client.post(f"/v2/{repository}/blobs/uploads/"), (202,), f"start upload of {blob.digest}"
    )
    location = started.headers.get("Location")
    if not location:
        raise PushError(f"start upload of {blob.digest}: no Location header")
    # Location may be relative and may carry its own query (the upload state).
    url = client.base_url.join(location).copy_merge_params({"digest": blob.digest})
    content = blob.chunks(size=_CHUNK) if blob.on_disk else blob.read()
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)}
    _check(client.put(url, content=content, headers=headers), (201,), f"upload {blob.digest}")


def put_manifest(client: httpx.Client, repository: str, reference: str, manifest: Blob) -> str:
    """PUT a manifest's exact bytes; returns the digest the registry reports."""
    response = _check(
        client.put(
            f"/v2/{repository}/manifests/{reference}",
            content=manifest.read(),
            headers={"Content-Type": manifest.media_type},
        ),
        (201,),
        f"put manifest {repository}:{reference}",
    )
    digest: str = response.headers.get("Docker-Content-Digest", manifest.digest)
    if digest != manifest.digest:
        raise PushError(
            f"registry stored {repository}:{reference} as {digest}, not {manifest.digest}"
        )
    return digest


def _push_image(client: httpx.Client, repository: str, image: Image, reference: str) -> None:
    for blob in image.blobs:
        push_blob(client, repository, blob)
    put_manifest(client, repository, reference, image.manifest)


def push(client: httpx.Client, repository: str, tag: str, artifact: Artifact) -> str:
    """Push an image or index (children first, by digest) as ``repository:tag``."""
    if isinstance(artifact, Index):
        for child in artifact.images:
            _push_image(client, repository, child, child.digest)
        return put_manifest(client, repository, tag, artifact.manifest)
    _push_image(client, repository, artifact, tag)
    return artifact.digest


def push_catalogue(client: httpx.Client, catalogue: Catalogue) -> None:
    """Push every tag of ``catalogue``."""
    for repository, tag, artifact in catalogue.artifacts():
        push(client, repository, tag, artifact)
