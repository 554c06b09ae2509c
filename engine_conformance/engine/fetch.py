"""Fetch the Docker engines the suite manages from Debian's archive, unpacked, not installed.

    $ engine-conformance engines fetch docker26 docker28
    $ engine-conformance engines list

``docker26`` is Debian 13's docker.io (26.1) with its containerd (1.7),
``docker28`` Debian unstable's (28.5, containerd 2.1). Each is downloaded with
``apt-get download`` using a sources list, package lists and cache of its own
(the system's apt state is untouched), unpacked with ``dpkg -x`` into
``/opt/engine-conformance/NAME`` (or ``$EC_<NAME>_DIR``), and declared ready
only when every binary resolves its shared libraries on this machine and
``dockerd`` and ``containerd`` run. Idempotent: an engine already there is kept.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine_conformance.engine.engines import UNPACKED, unpacked_dir


class FetchError(Exception):
    """The engine could not be fetched or does not run here (the message says why)."""


@dataclass(frozen=True)
class Release:
    suite: str  # Debian suite to take docker.io and containerd from
    label: str
    version: str  # the Docker major.minor it is expected to carry


RELEASES = {
    "docker26": Release("trixie", "Debian 13's", "26.1"),
    "docker28": Release("sid", "Debian unstable's", "28.5"),
}
BINARIES = (
    "usr/sbin/dockerd",
    "usr/sbin/docker-proxy",
    "usr/bin/containerd",
    "usr/bin/containerd-shim-runc-v2",
)


def ready(name: str) -> bool:
    """Whether ``name`` is unpacked and complete."""
    root = unpacked_dir(name)
    return all((root / p).is_file() for p in ("usr/sbin/dockerd", "usr/bin/containerd"))


def fetch(name: str, log: Callable[[str], object] = print) -> Path:
    """Download and unpack ``name`` (one of :data:`RELEASES`); its directory."""
    if name not in RELEASES:
        raise FetchError(f"unknown engine {name} (one of {', '.join(RELEASES)})")
    dest = unpacked_dir(name)
    if ready(name):
        return dest
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise FetchError("apt-get and dpkg are needed to fetch Debian's packages")
    release = RELEASES[name]
    with tempfile.TemporaryDirectory(prefix=f"ec-fetch-{name}-") as tmp:
        work = Path(tmp)
        debs = work / "debs"
        for d in (
            "lists/partial",
            "cache/archives/partial",
            "etc/preferences.d",
            "etc/sources.list.d",
            "debs",
        ):
            (work / d).mkdir(parents=True)
        (work / "etc/sources.list").write_text(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
            f"{_mirror()} {release.suite} main\n"
        )
        apt = [
            "apt-get",
            "-o",
            f"Dir::Etc::SourceList={work}/etc/sources.list",
            "-o",
            f"Dir::Etc::SourceParts={work}/etc/sources.list.d",
            "-o",
            f"Dir::Etc::PreferencesParts={work}/etc/preferences.d",
            "-o",
            f"Dir::State::Lists={work}/lists",
            "-o",
            f"Dir::Cache={work}/cache",
            "-o",
            "Dir::State::status=/dev/null",
            "-o",
            "APT::Get::List-Cleanup=false",
            "-o",
            "APT::Sandbox::User=root",
        ]
        log(f"fetch: downloading {release.label} docker.io and containerd ({release.suite})")
        _run([*apt, "update", "-qq"], "apt-get update")
        _run([*apt, "download", "docker.io", "containerd"], "apt-get download", cwd=debs)
        partial = dest.with_name(dest.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            for deb in sorted(debs.glob("*.deb")):
                _run(["dpkg", "-x", str(deb), str(partial)], f"dpkg -x {deb.name}")
            _check(partial, name)
            version = _run([str(partial / "usr/sbin/dockerd"), "--version"], "dockerd --version")
            _run([str(partial / "usr/bin/containerd"), "--version"], "containerd --version")
            if f"version {release.version}." not in version:
                log(
                    f"fetch: warning: expected Docker {release.version} from {release.suite}, "
                    f"got {version.strip()} (no expectation file: the tests judge it without)"
                )
            shutil.rmtree(dest, ignore_errors=True)
            partial.rename(dest)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    log(f"fetch: {name}: {version.strip()} in {dest}")
    return dest


def _mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def _check(root: Path, name: str) -> None:
    # Docker 28.5 and containerd 2.1 from sid need glibc >= 2.34, libsystemd0, libcap2,
    # libgcrypt20, liblzma5, libzstd1 and liblz4-1: Debian 12 has them all. Should a
    # later upload need more, say so here rather than when the engine starts.
    lacking = []
    for binary in BINARIES:
        path = root / binary
        if path.is_file():
            out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
            lacking += [
                f"{path.name}: {line.strip()}" for line in out.splitlines() if "not found" in line
            ]
    if lacking:
        raise FetchError(
            f"{name}'s binaries need libraries this machine lacks: " + "; ".join(lacking)
        )


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FetchError(f"{what} failed: {tail[0]}")
    return proc.stdout


__all__ = ["RELEASES", "UNPACKED", "FetchError", "fetch", "ready"]
