"""Replay a reproducer bundle (:mod:`.bundles`) against an engine, and judge it again.

    $ sh reports/2026-12-05T01-13-37Z/reproducers/AUTH-003-1/reproduce.sh unix:///run/docker.sock
    $ python -m engine_conformance.run.replay BUNDLE [TARGET]        # what reproduce.sh runs

    >>> outcome = replay(Path("AUTH-003-1"), "unix:///run/docker.sock")  # doctest: +SKIP
    >>> outcome.deviates, outcome.line                                   # doctest: +SKIP
    (True, 'AUTH-003 test_refused_pull[no-header]: still deviates -- ...')

The lab registry and file server come up with the bundle's content, on the
recorded ports when they are free, else on new ones (the requests are then
rewritten to name them). Each request is sent again in its order; its answer is
printed beside the recorded one. What the replay created is removed (names
under the recorded run prefix, and images that were not on the engine before).

The verdict: a case is judged by the suite's own check, run again alone against
the same target (``run --requirement ID`` with the case's node), because what a
check judges is more than one answer; a property-phase finding is judged on the
replayed answer itself, by the property phase's own rules. ``deviates`` is True
(still deviates), False (no longer deviates) or None (could not judge: why).
"""

from __future__ import annotations

import base64
import errno
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

from engine_conformance.base.exits import UsageError
from engine_conformance.engine.target import Client, Exchange, Target, TargetError
from engine_conformance.judge import bundles
from engine_conformance.judge.cleanup import created_refs, record_preexisting, remove_created, sweep

EXIT_NO_LONGER, EXIT_STILL, EXIT_UNJUDGED = 0, 1, 3


@dataclass
class Outcome:
    requirement: str
    case: str
    deviates: bool | None
    why: str
    answers: list[str] = field(default_factory=list)

    @property
    def word(self) -> str:
        if self.deviates is None:
            return "could not judge"
        return "still deviates" if self.deviates else "no longer deviates"

    @property
    def line(self) -> str:
        return f"{self.requirement} {self.case}: {self.word} -- {self.why}"

    @property
    def exit_code(self) -> int:
        if self.deviates is None:
            return EXIT_UNJUDGED
        return EXIT_STILL if self.deviates else EXIT_NO_LONGER


def target_of(given: str | None) -> str:
    """The target URL: as given (a bare socket path becomes ``unix://``), else $DOCKER_HOST."""
    text = given or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return f"unix://{text}" if text.startswith("/") else text


def replay(
    bundle: Path, target: str | None = None, out: TextIO | None = None, timeout: float = 120.0
) -> Outcome:
    """Replay ``bundle`` against ``target`` and judge it; progress lines go to ``out``."""
    out = out or sys.stdout
    record = bundles.load(bundle)
    url = target_of(target)
    rid = record["requirement"]["id"]
    case = record.get("case") or record.get("finding", {}).get("shape", "finding")
    outcome = Outcome(rid, case.split("::")[-1], None, "")
    print(f"{rid} {outcome.case}", file=out)
    print(f"  recorded against {_engine_label(record['engine'])}", file=out)
    print(f"  expected vs observed then: {record.get('reason', '')[:600]}", file=out)
    outcome.deviates, outcome.why = _replay(bundle, record, url, out, timeout)
    print(f"  {outcome.word}: {outcome.why}", file=out)
    return outcome


def _replay(
    bundle: Path, record: dict[str, Any], url: str, out: TextIO, timeout: float
) -> tuple[bool | None, str]:
    try:
        parsed = Target.parse(url)
    except (ValueError, UsageError) as exc:
        return None, f"bad target {url!r}: {exc}"
    try:
        with Client(parsed) as client:
            client.negotiate()
            exchanges, created, left = _send_again(client, bundle, record, out)
            if record.get("kind") == "finding":
                return _judge_finding(record, exchanges[-1], created, left)
    except TargetError as exc:
        return None, f"the target did not answer: {exc}"
    except OSError as exc:
        return None, f"cannot serve the bundle's lab content: {exc}"
    return _judge_case(record, url, timeout)


# -- sending ------------------------------------------------------------------------------


