"""Registry credentials on pull: ``X-Registry-Auth`` against a protected lab repository.

The lab registry protects one repository (``single``) for the length of one
check, with HTTP Basic (``lab_control.require_auth``) or with distribution's
token flow (``lab_control.require_token_auth``: a Bearer challenge, the lab's
``/token`` endpoint); the fixture removes the rule afterwards. Every password,
and every header value that carries one, is registered with ``secret`` so that
reports redact it; the journal's
``Authorization`` values are compared here but never shown.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from engine_conformance.engine.target import Exchange
from engine_conformance.judge.checks import (
    assert_nothing_left,
    assert_refused,
    assert_visible_failure,
    exposures,
    failed,
    image_ids,
    registry_requests,
    where,
)
from engine_conformance.judge.verdicts import precondition
from engine_conformance.judge.vocabulary import Subject, assert_pulled, leftovers, pull
from lab_registry import ErrorStatus, build_image
from lab_registry.auth import basic_header

if TYPE_CHECKING:
    from engine_conformance.run.lane import LaneContext

USER = "ecuser"
# Runs of six "?" and six ">" give "_" and "-" in base64url wherever they fall, so an
# engine that decodes with the standard alphabet gets the password wrong.
PASSWORD = "ec-pw??????>>>>>>lab"
WRONG_PASSWORD = "ec-wrong-pw-lab"
IDENTITY_TOKEN = "ec-identity-token-lab"
PROTECTED = "single"


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
        obj = {
            "username": USER,
            "password": password,
            "email": f"ec{'x' * n}@lab.test",
            "serveraddress": registry.address,
        }
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


def credential_problems(registry, mark: int, ex) -> tuple[list[str], list[str]]:
    """What the registry saw on manifest/blob requests of ``single``: (shown, problems).

    A pull that failed with no request reaching the registry never got as far as using
    the credentials: whether the engine passes them on cannot be judged (a precondition).
    One that reports success without the registry asked is judged.
    """
    wanted = basic_header(USER, PASSWORD)
    seen = [
        e
        for e in registry.journal.since(mark)
        if e.kind == "base" or e.repository == registry.catalogue.name(PROTECTED)
    ]
    if failed(ex) or seen:
        seen = registry_requests(
            registry.journal,
            mark,
            registry.catalogue.name(PROTECTED),
            "passing credentials on",
            kinds=("base", "manifest"),
        )
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
        shown.append(
            f"{e.method} {e.kind} -> {e.status}, {e.auth_scheme or 'no'} auth"
            f"{f' as {e.auth_username}' if e.auth_username else ''}"
            f"{'' if ok or challenged else ' (not the credentials sent)'}"
        )
        if not (ok or challenged):
            problems.append(f"{e.method} {e.path}")
    if shown and not carried:
        problems.append("no request carried them")
    if not shown:
        # E.g. the registry challenged the engine (/v2/ 401) and it never asked for the image.
        problems.append(
            "no manifest request came"
            + (
                " after " + ", ".join(f"{e.method} {e.path} -> {e.status}" for e in seen[:3])
                if seen
                else ""
            )
        )
    return shown, problems


# -- AUTH-001 -------------------------------------------------------------------------------


@pytest.mark.requirement("AUTH-001")
def test_credentials_pull_protected_repository(client, images, protected, secret, observe):
    subject = Subject.served(protected, PROTECTED)
    mark = protected.journal.mark()
    ex = pull(client, images, subject, headers=header_for(secret, credentials(protected)))
    observe["answer"] = where(ex)
    shown, problems = credential_problems(protected, mark, ex)
    observe["registry_saw"] = shown
    assert not problems, (
        f"the pull answered {where(ex)}; the registry did not receive the credentials given "
        f"on every manifest/blob request: {problems}"
    )
    assert_pulled(client, subject, ex, "padded base64url credentials")


# -- AUTH-002/003/015: refused pulls --------------------------------------------------------

# "token-": the repository requires a Bearer token from the lab's token endpoint instead.
REFUSALS = ["no-header", "wrong-password", "token-no-header", "token-wrong-password"]


def refused_pull(client, images, protected, secret, case: str):
    """The pull the registry refuses: (exchange, subject, image IDs before it); a
    precondition that the registry did refuse it."""
    headers = None
    if case.endswith("wrong-password"):
        headers = header_for(secret, credentials(protected, WRONG_PASSWORD))
    if case.startswith("token-"):
        require_tokens(protected)
    subject = Subject.served(protected, PROTECTED)
    before = image_ids(client)
    mark = protected.journal.mark()
    ex = pull(client, images, subject, headers=headers)
    registry_requests(
        protected.journal,
        mark,
        protected.catalogue.name(PROTECTED),
        f"a pull the registry refuses ({case})",
        kinds=("base", "manifest"),
        wanted=lambda e: e.status == 401,
    )
    if case.startswith("token-"):
        asked = protected.journal.token_requests(mark)
        precondition(
            asked
            and not any(
                f"repository:{protected.catalogue.name(PROTECTED)}:pull" in r.granted for r in asked
            ),
            f"{case}: the token endpoint was not asked, or granted a pull token "
            f"({[token_flow(r) for r in asked]}): the refusal was not set up",
        )
    return ex, subject, before


@pytest.mark.requirement("AUTH-002")
@pytest.mark.parametrize("case", REFUSALS)
def test_refused_pull_fails_visibly(client, images, protected, secret, observe, case):
    ex, _, _ = refused_pull(client, images, protected, secret, case)
    observe[case] = where(ex)
    assert_visible_failure(ex, f"{case}: the registry refused every request")


@pytest.mark.requirement("AUTH-003")
@pytest.mark.parametrize("case", REFUSALS)
def test_refused_pull_is_404(client, images, protected, secret, observe, case):
    ex, _, _ = refused_pull(client, images, protected, secret, case)
    observe[case] = where(ex)
    assert_refused(
        ex, 404, case, grounds="documented: 404 'repository does not exist or no read access'"
    )


@pytest.mark.requirement("AUTH-015")
@pytest.mark.parametrize("case", REFUSALS)
def test_refused_pull_leaves_nothing(client, images, protected, secret, observe, case):
    ex, subject, before = refused_pull(client, images, protected, secret, case)
    observe[case] = where(ex)
    left = leftovers(client, [subject.ref], before=before, images=images)
    observe[f"{case}: left"] = left
    assert_nothing_left(f"{case}: the registry refused every request", left)


# -- AUTH-004: a header that does not decode ------------------------------------------------

UNDECODABLE = {
    "not-base64": "!!! not base64 at all !!!",
    "not-json": base64.urlsafe_b64encode(b"{not json").decode(),
}


@pytest.mark.requirement("AUTH-004")
@pytest.mark.parametrize("case", sorted(UNDECODABLE))
def test_undecodable_header_is_ignored(client, images, registry, observe, case):
    subject = Subject.served(registry, PROTECTED, "v2")
    ex = pull(client, images, subject, headers={"X-Registry-Auth": UNDECODABLE[case]})
    observe[case] = where(ex)
    assert_pulled(client, subject, ex, f"X-Registry-Auth {case} on a public repository")


# -- AUTH-005/006: informational ------------------------------------------------------------


@pytest.mark.requirement("AUTH-005")
def test_unpadded_header_is_accepted(client, images, protected, secret, observe):
    subject = Subject.served(protected, PROTECTED)
    mark = protected.journal.mark()
    ex = pull(
        client, images, subject, headers=header_for(secret, credentials(protected), pad=False)
    )
    observe["answer"] = where(ex)
    observe["registry_saw"] = [
        f"{e.method} {e.kind} -> {e.status}" for e in protected.journal.since(mark)
    ]
    if failed(ex):
        # Recorded only: the same JSON followed by three blanks, so that its closing
        # brace is no longer in the last, partial group of base64 characters.
        raw = json.dumps(credentials(protected)) + "   "
        blanks = secret(base64.urlsafe_b64encode(raw.encode()).decode().rstrip("="))
        again = pull(client, images, subject, headers={"X-Registry-Auth": blanks})
        observe["same JSON + 3 trailing blanks, unpadded"] = where(again)
    # The answer is judged first: an engine may refuse the header before any request.
    assert_pulled(client, subject, ex, "unpadded base64url credentials")
    _, problems = credential_problems(protected, mark, ex)
    assert not problems, f"the registry did not receive the credentials: {problems}"


@pytest.mark.requirement("AUTH-006")
def test_identity_token_does_not_break_a_pull(client, images, lab_control, secret, observe):
    token = header_for(secret, {"identitytoken": secret(IDENTITY_TOKEN)})
    public = Subject.served(lab_control, PROTECTED, "v2")
    ex = pull(client, images, public, headers=token)
    observe["public"] = where(ex)
    assert_pulled(client, public, ex, "identity token, public repository")
    # Recorded only: the lab registry cannot use a token, so this pull may fail.
    secret(PASSWORD)
    lab_control.require_auth(USER, PASSWORD, repository=lab_control.catalogue.name(PROTECTED))
    protected_ex = pull(client, images, Subject.served(lab_control, PROTECTED), headers=token)
    observe["protected"] = where(protected_ex)
    lab_control.auth.clear()
    ping = client.request("GET", "/_ping", versioned=False)
    status = ping.status
    assert status == 200, f"after an identity-token pull, /_ping answers HTTP {status}"


# -- the token flow (distribution's token spec) ---------------------------------------------
#
# The registry answers 401 with a Bearer challenge naming the lab's /token endpoint; only a
# token from there opens the repository. The token endpoint's journal (TokenRequest) tells
# how the engine asked, never with a secret in it.

REGISTRY_TOKEN_REFUSED = "ec-registry-token-the-lab-never-issued"


def require_tokens(registry, repository: str | None = PROTECTED, **kwargs):
    """``repository`` (None: every one) needs a Bearer token; USER/PASSWORD get one."""
    name = registry.catalogue.name(repository) if repository else None
    kwargs.setdefault("users", {USER: PASSWORD})
    return registry.require_token_auth(repository=name, **kwargs)


def protect_with_tokens(registry, secret):
    """``single`` requires a Bearer token; the identity token IDENTITY_TOKEN stands for USER."""
    for value in (
        PASSWORD,
        WRONG_PASSWORD,
        IDENTITY_TOKEN,
        REGISTRY_TOKEN_REFUSED,
        basic_header(USER, PASSWORD).split(" ", 1)[1],
    ):
        secret(value)
    require_tokens(registry, refresh_tokens=[IDENTITY_TOKEN])
    return registry


@pytest.fixture
def token_protected(lab_control, secret):
    """The run's registry, :func:`protect_with_tokens`."""
    return protect_with_tokens(lab_control, secret)


