"""Checks of the OpenAPI fragment ``spec/images-create.yaml`` and its loader.

The fragment renders the Engine API v1.44 document for ``POST /images/create``;
whatever it says beyond that document is marked (``x-source: reference``,
``x-departs-from-document``). The first tests need only the fragment; those
marked ``needs_docs`` compare it, key by key, with moby's published documents
(``../shared/reference/engine-api``, or ``$EC_ENGINE_API_DOCS``): every
difference from v1.44 must be a marked one, and every per-version fact
(``x-since``, ``x-version-notes``, deprecations) must be what the documents of
v1.24 to v1.55 and the API changelog say. In a clone without them those are
skipped, saying so.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from engine_conformance.catalogue import documents, spec
from engine_conformance.catalogue.documents import Documents

ENDPOINT = spec.operation()
RESPONSES = ENDPOINT["responses"]
ERROR_REF = "#/components/schemas/ErrorResponse"
SCHEMAS = spec.load()["components"]["schemas"]

# The seed text (the Docker docs for the endpoint at v1.44) names these.
SEED_QUERY = ["fromImage", "fromSrc", "repo", "tag", "message", "changes", "platform"]
DOCUMENTED = {"200", "404", "500"}
VERSION = re.compile(r"^1\.\d+$")
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

DEPARTURE_SOURCES = {"reference", "documents", "openapi"}
NOTE_SOURCES = {"changelog", "document", "reference"}
# Extension keys that are bookkeeping (where a fact comes from, which version) or say
# of themselves that they are the reference engine's; any other x- key of the endpoint
# asserts something and must be marked.
SELF_DESCRIBED = {
    "x-source",
    "x-since",
    "x-reference-since",
    "x-version-notes",
    "x-reference-note",
    "x-reference-instructions",
    "x-documented-instructions",
    "x-departs-from-document",
    "x-name",
    "x-applies-to",  # x-applies-to: checked against the description below
}

ROOT = Path(__file__).resolve().parent.parent
DOCS = Documents()
DOC_VERSIONS = list(documents.VERSIONS)
needs_docs = pytest.mark.skipif(bool(DOCS.missing), reason=DOCS.missing)


def _version_key(v: str) -> tuple[int, int]:
    major, minor = v.split(".")
    return int(major), int(minor)


def _previous(version: str) -> str:
    major, minor = _version_key(version)
    return f"{major}.{minor - 1}"


_normal = documents.normal
_strings = documents.strings


def _get(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        node = node[part]
    return node


def _marked(node: dict[str, Any]) -> set[str]:
    """The keys (dotted paths) ``node``'s x-departs-from-document entries name."""
    return {key for entry in node.get("x-departs-from-document", []) for key in entry["keys"]}


def _standard(node: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if not k.startswith("x-")}


def _without(node: dict[str, Any], dotted_keys: set[str], prefix: str = "") -> dict[str, Any]:
    """``node`` without the keys ``dotted_keys`` names below ``prefix``."""
    out = dict(node)
    for dotted in dotted_keys:
        if dotted.startswith(prefix) and "." not in dotted[len(prefix) :]:
            out.pop(dotted[len(prefix) :], None)
    return out


# --- the document itself ---------------------------------------------------------------


def test_document_is_valid_openapi_31() -> None:
    document = spec.load()
    assert document["openapi"].startswith("3.1")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_top_level_version_facts() -> None:
    document = spec.load()
    assert document["x-api-version"] == "1.44" == spec.api_version()
    assert document["x-min-api-version"] == "1.24" == spec.min_api_version()
    assert document["info"]["version"] == "1.44"


def test_servers_template_the_version() -> None:
    servers = spec.load()["servers"]
    versioned = [s for s in servers if "{version}" in s["url"]]
    assert versioned, "one server must carry the /v{version} prefix"
    assert versioned[0]["url"].endswith("/v{version}")
    assert versioned[0]["variables"]["version"]["default"] == "1.44"
    # paths themselves stay unversioned
    assert all(not p.startswith("/v1") for p in spec.load()["paths"])