def _send_again(
    client: Client, bundle: Path, record: dict[str, Any], out: TextIO
) -> tuple[list[Exchange], dict[str, set[str]], dict[str, set[str]]]:
    """Send the bundle's requests again; also what they created and what is left after
    the replay's clean-up (image ID -> new names), as the property phase measures them."""
    from engine_conformance.judge.property_phase import new_names, snapshot

    prefix = record.get("prefix", "")
    before = record_preexisting(client)
    names_before = snapshot(client)
    created: dict[str, set[str]] = {}
    sent: list[Exchange] = []
    try:
        with Servers(bundle, record) as servers:
            for n, request in enumerate(record["requests"], 1):
                if request.get("replay") is False:
                    continue
                servers.lab(request.get("lab"))
                params = [(k, servers.rewrite(v)) for k, v in request["params"]]
                headers = {k: servers.rewrite_header(k, v) for k, v in request["headers"].items()}
                body = (bundle / request["body"]).read_bytes() if request.get("body") else None
                ex = client.request(
                    request["method"],
                    request["path"].split("?")[0],
                    versioned=False,
                    params=params,
                    headers=headers,
                    content=body,
                    deadline=60,
                )
                sent.append(ex)
                print(f"  {n}. {ex.request_line}", file=out)
                print(f"     now:      {summary(ex.evidence())}", file=out)
                print(f"     recorded: {summary(request['answer'])}", file=out)
        created = new_names(names_before, snapshot(client))
    finally:
        names = _Names(prefix, set(created_refs(sent, prefix)) if prefix else set(), before)
        if prefix:
            sweep(client, names)
        for image in client.list_images():
            if image.get("Id") and image["Id"] not in before:
                remove_created(client, image["Id"], prefix or "\0", before)
    return sent, created, new_names(names_before, snapshot(client))


@dataclass
class _Names:
    prefix: str
    created: set[str]
    preexisting: frozenset[str]
    counter: Any = None


def summary(answer: dict[str, Any]) -> str:
    """One line of an answer: status, then its error or its last message."""
    messages = [m for m in (answer.get("first_messages") or []) if isinstance(m, dict)]
    if isinstance(answer.get("last_message"), dict):
        messages.append(answer["last_message"])
    error = next((m for m in messages if m.get("error") or m.get("errorDetail")), None)
    shown = error or (messages[-1] if messages else answer.get("body"))
    text = json.dumps(shown)[:200] if shown is not None else "(no body)"
    return f"HTTP {answer.get('status')}, {answer.get('message_count', 0)} line(s): {text}"


class Servers:
    """The bundle's lab registry (restarted when the content changes) and file server."""

    def __init__(self, bundle: Path, record: dict[str, Any]) -> None:
        self.bundle, self.record = bundle, record
        self._stack = ExitStack()
        self._lab_name: str | None = None
        self._lab_stack: ExitStack | None = None
        self._moves: dict[str, str] = {}  # recorded host:port -> the one serving now

    def __enter__(self) -> Servers:
        served = self.record.get("file_server")
        if served:
            self._stack.enter_context(self._files(served))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lab_stack is not None:
            self._lab_stack.close()
        self._stack.close()

    def lab(self, name: str | None) -> None:
        """Serve the lab content ``name`` (a ``lab-K.json``), if not served already."""
        if name is None or name == self._lab_name:
            return
        from lab_registry import content

        if self._lab_stack is not None:
            self._lab_stack.close()
        description = json.loads((self.bundle / name).read_text())
        recorded = content.address(description)
        host, _, port = recorded.rpartition(":")
        stack = ExitStack()
        try:
            registry = stack.enter_context(
                content.serve(description, self.bundle, host=host, port=int(port))
            )
        except OSError:
            # The recorded address is not this machine's any more (a veth address of the
            # run's namespace): loopback, and the requests rewritten.
            registry = stack.enter_context(content.serve(description, self.bundle))
        self._lab_stack, self._lab_name = stack, name
        self._moves[recorded] = registry.address

    @contextmanager
    def _files(self, served: dict[str, Any]) -> Iterator[None]:
        from engine_conformance.engine.fileserver import FileServer

        recorded = f"{served['host']}:{served['port']}"
        try:
            server = FileServer(served["host"], served["port"])
        except OSError:
            try:
                server = FileServer(served["host"], 0)
            except OSError:
                server = FileServer("127.0.0.1", 0)
        for path, name in served["files"].items():
            server.files[path] = (self.bundle / name).read_bytes()
        with server:
            self._moves[recorded] = server.base_url.split("://", 1)[1]
            yield

    def rewrite(self, text: str) -> str:
        for old, new in self._moves.items():
            if old != new:
                text = text.replace(old, new)
        return text

    def rewrite_header(self, name: str, value: str) -> str:
        if name.lower() != "x-registry-auth" or not any(o != n for o, n in self._moves.items()):
            return value
        # The address may sit inside the base64url JSON (serveraddress).
        try:
            padded = value + "=" * (-len(value) % 4)
            decoded = base64.urlsafe_b64decode(padded).decode()
        except (ValueError, UnicodeDecodeError):
            return value
        moved = self.rewrite(decoded)
        if moved == decoded:
            return value
        encoded = base64.urlsafe_b64encode(moved.encode()).decode()
        return encoded if value.endswith("=") or len(value) % 4 == 0 else encoded.rstrip("=")


# -- judging ------------------------------------------------------------------------------


