"""Who the engine is, from its own answers: product, version, image store, kind.

>>> describe_target(client, client.info())["engine_key"]       # doctest: +SKIP
'docker-26.1-containerd'
"""

from __future__ import annotations

from typing import Any

from engine_conformance.engine.target import Client, TargetError

LIBPOD_INFO = "/v4.0.0/libpod/info"
"""Podman's own ``/info`` (Podman 4 and 5 serve it): the one that says rootless."""


def describe_target(client: Client, info: dict[str, Any]) -> dict[str, Any]:
    """Engine identity for reports and for picking an expectation file."""
    v = client.version_info
    components = [c.get("Name", "") for c in v.get("Components") or []]
    product = "podman" if any("podman" in c.lower() for c in components) else "docker"
    version = str(v.get("Version", "unknown"))
    major_minor = ".".join(version.split("+")[0].split(".")[:2])
    store = image_store(product, info)
    host = podman_host(client, product)
    # The key tells Docker's two image stores apart: they judge differently.
    key = f"{product}-{major_minor}" + ("-containerd" if store == "containerd" else "")
    return {
        "url": client.target.url,
        "engine": product,
        "version": version,
        "engine_key": key,
        "image_store": store,
        "api_version": client.api_version,
        "max_api_version": v.get("ApiVersion"),
        "min_api_version": v.get("MinAPIVersion"),
        "os": v.get("Os") or info.get("OSType"),
        "arch": v.get("Arch") or info.get("Architecture"),
        "storage_driver": info.get("Driver"),
        "operating_system": info.get("OperatingSystem"),
        "security_options": [str(o) for o in info.get("SecurityOptions") or []],
        "rootless": is_rootless(info, host),
        "distribution_variant": distribution_variant(host),
    }


def is_rootless(info: dict[str, Any], podman_host: dict[str, Any]) -> bool:
    """Whether the engine runs as an unprivileged user, from its own answers.

    Docker says so in ``/info``: SecurityOptions holds ``name=rootless``. Podman's
    compatible ``/info`` does not (only ``name=seccomp,…``); its libpod ``/info``
    does (``host.security.rootless``: :func:`podman_host`).
    """
    if any("rootless" in str(o) for o in info.get("SecurityOptions") or []):
        return True
    security = podman_host.get("security")
    return isinstance(security, dict) and security.get("rootless") is True


def distribution_variant(podman_host: dict[str, Any]) -> str | None:
    """``coreos`` on a Podman machine: libpod ``/info`` ``host.distribution.variant``
    (the compatible ``/info`` says only ``fedora``)."""
    distribution = podman_host.get("distribution")
    variant = distribution.get("variant") if isinstance(distribution, dict) else None
    return variant if isinstance(variant, str) and variant else None


def podman_host(client: Client, product: str) -> dict[str, Any]:
    """``host`` of Podman's libpod ``/info``, asked of Podman only, once; ``{}`` otherwise.
    Its exchange is an observation, kept out of the evidence like ``/info``'s."""
    if product != "podman":
        return {}
    start = len(client.exchanges)
    try:
        ex = client.request("GET", LIBPOD_INFO, versioned=False, deadline=client.timeouts.read)
        libpod = ex.json() if ex.status == 200 else {}
    except (TargetError, ValueError):
        return {}
    finally:
        del client.exchanges[start:]
    host = libpod.get("host") if isinstance(libpod, dict) else None
    return host if isinstance(host, dict) else {}


def image_store(product: str, info: dict[str, Any]) -> str:
    """``containerd`` (Docker's containerd store), ``graphdriver`` or ``containers-storage``."""
    if product == "podman":
        return "containers-storage"
    status = {str(k): str(v) for k, v in (info.get("DriverStatus") or []) if k}
    if status.get("driver-type", "").startswith("io.containerd.snapshotter"):
        return "containerd"
    return "graphdriver"