def token_flow(r) -> str:
    """One token request as the report shows it (no secret: the journal holds none)."""
    return (
        f"{r.method} /token {r.grant_type or ''} {r.credential or 'unusable'}"
        f"{f' as {r.username}' if r.username else ''} client_id={r.client_id} "
        f"scope={' '.join(r.scopes) or '-'} -> {r.status}"
        f"{' granted ' + ' '.join(r.granted) if r.granted else ''}"
    )


def registry_flow(registry, mark: int) -> list[str]:
    return [
        f"{e.method} {e.kind} -> {e.status}, {e.auth_scheme or 'no'} auth"
        for e in registry.journal.since(mark)
        if e.kind in ("base", "manifest", "blob")
    ]


def token_evidence(
    registry, mark: int, ex, observe: dict, what: str, challenged: bool = True
) -> list:
    """The token requests since ``mark``, recorded; with ``challenged``, a precondition
    that the registry challenged the engine (the token flow began). Checks of headers an
    engine may refuse before any request judge the answer instead."""
    if challenged:
        registry_requests(
            registry.journal,
            mark,
            registry.catalogue.name(PROTECTED),
            what,
            kinds=("base", "manifest"),
            wanted=lambda e: e.status == 401,
        )
    asked = registry.journal.token_requests(mark)
    observe["answer"] = where(ex)
    observe["token_endpoint"] = [token_flow(r) for r in asked] or ["never asked"]
    observe["registry_saw"] = registry_flow(registry, mark)
    return asked


