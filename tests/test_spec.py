"""Checks of the OpenAPI fragment ``spec/images-create.yaml`` and its loader."""

from __future__ import annotations

import re

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from engine_conformance import spec

ENDPOINT = spec.operation()
RESPONSES = ENDPOINT["responses"]
ERROR_REF = "#/components/schemas/ErrorResponse"

# The seed text (the Docker docs for the endpoint at v1.44) names these.
SEED_QUERY = ["fromImage", "fromSrc", "repo", "tag", "message", "changes", "platform"]
DOCUMENTED = {"200", "404", "500"}
HARNESS = {
    ("get", "/_ping"),
    ("get", "/version"),
    ("get", "/info"),
    ("get", "/images/{name}/json"),
    ("get", "/images/{name}/history"),
    ("delete", "/images/{name}"),
}
VERSION = re.compile(r"^1\.\d+$")


def _version_key(v: str) -> tuple[int, int]:
    major, minor = v.split(".")
    return int(major), int(minor)


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
    assert {"400", "401", "403"} <= set(RESPONSES)


def test_deprecated_stream_fields() -> None:
    props = spec.load()["components"]["schemas"]["CreateImageInfo"]["properties"]
    for name in ("error", "progress"):
        assert props[name]["deprecated"] is True
        assert props[name]["x-deprecated-since"] == "1.48"
    for name in ("id", "status", "errorDetail", "progressDetail"):
        assert "deprecated" not in props[name]


def test_version_facts_are_well_formed() -> None:
    minimum = spec.min_api_version()
    for param in spec.parameters():
        assert _version_key(param["x-since"]) >= _version_key(minimum)
        for note in param.get("x-version-notes", []):
            assert VERSION.match(note["since"])
            assert isinstance(note["versioned"], bool)
            assert note["note"].strip()


def test_harness_paths_are_marked() -> None:
    document = spec.load()
    marked = {
        (method, path)
        for path, item in document["paths"].items()
        if item.get("x-harness") is True
        for method in item
        if method in {"get", "post", "put", "delete", "patch", "head"}
    }
    assert marked == HARNESS
    assert "/images/create" not in spec.harness_paths()
    assert not spec.is_harness_path("/images/create")
    assert spec.is_harness_path("/_ping")
    for method, path in HARNESS:
        assert spec.operation(path, method)["tags"] == ["harness"]


def test_harness_delete_parameters() -> None:
    raw = spec.operation("/images/{name}", "delete")["parameters"]
    params = {p["name"]: p for p in spec.resolve(raw)}
    assert params["name"]["in"] == "path"
    assert params["force"]["schema"]["type"] == "boolean"
    assert params["noprune"]["schema"]["type"] == "boolean"


# --- the loader ------------------------------------------------------------------------


def test_loader_since() -> None:
    assert spec.since("platform") == "1.32"
    for name in ("fromImage", "fromSrc", "repo", "tag", "message", "changes"):
        assert spec.since(name) == "1.24"
    with pytest.raises(KeyError):
        spec.since("nope")


def test_loader_version_notes() -> None:
    assert [n["since"] for n in spec.version_notes("platform")] == ["1.32", "1.42"]
    assert spec.version_notes("fromImage")[0]["since"] == "1.22"
    assert spec.version_notes("repo") == []


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


def test_schemathesis_loads_every_operation(st_schema: schemathesis.BaseSchema) -> None:
    found = {(op.method.lower(), op.path) for op in _operations(st_schema)}
    assert found == HARNESS | {("post", "/images/create")}


def test_schemathesis_generates_only_image_create(st_schema: schemathesis.BaseSchema) -> None:
    filtered = st_schema.exclude(func=lambda ctx: spec.is_harness_path(ctx.operation.path))
    operations = _operations(filtered)
    assert [(op.method.upper(), op.path) for op in operations] == [("POST", "/images/create")]
    allowed = set(SEED_QUERY)
    cases = []

    @seed(20_240_601)
    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
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
