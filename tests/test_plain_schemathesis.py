"""Plain schemathesis pointed at the fragment sends only POST /images/create.

A user of this stack may run the schemathesis CLI on ``spec/images-create.yaml``
with no filter, as on any OpenAPI document. The fragment must then lead it to
the endpoint under test and nowhere else, and above all to no ``DELETE`` of a
user's images. (An earlier fragment also described the harness's clean-up call:
plain schemathesis then sent ``DELETE /images/0?force=…``, and Docker takes ``0``
for an image ID prefix and removes the image whose ID starts with 0.)

The engine is a managed Docker 20.10 started, with ``nsenter --net``, inside a
network namespace made for these tests that has nothing but loopback
(:mod:`engine_conformance.engine.netns`, without its veth pair): whatever a drawn
``fromImage`` or ``fromSrc`` names, the engine cannot reach it, not even with a
DNS query. Its unix socket is a file, reachable from the host's namespace; the tests
run a recording forwarder on the host's 127.0.0.1 that passes each request to
the socket and writes down its method, target and whether it is one of
schemathesis's two capability probes (``GET /`` and ``GET /schemathesis-probe…``,
sent whatever the document, marked ``X-Schemathesis-Probe``). Sentinel images,
imported from archives the project makes, must be there afterwards with their
tags, as must every image that was: one whose ID starts with ``0`` (what a drawn
path parameter ``0`` names) and one named ``create`` (what ``DELETE
/images/create`` names).

One thing no fragment can prevent: schemathesis's coverage phase also sends each
HTTP method the document does not declare to ``/images/create``, ``DELETE``
among them, and Docker routes ``DELETE /images/create`` to removing the image
``create:latest``. A default run stops at its first failing check before it gets
there; with ``--continue-on-failure`` it does not, and ``--exclude-method DELETE``
is what keeps it away (``test_a_thorough_run_needs_exclude_method_delete``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from engine_conformance.base import archives
from engine_conformance.catalogue import spec
from engine_conformance.engine import netns
from engine_conformance.engine.engines import EngineUnavailable, ManagedDocker
from engine_conformance.engine.netns import Namespace, NamespacedDocker
from engine_conformance.engine.target import Client, Target

ROOT = Path(__file__).resolve().parent.parent
ZERO = "ecsentinel/plain-schemathesis:zero"  # its ID starts with 0
CREATE = "create:latest"  # what DELETE /images/create removes
MAX_EXAMPLES = 5
SEED = 20_240_601
PROBE_HEADER = "X-Schemathesis-Probe"
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-authenticate",
    "proxy-authorization",
}


def _schemathesis_cli() -> Path | None:
    """The CLI of the environment running the tests (``.venv/bin/schemathesis``)."""
    for candidate in (
        Path(sys.executable).parent / "schemathesis",
        ROOT / ".venv" / "bin" / "schemathesis",
    ):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _missing() -> str | None:
    """Why these tests cannot run here, or None."""
    lacking = netns.missing()
    if lacking:
        return lacking
    if not ManagedDocker().available():
        return "docker: dockerd is not installed (bash scripts/setup installs it)"
    if _schemathesis_cli() is None:
        return f"no schemathesis CLI beside {sys.executable} (bash scripts/setup installs it)"
    return None


pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(_missing() is not None, reason=_missing() or ""),
]


@pytest.fixture(scope="module")
def namespace() -> Iterator[Namespace]:
    """A fresh network namespace with loopback up and nothing else; removed afterwards."""
    with Namespace("ec-plain-st") as made:
        yield made


@pytest.fixture(scope="module")
def docker(namespace: Namespace) -> Iterator[NamespacedDocker]:
    engine = NamespacedDocker(namespace)
    try:
        engine.start()
    except EngineUnavailable as exc:
        pytest.fail(f"dockerd would not start in network namespace {namespace.name}: {exc}")
    try:
        yield engine
    finally:
        engine.stop()


@dataclass(frozen=True)
class Sent:
    """One request as it reached the forwarder."""

    method: str
    target: str  # path and query, as sent
    probe: bool  # one of schemathesis's capability probes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path


class Recorder(ThreadingHTTPServer):
    """127.0.0.1:PORT -> the engine's unix socket; ``seen`` lists every request sent."""

    daemon_threads = True

    def __init__(self, socket_path: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.socket_path = socket_path
        self.seen: list[Sent] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take(self) -> list[Sent]:
        with self.lock:
            seen, self.seen = self.seen, []
        return seen


class _Forward(BaseHTTPRequestHandler):
    server: Recorder

    def __getattr__(self, name: str) -> Callable[[], None]:
        # do_GET, do_DELETE, do_QUERY…: every method is recorded and forwarded
        if name.startswith("do_"):
            return self._forward
        raise AttributeError(name)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        with self.server.lock:
            self.server.seen.append(Sent(self.command, self.path, PROBE_HEADER in self.headers))
        body = self._body()
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        transport = httpx.HTTPTransport(uds=self.server.socket_path)
        with httpx.Client(transport=transport, timeout=60.0) as http:
            try:
                with http.stream(
                    self.command, "http://engine" + self.path, headers=headers, content=body
                ) as answer:
                    self.send_response(answer.status_code)
                    for key, value in answer.headers.multi_items():
                        if key.lower() not in HOP_BY_HOP:
                            self.send_header(key, value)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for chunk in answer.iter_raw():
                        self.wfile.write(chunk)
            except httpx.HTTPError as exc:
                self.send_error(502, f"engine: {exc}")
        self.close_connection = True


@pytest.fixture(scope="module")
def recorder(docker: NamespacedDocker) -> Iterator[Recorder]:
    server = Recorder(docker.socket)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _images(target: str) -> dict[str, list[str]]:
    """Every image on the engine: ID -> its tags."""
    with Client(Target.parse(target)) as client:
        client.negotiate()
        return {image["Id"]: sorted(image.get("RepoTags") or []) for image in client.list_images()}


def _seed_sentinels(target: str) -> dict[str, list[str]]:
    """Import ZERO (until its ID starts with 0) and CREATE; every image afterwards."""
    with Client(Target.parse(target)) as client:
        client.negotiate()
        if client.inspect_image(CREATE) is None:
            client.create_image(
                {"fromSrc": "-", "repo": CREATE}, body=archives.rootfs({"sentinel": b"create\n"})
            )
        for attempt in range(256):  # an import's ID has its creation time in it: 1 in 16
            zero = client.inspect_image(ZERO)
            if zero is not None and zero["Id"].startswith("sha256:0"):
                break
            client.create_image(
                {"fromSrc": "-", "repo": ZERO},
                body=archives.rootfs({"sentinel": f"{attempt}\n".encode()}),
            )
        else:
            pytest.fail(f"no import of {ZERO} got an ID starting with 0 in 256 attempts")
        assert client.inspect_image(CREATE) is not None, f"could not seed {CREATE}"
    return _images(target)


def _schemathesis(base_url: str, cwd: Path, *options: str) -> subprocess.CompletedProcess:
    """``schemathesis run spec/images-create.yaml --url BASE`` as a user runs it."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    run = subprocess.run(
        [
            str(_schemathesis_cli()),
            "run",
            str(spec.SPEC_PATH),
            "--url",
            base_url,
            "--seed",
            str(SEED),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "60",
            "--no-color",
            *options,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # 0: no check failed, 1: some did (the engine's answers are not what is judged here)
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-2000:]
    return run


def _lost(before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, list[str]]:
    """Images of ``before`` that are gone or lost a tag in ``after``."""
    return {
        image: tags
        for image, tags in before.items()
        if not set(tags) <= set(after.get(image, [])) or image not in after
    }


def _probes_only(sent: list[Sent]) -> None:
    """schemathesis's capability probes are its two GETs of the base URL, nothing more."""
    probes = sorted((s.method, s.path) for s in sent if s.probe)
    assert [m for m, _ in probes] == ["GET", "GET"], probes
    assert {p for _, p in probes} <= {"/", "/schemathesis-probe%5C%1B%01"}, probes


def test_only_loopback_in_the_namespace(namespace: Namespace, docker: NamespacedDocker) -> None:
    """The premise: the engine's network is a namespace with loopback and nothing else."""
    assert namespace.links() == ["lo"]
    routes = netns.ip("-n", namespace.name, "route", "show") + netns.ip(
        "-n", namespace.name, "-6", "route", "show"
    )
    assert all(" dev lo " in f" {line} " for line in routes.splitlines()), routes
    assert docker.process is not None
    inode = os.stat(namespace.path).st_ino
    assert os.readlink(f"/proc/{docker.process.pid}/ns/net") == f"net:[{inode}]"
    assert os.readlink(f"/proc/{docker.process.pid}/ns/net") != os.readlink("/proc/self/ns/net")


def test_plain_schemathesis_sends_only_image_create(
    docker: NamespacedDocker, recorder: Recorder, tmp_path: Path
) -> None:
    before = _seed_sentinels(docker.target)
    recorder.take()
    # The fragment's unversioned server: the engine's current API version.
    run = _schemathesis(recorder.url, tmp_path)
    sent = recorder.take()
    drawn = [s for s in sent if not s.probe]
    assert drawn, f"schemathesis sent nothing from the document:\n{run.stdout[-3000:]}"
    _probes_only(sent)
    lost = _lost(before, _images(docker.target))
    assert sorted({(s.method, s.path) for s in drawn}) == [("POST", "/images/create")], (
        f"plain schemathesis sent {[(s.method, s.target) for s in drawn]}; lost {lost}"
    )
    assert not lost, "images deleted or untagged"


def test_a_thorough_run_needs_exclude_method_delete(
    docker: NamespacedDocker, recorder: Recorder, tmp_path: Path
) -> None:
    """With --continue-on-failure the coverage phase sends the undeclared methods too."""
    declared = {"POST"}
    before = _seed_sentinels(docker.target)
    recorder.take()
    _schemathesis(recorder.url, tmp_path, "--continue-on-failure")
    sent = recorder.take()
    _probes_only(sent)
    drawn = [s for s in sent if not s.probe]
    assert {s.path for s in drawn} == {"/images/create"}
    undeclared = [s.method for s in drawn if s.method not in declared]
    assert "DELETE" in undeclared and len(undeclared) == len(set(undeclared)), undeclared
    # ... and Docker routes DELETE /images/create to removing the image create:latest
    lost = _lost(before, _images(docker.target))
    assert [tags for tags in lost.values()] == [[CREATE]], lost

    before = _seed_sentinels(docker.target)
    recorder.take()
    _schemathesis(recorder.url, tmp_path, "--continue-on-failure", "--exclude-method", "DELETE")
    sent = recorder.take()
    _probes_only(sent)
    drawn = [s for s in sent if not s.probe]
    assert {s.path for s in drawn} == {"/images/create"}
    assert "DELETE" not in {s.method for s in drawn}
    assert sum(s.method == "POST" for s in drawn) > MAX_EXAMPLES  # every phase ran on
    assert not _lost(before, _images(docker.target)), "images deleted or untagged"