def granted_pull(registry, asked: list) -> list:
    """Token requests that were granted a pull of ``single``."""
    scope = f"repository:{registry.catalogue.name(PROTECTED)}:pull"
    return [r for r in asked if r.status == 200 and scope in r.granted]


def bearer_only(registry, mark: int) -> list[str]:
    """Manifest/blob requests of ``single`` that carried anything but a Bearer token."""
    name = registry.catalogue.name(PROTECTED)
    return [
        f"{e.method} {e.kind} with {e.auth_scheme} auth"
        for e in registry.journal.since(mark)
        if e.repository == name
        and e.kind in ("manifest", "blob")
        and e.auth_scheme not in (None, "Bearer")
    ]


def pull_on_token_flow(
    client, images, registry, observe, header: dict, what: str, grant, missing: str, case=""
):
    """Pull ``single`` with ``header`` on the token flow: (exchange, subject, journal mark).

    The token endpoint must have granted a pull of ``single`` to a request ``grant``
    accepts; ``missing`` says what did not reach it. Without ``case`` the registry's
    challenge is a precondition; with it (a header an engine may refuse before any
    request) the answer is observed under ``case`` and judged instead.
    """
    subject = Subject.served(registry, PROTECTED)
    mark = registry.journal.mark()
    ex = pull(client, images, subject, headers=header)
    asked = token_evidence(registry, mark, ex, observe, what, challenged=not case)
    if case:
        observe[case] = observe.pop("answer")
    used = [r for r in granted_pull(registry, asked) if grant(r)]
    assert used, (
        f"{f'{case}: ' if case else ''}the pull answered {where(ex)}; {missing} "
        f"(it was asked: {[token_flow(r) for r in asked] or 'never'})"
    )
    return ex, subject, mark


