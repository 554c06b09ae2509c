"""The ``certs.d`` entries a managed Docker writes, each with an owner marker, and their reclaim.

A rootful dockerd reads registry CAs only from ``/etc/docker/certs.d/HOST:PORT/``,
a host-wide directory. An entry the suite writes holds, besides ``ca.crt``, a
marker saying which process wrote it::

    /etc/docker/certs.d/10.0.0.5:41234/engine-conformance.owner
    {"tool": "engine-conformance", "pid": 4711, "start_time": 123456,
     "boot_id": "1392f927-...", "pid_ns": "pid:[4026531836]",
     "private_dir": "/tmp/ec-docker-abcd", "address": "10.0.0.5:41234"}

The writer removes its entry when its engine stops. After a hard kill (SIGKILL,
a crash) nobody does; the next writer reclaims it:

    >>> owner = this_process(private_dir="/tmp/ec-docker-abcd", address="10.0.0.5:41234")
    >>> claim(Path("/etc/docker/certs.d"), "10.0.0.5:41234", ca_path, owner)  # doctest: +SKIP
    ['10.0.0.5:39001']                     # stale entries of runs that died, removed first
    >>> release(Path("/etc/docker/certs.d"), "10.0.0.5:41234", owner)        # doctest: +SKIP
    True

What is reclaimed is decided by :func:`judge` alone, from the marker's text and
what the host says now (no file access of its own):

- no marker, or one that is not ours: ``foreign``, never touched (the user's);
- written in another boot, its pid gone, or its pid now another process
  (the start time in ``/proc/PID/stat`` differs): ``stale``, removed;
- otherwise ``in-use``: another run that is still alive, or one whose pid cannot
  be checked from here (another pid namespace).

Removal never follows a symlink (entries and files are opened relative to the
certs directory with ``O_NOFOLLOW``), and removes only the files the suite
writes (``ca.crt`` and the marker) and then the entry itself: an entry that
holds anything else is left where it is. The marker is written (atomically,
by rename) before ``ca.crt`` and removed after it, so an entry an engine can
trust always says whose it is; only a kill within the microseconds between
``mkdir`` and the marker's rename leaves an empty entry without one, which is
then foreign like any other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

MARKER = "engine-conformance.owner"
CA_FILE = "ca.crt"
_TOOL = "engine-conformance"
_MARKER_LIMIT = 4096  # ours are ~250 bytes; anything longer is not ours

State = Literal["foreign", "in-use", "stale"]


@dataclass(frozen=True)
class Owner:
    """The process that wrote an entry and removes it on stop."""

    pid: int
    start_time: int  # /proc/PID/stat field 22: clock ticks after boot, tells pid reuse apart
    boot_id: str
    pid_ns: str
    private_dir: str | None = None
    address: str = ""

    def to_json(self) -> str:
        return json.dumps({"tool": _TOOL, **asdict(self)})

    @classmethod
    def from_json(cls, text: str) -> Owner | None:
        """The marker's owner, or None when the text is not a marker of ours."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("tool") != _TOOL:
            return None
        pid, start, boot, ns = (data.get(k) for k in ("pid", "start_time", "boot_id", "pid_ns"))
        if not (
            isinstance(pid, int)
            and isinstance(start, int)
            and pid > 0
            and isinstance(boot, str)
            and isinstance(ns, str)
        ):
            return None
        private = data.get("private_dir")
        return cls(
            pid,
            start,
            boot,
            ns,
            private if isinstance(private, str) else None,
            str(data.get("address", "")),
        )


@dataclass(frozen=True)
class Host:
    """What the owner is checked against: this boot and this pid namespace."""

    boot_id: str
    pid_ns: str


@dataclass(frozen=True)
class Verdict:
    """What :func:`judge` found: ``foreign``, ``in-use`` or ``stale``, and why, in words."""

    state: State
    reason: str  # completes "ENTRY ...", for the one line a refusal prints
    owner: Owner | None = None


def judge(marker: str | None, host: Host, start_time_of: Callable[[int], int | None]) -> Verdict:
    """Is an entry ours, and is its owner gone? ``marker`` is the marker's text (None: absent).

    ``start_time_of(pid)`` is the start time of a running process, None when no
    process runs with that pid.

    >>> host = Host("boot-1", "pid:[1]")
    >>> judge(None, host, {}.get).state
    'foreign'
    >>> owner = Owner(pid=42, start_time=7, boot_id="boot-1", pid_ns="pid:[1]")
    >>> judge(owner.to_json(), host, {}.get).state
    'stale'
    >>> judge(owner.to_json(), host, {42: 7}.get).state
    'in-use'
    """
    if marker is None:
        return Verdict("foreign", f"has no {MARKER} marker: it is not the suite's to change")
    owner = Owner.from_json(marker)
    if owner is None:
        return Verdict("foreign", f"has a {MARKER} the suite cannot read: it is left alone")
    if owner.boot_id != host.boot_id:
        return Verdict("stale", f"was written by pid {owner.pid} before the last reboot", owner)
    if owner.pid_ns != host.pid_ns:
        return Verdict(
            "in-use",
            f"was written by pid {owner.pid} in another pid namespace "
            f"({owner.pid_ns}), whose processes cannot be checked from here",
            owner,
        )
    started = start_time_of(owner.pid)
    if started is None:
        return Verdict("stale", f"was written by pid {owner.pid}, which has exited", owner)
    if started != owner.start_time:
        return Verdict(
            "stale",
            f"was written by pid {owner.pid}, which has exited "
            "(the pid now belongs to another process)",
            owner,
        )
    where = f" (private dir {owner.private_dir})" if owner.private_dir else ""
    return Verdict("in-use", f"belongs to a run that is still going: pid {owner.pid}{where}", owner)


