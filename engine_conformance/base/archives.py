"""Archives the suite imports: small, deterministic root filesystems.

    >>> data = rootfs({"hello.txt": b"hi\\n"}, compression="gz")
    >>> data[:2]
    b'\\x1f\\x8b'

Same files in, same bytes out (fixed mtimes, owners and order; gzip without a
timestamp), so image IDs are stable between runs.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
from collections.abc import Mapping

COMPRESSIONS = (None, "gz", "bz2", "xz")
MTIME = 1_700_000_000


def rootfs(files: Mapping[str, bytes] | None = None, compression: str | None = None) -> bytes:
    """A tar of ``files`` (path -> content), optionally gz/bz2/xz compressed."""
    files = {"etc/engine-conformance": b"made by engine-conformance\n"} if files is None else files
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({p.rsplit("/", 1)[0] for p in files if "/" in p})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for path in sorted(files):
            data = files[path]
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, MTIME
            tar.addfile(info, io.BytesIO(data))
    return compress(buf.getvalue(), compression)


def compress(data: bytes, compression: str | None) -> bytes:
    if compression is None:
        return data
    if compression == "gz":
        return gzip.compress(data, mtime=0)
    if compression == "bz2":
        return bz2.compress(data)
    if compression == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    raise ValueError(f"unknown compression {compression!r}; one of {COMPRESSIONS}")