# -- AUTH-007: username/password ------------------------------------------------------------


@pytest.mark.requirement("AUTH-007")
def test_token_flow_credentials(client, images, token_protected, secret, observe):
    registry = token_protected
    ex, subject, mark = pull_on_token_flow(
        client,
        images,
        registry,
        observe,
        header_for(secret, credentials(registry)),
        "the token flow with credentials",
        lambda r: r.credential in ("basic", "password") and r.username == USER,
        "the token endpoint did not receive the credentials given",
    )
    sent = bearer_only(registry, mark)
    assert not sent, f"the credentials went to the registry itself, not as a token: {sent}"
    assert_pulled(client, subject, ex, "credentials on the token flow")


# -- AUTH-008: identity token ----------------------------------------------------------------


@pytest.mark.requirement("AUTH-008")
def test_token_flow_identity_token(client, images, token_protected, secret, observe):
    registry = token_protected
    header = header_for(
        secret, {"identitytoken": IDENTITY_TOKEN, "serveraddress": registry.address}
    )
    ex, subject, _ = pull_on_token_flow(
        client,
        images,
        registry,
        observe,
        header,
        "the token flow with an identity token",
        # The lab accepts only IDENTITY_TOKEN as a refresh token for USER: a 200 refresh
        # grant as USER is proof the engine sent exactly that token.
        lambda r: r.grant_type == "refresh_token" and r.username == USER,
        "no refresh-token grant with the identity token given reached the token endpoint",
    )
    assert_pulled(client, subject, ex, "an identity token on the token flow")


# -- AUTH-009: registry token ----------------------------------------------------------------


@pytest.mark.requirement("AUTH-009")
def test_registry_token_is_the_bearer_token(client, images, token_protected, secret, observe):
    registry = token_protected
    name = registry.catalogue.name(PROTECTED)
    grant = registry.tokens.grant_password(USER, PASSWORD, [f"repository:{name}:pull"])
    token = secret(grant.access_token)
    subject = Subject.served(registry, PROTECTED)
    mark = registry.journal.mark()
    ex = pull(client, images, subject, headers=header_for(secret, {"registrytoken": token}))
    registry_requests(registry.journal, mark, name, "a registry token", kinds=("manifest",))
    # The engine needs no token from the endpoint: what it asked there is recorded only.
    token_evidence(registry, mark, ex, observe, "a registry token", challenged=False)
    manifests = [
        e for e in registry.journal.since(mark) if e.kind == "manifest" and e.repository == name
    ]
    carried = [e for e in manifests if e.authorization == f"Bearer {token}"]
    how = [f"{e.method} {e.auth_scheme or 'no'} auth" for e in manifests]
    assert carried, (
        f"the pull answered {where(ex)}; the registry token was not sent as the Bearer token "
        f"(manifest requests: {how})"
    )
    assert_pulled(client, subject, ex, "a registry token")


# -- AUTH-010: the scope asked for -----------------------------------------------------------


