"""Error answers and request handling common to pull and import."""

from __future__ import annotations

import pytest

from engine_conformance.base import archives
from engine_conformance.judge.checks import (
    assert_error_answer,
    assert_refused,
    assert_stream_success,
    error_location,
    imported_id,
    where,
)
from engine_conformance.judge.verdicts import precondition

BAD_PLATFORM = "not/a/platform/at/all"

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
    name = images.name("ver")
    ex = client.create_image(
        {"fromSrc": "-", "repo": name}, body=archives.rootfs(), version="9.999"
    )
    left = name if client.inspect_image(name) is not None else None
    assert_refused(ex, 400, "an import at /v9.999", left)


@pytest.mark.requirement("ERRORS-003")
def test_unversioned_path_is_the_current_version(client, images, target_info, observe):
    name = images.name("unversioned")
    ex = client.create_image(
        {"fromSrc": "-", "repo": name}, body=archives.rootfs(), versioned=False
    )
    assert ex.status == 200 and error_location(ex) is None, (
        f"the unversioned path does not work: {ex.request_line} answered {where(ex)}"
        + (f" ({ex.stream_error!r})" if ex.stream_error else f": {ex.body[:200]!r}")
    )
    assert client.inspect_image(name) is not None, f"{name} does not exist after the import"
    current = target_info.get("max_api_version")
    precondition(current, "the engine's /version gave no ApiVersion to compare with")
    # platform is read from API 1.32 and ignored below: an import naming one that does not
    # parse is refused at the current version, and would be made at an older one.
    answers = {}
    for label, how in (("current", {"version": current}), ("unversioned", {"versioned": False})):
        ex = client.create_image(
            {"fromSrc": "-", "repo": images.name(f"ver-{label}"), "platform": BAD_PLATFORM},
            body=archives.rootfs(),
            **how,
        )
        found = imported_id(ex)
        if found:
            images.track(found)
        answers[label] = where(ex)
    observe.update(answers)
    assert answers["unversioned"] == answers["current"], (
        f"an import with platform={BAD_PLATFORM!r} answered {answers['unversioned']} "
        f"unversioned but {answers['current']} at /v{current}, the engine's current version: "
        "the unversioned path does not behave as the current version"
    )


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
