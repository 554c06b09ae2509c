"""Preflight: prove the engine reaches what the suite serves before a check relies on it.

    >>> probe = probe_registry(client, lab, target_info)            # doctest: +SKIP
    >>> probe.ok, probe.reason                                       # doctest: +SKIP
    (False, 'preflight: the engine cannot pull from the lab registry 127.0.0.1:41234: ...')

A check that pulls from the lab registry, or imports from the file server, can
judge the engine only if the engine reaches them; otherwise a refused pull
would read as the engine's deviation, and a check that looks for the absence
of something would pass without the engine doing anything. So each probe
makes the engine fetch something of the run's own (a canary image, a canary
archive, both unique to the run) and requires the registry's journal / the
file server's log to show the engine's requests. The engine's answer alone
proves nothing (a deviating engine may answer success without fetching a
byte), but it goes into the reason when the probe fails, with the fix for the
detected engine kind. The canary is removed again straight away.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from engine_conformance.base import archives
from engine_conformance.engine.target import Client, Exchange, TargetError
from engine_conformance.judge.checks import imported_id
from engine_conformance.judge.diagnosis import (
    LOOPBACK,
    Setup,
    cause,
    engine_kind,
    file_server_steps,
    numbered,
    registry_steps,
)

if TYPE_CHECKING:
    from engine_conformance.engine.fileserver import FileServer
    from engine_conformance.engine.registries import ExternalRegistry
    from lab_registry import Image, LabRegistry

CANARY_TAG = "canary"


@dataclass
class Probe:
    """The outcome of one preflight: did the engine reach the service, and if not, why."""

    service: str  # "registry" or "file_server"
    ok: bool
    reason: str = ""
    seconds: float = 0.0
    answer: str = ""  # what the engine answered the canary request, in one line
    seen: list[str] = field(default_factory=list)  # what the service saw of the canary
    evidence: dict[str, Any] | None = None
    cause: str = ""  # when not ok: one of diagnosis.CAUSES
    steps: list[str] = field(default_factory=list)  # when not ok: the one-time steps

    def as_dict(self) -> dict[str, Any]:
        """The entry under ``run.preflight`` in ``results.json``."""
        return {
            "status": "ok" if self.ok else "failed",
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "engine_answer": self.answer,
            "service_saw": self.seen,
            "evidence": self.evidence,
            **({"cause": self.cause, "steps": self.steps} if not self.ok else {}),
        }


def probe_registry(
    client: Client,
    registry: LabRegistry | ExternalRegistry,
    target_info: dict[str, Any],
    track: Callable[[str], None] = lambda ref: None,
    ca: Path | None = None,
) -> Probe:
    """Pull a canary image of the run's own; ok if the registry saw the engine ask for an image.

    With an external registry (no journal of ours) the image the engine then
    holds is the evidence. ``track`` is told every name the probe may leave, so
    that the end-of-run sweep can retry if removing it fails here. ``ca`` is the
    run's CA when the registry serves HTTPS (``--serve-tls``).
    """
    started = time.monotonic()
    catalogue = registry.catalogue
    repository = catalogue.name("preflight")
    image = canary_image(catalogue.prefix, target_info)
    if registry.external:
        import httpx

        from lab_registry.push import push

        with httpx.Client(base_url=registry.url, timeout=60.0) as http:
            push(http, repository, CANARY_TAG, image)
    else:
        catalogue.add(repository, CANARY_TAG, image)
    ref = registry.reference(repository, CANARY_TAG)
    track(ref)
    lab = None if registry.external else cast("LabRegistry", registry)  # the lab's journal
    mark = 0 if lab is None else lab.journal.mark()
    handshakes = len(getattr(registry, "tls_failures", ()))
    ex, answer = _send(client, {"fromImage": ref.rsplit(":", 1)[0], "tag": CANARY_TAG})
    try:
        held = client.inspect_image(ref)
    except TargetError:
        held = None
    if registry.external:
        seen = [f"the engine holds {ref}"] if held else []
        reached = held is not None
    else:
        # Any image request proves the engine reaches the registry and speaks its protocol;
        # which image it asked for, and what it made of it, is for the checks to judge.
        assert lab is not None
        entries = lab.journal.since(mark)
        reached = any(e.kind in ("manifest", "blob") for e in entries)
        if not reached and lab.tls is not None:
            # A refused certificate is noted only after the engine hung up.
            lab.tls_failures.wait(handshakes + 1, timeout=2.0)
        seen = [f"{e.method} {e.path} {e.status}" for e in entries]
        seen += [
            f"a failed TLS handshake ({failure})"
            for failure in dict.fromkeys(lab.tls_failures[handshakes:])
        ]
        catalogue.remove(repository)
    _remove(client, ref, (held or {}).get("Id"))
    probe = Probe(
        "registry",
        reached,
        seconds=time.monotonic() - started,
        answer=answer,
        seen=seen,
        evidence=ex.evidence() if ex else None,
    )
    if not reached:
        probe.cause = cause(answer, answered=ex is not None)
        steps = registry_steps(
            probe.cause,
            engine_kind(target_info),
            setup_of(
                target_info,
                registry_host(registry),
                int(registry.address.rsplit(":", 1)[-1]),
                client,
                ca,
            ),
        )
        probe.steps = steps
        probe.reason = (
            f"preflight: the engine cannot pull from the {_which(registry)} {registry.address}: "
            f"it answered {answer}, and the registry saw "
            f"{'; '.join(seen) if seen else 'no request for an image'}. "
            f"Fix: {numbered(steps)}"
        )
    return probe


def probe_file_server(
    client: Client,
    files: FileServer,
    target_info: dict[str, Any],
    prefix: str,
    track: Callable[[str], None] = lambda ref: None,
    ca: Path | None = None,
) -> Probe:
    """Import a canary archive by URL from ``files``; ok if the engine asked the file server."""
    started = time.monotonic()
    url = files.add(
        "preflight.tar",
        archives.rootfs({"etc/engine-conformance-preflight": f"canary of run {prefix}\n".encode()}),
    )
    path = url.removeprefix(files.base_url)
    repo = f"{prefix}/preflight-import"
    track(repo)
    handshakes, start = len(files.tls_failures), len(files.requests)
    ex, answer = _send(client, {"fromSrc": url, "repo": repo})
    # Any request proves the engine reaches the file server; only the engine knows its URLs.
    fetched = files.requests[start:]
    if not fetched and files.tls is not None:
        files.tls_failures.wait(handshakes + 1, timeout=2.0)
    failed_tls = list(dict.fromkeys(files.tls_failures[handshakes:]))
    _remove(client, repo, imported_id(ex) if ex else None)
    reached = bool(fetched)
    probe = Probe(
        "file_server",
        reached,
        seconds=time.monotonic() - started,
        answer=answer,
        seen=[f"{m} {p.replace(path, '<canary>')} {s}" for m, p, s in fetched],
        evidence=ex.evidence() if ex else None,
    )
    if not reached:
        probe.cause = "untrusted" if failed_tls else cause(answer, answered=ex is not None)
        split = urlsplit(files.base_url)
        steps = file_server_steps(
            probe.cause,
            engine_kind(target_info),
            setup_of(
                target_info, split.hostname or "", 0, client, ca, file_server_port=split.port or 0
            ),
        )
        probe.steps = steps
        probe.reason = (
            f"preflight: the engine cannot import from the file server {files.base_url}: "
            f"it answered {answer}, and the file server saw "
            f"no request for the canary archive"
            + (f" (failed TLS handshakes: {'; '.join(failed_tls)})" if failed_tls else "")
            + f". Fix: {numbered(steps)}"
        )
    return probe


def canary_image(prefix: str, target_info: dict[str, Any]) -> Image:
    """A one-layer image for the engine's own platform whose content names the run."""
    from lab_registry import build_image

    platform = f"{target_info.get('os') or 'linux'}/{target_info.get('arch') or 'amd64'}"
    return build_image(
        {"etc/engine-conformance-preflight": f"canary of run {prefix}\n"},
        platform=platform,
        env={"EC_PREFLIGHT": prefix},
        cmd=None,
    )


