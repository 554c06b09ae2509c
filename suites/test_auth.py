"""Registry credentials on pull: ``X-Registry-Auth`` against a protected lab repository.

The lab registry protects one repository (``single``) with HTTP Basic for the
length of one check (``lab_control.require_auth``; the fixture removes the rule
afterwards). Every password, and every header value that carries one, is
registered with ``secret`` so that reports redact it; the journal's
``Authorization`` values are compared here but never shown.
"""

from __future__ import annotations

import base64
import json

import pytest

from engine_conformance.checks import (
    assert_refused,
    assert_stream_success,
    assert_visible_failure,
    failed,
    image_ids,
    image_mismatch,
    registry_requests,
    where,
)
from lab_registry.auth import basic_header

USER = "ecuser"
# Runs of six "?" and six ">" give "_" and "-" in base64url wherever they fall, so an
# engine that decodes with the standard alphabet gets the password wrong.
PASSWORD = "ec-pw??????>>>>>>lab"
WRONG_PASSWORD = "ec-wrong-pw-lab"
IDENTITY_TOKEN = "ec-identity-token-lab"
PROTECTED = "single"
TAG = "v1"


def encode(obj: dict, pad: bool = True) -> str:
    """base64url of ``obj`` as compact-enough JSON, with or without "=" padding."""
    value = base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()
    return value if pad else value.rstrip("=")


def credentials(registry, password: str = PASSWORD) -> dict:
    """The credential form, its JSON one byte past a multiple of 3: padded, it ends in "==".

    The length is set with ``email`` (an AuthConfig field), not with trailing blanks: a
    client's JSON ends at its closing brace, which then falls in the last, partial group
    of base64 characters.
    """
    for n in range(3):
        obj = {"username": USER, "password": password, "email": f"ec{'x' * n}@lab.test",
               "serveraddress": registry.address}
        if len(json.dumps(obj).encode()) % 3 == 1:
            return obj
    raise AssertionError("unreachable: one of three lengths is 1 mod 3")


@pytest.fixture
def protected(lab_control, secret):
    """The lab registry with ``single`` requiring USER/PASSWORD (removed after the check)."""
    secret(PASSWORD)
    secret(WRONG_PASSWORD)
    secret(basic_header(USER, PASSWORD).split(" ", 1)[1])
    lab_control.require_auth(USER, PASSWORD, repository=lab_control.catalogue.name(PROTECTED))
    return lab_control


def header_for(secret, obj: dict, pad: bool = True) -> dict:
    value = secret(encode(obj, pad))
    secret(value.rstrip("="))
    return {"X-Registry-Auth": value}




def pull(client, images, registry, headers: dict | None, tag: str = TAG):
    """Pull ``single:tag``; returns (exchange, the reference, image IDs that appeared)."""
    ref = registry.reference(PROTECTED, tag)
    images.track(ref)
    before = image_ids(client)
    ex = client.create_image({"fromImage": registry.reference(PROTECTED), "tag": tag},
                             headers=headers)
    new = sorted(image_ids(client) - before)
    for image_id in new:
        images.track(image_id)
    return ex, ref, new


def assert_pulled(client, registry, ex, ref: str, what: str, tag: str = TAG) -> None:
    assert_stream_success(ex)
    image = client.inspect_image(ref)
    assert image is not None, f"{what}: answered 200 with no error, but {ref} does not exist"
    mismatch = image_mismatch(image, registry.catalogue.facts(PROTECTED, tag))
    assert mismatch is None, f"{what}: {ref} is not the registry's image: {mismatch}"


def credential_problems(registry, mark: int, ex) -> tuple[list[str], list[str]]:
    """What the registry saw on manifest/blob requests of ``single``: (shown, problems).

    A pull that failed with no request reaching the registry never got as far as using
    the credentials: whether the engine passes them on cannot be judged (a precondition).
    One that reports success without the registry asked is judged.
    """
    wanted = basic_header(USER, PASSWORD)
    seen = [e for e in registry.journal.since(mark)
            if e.kind == "base" or e.repository == registry.catalogue.name(PROTECTED)]
    if failed(ex) or seen:
        seen = registry_requests(registry.journal, mark, registry.catalogue.name(PROTECTED),
                                 "passing credentials on", kinds=("base", "manifest"))
    shown, problems = [], []
    carried = False
    for e in registry.journal.since(mark):
        if e.kind not in ("manifest", "blob"):
            continue
        ok = e.authorization == wanted
        # A request without credentials that the registry challenges (401) is how HTTP
        # authentication starts (RFC 9110 11.6.1); any other request must carry them.
        challenged = e.authorization is None and e.status == 401
        carried = carried or ok
        shown.append(f"{e.method} {e.kind} -> {e.status}, {e.auth_scheme or 'no'} auth"
                     f"{f' as {e.auth_username}' if e.auth_username else ''}"
                     f"{'' if ok or challenged else ' (not the credentials sent)'}")
        if not (ok or challenged):
            problems.append(f"{e.method} {e.path}")
    if shown and not carried:
        problems.append("no request carried them")
    if not shown:
        # E.g. the registry challenged the engine (/v2/ 401) and it never asked for the image.
        problems.append("no manifest request came"
                        + (" after " + ", ".join(f"{e.method} {e.path} -> {e.status}"
                                                 for e in seen[:3]) if seen else ""))
    return shown, problems


