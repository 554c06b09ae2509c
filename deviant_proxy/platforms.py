"""An older engine made to answer like a newer one: a claimed API version and its image views.

    >>> from deviant_proxy.platforms import host_views
    >>> with StreamingProxy(docker_20_10, host_views("1.49", "1.41")) as proxy:  # doctest: +SKIP
    ...     proxy.target     # says it serves 1.49; its default inspect is Docker 29's

:func:`host_views` bends a Docker that serves ``served`` into one that claims
``claimed`` (``/version``'s ``ApiVersion``, ``/_ping``'s ``Api-Version``; every
path of a higher version is forwarded as ``/v{served}``, as the claims-api rows of
the import suite do) and that inspects an image the way Docker 29 does with its
containerd image store after ``fromImage=<index>&platform=<not the host's>``: the
default view (``GET /images/{name}/json``, with or without ``manifests=1``) is the
host platform's view of an index whose host image is absent (``Os`` "",
``Architecture`` "", no ``Variant``, ``RootFS.Layers`` []). The platform-aware
view (``platform=``, API 1.49 on) goes through: the older engine ignores the
parameter and answers the one image it holds, which is the platform's.
``platform_view`` edits that answer, for rows where the platform-aware view is
wrong too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine_conformance.base.versions import version_tuple

from .predicates import inspected_name, is_pull, rewrite_json
from .proxy import Deviation, Request, Response


def _host_arch(resp: Response) -> str | None:
    try:
        obj = json.loads(resp.body)
    except ValueError:
        return None
    return obj.get("Arch") if isinstance(obj, dict) else None


def _empty_host_view(obj: dict[str, Any]) -> None:
    obj["Os"] = ""
    obj["Architecture"] = ""
    obj.pop("Variant", None)
    obj["RootFS"] = {"Type": "layers", "Layers": []}


def host_views(
    claimed: str,
    served: str,
    platform_view: Callable[[dict[str, Any]], object] | None = None,
    name: str = "host-views-of-docker-29",
) -> tuple[Deviation, ...]:
    """The deviations (rows take them all) of an engine serving ``served`` that claims
    ``claimed`` and answers the default inspect of an image pulled for a platform other
    than the host's with the empty host view. ``name`` names the row's engine."""
    host = {"arch": "amd64"}  # learnt from the engine's /version
    foreign: dict[str, str] = {}  # name:tag -> the non-host platform it was pulled for

    def forwarded(req: Request) -> Request:
        if req.version and version_tuple(req.version) > version_tuple(served):
            return req.replace(path=f"/v{served}{req.endpoint}")
        return req

    def record_pull(req: Request) -> Request:
        if is_pull(req):
            name = req.param("fromImage") or ""
            key = f"{name}:{req.param('tag')}" if req.param("tag") else name
            platform = (req.param("platform") or "").split("/")
            if len(platform) > 1 and platform[1] != host["arch"]:
                foreign[key] = "/".join(platform)
            else:
                foreign.pop(key, None)
        return forwarded(req)

    def respond(req: Request, resp: Response) -> Response:
        if req.endpoint == "/_ping":
            return resp.replace(headers={"Api-Version": claimed})
        if req.endpoint == "/version":
            host["arch"] = _host_arch(resp) or host["arch"]
            return rewrite_json(resp, lambda obj: obj.update(ApiVersion=claimed))
        name = inspected_name(req)
        if name not in foreign:
            return resp
        if req.param("platform"):
            return rewrite_json(resp, platform_view) if platform_view else resp
        return rewrite_json(resp, _empty_host_view)

    edits = Deviation(
        f"{name}-claims-api-{claimed}",
        match=lambda req: req.endpoint in ("/_ping", "/version") or bool(inspected_name(req)),
        request=forwarded,
        response=respond,
    )
    # Pulls and every other request stream through; a pull's platform is recorded.
    paths = Deviation(
        f"api-{claimed}-served-as-{served}",
        match=lambda req: req.version is not None,
        request=record_pull,
    )
    return edits, paths