@pytest.mark.requirement("AUTH-010")
def test_token_scope_is_the_pulled_repository(client, images, lab_control, secret, observe):
    registry = lab_control
    for value in (PASSWORD, basic_header(USER, PASSWORD).split(" ", 1)[1]):
        secret(value)
    # Every repository needs a token, so any scope the engine asks for is seen.
    require_tokens(registry, repository=None)
    name = registry.catalogue.name(PROTECTED)
    subject = Subject.served(registry, PROTECTED)
    mark = registry.journal.mark()
    ex = pull(client, images, subject, headers=header_for(secret, credentials(registry)))
    asked = token_evidence(registry, mark, ex, observe, "the scope of a token request")
    precondition(
        asked,
        "the registry challenged the engine, but it never asked the token "
        "endpoint: the scope it asks for could not be judged",
    )
    wanted = f"repository:{name}:pull"
    scopes = sorted({s for r in asked for s in r.scopes})
    others = [s for s in scopes if s != wanted]
    assert wanted in scopes and not others, (
        f"the engine pulled {subject.ref} but asked the token endpoint for {scopes or 'no scope'}: "
        f"the scope must be {wanted}" + (f", not also {others}" if others else "")
    )
    assert_pulled(client, subject, ex, "credentials on the token flow")


# -- AUTH-011: credentials named for another registry ---------------------------------------


@pytest.mark.requirement("AUTH-011")
def test_other_registrys_credentials_are_not_sent(client, images, token_protected, secret, observe):
    registry = token_protected
    other = dict(credentials(registry), serveraddress="registry.example:5000")
    mark = registry.journal.mark()
    ex = pull(
        client, images, Subject.served(registry, PROTECTED), headers=header_for(secret, other)
    )
    asked = token_evidence(registry, mark, ex, observe, "credentials for another registry")
    precondition(
        asked,
        "the registry challenged the engine, but it never asked the token "
        "endpoint: whether it sends the credentials could not be judged",
    )
    sent = [token_flow(r) for r in asked if r.credential in ("basic", "password")]
    observe["pulled"] = not failed(ex)
    assert not sent, (
        f"credentials whose serveraddress names another registry were sent to this one's "
        f"token endpoint: {sent}"
    )


# -- AUTH-012/013: X-Registry-Auth encodings on the token flow --------------------------------

EMPTY_FORMS = dict(UNDECODABLE, **{"empty-object": base64.urlsafe_b64encode(b"{}").decode()})


@pytest.mark.requirement("AUTH-012")
@pytest.mark.parametrize("case", sorted(EMPTY_FORMS))
def test_token_flow_without_usable_credentials(client, images, lab_control, observe, case):
    registry = lab_control
    # Public behind tokens: anyone gets a pull token, as on Docker Hub.
    require_tokens(registry, users={}, public=True)
    subject = Subject.served(registry, PROTECTED)
    mark = registry.journal.mark()
    ex = pull(client, images, subject, headers={"X-Registry-Auth": EMPTY_FORMS[case]})
    token_evidence(
        registry, mark, ex, observe, f"X-Registry-Auth {case} on the token flow", challenged=False
    )
    observe[case] = observe.pop("answer")
    assert_pulled(
        client, subject, ex, f"X-Registry-Auth {case} on a public repository behind tokens"
    )


def standard_base64(obj: dict) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


ENCODINGS = {
    "unpadded-base64url": lambda obj: encode(obj, pad=False),
    "standard-base64": standard_base64,
}


@pytest.mark.requirement("AUTH-013")
@pytest.mark.parametrize("case", sorted(ENCODINGS))
def test_token_flow_other_encodings(client, images, token_protected, secret, observe, case):
    registry = token_protected
    value = secret(ENCODINGS[case](credentials(registry)))
    secret(value.rstrip("="))
    # A pull that failed although a token was granted fails in assert_pulled, on its answer.
    ex, subject, _ = pull_on_token_flow(
        client,
        images,
        registry,
        observe,
        {"X-Registry-Auth": value},
        f"{case} credentials on the token flow",
        lambda r: r.credential in ("basic", "password"),
        "the token endpoint did not receive the credentials given",
        case=case,
    )
    assert_pulled(client, subject, ex, f"{case} credentials on the token flow")


# -- AUTH-014: credentials never leak --------------------------------------------------------