# --- what the host says -------------------------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """``/proc/PID/stat`` field 22, or None when no live process has ``pid`` (zombies count
    as gone: an exited owner removes nothing more)."""
    try:
        return start_time_from_stat(Path(f"/proc/{pid}/stat").read_bytes())
    except OSError:
        return None


def start_time_from_stat(stat: bytes) -> int | None:
    """Field 22 of a ``/proc/PID/stat`` line; None for a zombie or a line it cannot read."""
    # comm (field 2) is in parentheses and may hold spaces or ')': split after the last one.
    fields = stat.rpartition(b")")[2].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X") or not fields[19].isdigit():
        return None
    return int(fields[19])


def this_host() -> Host:
    """This boot (``/proc/sys/kernel/random/boot_id``) and this process's pid namespace."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    return Host(boot, ns)


def this_process(private_dir: Path | str | None = None, address: str = "") -> Owner:
    """The marker for an entry written now, by this process."""
    host = this_host()
    pid = os.getpid()
    return Owner(
        pid,
        process_start_time(pid) or 0,
        host.boot_id,
        host.pid_ns,
        str(private_dir) if private_dir is not None else None,
        address,
    )


# --- file operations --------------------------------------------------------------------


class EntryTaken(FileExistsError):
    """The entry exists and is not the suite's to replace (foreign, or another live run's)."""


def claim(certs_dir: Path, address: str, ca_path: Path, owner: Owner) -> list[str]:
    """Write ``certs_dir/address/`` with ``ca.crt`` and ``owner``'s marker; return the stale
    entries reclaimed first (every one in ``certs_dir``, not only ``address``).

    Raises :class:`EntryTaken`, with one line saying whose it is, when the entry exists
    and is not stale; the entry is then left as it is.
    """
    _check_name(address)
    pem = Path(ca_path).read_bytes()  # before anything is written: nothing half-made to undo
    reclaimed = reclaim_stale(certs_dir)
    certs_dir.mkdir(parents=True, exist_ok=True)
    with _directory(certs_dir) as certs:
        try:
            os.mkdir(address, 0o755, dir_fd=certs)
        except FileExistsError:
            verdict = judge(read_marker(certs, address), this_host(), process_start_time)
            reason = verdict.reason
            if verdict.state == "stale":  # reclaim_stale left it: it holds more than ours
                reason += ", but holds files the suite never writes: remove it yourself"
            raise EntryTaken(f"{certs_dir / address} exists and {reason}") from None
        try:
            with _directory(address, certs, follow=False) as entry:
                # The marker before the CA: an entry an engine trusts always says whose it is.
                _write(entry, _MARKER_TMP, owner.to_json().encode())
                os.replace(_MARKER_TMP, MARKER, src_dir_fd=entry, dst_dir_fd=entry)
                _write(entry, CA_FILE, pem)
        except BaseException:
            _remove_entry(certs, address)
            raise
    return reclaimed


def release(certs_dir: Path, address: str, owner: Owner) -> bool:
    """Remove the entry ``claim`` wrote, if its marker still names ``owner``."""
    try:
        with _directory(certs_dir) as certs:
            found = Owner.from_json(read_marker(certs, address) or "")
            if found is None or (found.pid, found.start_time) != (owner.pid, owner.start_time):
                return False
            return _remove_entry(certs, address)
    except FileNotFoundError:
        return False


def reclaim_stale(certs_dir: Path) -> list[str]:
    """Remove every entry of ``certs_dir`` that :func:`judge` finds ``stale``; their names."""
    try:
        certs = os.open(certs_dir, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    host = this_host()
    try:
        for name in sorted(os.listdir(certs)):
            marker = read_marker(certs, name)
            if marker is None:
                continue
            verdict = judge(marker, host, process_start_time)
            if verdict.state == "stale" and _remove_entry(certs, name):
                removed.append(name)
    finally:
        os.close(certs)
    return removed


def read_marker(certs: int, name: str) -> str | None:
    """The marker text of entry ``name`` of the open certs directory ``certs``; None when the
    entry has none, or is no directory (a symlink is not followed)."""
    try:
        with _directory(name, certs, follow=False) as entry:
            fd = os.open(MARKER, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=entry)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as marker:
        return marker.read(_MARKER_LIMIT).decode("utf-8", "replace")


_MARKER_TMP = MARKER + ".tmp"
_OURS = {CA_FILE, MARKER, _MARKER_TMP}


def _remove_entry(certs: int, name: str) -> bool:
    """Remove entry ``name`` if it holds only files the suite writes; True when it is gone."""
    try:
        with _directory(name, certs, follow=False) as entry:
            if set(os.listdir(entry)) - _OURS:
                return False
            for file in (CA_FILE, _MARKER_TMP, MARKER):  # marker last: half-removed stays ours
                try:
                    os.unlink(file, dir_fd=entry)
                except FileNotFoundError:
                    pass
        os.rmdir(name, dir_fd=certs)
    except FileNotFoundError:
        pass  # another run reclaimed it at the same moment
    except OSError:
        return False
    return True


def _check_name(address: str) -> None:
    # One path component: HOST:PORT never names anything outside certs.d.
    if not address or "/" in address or "\0" in address or address in (".", ".."):
        raise ValueError(f"not a registry address for certs.d: {address!r}")


def _write(directory: int, name: str, data: bytes) -> None:
    fd = os.open(
        name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=directory
    )
    with os.fdopen(fd, "wb") as out:
        out.write(data)


@contextmanager
def _directory(
    path: Path | str, dir_fd: int | None = None, *, follow: bool = True
) -> Iterator[int]:
    # certs.d itself may be a symlink the user made (dockerd follows it too); entries not.
    flags = os.O_RDONLY | os.O_DIRECTORY | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)