def test_the_fragment_describes_only_the_endpoint() -> None:
    """A generic tool pointed at the file reaches POST /images/create and nothing else."""
    paths = spec.load()["paths"]
    assert list(paths) == ["/images/create"]
    assert [k for k in paths["/images/create"] if k in METHODS] == ["post"]
    assert set(spec.load()["components"]) == {"schemas"}
    assert "webhooks" not in spec.load()
    assert ENDPOINT["tags"] == ["Image"]  # the document's tag


@pytest.mark.parametrize("name", SEED_QUERY)
def test_seed_query_parameter_present(name: str) -> None:
    param = spec.parameter(name)
    assert param["in"] == "query"
    assert param.get("required", False) is False
    assert param["description"].strip()
    assert VERSION.match(param["x-since"])


def test_query_parameters_are_exactly_the_seed_ones() -> None:
    assert sorted(spec.query_parameter_names()) == sorted(SEED_QUERY)


def test_changes_is_an_exploded_array() -> None:
    changes = spec.parameter("changes")
    assert changes["schema"] == {"type": "array", "items": {"type": "string"}}
    assert changes["style"] == "form"
    assert changes["explode"] is True
    assert changes["x-documented-instructions"] == [
        "CMD",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "ONBUILD",
        "USER",
        "VOLUME",
        "WORKDIR",
    ]
    assert not set(changes["x-reference-instructions"]) & set(changes["x-documented-instructions"])


def test_platform_defaults_to_empty() -> None:
    assert spec.parameter("platform")["schema"]["default"] == ""


def test_registry_auth_header() -> None:
    header = spec.parameter("X-Registry-Auth")
    assert spec.parameter("x-registry-auth") == header
    assert header["in"] == "header"
    assert header["schema"]["type"] == "string"
    assert "base64url" in header["description"]
    forms = spec.resolve(header["schema"]["contentSchema"])["anyOf"]
    props = [set(f["properties"]) for f in forms]
    assert {"username", "password", "email", "serveraddress"} in props
    assert {"identitytoken"} in props


def test_request_body_is_optional_archive() -> None:
    body = ENDPOINT["requestBody"]
    assert body["required"] is False
    assert body["x-name"] == "inputImage"
    assert set(body["content"]) == {"text/plain", "application/octet-stream"}
    assert body["content"]["application/octet-stream"]["schema"]["format"] == "binary"


def test_ok_response_is_a_schemaless_stream() -> None:
    ok = RESPONSES["200"]
    assert ok["description"] == "no error"
    assert set(ok["content"]) == {"application/json"}
    assert "schema" not in ok["content"]["application/json"]
    assert ok["x-stream-item"] == {"$ref": "#/components/schemas/CreateImageInfo"}
    assert ok["x-stream-framing"] == "newline-delimited JSON"


@pytest.mark.parametrize("status", sorted(s for s in RESPONSES if s[0] in "45"))
def test_error_statuses_reference_error_response(status: str) -> None:
    content = RESPONSES[status]["content"]
    assert content["application/json"]["schema"] == {"$ref": ERROR_REF}


@pytest.mark.parametrize("status", sorted(RESPONSES))
def test_every_response_has_a_source(status: str) -> None:
    response = RESPONSES[status]
    expected = "documented" if status in DOCUMENTED else "reference"
    assert response["x-source"] == expected
    if expected == "reference":
        assert response["x-reference-note"].strip()


def test_documented_descriptions_match_the_seed() -> None:
    assert RESPONSES["404"]["description"] == "repository does not exist or no read access"
    assert RESPONSES["500"]["description"] == "server error"
    assert {"400", "401", "403", "501", "503"} <= set(RESPONSES)


# --- what the fragment says beyond v1.44 is marked -----------------------------------


