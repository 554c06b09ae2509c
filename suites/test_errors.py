"""Error answers and request handling common to pull and import."""

from __future__ import annotations

import pytest

from engine_conformance import archives
from engine_conformance.checks import assert_error_answer, assert_stream_success, imported_id

# Requests the reference engine refuses before any stream line. Each is
# refused for a reason the document or the reference engine gives.
EARLY_ERRORS = {
    "bad-reference": {"fromImage": "Not A Valid::Reference"},
    "bad-platform": {"fromSrc": "-", "repo": "{name}", "platform": "not/a/platform/at/all"},
    "bad-change": {"fromSrc": "-", "repo": "{name}", "changes": "RUN true"},
    "missing-repository": {"fromImage": "127.0.0.1:9/ectest-none/missing", "tag": "x"},
}


@pytest.mark.requirement("ERRORS-001")
@pytest.mark.parametrize("case", sorted(EARLY_ERRORS))
def test_error_answers_are_json_with_message(client, images, observe, case):
    name = images.name("err")
    params = {k: v.format(name=name) for k, v in EARLY_ERRORS[case].items()}
    body = archives.rootfs() if params.get("fromSrc") == "-" else None
    ex = client.create_image(params, body=body)
    observe[case] = ex.status
    if ex.status == 200:
        pytest.skip(f"{case}: the engine reported this inside the stream (HTTP 200)")
    assert_error_answer(ex)


@pytest.mark.requirement("ERRORS-002")
def test_too_new_version_answers_400(client, images):
    ex = client.create_image({"fromSrc": "-", "repo": images.name("ver")},
                             body=archives.rootfs(), version="9.999")
    assert ex.status == 400, f"/v9.999 answered HTTP {ex.status}, expected 400"
    assert_error_answer(ex)


@pytest.mark.requirement("ERRORS-003")
def test_unversioned_path_works(client, images):
    name = images.name("unversioned")
    ex = client.create_image({"fromSrc": "-", "repo": name}, body=archives.rootfs(),
                             versioned=False)
    assert_stream_success(ex)
    assert client.inspect_image(name) is not None, f"{name} does not exist after the import"


@pytest.mark.requirement("ERRORS-004")
def test_unknown_parameters_are_ignored(client, images):
    name = images.name("unknown-param")
    ex = client.create_image(
        {"fromSrc": "-", "repo": name, "ectestUnknown": "1", "fromimage": "x"},
        body=archives.rootfs(),
    )
    assert_stream_success(ex)
    assert client.inspect_image(name) is not None, f"{name} does not exist after the import"


@pytest.mark.requirement("ERRORS-005")
def test_neither_from_image_nor_from_src_is_a_client_error(client, images):
    ex = client.create_image({"repo": images.name("neither")})
    if ex.status == 200:
        found = imported_id(ex)
        if found:
            images.track(found)
    assert 400 <= ex.status < 500, (
        f"a request with neither fromImage nor fromSrc answered HTTP {ex.status}"
        f" ({ex.body[:200].decode(errors='replace').strip()}), expected a 4xx client error"
    )
    assert_error_answer(ex)
