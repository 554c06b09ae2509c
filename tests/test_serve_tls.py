"""``--serve-tls``: engines pull from the lab registry and import from the file server
over HTTPS, trusting a per-run CA where they read it, without a restart.

Each engine is its own: Go reads the system roots (what a ``fromSrc`` URL is
checked against) once, at the engine's first TLS check, so the CA for the file
server is given before anything else. The registry gets a CA of its own here,
so that a pull that works only after ``trust_registry_ca`` proves that the
certs.d entry, not the system roots, is what the engine used.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine_conformance.base import archives
from engine_conformance.engine import certsd
from engine_conformance.engine.engines import (
    DOCKER_CERTS_DIR,
    ENGINES,
    EngineUnavailable,
    ManagedDocker,
    ManagedEngine,
    free_port,
)
from engine_conformance.engine.fileserver import FileServer
from engine_conformance.engine.target import Client, Exchange, Target
from engine_conformance.engine.tls import ServeTLS, ca_advice, prepare_run
from engine_conformance.run.runner import run_suite
from lab_registry import LabRegistry, standard

KINDS = ("docker", "docker26-containerd", "podman")


def outward_address() -> str:
    """An address of this machine that is not loopback, else 127.0.0.1.

    Docker's graphdriver store treats 127.0.0.0/8 as an insecure registry and
    then skips certificate checks: only another address shows it trusting the CA.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet leaves: it only picks a route
            address = probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"
    return "127.0.0.1" if address.startswith("127.") else address


def _start(kind: str) -> ManagedEngine:
    managed = ENGINES[kind]()
    if not managed.available():
        pytest.skip(f"{kind}: {managed.program} is not installed (bash scripts/setup installs it)")
    try:
        return managed.start()
    except EngineUnavailable as exc:
        pytest.fail(f"managed {kind} would not start: {exc}")


@pytest.fixture(params=KINDS)
def engine(request: pytest.FixtureRequest) -> Iterator[ManagedEngine]:
    """A fresh managed engine: nothing has yet made it read its system roots."""
    managed = _start(request.param)
    try:
        yield managed
    finally:
        managed.stop()


def _failed(ex: Exchange) -> bool:
    return ex.status != 200 or ex.stream_error is not None


def _last(ex: Exchange) -> object:
    return ex.messages[-1].obj if ex.messages else ex.body[:300]


@pytest.mark.engine
def test_pull_and_url_import_over_https(engine: ManagedEngine, tmp_path: Path) -> None:
    host = outward_address()
    registry_tls = ServeTLS.create(tmp_path / "registry", host)
    files_tls = ServeTLS.create(tmp_path / "files", host)
    # A registry the engine treats as insecure gets TLS without verification.
    verifies = (
        host != "127.0.0.1"
        or getattr(engine, "containerd_store", False)
        or (engine.name == "podman")
    )
    prefix = f"ectest-{secrets.token_hex(3)}"
    engine.trust_ca(files_tls.ca_path)  # before the engine's first TLS check
    with (
        standard(prefix) as catalogue,
        LabRegistry(catalogue, host=host, tls=registry_tls.server_context()) as lab,
        FileServer(host, tls=files_tls.server_context()) as files,
        Client(Target.parse(engine.target)) as client,
    ):
        client.negotiate()
        ref = lab.reference("single", "v1")
        if verifies:
            refused = client.create_image({"fromImage": ref})
            assert _failed(refused), _last(refused)
            assert lab.tls_failures.wait(), "the engine never tried TLS"
            assert not [e for e in lab.journal.entries() if e.kind == "manifest"]

        engine.trust_registry_ca(lab.address, registry_tls.ca_path)
        mark = lab.journal.mark()
        pulled = client.create_image({"fromImage": ref})
        assert not _failed(pulled), _last(pulled)
        assert client.inspect_image(ref) is not None
        entries = lab.journal.since(mark)
        served = {(e.kind, e.status) for e in entries}
        assert {("manifest", 200), ("blob", 200)} <= served, entries
        assert all(e.tls and e.tls.startswith("TLSv1.") for e in entries), entries

        name = f"{prefix}/imported:1"
        url = files.add("rootfs.tar", archives.rootfs({"tls": prefix.encode()}))
        assert url.startswith("https://")
        imported = client.create_image({"fromSrc": url, "repo": name})
        assert not _failed(imported), _last(imported)
        assert client.inspect_image(name) is not None
        # The file server speaks nothing but TLS: a served GET came over it.
        assert ("GET", url.removeprefix(files.base_url), 200) in files.requests
        assert not files.tls_failures
        for image in (ref, name):
            client.delete_image(image, force=True)