def _leak_setup(registry, secret, case: str) -> tuple[dict, str, dict]:
    """(X-Registry-Auth object, repository, the secrets it carries) for one leak case."""
    creds = credentials(registry)
    wrong = credentials(registry, WRONG_PASSWORD)
    if case.startswith("basic-"):
        registry.require_auth(USER, PASSWORD, repository=registry.catalogue.name(PROTECTED))
    else:
        require_tokens(registry, refresh_tokens=[IDENTITY_TOKEN])
    if case == "token-endpoint-500":
        registry.fault(ErrorStatus(500), kinds=["token"], methods=("GET", "POST"))
    if case == "registry-500":
        # On the blobs: the manifest's challenge makes the engine use the credentials first.
        registry.fault(
            ErrorStatus(500), repository=registry.catalogue.name(PROTECTED), kinds=["blob"]
        )
    if case == "identitytoken-refused":
        return (
            {"identitytoken": WRONG_PASSWORD, "serveraddress": registry.address},
            PROTECTED,
            {"the identity token": WRONG_PASSWORD},
        )
    if case == "registrytoken-refused":
        return (
            {"registrytoken": REGISTRY_TOKEN_REFUSED},
            PROTECTED,
            {"the registry token": REGISTRY_TOKEN_REFUSED},
        )
    if case == "identitytoken-success":
        return (
            {"identitytoken": IDENTITY_TOKEN, "serveraddress": registry.address},
            PROTECTED,
            {"the identity token": IDENTITY_TOKEN},
        )
    obj = wrong if case.endswith("wrong-password") else creds
    repository = "ec-no-such-repository" if case == "unknown-repository" else PROTECTED
    return obj, repository, {"the password": obj["password"]}


LEAK_CASES = [
    "basic-success",
    "basic-wrong-password",
    "token-success",
    "token-wrong-password",
    "identitytoken-success",
    "identitytoken-refused",
    "registrytoken-refused",
    "unknown-repository",
    "token-endpoint-500",
    "registry-500",
]


@dataclass
class Leak:
    """One leak case's pull: its exchange, whether the registry saw any request, and
    which of the secrets it carried the answer shows."""

    exchange: Exchange
    reached: bool
    shown: list[str]


def leak(client, registry, secret, case: str, images=None, track=None) -> Leak:
    """Send ``case``'s pull to ``registry`` (protected by :func:`protect_with_tokens`).

    With ``images`` (a check's fixture) what the pull made is found as a check's pulls
    find it; with ``track`` only (the lane) nothing is listed: its name is tracked.
    """
    registry.tokens.clear()
    obj, repository, carried = _leak_setup(registry, secret, case)
    header = header_for(secret, obj)
    mark = registry.journal.mark()
    subject = Subject.served(registry, repository)
    if track is not None:
        track(subject.ref)
    ex = pull(client, images, subject, headers=header)
    secrets = dict(carried)
    secrets["the X-Registry-Auth value"] = header["X-Registry-Auth"].rstrip("=")
    return Leak(ex, bool(registry.journal.since(mark)), exposures(ex, secrets))


def _leaks_in_lane(lane: LaneContext) -> dict[str, Leak]:
    """Every leak case, against the lane's registry serving a ``single`` of its own."""
    lab = lane.lab
    image = lab.catalogue.add(
        lab.catalogue.name(PROTECTED),
        "v1",
        build_image(
            {"lab/auth-leaks.txt": "engine-conformance auth leaks\n"},
            env={"LAB_AUTH": "leaks"},
            cmd=["/bin/sh"],
        ),
    )
    lane.claim(image.config_digest, image.digest)
    leaks = {}
    for case in LEAK_CASES:
        lab.reset()  # as the registry fixture does before each check
        protect_with_tokens(lab, lane.secret)
        lane.images.track(image.config_digest)  # an untagged image a pull may leave
        leaks[case] = leak(lane.client, lab, lane.secret, case, track=lane.images.track)
        lane.images.cleanup()  # as after each check: every case pulls onto a clean engine
    return leaks


@pytest.mark.ahead("auth-leaks", _leaks_in_lane, wait=4)
@pytest.mark.requirement("AUTH-014")
@pytest.mark.parametrize("case", LEAK_CASES)
def test_credentials_never_leak(request, client, secret, observe, lane, case):
    ahead = lane.result("auth-leaks") if lane is not None else None
    if ahead is not None:
        found = ahead[case]
        client.cite([found.exchange])
        observe["ran"] = f"ahead, in the run's lane ({lane.timings.get('auth-leaks')} s)"
    else:
        registry = request.getfixturevalue("token_protected")
        found = leak(client, registry, secret, case, images=request.getfixturevalue("images"))
    ex = found.exchange
    observe[case] = where(ex)
    precondition(
        found.reached,
        f"{case}: the lab registry saw no request: the "
        "engine never used the credentials, so what it echoes could not be judged",
    )
    assert not found.shown, (
        f"{case}: the answer ({where(ex)}) shows what X-Registry-Auth carried: {found.shown}"
    )
