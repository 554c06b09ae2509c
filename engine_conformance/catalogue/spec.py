"""Read the OpenAPI fragment in ``spec/images-create.yaml``.

The fragment describes ``POST /images/create`` at Engine API v1.44 and nothing
else (no other path: a generic tool pointed at it reaches only this endpoint).
This module is the one place the suite reads it from; it imports nothing from the
rest of the project.

Usage::

    from engine_conformance.catalogue import spec

    spec.since("platform")                 # "1.32"
    spec.since("changes")                  # "1.40": first listed in the v1.40 document
    spec.reference_since("changes")        # "1.24": the reference engine reads it earlier
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
from typing import Any, Literal, cast

import yaml
from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator

from engine_conformance.base import paths, yamls

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
    "reference_since",
    "version_notes",
    "departures",
    "response",
    "response_source",
    "resolve",
    "stream_item_schema",
    "error_schema",
    "validate_stream_item",
    "validate_error",
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
        document = yamls.load(fh)
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
    found: dict[str, Any] = load()["paths"][path][method.lower()]
    return found


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
    """The first API version whose document lists parameter ``name`` (its ``x-since``).

    ``"1.24"`` (the minimum) means "listed in the v1.24 document", the oldest the
    suite targets. An engine may read a parameter before its document lists it:
    :func:`reference_since` says from when the reference engine does.

    >>> since("platform"), since("message"), since("changes")
    ('1.32', '1.39', '1.40')
    """
    return str(parameter(name)["x-since"])


def reference_since(name: str) -> str:
    """The API version from which the reference engine reads parameter ``name``.

    Its ``x-reference-since`` where the fragment records one (``message`` and
    ``changes``: read at every version, listed only from v1.39 and v1.40), else
    :func:`since`.

    >>> reference_since("changes"), reference_since("platform")
    ('1.24', '1.32')
    """
    param = parameter(name)
    return str(param.get("x-reference-since", param["x-since"]))


def version_notes(name: str) -> list[dict[str, Any]]:
    """The ``x-version-notes`` of parameter ``name``: ``[{since, versioned, note}, …]``.

    ``versioned: false`` marks a change that is not gated on the requested API
    version (a daemon change that applies at every version on engines that have it,
    or a change of the document only). ``source`` says where the note comes from
    (``changelog``, ``document`` or ``reference``); ``quote``, where present, is the
    source's own words.
    """
    return list(parameter(name).get("x-version-notes", []))


def departures() -> list[tuple[str, dict[str, Any]]]:
    """Every ``x-departs-from-document`` entry: ``(JSON pointer of its node, entry)``.

    An entry names the ``keys`` of its node that say more than, or otherwise than,
    the v1.44 document, with ``source`` (``reference``, ``documents`` or
    ``openapi``), what the ``document`` says and the ``reason``.

    >>> [e["keys"] for p, e in departures() if p.endswith("/parameters/5")][0]
    ['style', 'explode']
    """
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(node: Any, pointer: str) -> None:
        if isinstance(node, dict):
            for entry in node.get("x-departs-from-document", []):
                found.append((pointer, entry))
            for key, value in node.items():
                if key != "x-departs-from-document":
                    walk(value, f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{pointer}/{index}")

    walk(load(), "")
    return found


def response(status: int | str) -> dict[str, Any] | None:
    """The Response Object of POST /images/create for ``status``, or ``None``."""
    found: dict[str, Any] | None = operation()["responses"].get(str(status))
    return found


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
    return cast(Source, source)  # checked just above


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
    schema: dict[str, Any] = resolve(ok["x-stream-item"])
    return schema


def error_schema() -> dict[str, Any]:
    """The ``ErrorResponse`` schema (``{"message": string}``, required), refs resolved."""
    schema: dict[str, Any] = resolve({"$ref": "#/components/schemas/ErrorResponse"})
    return schema


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


def quote(pointer: str) -> str:
    """The text at JSON pointer ``pointer`` in the fragment, for citing it verbatim.

    >>> quote("/paths/~1images~1create/post/responses/500/description")
    'server error'
    """
    value = _pointer_get(load(), pointer)
    if isinstance(value, str):
        return value.strip()
    return yaml.safe_dump(value, sort_keys=False).strip()