def test_docker_certs_entry_is_only_ours_and_goes_on_stop() -> None:
    address = f"ectest-{secrets.token_hex(4)}.invalid:{free_port()}"
    neighbour = f"ectest-{secrets.token_hex(4)}.invalid:1"
    made_root = not DOCKER_CERTS_DIR.exists()
    (DOCKER_CERTS_DIR / neighbour).mkdir(parents=True)
    try:
        managed = ManagedDocker()  # never started: the entry is global, not the daemon's
        ca = Path(__file__)  # any file: only its placement is judged
        managed.trust_registry_ca(address, ca)
        assert (DOCKER_CERTS_DIR / address / "ca.crt").read_bytes() == ca.read_bytes()
        with pytest.raises(FileExistsError):
            managed.trust_registry_ca(neighbour, ca)
        managed.stop()
        assert not (DOCKER_CERTS_DIR / address).exists()
        assert (DOCKER_CERTS_DIR / neighbour).is_dir()
    finally:
        shutil.rmtree(DOCKER_CERTS_DIR / address, ignore_errors=True)
        (DOCKER_CERTS_DIR / neighbour).rmdir()
        if made_root:
            DOCKER_CERTS_DIR.rmdir()


def _exited_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


@pytest.mark.engine
def test_docker_reclaims_the_entry_a_killed_run_left(tmp_path: Path) -> None:
    # A run killed hard left its entry, with another CA, at the address this run's
    # registry gets; the entry of a user's registry sits next to it.
    host = outward_address()
    verifies = host != "127.0.0.1"  # else the graphdriver store skips verification
    crashed_tls = ServeTLS.create(tmp_path / "crashed", host)
    registry_tls = ServeTLS.create(tmp_path / "registry", host)
    me = certsd.this_process()
    foreign = f"ectest-{secrets.token_hex(4)}.invalid:{free_port()}"
    made_root = not DOCKER_CERTS_DIR.exists()
    written: list[Path] = []  # only these are removed at the end, whatever happens
    prefix = f"ectest-{secrets.token_hex(3)}"
    try:
        with (
            standard(prefix) as catalogue,
            LabRegistry(catalogue, host=host, tls=registry_tls.server_context()) as lab,
        ):
            # The engine first: every run's claim reclaims every stale entry of the
            # shared certs.d (other tests' runs too), so the entry is planted only
            # just before this run's claim, not while an engine takes seconds to start.
            managed = _start("docker")
            try:
                stale = DOCKER_CERTS_DIR / lab.address
                stale.mkdir(parents=True)
                written.append(stale)
                shutil.copyfile(crashed_tls.ca_path, stale / "ca.crt")
                (stale / certsd.MARKER).write_text(
                    certsd.Owner(
                        _exited_pid(),
                        me.start_time,
                        me.boot_id,
                        me.pid_ns,
                        "/tmp/ec-docker-killed",
                        lab.address,
                    ).to_json()
                )
                users = DOCKER_CERTS_DIR / foreign
                users.mkdir()
                written.append(users)
                (users / "ca.crt").write_bytes(b"the user's")
                managed.trust_registry_ca(lab.address, registry_tls.ca_path)
                assert lab.address in managed.reclaimed_certs
                assert (stale / "ca.crt").read_bytes() == registry_tls.ca_path.read_bytes()
                owner = certsd.Owner.from_json((stale / certsd.MARKER).read_text())
                assert owner is not None and owner.pid == os.getpid()
                assert owner.private_dir == str(managed.dir)
                with pytest.raises(certsd.EntryTaken, match=certsd.MARKER):
                    managed.trust_registry_ca(foreign, registry_tls.ca_path)
                if verifies:  # the replaced entry is the one the engine reads
                    with Client(Target.parse(managed.target)) as client:
                        client.negotiate()
                        ref = lab.reference("single", "v1")
                        pulled = client.create_image({"fromImage": ref})
                        assert not _failed(pulled), _last(pulled)
                        client.delete_image(ref, force=True)
            finally:
                managed.stop()
            assert not stale.exists()
            assert [p.name for p in users.iterdir()] == ["ca.crt"]
            assert (users / "ca.crt").read_bytes() == b"the user's"
    finally:
        for entry in written:
            shutil.rmtree(entry, ignore_errors=True)
        if made_root:
            try:
                DOCKER_CERTS_DIR.rmdir()  # not if someone else's went in since
            except OSError:
                pass


