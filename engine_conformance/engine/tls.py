"""HTTPS for the suite's own servers (``--serve-tls``): a CA made per run, a certificate
for the serve host, and where each kind of engine looks for the CA.

    >>> material = ServeTLS.ensure(report_dir / "tls", "127.0.0.1")   # doctest: +SKIP
    >>> LabRegistry(catalogue, tls=material.server_context())          # doctest: +SKIP
    >>> managed_engine.trust_registry_ca("127.0.0.1:5000", material.ca_path)  # doctest: +SKIP
    >>> print(ca_advice("docker", "10.0.0.5:5000", material.ca_path))  # doctest: +SKIP

The directory holds ``ca.crt`` (what an engine must trust), ``server.crt`` and
``server.key``. ``ensure`` loads material already there, so the process that
starts a managed engine (and gives it the CA) and the pytest run that serves
(and needs the key) use the same CA. The CA signs nothing else and dies with
the run.

Where engines read the CA, from their source and checked on the real engines:

- Docker (20.10, 26.1, both image stores) reads ``registry.CertsDir()/HOST:PORT/*.crt``
  on every pull: ``/etc/docker/certs.d``, or ``$XDG_CONFIG_HOME/docker/certs.d`` when
  it runs under RootlessKit. It does not consult it for a registry it treats as
  insecure (127.0.0.0/8 by default on the graphdriver store: TLS is tried there
  without verification).
- Podman (containers/image) reads ``$HOME/.config/containers/certs.d/HOST:PORT``,
  then ``/etc/containers/certs.d`` and ``/etc/docker/certs.d``, on every pull.
- A ``fromSrc`` URL is fetched with Go's default client: the system trust store
  (``SSL_CERT_FILE``/``SSL_CERT_DIR``), read once, at the engine's first TLS check.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import trustme

    from engine_conformance.engine.engines import ManagedEngine
    from engine_conformance.engine.target import Target

CA_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
CERT_FILE = "server.crt"
KEY_FILE = "server.key"


@dataclass(frozen=True)
class ServeTLS:
    """A per-run CA and a server certificate, as files in ``directory``."""

    directory: Path

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE

    @property
    def cert_path(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @classmethod
    def create(cls, directory: Path, *hosts: str, keep_ca_key: bool = False) -> ServeTLS:
        """Make a CA and a certificate for ``hosts`` (the serve host; IPs or names).

        ``keep_ca_key`` keeps the CA's key (``ca.key``, mode 0600) beside it, so that a
        lasting directory (``--tls-dir``) can issue a certificate for another host later
        without a new CA: the engine trusts the CA once.
        """
        import trustme

        ca = trustme.CA(organization_name="engine-conformance CA")
        directory.mkdir(parents=True, exist_ok=True)
        ca.cert_pem.write_to_path(str(directory / CA_FILE))
        if keep_ca_key:
            _private(directory / CA_KEY_FILE, ca.private_key_pem.bytes())
        material = cls(directory)
        material._issue(ca, hosts)
        return material

    @classmethod
    def ensure(cls, directory: Path, *hosts: str, keep_ca_key: bool = False) -> ServeTLS:
        """The material in ``directory`` if it is complete, else new material there.

        When the CA's key is kept there and the certificate does not name every one of
        ``hosts``, a new certificate is issued by the same CA.
        """
        found = cls(directory)
        if not all(p.is_file() for p in (found.ca_path, found.cert_path, found.key_path)):
            return cls.create(directory, *hosts, keep_ca_key=keep_ca_key)
        ca_key = directory / CA_KEY_FILE
        if ca_key.is_file() and not set(hosts) <= found.names():
            import trustme

            found._issue(
                trustme.CA.from_pem(found.ca_path.read_bytes(), ca_key.read_bytes()), hosts
            )
        return found

    def names(self) -> set[str]:
        """The hosts (names and addresses) the server certificate is valid for."""
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {str(n) for n in alt.get_values_for_type(x509.DNSName)} | {
            str(a) for a in alt.get_values_for_type(x509.IPAddress)
        }

    def _issue(self, ca: trustme.CA, hosts: tuple[str, ...]) -> None:
        names = list(dict.fromkeys([*hosts, "127.0.0.1", "localhost"]))
        leaf = ca.issue_cert(*names)
        leaf.cert_chain_pems[0].write_to_path(str(self.cert_path))
        _private(self.key_path, leaf.private_key_pem.bytes())

    def server_context(self) -> ssl.SSLContext:
        """For the lab registry and the file server (``tls=``)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """For the harness's own requests to its servers: trusts this CA only."""
        return ssl.create_default_context(cafile=str(self.ca_path))


