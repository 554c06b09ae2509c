"""certs.d entries carry an owner marker; an entry whose owner is gone is reclaimed.

The decision (``certsd.judge``) is checked with made-up host facts; the file
operations in a temporary certs directory, with a real exited pid standing in
for a run that was killed. tests/test_serve_tls.py does the same in the real
``/etc/docker/certs.d`` with a started managed Docker.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from engine_conformance.engine import certsd
from engine_conformance.engine.certsd import MARKER, EntryTaken, Host, Owner, judge
from engine_conformance.engine.engines import ManagedDocker

HOST = Host(boot_id="boot-now", pid_ns="pid:[4026531836]")


def owner(
    pid: int = 4711,
    start_time: int = 900,
    boot_id: str = "boot-now",
    pid_ns: str = "pid:[4026531836]",
) -> Owner:
    return Owner(pid, start_time, boot_id, pid_ns, "/tmp/ec-docker-abcd", "10.0.0.5:5000")


def exited_pid() -> int:
    """The pid of a process that has run and been reaped: a run killed hard."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


# --- the decision --------------------------------------------------------------------------


def test_dead_pid_is_stale() -> None:
    verdict = judge(owner().to_json(), HOST, {}.get)
    assert verdict.state == "stale"
    assert "pid 4711" in verdict.reason and "exited" in verdict.reason


def test_live_pid_with_its_start_time_is_in_use() -> None:
    verdict = judge(owner().to_json(), HOST, {4711: 900}.get)
    assert verdict.state == "in-use"
    assert "pid 4711" in verdict.reason and "/tmp/ec-docker-abcd" in verdict.reason


def test_reused_pid_is_stale() -> None:
    verdict = judge(owner().to_json(), HOST, {4711: 901}.get)
    assert verdict.state == "stale"
    assert "another process" in verdict.reason


def test_entry_without_marker_is_foreign() -> None:
    verdict = judge(None, HOST, {4711: 900}.get)
    assert verdict.state == "foreign" and verdict.owner is None
    assert MARKER in verdict.reason


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"pid": 4711}',
        '{"tool": "someone-else", "pid": 4711, "start_time": 900, "boot_id": "boot-now", '
        '"pid_ns": "pid:[4026531836]"}',
        '{"tool": "engine-conformance", "pid": "4711", "start_time": 900, "boot_id": "boot-now", '
        '"pid_ns": "pid:[4026531836]"}',
    ],
)
def test_marker_not_ours_is_foreign(text: str) -> None:
    assert judge(text, HOST, {}.get).state == "foreign"


def test_marker_from_another_boot_is_stale_even_if_the_pid_runs() -> None:
    verdict = judge(owner(boot_id="boot-before").to_json(), HOST, {4711: 900}.get)
    assert verdict.state == "stale" and "reboot" in verdict.reason


def test_marker_from_another_pid_namespace_is_left_alone() -> None:
    # Its pid means nothing here: neither alive nor dead can be told.
    verdict = judge(owner(pid_ns="pid:[4026532999]").to_json(), HOST, {}.get)
    assert verdict.state == "in-use" and "namespace" in verdict.reason


def test_marker_round_trip() -> None:
    assert Owner.from_json(owner().to_json()) == owner()


def test_start_time_from_stat() -> None:
    # comm may hold spaces and parentheses: field 22 counts from the last ')'.
    line = (
        b"77 (a) (b c) S 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 1417436 "
        b"3133440 395 18446744073709551615 0 0 0"
    )
    assert certsd.start_time_from_stat(line) == 1417436
    assert certsd.start_time_from_stat(line.replace(b") S ", b") Z ")) is None
    assert certsd.start_time_from_stat(b"garbage") is None


def test_the_real_host_tells_this_process_from_an_exited_one() -> None:
    me = certsd.this_process()
    assert me.pid == os.getpid() and me.start_time > 0 and me.boot_id
    assert judge(me.to_json(), certsd.this_host(), certsd.process_start_time).state == "in-use"
    gone = Owner(exited_pid(), me.start_time, me.boot_id, me.pid_ns)
    assert judge(gone.to_json(), certsd.this_host(), certsd.process_start_time).state == "stale"


# --- the file operations, in a private certs directory --------------------------------------


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nnew run\n")
    return path


def leave_entry(certs: Path, address: str, marker: Owner | None, *extra: str) -> Path:
    """An entry as a run killed hard leaves it (or, without ``marker``, as a user makes it)."""
    entry = certs / address
    entry.mkdir(parents=True)
    (entry / "ca.crt").write_bytes(b"old")
    if marker is not None:
        (entry / MARKER).write_text(marker.to_json())
    for name in extra:
        (entry / name).write_bytes(b"the user's")
    return entry


def dead_owner(address: str) -> Owner:
    me = certsd.this_process()
    return Owner(exited_pid(), me.start_time, me.boot_id, me.pid_ns, "/tmp/ec-docker-gone", address)


def test_claim_writes_marker_and_release_removes_only_that(tmp_path: Path, ca: Path) -> None:
    certs = tmp_path / "certs.d"
    users = leave_entry(certs, "registry.example:443", None)
    me = certsd.this_process("/tmp/ec-docker-mine", "10.0.0.5:5000")
    assert certsd.claim(certs, "10.0.0.5:5000", ca, me) == []
    entry = certs / "10.0.0.5:5000"
    assert sorted(p.name for p in entry.iterdir()) == ["ca.crt", MARKER]
    assert (entry / "ca.crt").read_bytes() == ca.read_bytes()
    assert Owner.from_json((entry / MARKER).read_text()) == me
    assert certsd.release(certs, "10.0.0.5:5000", me)
    assert not entry.exists()
    assert (users / "ca.crt").read_bytes() == b"old"