# -- AUTH-001 -------------------------------------------------------------------------------


@pytest.mark.requirement("AUTH-001")
def test_credentials_pull_protected_repository(client, images, protected, secret,
                                               observe):
    mark = protected.journal.mark()
    ex, ref, _ = pull(client, images, protected, header_for(secret, credentials(protected)))
    observe["answer"] = where(ex)
    shown, problems = credential_problems(protected, mark, ex)
    observe["registry_saw"] = shown
    assert not problems, (
        f"the pull answered {where(ex)}; the registry did not receive the credentials given "
        f"on every manifest/blob request: {problems}"
    )
    assert_pulled(client, protected, ex, ref, "padded base64url credentials")


# -- AUTH-002/003: refused pulls ------------------------------------------------------------

REFUSALS = ["no-header", "wrong-password"]


def refused_pull(client, images, protected, secret, case: str):
    """The pull the registry refuses; a precondition that the registry did refuse it."""
    headers = None
    if case == "wrong-password":
        headers = header_for(secret, credentials(protected, WRONG_PASSWORD))
    mark = protected.journal.mark()
    result = pull(client, images, protected, headers)
    registry_requests(protected.journal, mark, protected.catalogue.name(PROTECTED),
                      f"a pull the registry refuses ({case})", kinds=("base", "manifest"),
                      wanted=lambda e: e.status == 401)
    return result


@pytest.mark.requirement("AUTH-002")
@pytest.mark.parametrize("case", REFUSALS)
def test_refused_pull_fails_visibly(client, images, protected, secret, observe, case):
    ex, ref, new = refused_pull(client, images, protected, secret, case)
    observe[case] = where(ex)
    assert_visible_failure(ex, f"{case}: the registry refused every request")
    named = client.inspect_image(ref)
    assert not new and named is None, (
        f"{case}: the refused pull left an image: new IDs {new or 'none'}, "
        f"{ref} {'exists' if named else 'absent'}"
    )


@pytest.mark.requirement("AUTH-003")
@pytest.mark.parametrize("case", REFUSALS)
def test_refused_pull_is_404(client, images, protected, secret, observe, case):
    ex, _, _ = refused_pull(client, images, protected, secret, case)
    observe[case] = where(ex)
    assert_refused(ex, 404, case,
                   grounds="documented: 404 'repository does not exist or no read access'")


# -- AUTH-004: a header that does not decode ------------------------------------------------

UNDECODABLE = {
    "not-base64": "!!! not base64 at all !!!",
    "not-json": base64.urlsafe_b64encode(b"{not json").decode(),
}


@pytest.mark.requirement("AUTH-004")
@pytest.mark.parametrize("case", sorted(UNDECODABLE))
def test_undecodable_header_is_ignored(client, images, registry, observe, case):
    ex, ref, _ = pull(client, images, registry, {"X-Registry-Auth": UNDECODABLE[case]}, tag="v2")
    observe[case] = where(ex)
    assert_pulled(client, registry, ex, ref, f"X-Registry-Auth {case} on a public repository",
                  tag="v2")


# -- AUTH-005/006: informational ------------------------------------------------------------


@pytest.mark.requirement("AUTH-005")
def test_unpadded_header_is_accepted(client, images, protected, secret, observe):
    mark = protected.journal.mark()
    ex, ref, _ = pull(client, images, protected,
                      header_for(secret, credentials(protected), pad=False))
    observe["answer"] = where(ex)
    observe["registry_saw"] = [f"{e.method} {e.kind} -> {e.status}"
                               for e in protected.journal.since(mark)]
    if failed(ex):
        # Recorded only: the same JSON followed by three blanks, so that its closing
        # brace is no longer in the last, partial group of base64 characters.
        raw = json.dumps(credentials(protected)) + "   "
        blanks = secret(base64.urlsafe_b64encode(raw.encode()).decode().rstrip("="))
        again, _, _ = pull(client, images, protected, {"X-Registry-Auth": blanks})
        observe["same JSON + 3 trailing blanks, unpadded"] = where(again)
    # The answer is judged first: an engine may refuse the header before any request.
    assert_pulled(client, protected, ex, ref, "unpadded base64url credentials")
    _, problems = credential_problems(protected, mark, ex)
    assert not problems, f"the registry did not receive the credentials: {problems}"


@pytest.mark.requirement("AUTH-006")
def test_identity_token_does_not_break_a_pull(client, images, lab_control, secret,
                                              observe):
    token = header_for(secret, {"identitytoken": secret(IDENTITY_TOKEN)})
    ex, ref, _ = pull(client, images, lab_control, token, tag="v2")
    observe["public"] = where(ex)
    assert_pulled(client, lab_control, ex, ref, "identity token, public repository", tag="v2")
    # Recorded only: the lab registry cannot use a token, so this pull may fail.
    secret(PASSWORD)
    lab_control.require_auth(USER, PASSWORD, repository=lab_control.catalogue.name(PROTECTED))
    protected_ex, _, _ = pull(client, images, lab_control, token)
    observe["protected"] = where(protected_ex)
    lab_control.auth.clear()
    ping = client.request("GET", "/_ping", versioned=False)
    status = ping.status
    assert status == 200, f"after an identity-token pull, /_ping answers HTTP {status}"