def setup_of(
    target_info: dict[str, Any],
    serve_host: str,
    registry_port: int,
    client: Client,
    ca: Path | None,
    file_server_port: int = 0,
) -> Setup:
    """What the steps refer to: how this run serves, and this machine's addresses."""
    url = urlsplit(str(target_info.get("url", "")))
    remote = url.scheme not in ("unix", "npipe", "") and not (url.hostname or "").startswith(
        LOOPBACK
    )
    return Setup(
        serve_host=serve_host,
        registry_port=registry_port,
        file_server_port=file_server_port,
        tls_dir=str(ca.parent) if ca is not None else "",
        serving_tls=ca is not None,
        local_addresses=local_addresses(),
        timeout=client.timeouts.read,
        remote=remote,
    )


def local_addresses() -> tuple[str, ...]:
    """This machine's addresses an engine elsewhere might reach (loopback left out)."""
    try:
        out = subprocess.run(
            ["ip", "-o", "addr", "show", "scope", "global"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    found = re.findall(r"\binet6?\s+([0-9a-f.:]+)/", out)
    return tuple(dict.fromkeys(found))


def registry_host(registry: LabRegistry | ExternalRegistry) -> str:
    return registry.address.rsplit(":", 1)[0].strip("[]")


def engine_answer(ex: Exchange) -> str:
    """What the engine answered, in one line: status and its error message."""
    if ex.status >= 400:
        try:
            message = json.loads(ex.body).get("message")
        except (ValueError, AttributeError):
            message = None
        text = message if isinstance(message, str) else ex.body[:300].decode("utf-8", "replace")
        return f"HTTP {ex.status} {_one_line(text)!r}"
    if ex.stream_error is not None:
        return f"HTTP {ex.status} with the stream error {_one_line(ex.stream_error)!r}"
    return f"HTTP {ex.status} and no error"


def _send(client: Client, params: dict[str, str]) -> tuple[Exchange | None, str]:
    # The canary is the harness's request, not a check's: it stays out of every check's evidence.
    start = len(client.exchanges)
    try:
        ex = client.create_image(params, deadline=client.timeouts.read)
        return ex, engine_answer(ex)
    except TargetError as exc:
        return None, _one_line(str(exc))
    finally:
        del client.exchanges[start:]


def _remove(client: Client, *names: str | None) -> None:
    # The canary's content names the run, so nothing outside the run shares its image.
    for name in names:
        if name:
            try:
                client.delete_image(name, force=True)
            except TargetError:
                pass


def _which(registry: LabRegistry | ExternalRegistry) -> str:
    return "external registry" if registry.external else "lab registry"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