def engine_kind(version_info: dict[str, Any]) -> str:
    """``"podman"`` or ``"docker"`` from an engine's ``/version`` answer."""
    names = [str(c.get("Name", "")) for c in version_info.get("Components") or []]
    return "podman" if any("podman" in n.lower() for n in names) else "docker"


def ca_advice(kind: str, address: str, ca_path: Path) -> str:
    """One line: where the user's own engine of ``kind`` wants the CA for ``address``."""
    if kind == "podman":
        where = (
            f"/etc/containers/certs.d/{address}/ca.crt (rootless: "
            f"~/.config/containers/certs.d/{address}/ca.crt)"
        )
    else:
        where = (
            f"/etc/docker/certs.d/{address}/ca.crt (rootless: "
            f"~/.config/docker/certs.d/{address}/ca.crt)"
        )
    return (
        f"--serve-tls: copy {ca_path} to {where}, read at each pull without a restart; "
        "imports from the file server also need it in the engine host's trust store "
        "(update-ca-certificates, then restart the engine)"
    )


def host_port(host: str, port: int) -> str:
    """``HOST:PORT`` as a registry address (``[::1]:5000`` for IPv6), the certs.d entry name."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(data)


def run_directory(report_dir: Path, tls_dir: Path | str | None = None) -> Path:
    """Where a run keeps its material: ``--tls-dir`` when given, else ``<report-dir>/tls``."""
    return Path(tls_dir) if tls_dir else Path(report_dir) / "tls"


def material_for(report_dir: Path, serve_host: str, tls_dir: Path | str | None = None) -> ServeTLS:
    """The run's material: made once in ``--tls-dir`` and reused by every later run
    (the CA an engine was given once keeps serving), else made for this run."""
    return ServeTLS.ensure(
        run_directory(report_dir, tls_dir), serve_host, keep_ca_key=bool(tls_dir)
    )


def server_context_for(
    enabled: bool, report_dir: Path, serve_host: str, tls_dir: Path | str | None = None
) -> ssl.SSLContext | None:
    """The ``--serve-tls`` option as a server context: None without it.

    Material already there (made by the process that started the engine, see
    :func:`prepare_run`, or by an earlier run in ``--tls-dir``) is used, else made now.
    """
    if not enabled:
        return None
    return material_for(report_dir, serve_host, tls_dir).server_context()


def prepare_run(
    report_dir: Path,
    serve_host: str,
    registry_address: str | None,
    target: Target,
    managed: ManagedEngine | None = None,
    tls_dir: Path | str | None = None,
) -> tuple[ServeTLS, str | None]:
    """Material for a run in ``<report-dir>/tls``, trusted by a ``managed`` engine.

    Returns the material and, for the user's own engine, the one line saying
    where its CA goes (None for a managed engine, which has been given it:
    the registry's CA in certs.d, and the CA for ``fromSrc`` URLs before the
    engine's first TLS check).
    """
    material = material_for(report_dir, serve_host, tls_dir)
    if managed is not None:
        managed.trust_ca(material.ca_path)
        if registry_address:
            managed.trust_registry_ca(registry_address, material.ca_path)
        return material, None
    from engine_conformance.engine.target import Client, TargetError

    try:
        with Client(target) as client:
            client.negotiate()
            kind = engine_kind(client.version_info)
    except TargetError:
        kind = "docker"
    address = registry_address or f"{serve_host}:PORT"
    return material, ca_advice(kind, address, material.ca_path)