@pytest.mark.engine
def test_run_with_serve_tls(tmp_path: Path) -> None:
    # The CLI's way: material made and trusted before the run, the child serves with it.
    host = outward_address()
    managed = _start("docker")
    try:
        port = free_port(host)
        target = Target.parse(managed.target)
        material, advice = prepare_run(tmp_path, host, f"{host}:{port}", target, managed)
        assert advice is None and material.ca_path == tmp_path / "tls" / "ca.crt"
        out = run_suite(
            managed.target,
            tmp_path,
            requirements=["PULL-001", "IMPORT-020"],
            extra=["--serve-tls", "--serve-host", host, "--registry-port", str(port)],
        )
    finally:
        managed.stop()
    assert out.returncode == 0, out.output[-3000:]
    assert out.results is not None, out.output[-3000:]
    preflight = out.results["run"]["preflight"]
    assert preflight["registry"]["status"] == preflight["file_server"]["status"] == "ok"
    assert out.verdict("PULL-001") == "pass", out.requirement("PULL-001")
    assert out.verdict("IMPORT-020") == "pass", out.requirement("IMPORT-020")
    assert material.ca_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize(
    ("kind", "where"),
    [
        ("docker", "/etc/docker/certs.d/10.0.0.5:5000/ca.crt"),
        ("podman", "/etc/containers/certs.d/10.0.0.5:5000/ca.crt"),
    ],
)
def test_advice_for_the_users_engine(kind: str, where: str) -> None:
    line = ca_advice(kind, "10.0.0.5:5000", Path("/r/tls/ca.crt"))
    assert "\n" not in line
    assert "/r/tls/ca.crt" in line and where in line


def test_cli_refuses_a_foreign_certs_entry_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    # The lab's port is random; fixed here so that it meets an entry someone else made.
    from engine_conformance.run import cli

    host = outward_address()
    port = free_port(host)
    monkeypatch.setattr(cli, "free_port", lambda _host: port)
    entry = DOCKER_CERTS_DIR / f"{host}:{port}"
    made_root = not DOCKER_CERTS_DIR.exists()
    entry.mkdir(parents=True)
    (entry / "ca.crt").write_text("someone else's CA\n")
    try:
        code = cli.main(
            [
                "run",
                "--managed",
                "docker",
                "--serve-tls",
                "--serve-host",
                host,
                "--requirement",
                "PULL-001",
                "--report-dir",
                str(tmp_path),
            ]
        )
        err = capsys.readouterr().err
        assert code == cli.EXIT_USAGE, err
        lines = [line for line in err.splitlines() if line.startswith("engine-conformance:")]
        assert len(lines) == 1 and str(entry) in lines[0], err
        assert "Traceback" not in err
        assert (entry / "ca.crt").read_text() == "someone else's CA\n"
    finally:
        shutil.rmtree(entry)
        if made_root:
            DOCKER_CERTS_DIR.rmdir()