def test_departures_are_well_formed() -> None:
    document = spec.load()
    entries = spec.departures()
    assert entries
    for pointer, entry in entries:
        where = f"x-departs-from-document at {pointer or '/'}"
        assert set(entry) == {"keys", "source", "document", "reason"}, where
        assert entry["source"] in DEPARTURE_SOURCES, where
        assert entry["document"].strip() and entry["reason"].strip(), where
        node = spec._pointer_get(document, pointer)
        for key in entry["keys"]:
            try:
                _get(node, key)
            except (KeyError, TypeError):
                pytest.fail(f"{where} names {key!r}, which the node does not have")


@pytest.mark.parametrize(
    ("pointer", "keys"),
    [
        # the repeated-key form of changes: the document's array is Swagger 2.0 csv
        ("/paths/~1images~1create/post/parameters/5", {"style", "explode"}),
        # the stream item: no version of the document links CreateImageInfo to the 200
        ("/paths/~1images~1create/post/responses/200", {"x-stream-item", "x-stream-framing"}),
        # a schema-less Swagger 2.0 response returns no content
        ("/paths/~1images~1create/post/responses/200", {"content"}),
        # the header's JSON, written as schema keywords from the Authentication prose
        (
            "/paths/~1images~1create/post/parameters/7",
            {"schema.contentEncoding", "schema.contentMediaType", "schema.contentSchema"},
        ),
        (
            "/paths/~1images~1create/post/requestBody",
            {"content.application/octet-stream.schema.format"},
        ),
    ],
)
def test_known_departures_are_marked(pointer: str, keys: set[str]) -> None:
    assert keys <= _marked(spec._pointer_get(spec.load(), pointer))


def test_changes_departure_says_why() -> None:
    (entry,) = [
        e for e in spec.parameter("changes")["x-departs-from-document"] if "explode" in e["keys"]
    ]
    assert entry["source"] == "reference"
    assert "collectionFormat" in entry["document"] and "csv" in entry["document"]
    assert "repeated" in entry["reason"]


def test_every_status_the_document_does_not_give_is_reference() -> None:
    for status, response in RESPONSES.items():
        assert response["x-source"] == ("documented" if status in DOCUMENTED else "reference")
        assert spec.response_source(status) == response["x-source"]


def _endpoint_nodes() -> list[tuple[str, dict[str, Any]]]:
    nodes = [("operation", ENDPOINT), ("requestBody", ENDPOINT["requestBody"])]
    nodes += [(f"parameter {p['name']}", p) for p in ENDPOINT["parameters"]]
    nodes += [(f"response {s}", r) for s, r in RESPONSES.items()]
    return nodes


@pytest.mark.parametrize(("where", "node"), _endpoint_nodes(), ids=lambda v: str(v)[:30])
def test_asserting_extensions_are_marked(where: str, node: dict[str, Any]) -> None:
    if node.get("x-source") == "reference":
        return  # the whole response is the reference engine's
    claims = {k for k in node if k.startswith("x-")} - SELF_DESCRIBED
    assert claims <= _marked(node), f"{where}: {sorted(claims - _marked(node))} not marked"


@pytest.mark.parametrize("name", [p["name"] for p in ENDPOINT["parameters"]])
def test_applies_to_is_the_description_or_marked(name: str) -> None:
    """A mode the description does not name ("pulling", "import…") is a marked departure."""
    param = spec.parameter(name)
    text = param["description"].lower()
    said = {"pull": "pull" in text, "import": "import" in text}
    unsaid = [mode for mode in param["x-applies-to"] if not said[mode]]
    if unsaid:
        assert "x-applies-to" in _marked(param), f"{name}: x-applies-to {unsaid} not marked"


def test_fragment_only_schemas_are_marked() -> None:
    for name in ("RegistryAuth", "IdentityTokenAuth"):
        schema = SCHEMAS[name]
        assert set(_standard(schema)) <= _marked(schema), name


# --- per-version facts ---------------------------------------------------------------