def test_claim_reclaims_a_crashed_runs_entry(tmp_path: Path, ca: Path) -> None:
    certs = tmp_path / "certs.d"
    leave_entry(certs, "10.0.0.5:5000", dead_owner("10.0.0.5:5000"))
    leave_entry(certs, "10.0.0.5:6000", dead_owner("10.0.0.5:6000"))  # another port too
    me = certsd.this_process(address="10.0.0.5:5000")
    assert certsd.claim(certs, "10.0.0.5:5000", ca, me) == ["10.0.0.5:5000", "10.0.0.5:6000"]
    assert (certs / "10.0.0.5:5000/ca.crt").read_bytes() == ca.read_bytes()
    assert Owner.from_json((certs / "10.0.0.5:5000" / MARKER).read_text()) == me
    assert not (certs / "10.0.0.5:6000").exists()


def test_foreign_entry_is_refused_and_untouched(tmp_path: Path, ca: Path) -> None:
    certs = tmp_path / "certs.d"
    entry = leave_entry(certs, "10.0.0.5:5000", None, "client.cert")
    with pytest.raises(EntryTaken) as refused:
        certsd.claim(certs, "10.0.0.5:5000", ca, certsd.this_process())
    line = str(refused.value)
    assert "\n" not in line and str(entry) in line and MARKER in line
    assert sorted(p.name for p in entry.iterdir()) == ["ca.crt", "client.cert"]
    assert (entry / "ca.crt").read_bytes() == b"old"


def test_live_runs_entry_is_refused_and_untouched(tmp_path: Path, ca: Path) -> None:
    certs = tmp_path / "certs.d"
    other = certsd.this_process("/tmp/ec-docker-other")  # this process: certainly alive
    entry = leave_entry(certs, "10.0.0.5:5000", other)
    with pytest.raises(EntryTaken, match=f"pid {os.getpid()} .*ec-docker-other"):
        certsd.claim(certs, "10.0.0.5:5000", ca, certsd.this_process())
    assert (entry / "ca.crt").read_bytes() == b"old"
    assert certsd.reclaim_stale(certs) == []


def test_stale_entry_holding_more_than_ours_stays(tmp_path: Path, ca: Path) -> None:
    certs = tmp_path / "certs.d"
    entry = leave_entry(certs, "10.0.0.5:5000", dead_owner("10.0.0.5:5000"), "client.key")
    with pytest.raises(EntryTaken, match="remove it yourself"):
        certsd.claim(certs, "10.0.0.5:5000", ca, certsd.this_process())
    assert sorted(p.name for p in entry.iterdir()) == ["ca.crt", "client.key", MARKER]


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    certs = tmp_path / "certs.d"
    outside = leave_entry(tmp_path / "elsewhere", "10.0.0.5:5000", dead_owner("x"))
    certs.mkdir()
    (certs / "10.0.0.5:5000").symlink_to(outside)
    # An entry that is a real directory, but whose marker and CA are links out of it.
    inner = certs / "10.0.0.5:6000"
    inner.mkdir()
    (inner / MARKER).symlink_to(outside / MARKER)
    (inner / "ca.crt").symlink_to(outside / "ca.crt")
    assert certsd.reclaim_stale(certs) == []
    assert (certs / "10.0.0.5:5000").is_symlink() and (inner / MARKER).is_symlink()
    assert sorted(p.name for p in outside.iterdir()) == ["ca.crt", MARKER]


def test_no_certs_dir_nothing_to_reclaim(tmp_path: Path) -> None:
    assert certsd.reclaim_stale(tmp_path / "absent") == []


@pytest.mark.parametrize("address", ["", ".", "..", "../etc:5000", "a/b:5000"])
def test_address_is_one_path_component(tmp_path: Path, ca: Path, address: str) -> None:
    with pytest.raises(ValueError):
        certsd.claim(tmp_path, address, ca, certsd.this_process())
    assert list(tmp_path.iterdir()) == [ca]


def test_managed_docker_uses_its_certs_dir(tmp_path: Path, ca: Path) -> None:
    certs = tmp_path / "certs.d"
    leave_entry(certs, "10.0.0.5:5000", dead_owner("10.0.0.5:5000"))
    managed = ManagedDocker(certs_dir=certs)  # never started: the entry is not the daemon's
    managed.trust_registry_ca("10.0.0.5:5000", ca)
    assert managed.reclaimed_certs == ["10.0.0.5:5000"]
    assert (certs / "10.0.0.5:5000/ca.crt").read_bytes() == ca.read_bytes()
    managed.stop()
    assert certs.is_dir() and list(certs.iterdir()) == []  # the directory was there before


def test_managed_docker_removes_the_certs_dir_it_made(tmp_path: Path, ca: Path) -> None:
    certs = tmp_path / "certs.d"
    managed = ManagedDocker(certs_dir=certs)
    managed.trust_registry_ca("10.0.0.5:5000", ca)
    managed.stop()
    assert not certs.exists()
