"""``engine-conformance doctor``: only the preflight, and what to do once before a run.

    >>> report = diagnose(Target.parse("unix:///run/docker.sock"), Serving())   # doctest: +SKIP
    >>> report.ready, report.lines()[-1]                                         # doctest: +SKIP
    (True, 'ready: engine-conformance run --target unix:///run/docker.sock')

It serves the lab registry and the file server exactly as a run would (same
address, ports and TLS material), makes the engine pull a canary image and
import a canary archive, removes both, and prints either ``ready`` with the
run command that will work, or the numbered one-time steps for this engine
(:mod:`engine_conformance.judge.diagnosis`). Nothing else on the engine is touched.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from engine_conformance.engine.fileserver import FileServer
from engine_conformance.engine.identity import describe_target
from engine_conformance.engine.target import Client, Target, Timeouts
from engine_conformance.engine.tls import CA_FILE, material_for
from engine_conformance.judge.preflight import Probe, probe_file_server, probe_registry


@dataclass(frozen=True)
class Serving:
    """How the suite serves: the options ``run`` and ``doctor`` share."""

    host: str = "127.0.0.1"
    registry_port: int = 0
    file_server_port: int = 0
    tls_dir: str = ""
    tls: bool = False

    def options(self) -> list[str]:
        """The same serving as ``run`` options."""
        out = [] if self.host == "127.0.0.1" else ["--serve-host", self.host]
        out += ["--registry-port", str(self.registry_port)] if self.registry_port else []
        out += ["--file-server-port", str(self.file_server_port)] if self.file_server_port else []
        out += ["--serve-tls"] if self.tls else []
        return out + (["--tls-dir", self.tls_dir] if self.tls_dir else [])


@dataclass
class Report:
    target: Target
    serving: Serving
    engine: str = ""
    probes: list[Probe] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(p.ok for p in self.probes)

    def lines(self) -> list[str]:
        out = [f"engine: {self.engine} at {self.target.url}"]
        steps: list[str] = []
        for probe in self.probes:
            name = "lab registry" if probe.service == "registry" else "file server"
            if probe.ok:
                out.append(f"{name}: reached ({probe.seconds:.1f} s)")
                continue
            out.append(f"{name}: {probe.reason.split('. Fix:')[0].removeprefix('preflight: ')}")
            steps += [s for s in probe.steps if s not in steps]
        command = shlex.join(
            ["engine-conformance", "run", "--target", self.target.url, *self.serving.options()]
        )
        if self.ready:
            out.append(f"ready: {command}")
            return out
        out.append("not ready; once, before the next run:")
        out += [f"  {i}) {step}" for i, step in enumerate(steps, 1)]
        out.append("then `engine-conformance doctor` with the options the steps name says ready")
        return out


def diagnose(
    target: Target,
    serving: Serving,
    timeout: float = 60.0,
    api_version: str | None = None,
    report_dir: Path | None = None,
) -> Report:
    """Run the preflight against ``target`` as a run with ``serving`` would.

    Raises :class:`~engine_conformance.engine.target.TargetError` when the engine itself
    cannot be reached, and ``OSError`` when a port cannot be served.
    """
    from engine_conformance.engine.registries import serve

    report = Report(target, serving)
    prefix = f"ectest-{secrets.token_hex(4)}"
    material = (
        material_for(report_dir or Path("."), serving.host, serving.tls_dir or None)
        if serving.tls
        else None
    )
    context = material.server_context() if material else None
    ca = material.directory / CA_FILE if material else None
    with Client(target, api_version=api_version, timeouts=Timeouts(read=timeout)) as client:
        client.negotiate()
        info = describe_target(client, client.info())
        report.engine = f"{info['engine']} {info['version']} ({info['image_store']} store)"
        with serve(prefix, host=serving.host, port=serving.registry_port, tls=context) as registry:
            report.probes.append(probe_registry(client, registry, info, ca=ca))
        with FileServer(serving.host, serving.file_server_port, tls=context) as files:
            report.probes.append(probe_file_server(client, files, info, prefix, ca=ca))
    return report