def test_deprecations_follow_the_documents() -> None:
    cii = SCHEMAS["CreateImageInfo"]["properties"]
    for name in ("error", "progress"):
        # not deprecated in the v1.44 document: only its later versions mark them
        assert "deprecated" not in cii[name]
        assert cii[name]["x-deprecated-since"] == "1.48"
        assert cii[name]["x-dropped-since"] == "1.52"
        assert cii[name]["x-deprecation"].strip()
    for name in ("id", "status", "errorDetail", "progressDetail"):
        assert "deprecated" not in cii[name] and "x-deprecated-since" not in cii[name]
    email = SCHEMAS["AuthConfig"]["properties"]["email"]
    # deprecated in every document that lists it (v1.25 to v1.51), since API v1.23
    assert email["deprecated"] is True
    assert email["x-deprecated-since"] == "1.23"
    assert email["x-dropped-since"] == "1.52"


def test_version_facts_are_well_formed() -> None:
    minimum = spec.min_api_version()
    for param in spec.parameters():
        assert _version_key(param["x-since"]) >= _version_key(minimum)
        assert _version_key(spec.reference_since(param["name"])) <= _version_key(param["x-since"])
        for note in param.get("x-version-notes", []):
            assert VERSION.match(note["since"])
            assert isinstance(note["versioned"], bool)
            assert note["source"] in NOTE_SOURCES
            assert note["note"].strip()
            if note["source"] in ("changelog", "document"):
                assert note["quote"].strip(), f"{param['name']} {note['since']}: no quote"


# --- the fragment against the published documents ------------------------------------


_document = DOCS.document


def _doc_post(version: str) -> dict[str, Any]:
    document = _document(version)
    assert isinstance(document, dict)
    return document["paths"]["/images/create"]["post"]


def _doc_parameter(version: str, name: str) -> dict[str, Any] | str | None:
    """The parameter in the document of ``version``: v1.24's markdown when it names it."""
    document = _document(version)
    if isinstance(document, str):
        return document if f"**{name}**" in document else None
    return next((p for p in _doc_post(version)["parameters"] if p["name"] == name), None)


def _doc_property(version: str, schema: str, prop: str) -> dict[str, Any] | str | None:
    document = _document(version)
    if isinstance(document, str):  # v1.24: the example stream lines name the fields
        return document if f'"{prop}"' in document else None
    definition = document["definitions"].get(schema) or {}
    return (definition.get("properties") or {}).get(prop)


_changelog = DOCS.changelog


def _ref(doc_ref: str) -> str:
    return doc_ref.replace("#/definitions/", "#/components/schemas/")


@needs_docs
def test_parameters_render_the_document() -> None:
    doc = {p["name"]: p for p in _doc_post("1.44")["parameters"] if p["in"] != "body"}
    assert {p["name"] for p in ENDPOINT["parameters"]} == set(doc)
    for param in ENDPOINT["parameters"]:
        name, source, marked = param["name"], doc[param["name"]], _marked(param)
        assert param["in"] == source["in"], name
        assert param["description"].strip() == source["description"].strip(), name
        assert param.get("required", False) == source.get("required", False), name
        expected = {k: source[k] for k in ("type", "items", "default") if k in source}
        assert _without(param["schema"], marked, "schema.") == expected, name
        extra = set(_standard(param)) - {"name", "in", "description", "required", "schema"}
        assert extra <= marked, f"{name}: {sorted(extra - marked)} not in the document"


@needs_docs
def test_request_body_renders_the_document() -> None:
    post = _doc_post("1.44")
    (inputs,) = [p for p in post["parameters"] if p["in"] == "body"]
    body = ENDPOINT["requestBody"]
    marked = _marked(body)
    assert body["x-name"] == inputs["name"]
    assert body["description"].strip() == inputs["description"].strip()
    assert body["required"] == inputs.get("required", False)
    assert list(body["content"]) == post["consumes"]
    for media, content in body["content"].items():
        schema = _without(content["schema"], marked, f"content.{media}.schema.")
        assert schema == inputs["schema"], media