def _judge_case(record: dict[str, Any], url: str, timeout: float) -> tuple[bool | None, str]:
    """Run the suite's check of this case again, alone, against ``url``."""
    from engine_conformance.run.runner import run_suite

    rid = record["requirement"]["id"]
    extra = list(record.get("run_options") or [])
    taken = _taken_ports(extra)
    if taken:
        # The run was given this port because the engine was told about it (Podman's
        # insecure registries name host:port); another one would not be judged fairly.
        return None, (
            f"the recorded port {taken} is in use by another process; the check "
            "serves its lab there: free it and replay again"
        )
    with tempfile.TemporaryDirectory(prefix="ec-replay-") as tmp:
        if record.get("seed") is not None:
            extra += ["--seed", str(record["seed"])]
        try:
            result = run_suite(
                url,
                Path(tmp),
                requirements=[rid],
                cases=[record["case"]],
                api_version=record["requirement"].get("judged_at"),
                extra=extra,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return None, f"the check did not finish in {timeout:.0f} s"
    if result.results is None:
        return None, f"the check could not run: {result.output.strip().splitlines()[-1:]}"
    try:
        entry = result.requirement(rid)
    except KeyError:
        return None, "the check was not collected (is this the suite that wrote the bundle?)"
    verdict, reason = entry["verdict"], entry.get("reason", "")
    if verdict == "fail":
        return True, f"the check fails again: {reason[:400]}"
    if verdict == "pass":
        return False, "the check passes now"
    return None, f"the check gave {verdict}: {reason[:400]}"


def _taken_ports(options: list[str]) -> str | None:
    """``host:port`` of a fixed --registry-port/--file-server-port that is not free now."""
    host = options[options.index("--serve-host") + 1] if "--serve-host" in options else "127.0.0.1"
    for flag in ("--registry-port", "--file-server-port"):
        if flag not in options:
            continue
        port = int(options[options.index(flag) + 1])
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return f"{host}:{port}"
    return None


def _judge_finding(
    record: dict[str, Any], ex: Exchange, created: dict[str, set[str]], left: dict[str, set[str]]
) -> tuple[bool | None, str]:
    """The property phase's rules on the replayed answer: the same finding, or not."""
    from engine_conformance.judge.property_phase import Draft, violations

    draft_fields = dict(record["draft"])
    draft_fields["query"] = tuple(tuple(p) for p in draft_fields.get("query", ()))
    draft = Draft(**draft_fields)
    rid = record["requirement"]["id"]
    shape = record["finding"].get("shape", "")
    found = violations(ex, draft, created, left, record.get("prefix", ""))
    same = [v for v in found if v.requirement == rid and v.shape == shape]
    if same:
        return True, f"{shape}: {same[0].detail[:300]}"
    others = [f"{v.requirement} {v.shape}" for v in found if v.requirement == rid]
    return False, (
        f"the answer no longer shows {shape!r}" + (f" (it shows {others})" if others else "")
    )


def bundles_of(report_dir: Path, requirement: str) -> list[Path]:
    """The bundles ``results.json`` names for ``requirement``: its failing cases', then its
    property-phase findings'. Raises ValueError when the report or requirement is unknown."""
    path = Path(report_dir) / "results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    entry = next((r for r in results.get("requirements", []) if r.get("id") == requirement), None)
    if entry is None:
        raise ValueError(f"{requirement} was not judged in {path}")
    found = [r["path"] for r in entry.get("reproducers") or []]
    found += [
        f["bundle"]
        for f in (entry.get("observations") or {}).get("findings") or []
        if f.get("bundle")
    ]
    return [Path(report_dir) / p for p in found]


def reproduce(
    report_dir: Path,
    requirement: str,
    target: str | None = None,
    out: TextIO | None = None,
    detail: TextIO | None = None,
) -> list[Outcome]:
    """Replay every bundle of ``requirement`` in a report; one line per case to ``out``:
    what was expected and observed then, and whether the engine still deviates."""
    out = out or sys.stdout
    outcomes = []
    for bundle in bundles_of(report_dir, requirement):
        outcome = replay(bundle, target, out=detail or cast(TextIO, _Discard()))
        record = bundles.load(bundle)
        print(f"{outcome.requirement} {outcome.case}: {outcome.word}", file=out)
        print(f"  then: {record.get('reason', '')[:300]}", file=out)
        print(f"  now:  {outcome.why[:300]}", file=out)
        outcomes.append(outcome)
    return outcomes


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _engine_label(engine: dict[str, Any]) -> str:
    label = f"{engine.get('engine', '?')} {engine.get('version', '')}".strip()
    if engine.get("image_store"):
        label += f" ({engine['image_store']})"
    return label + f", API {engine.get('api_version', '?')}"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or len(args) > 2:
        print("usage: python -m engine_conformance.run.replay BUNDLE [TARGET]", file=sys.stderr)
        return 2
    bundle = Path(args[0])
    if not (bundle / "case.json").is_file():
        print(f"replay: error: {bundle} is not a reproducer bundle (no case.json)", file=sys.stderr)
        return 2
    return replay(bundle, args[1] if len(args) > 1 else None).exit_code


if __name__ == "__main__":
    sys.exit(main())
