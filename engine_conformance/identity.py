"""Who the engine is, from its own answers: product, version, image store, kind.

    >>> describe_target(client, client.info())["engine_key"]       # doctest: +SKIP
    'docker-26.1-containerd'
"""

from __future__ import annotations

from .target import Client


def describe_target(client: Client, info: dict) -> dict:
    """Engine identity for reports and for picking an expectation file."""
    v = client.version_info
    components = [c.get("Name", "") for c in v.get("Components") or []]
    product = "podman" if any("podman" in c.lower() for c in components) else "docker"
    version = str(v.get("Version", "unknown"))
    major_minor = ".".join(version.split("+")[0].split(".")[:2])
    store = image_store(product, info)
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
    }


def image_store(product: str, info: dict) -> str:
    """``containerd`` (Docker's containerd store), ``graphdriver`` or ``containers-storage``."""
    if product == "podman":
        return "containers-storage"
    status = {str(k): str(v) for k, v in (info.get("DriverStatus") or []) if k}
    if status.get("driver-type", "").startswith("io.containerd.snapshotter"):
        return "containerd"
    return "graphdriver"