@needs_docs
def test_responses_render_the_document() -> None:
    post = _doc_post("1.44")
    documented = {str(status): response for status, response in post["responses"].items()}
    assert set(documented) == DOCUMENTED
    for status, response in RESPONSES.items():
        if status not in documented:
            assert response["x-source"] == "reference", status
            continue
        source, marked = documented[status], _marked(response)
        assert response["x-source"] == "documented", status
        assert response["description"] == source["description"], status
        if "schema" in source:
            assert response["content"] == {
                media: {"schema": {"$ref": _ref(source["schema"]["$ref"])}}
                for media in post["produces"]
            }, status
        else:  # Swagger 2.0: no schema, no content; anything said of a body is marked
            assert "content" not in response or "content" in marked, status
        extra = set(_standard(response)) - {"description", "content"}
        assert extra <= marked, status


@needs_docs
@pytest.mark.parametrize(
    "name", ["CreateImageInfo", "ProgressDetail", "ErrorDetail", "ErrorResponse", "AuthConfig"]
)
def test_definitions_render_the_document(name: str) -> None:
    source, schema = _document("1.44")["definitions"][name], SCHEMAS[name]
    marked = _marked(schema)
    assert schema.get("type") == source.get("type")
    assert schema.get("required") == source.get("required")
    assert (schema.get("description") or "").strip() == (source.get("description") or "").strip()
    if "example" in source and "examples" in schema:
        assert schema["examples"] == [source["example"]]
    extra = set(_standard(schema)) - {"type", "required", "description", "properties", "examples"}
    assert extra <= marked, f"{name}: {sorted(extra - marked)}"
    assert set(schema["properties"]) == set(source["properties"]), name
    for prop, mine in schema["properties"].items():
        theirs = source["properties"][prop]
        where = f"{name}.{prop}"
        if "$ref" in theirs:
            assert mine.get("$ref") == _ref(theirs["$ref"]), where
        else:
            assert mine.get("type") == theirs.get("type"), where
        assert (mine.get("description") or "").strip() == (
            theirs.get("description") or ""
        ).strip(), where
        # `deprecated` renders the document's own "**Deprecated**" mark, nothing else
        assert mine.get("deprecated", False) == (
            "**Deprecated**" in theirs.get("description", "")
        ), where
        extra = set(_standard(mine)) - {"type", "$ref", "description", "deprecated"}
        assert extra <= _marked(mine), where


@needs_docs
@pytest.mark.parametrize("name", [p["name"] for p in ENDPOINT["parameters"]])
def test_since_is_the_first_document_that_lists_the_parameter(name: str) -> None:
    listed = [v for v in DOC_VERSIONS if _doc_parameter(v, name) is not None]
    assert listed, name
    assert spec.since(name) == listed[0], f"{name}: first listed in v{listed[0]}"
    assert listed == DOC_VERSIONS[DOC_VERSIONS.index(listed[0]) :], f"{name}: gaps {listed}"


@needs_docs
def test_since_of_stream_item_fields() -> None:
    for prop, mine in SCHEMAS["CreateImageInfo"]["properties"].items():
        listed = [v for v in DOC_VERSIONS if _doc_property(v, "CreateImageInfo", prop) is not None]
        assert mine["x-since"] == listed[0], f"CreateImageInfo.{prop}: first listed {listed[0]}"


def _notes() -> list[tuple[str, dict[str, Any], Any]]:
    """Each quoted version note, with a function giving its node in a document version."""
    notes = []
    for param in ENDPOINT["parameters"]:
        for note in param.get("x-version-notes", []):
            if "quote" in note:
                notes.append(
                    (param["name"], note, functools.partial(_doc_parameter, name=param["name"]))
                )
    return notes


