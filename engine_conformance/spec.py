"""Read the OpenAPI fragment in ``spec/images-create.yaml``.

The fragment describes ``POST /images/create`` at Engine API v1.44 plus the
harness's own observation calls. This module is the one place the suite reads
it from; it imports nothing from the rest of the project.

Usage::

    from engine_conformance import spec

    spec.since("platform")                 # "1.32"
    spec.parameter("changes")["explode"]   # True
    spec.response_source(400)              # "reference"
    spec.response_source(418)              # "undocumented"
    spec.validate_stream_item({"status": "Pulling fs layer", "id": "abc"})   # []
    spec.validate_error({"message": "boom"})                                 # []
    spec.quote("/paths/~1images~1create/post/responses/404/description")
    # "repository does not exist or no read access"

Everything returned by :func:`load` is shared and cached: treat it as read-only.
Functions that hand out schemas (:func:`stream_item_schema`,
:func:`error_schema`, :func:`resolve`) return fresh copies.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator

from . import paths

__all__ = [
    "SPEC_PATH",
    "ENDPOINT_PATH",
    "ENDPOINT_METHOD",
    "load",
    "api_version",
    "min_api_version",
    "operation",
    "parameters",
    "parameter",
    "query_parameter_names",
    "since",
    "version_notes",
    "response",
    "response_source",
    "resolve",
    "stream_item_schema",
    "error_schema",
    "validate_stream_item",
    "validate_error",
    "harness_paths",
    "is_harness_path",
    "quote",
]

#: Where the fragment lives in the checkout.
SPEC_PATH: Path = paths.SPEC / "images-create.yaml"

#: The endpoint under test (unversioned path, lower-case method as in OpenAPI).
ENDPOINT_PATH = "/images/create"
ENDPOINT_METHOD = "post"

Source = Literal["documented", "reference", "undocumented"]


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """Return the parsed fragment (cached; do not mutate).

    >>> load()["x-api-version"]
    '1.44'
    """
    with SPEC_PATH.open(encoding="utf-8") as fh:
        document = yaml.safe_load(fh)
    if not isinstance(document, dict):
        raise ValueError(f"{SPEC_PATH} is not a mapping")
    return document


def api_version() -> str:
    """The API version the fragment describes (``x-api-version``), e.g. ``"1.44"``."""
    return str(load()["x-api-version"])


def min_api_version() -> str:
    """The lowest API version the suite targets (``x-min-api-version``), e.g. ``"1.24"``."""
    return str(load()["x-min-api-version"])


def operation(path: str = ENDPOINT_PATH, method: str = ENDPOINT_METHOD) -> dict[str, Any]:
    """Return the Operation Object at ``path``/``method`` (default: POST /images/create).

    Raises ``KeyError`` if the fragment has no such operation.
    """
    return load()["paths"][path][method.lower()]


def parameters() -> list[dict[str, Any]]:
    """All parameters (query and header) of POST /images/create, in document order."""
    return [resolve(p) for p in operation().get("parameters", [])]


def parameter(name: str) -> dict[str, Any]:
    """Return the Parameter Object of POST /images/create called ``name``.

    Works for query parameters (``"fromImage"``, ``"changes"``…) and the
    ``"X-Registry-Auth"`` header (matched case-insensitively for headers).
    Raises ``KeyError`` if there is none.

    >>> parameter("changes")["style"], parameter("changes")["explode"]
    ('form', True)
    """
    for param in parameters():
        if param["name"] == name:
            return param
        if param["in"] == "header" and param["name"].lower() == name.lower():
            return param
    raise KeyError(f"POST {ENDPOINT_PATH} has no parameter {name!r}")


def query_parameter_names() -> list[str]:
    """Names of the query parameters of POST /images/create, in document order."""
    return [p["name"] for p in parameters() if p["in"] == "query"]


def since(name: str) -> str:
    """API version in which parameter ``name`` appeared (its ``x-since``).

    ``"1.24"`` (the minimum) means "present at or before the oldest version the
    suite targets".

    >>> since("platform")
    '1.32'
    """
    return str(parameter(name)["x-since"])


def version_notes(name: str) -> list[dict[str, Any]]:
    """The ``x-version-notes`` of parameter ``name``: ``[{since, versioned, note}, …]``.

    ``versioned: false`` marks a daemon change that applies at every API version
    on engines that have it, rather than one gated on the requested version.
    """
    return list(parameter(name).get("x-version-notes", []))


def response(status: int | str) -> dict[str, Any] | None:
    """The Response Object of POST /images/create for ``status``, or ``None``."""
    return operation()["responses"].get(str(status))


def response_source(status: int | str) -> Source:
    """Where the ``status`` answer of POST /images/create is grounded.

    ``"documented"``: listed in the Engine API v1.44 document (200, 404, 500).
    ``"reference"``: not documented, but what the reference engine returns
    (400, 401, 403, 501, 503). ``"undocumented"``: not in the fragment at all.
    """
    found = response(status)
    if found is None:
        return "undocumented"
    source = found.get("x-source")
    if source not in ("documented", "reference"):
        raise ValueError(f"response {status} has no valid x-source: {source!r}")
    return source


def _pointer_get(document: Any, pointer: str) -> Any:
    """Follow a JSON pointer (RFC 6901) such as ``/paths/~1images~1create``."""
    if pointer in ("", "#"):
        return document
    node = document
    for raw in pointer.lstrip("#").lstrip("/").split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(token)]
        else:
            node = node[token]
    return node


def resolve(node: Any) -> Any:
    """Return a deep copy of ``node`` with every local ``$ref`` replaced by its target.

    Sibling keys of a ``$ref`` are kept (OpenAPI 3.1 allows them). The
    fragment's schemas are not recursive, so the result is finite.
    """
    if isinstance(node, dict):
        if "$ref" in node and isinstance(node["$ref"], str):
            ref = node["$ref"]
            if not ref.startswith("#"):
                raise ValueError(f"only local $refs are supported, got {ref!r}")
            target = resolve(_pointer_get(load(), ref))
            siblings = {k: resolve(v) for k, v in node.items() if k != "$ref"}
            if isinstance(target, dict):
                return {**target, **siblings}
            return target
        return {k: resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v) for v in node]
    return copy.deepcopy(node)


def stream_item_schema() -> dict[str, Any]:
    """The schema of one progress-stream line (``CreateImageInfo``), refs resolved.

    It is taken from the 200 response's ``x-stream-item``; ready for
    ``jsonschema`` (draft 2020-12, the OpenAPI 3.1 dialect).
    """
    ok = response(200)
    if ok is None or "x-stream-item" not in ok:
        raise KeyError("the 200 response has no x-stream-item")
    return resolve(ok["x-stream-item"])


def error_schema() -> dict[str, Any]:
    """The ``ErrorResponse`` schema (``{"message": string}``, required), refs resolved."""
    return resolve({"$ref": "#/components/schemas/ErrorResponse"})


@lru_cache(maxsize=1)
def _stream_item_validator() -> Validator:
    return Draft202012Validator(stream_item_schema())


@lru_cache(maxsize=1)
def _error_validator() -> Validator:
    return Draft202012Validator(error_schema())


def _messages(validator: Validator, instance: Any) -> list[str]:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    out = []
    for error in errors:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        out.append(f"{where}: {error.message}")
    return out


def validate_stream_item(obj: Any) -> list[str]:
    """Check one decoded stream line against ``CreateImageInfo``.

    Returns a list of error messages, empty when the line conforms. The model is
    open: unknown properties are allowed.

    >>> validate_stream_item({"status": "Downloading", "progressDetail": {"current": 1}})
    []
    >>> validate_stream_item({"progressDetail": {"current": "a"}})
    ["progressDetail/current: 'a' is not of type 'integer'"]
    """
    return _messages(_stream_item_validator(), obj)


def validate_error(obj: Any) -> list[str]:
    """Check a decoded error body against ``ErrorResponse``; empty list when it conforms."""
    return _messages(_error_validator(), obj)


def harness_paths() -> list[str]:
    """Paths marked ``x-harness: true``: the harness's observation calls, not under test."""
    return [path for path, item in load()["paths"].items() if item.get("x-harness") is True]


def is_harness_path(path: str) -> bool:
    """Whether ``path`` (an OpenAPI path template) is a harness observation call.

    Handy as a schemathesis filter::

        schema.exclude(func=lambda ctx: spec.is_harness_path(ctx.operation.path))
    """
    item = load()["paths"].get(path)
    return bool(item and item.get("x-harness") is True)


def quote(pointer: str) -> str:
    """The text at JSON pointer ``pointer`` in the fragment, for citing it verbatim.

    >>> quote("/paths/~1images~1create/post/responses/500/description")
    'server error'
    """
    value = _pointer_get(load(), pointer)
    if isinstance(value, str):
        return value.strip()
    return yaml.safe_dump(value, sort_keys=False).strip()
