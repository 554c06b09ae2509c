"""Content-addressed blobs, held in memory (small) or in a file (large).

    >>> blob = Blob.from_bytes(b"hello", "application/octet-stream")
    >>> blob.digest
    'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'
    >>> blob.size, blob.read()
    (5, b'hello')

A blob on disk is served with ``sendfile`` so that a 256 MiB layer never
passes through Python memory; ``Blob.from_file`` hashes it once, up front.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK = 1 << 20


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(text: str) -> bool:
    """True if ``text`` is a well-formed sha256 digest (the only algorithm served)."""
    return DIGEST_RE.match(text) is not None


@dataclass(frozen=True)
class Blob:
    """One blob: its digest, size and media type, and where its bytes are.

    Exactly one of ``data`` and ``path`` is set.
    """

    digest: str
    size: int
    media_type: str
    data: bytes | None = field(default=None, repr=False)
    path: Path | None = None

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str) -> Blob:
        return cls(sha256_digest(data), len(data), media_type, data=data)

    @classmethod
    def from_file(cls, path: Path, media_type: str, digest: str | None = None) -> Blob:
        """A blob whose bytes stay in ``path``; pass ``digest`` if already known."""
        path = Path(path)
        if digest is None:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
            digest = "sha256:" + h.hexdigest()
        return cls(digest, path.stat().st_size, media_type, path=path)

    @property
    def on_disk(self) -> bool:
        return self.path is not None

    def read(self) -> bytes:
        """All the bytes (reads the file for an on-disk blob: mind the size)."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def open(self) -> BinaryIO:
        """A binary file object positioned at 0 (an in-memory view for small blobs)."""
        if self.data is not None:
            import io

            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def chunks(
        self, start: int = 0, length: int | None = None, size: int = _CHUNK
    ) -> Iterator[bytes]:
        """Yield the bytes from ``start`` for ``length`` bytes, ``size`` at a time."""
        end = self.size if length is None else min(self.size, start + length)
        with self.open() as f:
            f.seek(start)
            pos = start
            while pos < end:
                chunk = f.read(min(size, end - pos))
                if not chunk:
                    return
                pos += len(chunk)
                yield chunk