@needs_docs
@pytest.mark.parametrize(
    ("name", "note", "find"), _notes(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_version_note_quotes_the_source(name: str, note: dict[str, Any], find: Any) -> None:
    quote, since = _normal(note["quote"]), note["since"]
    if note["source"] == "changelog":
        assert quote in _normal(_changelog()[since]), f"{name}: not in CHANGELOG v{since}"
        return
    # a document note: the words appear in that version's document and not in the one before
    assert quote in _normal(" ".join(_strings(find(since)))), f"{name}: not in v{since}"
    assert quote not in _normal(" ".join(_strings(find(_previous(since)) or ""))), (
        f"{name}: already in v{_previous(since)}"
    )


@needs_docs
@pytest.mark.parametrize(
    ("schema", "prop"),
    [("CreateImageInfo", "error"), ("CreateImageInfo", "progress"), ("AuthConfig", "email")],
)
def test_deprecation_facts_match_the_documents(schema: str, prop: str) -> None:
    mine = SCHEMAS[schema]["properties"][prop]
    listed = [v for v in DOC_VERSIONS[1:] if _doc_property(v, schema, prop) is not None]
    marks = [
        v
        for v in listed
        if "**Deprecated**" in (_doc_property(v, schema, prop) or {}).get("description", "")
    ]
    dropped = mine["x-dropped-since"]
    assert listed[-1] == _previous(dropped), f"{schema}.{prop}: last listed in v{listed[-1]}"
    assert all(_version_key(v) < _version_key(dropped) for v in listed)
    deprecated = mine["x-deprecated-since"]
    if deprecated in DOC_VERSIONS:  # the first document that carries the mark
        assert marks[0] == deprecated and marks == listed[listed.index(deprecated) :]
    else:  # older than every document here: each one that lists it carries the mark
        assert marks == listed, f"{schema}.{prop}: unmarked in {sorted(set(listed) - set(marks))}"
        assert f"API v{deprecated})" in mine["x-deprecation"]
    for v in marks:
        text = _normal(_doc_property(v, schema, prop)["description"])
        assert _normal(mine["x-deprecation"]) in text, f"{schema}.{prop}: not the words of v{v}"


@needs_docs
def test_deprecations_are_in_the_changelog() -> None:
    """error and progress: the changelog of v1.48 announces what its document marks."""
    text = _normal(_changelog()["1.48"])
    assert 'Deprecated: The "error" and "progress" fields in streaming responses' in text


# --- the loader ------------------------------------------------------------------------


def test_loader_since() -> None:
    assert spec.since("platform") == "1.32"
    assert spec.since("message") == "1.39"
    assert spec.since("changes") == "1.40"
    for name in ("fromImage", "fromSrc", "repo", "tag", "X-Registry-Auth"):
        assert spec.since(name) == "1.24"
    assert spec.reference_since("message") == spec.reference_since("changes") == "1.24"
    assert spec.reference_since("platform") == "1.32"
    with pytest.raises(KeyError):
        spec.since("nope")


def test_loader_version_notes() -> None:
    assert [n["since"] for n in spec.version_notes("platform")] == ["1.32", "1.42"]
    assert [n["since"] for n in spec.version_notes("fromImage")] == ["1.22", "1.48"]
    assert [n["since"] for n in spec.version_notes("message")] == ["1.24", "1.39"]
    assert [n["since"] for n in spec.version_notes("changes")] == ["1.24", "1.40"]
    assert spec.version_notes("repo") == []


def test_loader_departures() -> None:
    pointers = {p for p, _ in spec.departures()}
    assert "/paths/~1images~1create/post/responses/200" in pointers
    assert all(
        p.startswith(("/paths/~1images~1create/post", "/components/schemas/")) for p in pointers
    )


def test_loader_is_cached() -> None:
    assert spec.load() is spec.load()
    assert spec.SPEC_PATH.is_file()


def test_loader_stream_item_schema_is_resolved() -> None:
    schema = spec.stream_item_schema()
    assert "$ref" not in repr(schema)
    assert schema["properties"]["progressDetail"]["properties"]["current"]["type"] == "integer"
    assert schema["properties"]["errorDetail"]["properties"]["code"]["type"] == "integer"
    schema["properties"].clear()  # a copy: the document is untouched
    assert spec.stream_item_schema()["properties"]


def test_loader_validate_stream_item() -> None:
    assert spec.validate_stream_item({"status": "x"}) == []
    assert spec.validate_stream_item({}) == []
    assert (
        spec.validate_stream_item(
            {
                "status": "Downloading",
                "id": "a3ed95caeb02",
                "progress": "[==>  ] 1B/2B",
                "progressDetail": {"current": 1, "total": 2},
                "extra": "open model",
            }
        )
        == []
    )
    assert spec.validate_stream_item({"errorDetail": {"message": "boom"}, "error": "boom"}) == []
    assert spec.validate_stream_item({"progressDetail": {"current": "a"}})
    assert spec.validate_stream_item({"errorDetail": {"code": "x"}})
    assert spec.validate_stream_item({"status": 3})
    assert spec.validate_stream_item([])


def test_loader_error_schema() -> None:
    schema = spec.error_schema()
    assert schema["required"] == ["message"]
    assert spec.validate_error({"message": "x"}) == []
    assert spec.validate_error({})
    assert spec.validate_error({"message": 1})


def test_loader_response_source() -> None:
    for status in (200, 404, 500):
        assert spec.response_source(status) == "documented"
    for status in (400, 401, 403, 501, 503):
        assert spec.response_source(status) == "reference"
    assert spec.response_source(418) == "undocumented"
    assert spec.response_source("404") == "documented"


def test_loader_quote() -> None:
    assert spec.quote("/paths/~1images~1create/post/responses/404/description") == (
        "repository does not exist or no read access"
    )
    assert spec.quote("/components/schemas/ErrorResponse/properties/message/description") == (
        "The error message."
    )


# --- schemathesis ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def st_schema() -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_path(spec.SPEC_PATH)


def _operations(schema: schemathesis.BaseSchema) -> list[schemathesis.APIOperation]:
    return [result.ok() for result in schema.get_all_operations()]


def test_schemathesis_loads_only_image_create(st_schema: schemathesis.BaseSchema) -> None:
    """No filter needed: the file holds the one operation (tests/test_plain_schemathesis.py
    runs the schemathesis CLI on it against an engine)."""
    found = [(op.method.upper(), op.path) for op in _operations(st_schema)]
    assert found == [("POST", "/images/create")]


def test_schemathesis_generates_only_image_create(st_schema: schemathesis.BaseSchema) -> None:
    operations = _operations(st_schema)
    allowed = set(SEED_QUERY)
    cases = []

    @seed(20_240_601)
    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(operations[0].as_strategy())
    def collect(case: schemathesis.Case) -> None:
        assert case.method.upper() == "POST"
        assert case.path == "/images/create"
        assert set(case.query or {}) <= allowed
        if case.query and "changes" in case.query:
            assert isinstance(case.query["changes"], list)
        kwargs = case.as_transport_kwargs(base_url="http://localhost/v1.44")
        assert kwargs["url"] == "http://localhost/v1.44/images/create"
        cases.append(case)

    collect()
    assert cases


def test_schemathesis_repeats_changes_keys(st_schema: schemathesis.BaseSchema) -> None:
    operation = st_schema["/images/create"]["POST"]
    case = operation.Case(query={"changes": ["ENV A=1", "USER nobody"], "fromSrc": "-"})
    kwargs = case.as_transport_kwargs(base_url="http://localhost/v1.44")
    url = httpx.Request("POST", kwargs["url"], params=kwargs["params"]).url
    assert url.params.get_list("changes") == ["ENV A=1", "USER nobody"]
    assert url.params["fromSrc"] == "-"
