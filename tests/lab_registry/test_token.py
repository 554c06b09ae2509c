"""Token auth in the lab registry, against the examples of distribution's token spec.

The spec texts: docs/spec/auth/token.md (challenge, GET endpoint, response),
oauth.md (POST grants), jwt.md (claims) and scope.md (scope grammar). The last
class checks that the real registry (Debian's docker-registry, distribution
2.8) configured with ``auth: token`` accepts the lab's tokens and challenges
the same way.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from lab_registry import (
    Catalogue,
    ErrorStatus,
    LabRegistry,
    TokenAuth,
    TokenSigner,
    basic_header,
    parse_scope,
)
from lab_registry import mediatypes as mt
from lab_registry.distribution import DistributionRegistry, available
from lab_registry.token import libtrust_key_id, rfc3339

ACCEPT = {"Accept": f"{mt.DOCKER_MANIFEST}, {mt.DOCKER_MANIFEST_LIST}, {mt.OCI_MANIFEST}"}
PASSWORD = "A3ddj3w"  # the spec's example password (oauth.md)

# token.md's example response token: its claims are the set the lab must issue.
SPEC_TOKEN = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiIsImtpZCI6IlBZWU86VEVXVTpWN0pIOjI2SlY6QVFUWjpMSkMzOlNY"
    "Vko6WEdIQTozNEYyOjJMQVE6WlJNSzpaN1E2In0.eyJpc3MiOiJhdXRoLmRvY2tlci5jb20iLCJzdWIiOiJqbGhh"
    "d24iLCJhdWQiOiJyZWdpc3RyeS5kb2NrZXIuY29tIiwiZXhwIjoxNDE1Mzg3MzE1LCJuYmYiOjE0MTUzODcwMTUs"
    "ImlhdCI6MTQxNTM4NzAxNSwianRpIjoidFlKQ08xYzZjbnl5N2tBbjBjN3JLUGdiVjFIMWJGd3MiLCJhY2Nlc3Mi"
    "Olt7InR5cGUiOiJyZXBvc2l0b3J5IiwibmFtZSI6InNhbWFsYmEvbXktYXBwIiwiYWN0aW9ucyI6WyJwdXNoIl19"
    "XX0.QhflHPfbd6eVF4lM9bwYpFZIV0PfikbyXuLx959ykRTBpe3CYnzs6YBK8FToVb5R47920PVLrh8zuLzdCr9t3w"
)
LIBTRUST_KID = re.compile(r"^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$")


def unverified(token: str) -> tuple[dict, dict]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def private(lab: LabRegistry, lab_catalogue: Catalogue) -> Iterator[str]:
    """A repository only ``jlhawn`` (the spec's user) may pull with a token."""
    name = lab_catalogue.name("single")
    lab.require_token_auth(repository=name, users={"jlhawn": PASSWORD})
    yield name


def get_token(
    http: httpx.Client, scope: str | None, auth: str | None = None, **params: str
) -> httpx.Response:
    query = {"service": "lab-registry", "client_id": "ectest", **params}
    if scope is not None:
        query["scope"] = scope
    headers = {"Authorization": auth} if auth else {}
    return http.get("/token", params=query, headers=headers)


class TestScope:
    @pytest.mark.parametrize(
        ("scope", "parsed"),
        [
            ("repository:samalba/my-app:pull,push",
             ("repository", "samalba/my-app", ("pull", "push"))),
            ("repository:samalba/my-app:push", ("repository", "samalba/my-app", ("push",))),
            ("repository:localhost:5000/a/b:pull", ("repository", "localhost:5000/a/b", ("pull",))),
            ("repository(plugin):a/b:pull", ("repository", "a/b", ("pull",))),
            ("registry:catalog:*", ("registry", "catalog", ("*",))),
            ("repository:a/b", None),
            ("nonsense", None),
        ],
    )  # fmt: skip
    def test_grammar(self, scope: str, parsed: tuple | None) -> None:
        assert parse_scope(scope) == parsed


class TestChallenge:
    def test_spec_example_header(self) -> None:
        tokens = TokenAuth(service="registry.docker.io")
        tokens.realm = "https://auth.docker.io/token"
        assert tokens.challenge("unused", "samalba/my-app", "pull,push") == (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:samalba/my-app:pull,push"'
        )

    def test_protected_repository_answers_401_bearer(
        self, lab: LabRegistry, http: httpx.Client, private: str
    ) -> None:
        r = http.get(f"/v2/{private}/manifests/v1", headers=ACCEPT)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == (
            f'Bearer realm="{lab.url}/token",service="lab-registry",'
            f'scope="repository:{private}:pull"'
        )
        assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"

    def test_ping_is_challenged_without_scope(
        self, lab: LabRegistry, http: httpx.Client, private: str
    ) -> None:
        r = http.get("/v2/")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == (
            f'Bearer realm="{lab.url}/token",service="lab-registry"'
        )

    def test_unprotected_repository_needs_no_token(
        self, http: httpx.Client, private: str, lab_catalogue: Catalogue
    ) -> None:
        other = lab_catalogue.name("oci")
        assert http.get(f"/v2/{other}/tags/list").status_code == 200

    def test_realm_can_be_elsewhere(
        self, lab: LabRegistry, http: httpx.Client, private: str
    ) -> None:
        lab.tokens.realm = "http://auth.example/token"
        r = http.get(f"/v2/{private}/tags/list")
        assert r.headers["WWW-Authenticate"].startswith('Bearer realm="http://auth.example/token"')
        assert lab.token_realm == "http://auth.example/token"


class TestGetEndpoint:
    def test_basic_credentials_grant_pull(
        self, lab: LabRegistry, http: httpx.Client, private: str
    ) -> None:
        r = get_token(http, f"repository:{private}:pull,push", basic_header("jlhawn", PASSWORD))
        assert r.status_code == 200, r.text
        doc = r.json()
        # token.md: `token` and `access_token` both, equal; expires_in >= 60; issued_at RFC 3339.
        assert doc["token"] == doc["access_token"]
        assert doc["expires_in"] >= 60
        issued = datetime.datetime.strptime(doc["issued_at"], "%Y-%m-%dT%H:%M:%SZ")
        assert abs(issued.replace(tzinfo=datetime.UTC).timestamp() - time.time()) < 60
        assert "refresh_token" not in doc  # only with offline_token=true
        # The intersection of asked and allowed (token.md): the lab grants pull only.
        header, claims = unverified(doc["token"])
        assert claims["access"] == [{"type": "repository", "name": private, "actions": ["pull"]}]
        assert claims["sub"] == "jlhawn" and claims["aud"] == "lab-registry"
        pulled = http.get(
            f"/v2/{private}/manifests/v1",
            headers={**ACCEPT, "Authorization": f"Bearer {doc['token']}"},
        )
        assert pulled.status_code == 200

    def test_claims_are_those_of_the_spec_example(self, http: httpx.Client, private: str) -> None:
        spec_header, spec_claims = unverified(SPEC_TOKEN)
        r = get_token(http, f"repository:{private}:pull", basic_header("jlhawn", PASSWORD))
        header, claims = unverified(r.json()["token"])
        assert set(claims) == set(spec_claims)
        assert set(claims["access"][0]) == set(spec_claims["access"][0])
        assert header["alg"] == spec_header["alg"] == "ES256"
        assert LIBTRUST_KID.match(spec_header["kid"]) and LIBTRUST_KID.match(header["kid"])
        assert claims["exp"] - claims["iat"] == r.json()["expires_in"]

    def test_offline_token_adds_a_refresh_token(self, http: httpx.Client, private: str) -> None:
        r = get_token(
            http,
            f"repository:{private}:pull",
            basic_header("jlhawn", PASSWORD),
            offline_token="true",
        )
        assert r.status_code == 200
        refresh = r.json()["refresh_token"]
        assert refresh and refresh != r.json()["token"]

    def test_wrong_password_is_401(self, http: httpx.Client, private: str) -> None:
        r = get_token(http, f"repository:{private}:pull", basic_header("jlhawn", "wrong"))
        assert r.status_code == 401
        assert "wrong" not in r.text

    def test_anonymous_gets_nothing_for_a_private_repository(
        self, http: httpx.Client, private: str
    ) -> None:
        # token.md: a subset of the asked access "must not be considered an error".
        r = get_token(http, f"repository:{private}:pull")
        assert r.status_code == 200
        assert unverified(r.json()["token"])[1]["access"] == []
        refused = http.get(
            f"/v2/{private}/tags/list", headers={"Authorization": f"Bearer {r.json()['token']}"}
        )
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].endswith(',error="insufficient_scope"')

    def test_anonymous_token_for_a_public_repository(
        self, lab: LabRegistry, http: httpx.Client, lab_catalogue: Catalogue
    ) -> None:
        name = lab_catalogue.name("oci")
        lab.require_token_auth(repository=name, public=True)
        assert http.get(f"/v2/{name}/tags/list").status_code == 401  # the token is still needed
        r = get_token(http, f"repository:{name}:pull")
        token = r.json()["token"]
        assert unverified(token)[1]["sub"] == ""
        ok = http.get(f"/v2/{name}/tags/list", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200

    def test_unknown_service_is_refused(self, http: httpx.Client, private: str) -> None:
        r = get_token(http, f"repository:{private}:pull", service="registry.docker.io")
        assert r.status_code == 400

    def test_several_scope_parameters(
        self, lab: LabRegistry, http: httpx.Client, private: str, lab_catalogue: Catalogue
    ) -> None:
        other = lab_catalogue.name("oci")
        lab.require_token_auth(repository=other, users={"jlhawn": PASSWORD})
        r = http.get(
            "/token",
            params=[("service", "lab-registry"), ("scope", f"repository:{private}:pull"),
                    ("scope", f"repository:{other}:pull")],
            headers={"Authorization": basic_header("jlhawn", PASSWORD)},
        )  # fmt: skip
        names = [a["name"] for a in unverified(r.json()["token"])[1]["access"]]
        assert names == [private, other]


class TestOAuthEndpoint:
    def form(self, **fields: str) -> dict[str, str]:
        return {"service": "lab-registry", "client_id": "dockerengine", **fields}

    def test_password_grant_spec_example(self, http: httpx.Client, private: str) -> None:
        # oauth.md "Example getting refresh token" (with the lab's service).
        r = http.post(
            "/token",
            data=self.form(
                grant_type="password", username="jlhawn", password=PASSWORD, access_type="offline"
            ),
        )
        assert r.status_code == 200, r.text
        doc = r.json()
        assert {"refresh_token", "access_token", "expires_in", "scope"} <= set(doc)
        assert doc["scope"] == ""
        assert unverified(doc["access_token"])[1]["access"] == []

    def test_refresh_grant_spec_example(
        self, lab: LabRegistry, http: httpx.Client, private: str
    ) -> None:
        got = http.post(
            "/token",
            data=self.form(
                grant_type="password", username="jlhawn", password=PASSWORD, access_type="offline"
            ),
        ).json()
        # oauth.md "Example refreshing an Access Token".
        r = http.post(
            "/token",
            data=self.form(
                grant_type="refresh_token",
                refresh_token=got["refresh_token"],
                scope=f"repository:{private}:pull,push",
            ),
        )
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["refresh_token"] == got["refresh_token"]  # "the same refresh token"
        assert doc["scope"] == f"repository:{private}:pull"
        pulled = http.get(
            f"/v2/{private}/tags/list", headers={"Authorization": f"Bearer {doc['access_token']}"}
        )
        assert pulled.status_code == 200

    def test_chunked_form(self, lab: LabRegistry, http: httpx.Client, private: str) -> None:
        # Podman (containers/image) posts the refresh-token form with chunked encoding.
        lab.require_token_auth(repository=private, refresh_tokens={"rt-chunked": "jlhawn"})
        form = (
            "grant_type=refresh_token&refresh_token=rt-chunked&service=lab-registry"
            f"&scope=repository:{private}:pull"
        )
        parts = iter([form[:20].encode(), form[20:].encode()])
        r = http.post(
            "/token",
            content=parts,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["scope"] == f"repository:{private}:pull"
        # The connection is still usable after it.
        assert http.get("/").status_code == 200

    def test_preset_refresh_token(
        self, lab: LabRegistry, http: httpx.Client, lab_catalogue
    ) -> None:
        name = lab_catalogue.name("single")
        lab.require_token_auth(repository=name, refresh_tokens={"identity-xyz": "bob"})
        r = http.post(
            "/token",
            data=self.form(
                grant_type="refresh_token", refresh_token="identity-xyz",
                scope=f"repository:{name}:pull",
            ),
        )  # fmt: skip
        assert r.status_code == 200
        assert unverified(r.json()["access_token"])[1]["sub"] == "bob"

    @pytest.mark.parametrize(
        ("fields", "status", "error"),
        [
            ({"grant_type": "password", "username": "jlhawn", "password": "no"},
             401, "invalid_grant"),
            ({"grant_type": "refresh_token", "refresh_token": "unknown"}, 401, "invalid_grant"),
            ({"grant_type": "authorization_code", "code": "x"}, 400, "unsupported_grant_type"),
            ({}, 400, "unsupported_grant_type"),
        ],
    )  # fmt: skip
    def test_refusals_are_oauth_errors(
        self, http: httpx.Client, private: str, fields: dict, status: int, error: str
    ) -> None:
        r = http.post("/token", data=self.form(**fields))
        assert r.status_code == status
        assert r.json()["error"] == error
        assert "no" not in r.json()["error_description"].split()


def test_token_endpoint_fault(lab: LabRegistry, http: httpx.Client, private: str) -> None:
    # For checks of "token endpoint errors": faults reach /token only when asked by kind.
    with lab.fault(ErrorStatus(503), kinds=["token"]):
        r = get_token(http, f"repository:{private}:pull", basic_header("jlhawn", PASSWORD))
        assert r.status_code == 503
        assert http.get(f"/v2/{private}/tags/list").status_code == 401  # the registry unchanged
    assert get_token(http, f"repository:{private}:pull").status_code == 200


class TestRegistryChecksTokens:
    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def claims(self, lab: LabRegistry, repository: str, **changes: object) -> dict:
        now = int(time.time())
        claims = {
            "iss": lab.tokens.issuer, "sub": "jlhawn", "aud": lab.tokens.service,
            "exp": now + 300, "nbf": now, "iat": now, "jti": "t",
            "access": [{"type": "repository", "name": repository, "actions": ["pull"]}],
        }  # fmt: skip
        claims.update(changes)
        return claims

    def test_well_made_token_passes(
        self, lab: LabRegistry, http: httpx.Client, private: str
    ) -> None:
        token = lab.tokens.signer.sign(self.claims(lab, private))
        assert http.get(f"/v2/{private}/tags/list", headers=self.bearer(token)).status_code == 200

    @pytest.mark.parametrize(
        "changes",
        [
            {"exp": int(time.time()) - 120},  # past the 60 s leeway
            {"aud": "registry.docker.io"},
            {"iss": "someone-else"},
        ],
        ids=["expired", "audience", "issuer"],
    )
    def test_bad_claims_are_invalid_token(
        self, lab: LabRegistry, http: httpx.Client, private: str, changes: dict
    ) -> None:
        token = lab.tokens.signer.sign(self.claims(lab, private, **changes))
        r = http.get(f"/v2/{private}/tags/list", headers=self.bearer(token))
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].endswith(',error="invalid_token"')

    def test_another_key_is_invalid_token(
        self, lab: LabRegistry, http: httpx.Client, private: str
    ) -> None:
        stranger = TokenSigner()  # same claims, same issuer name, another run's key
        token = stranger.sign(self.claims(lab, private))
        r = http.get(f"/v2/{private}/tags/list", headers=self.bearer(token))
        assert r.headers["WWW-Authenticate"].endswith(',error="invalid_token"')

    def test_tampered_token_is_invalid(
        self, lab: LabRegistry, http: httpx.Client, private: str
    ) -> None:
        token = lab.tokens.signer.sign(self.claims(lab, "elsewhere/repo"))
        head, payload, sig = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["access"][0]["name"] = private
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        r = http.get(f"/v2/{private}/tags/list", headers=self.bearer(f"{head}.{forged}.{sig}"))
        assert r.headers["WWW-Authenticate"].endswith(',error="invalid_token"')

    def test_other_repository_is_insufficient_scope(
        self, lab: LabRegistry, http: httpx.Client, private: str
    ) -> None:
        token = lab.tokens.signer.sign(self.claims(lab, "elsewhere/repo"))
        r = http.get(f"/v2/{private}/tags/list", headers=self.bearer(token))
        assert r.headers["WWW-Authenticate"].endswith(',error="insufficient_scope"')
        # Any valid token opens the ping, as in distribution.
        assert http.get("/v2/", headers=self.bearer(token)).status_code == 200

    def test_basic_rules_live_alongside(
        self, lab: LabRegistry, http: httpx.Client, private: str, lab_catalogue: Catalogue
    ) -> None:
        other = lab_catalogue.name("oci")
        lab.require_auth("alice", "pw", repository=other)
        r = http.get(f"/v2/{other}/tags/list")
        assert r.headers["WWW-Authenticate"] == 'Basic realm="lab"'
        ok = http.get(
            f"/v2/{other}/tags/list", headers={"Authorization": basic_header("alice", "pw")}
        )
        assert ok.status_code == 200

    def test_reset_removes_token_rules(
        self, lab: LabRegistry, http: httpx.Client, private: str
    ) -> None:
        lab.reset()
        assert http.get(f"/v2/{private}/tags/list").status_code == 200


class TestJournal:
    def test_requests_recorded_without_secrets(
        self, lab: LabRegistry, http: httpx.Client, private: str
    ) -> None:
        mark = lab.journal.mark()
        first = get_token(
            http, f"repository:{private}:pull", basic_header("jlhawn", PASSWORD),
            offline_token="true", password="leak-me-not", account="jlhawn",
        )  # fmt: skip
        refresh = first.json()["refresh_token"]
        second = http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "docker",
                  "service": "lab-registry", "scope": f"repository:{private}:pull"},
        )  # fmt: skip
        http.post(
            "/token",
            data={"grant_type": "password", "username": "jlhawn", "password": PASSWORD,
                  "client_id": "docker", "service": "lab-registry"},
        )  # fmt: skip
        get_token(http, f"repository:{private}:pull")
        requests = lab.journal.token_requests(mark)
        assert [(r.method, r.grant_type, r.credential, r.client_id) for r in requests] == [
            ("GET", None, "basic", "ectest"),
            ("POST", "refresh_token", "refresh_token", "docker"),
            ("POST", "password", "password", "docker"),
            ("GET", None, "anonymous", "ectest"),
        ]
        assert requests[0].offline and requests[0].refresh_token_issued
        assert requests[0].account == "jlhawn"
        assert requests[0].scopes == (f"repository:{private}:pull",)
        assert requests[1].username == "jlhawn"  # the refresh token's subject
        basic = basic_header("jlhawn", PASSWORD).split()[1]
        secrets = [PASSWORD, "leak-me-not", refresh, first.json()["token"],
                   second.json()["access_token"], basic]  # fmt: skip
        for entry in lab.journal.since(mark):
            text = repr(entry) + str(entry.authorization) + entry.query + repr(entry.token)
            for secret in secrets:
                assert secret not in text, f"a secret in the journal entry {entry.seq}"

    def test_registry_requests_keep_the_bearer(
        self, lab: LabRegistry, http: httpx.Client, private: str
    ) -> None:
        # The auth suite judges "registrytoken is sent as the Bearer token" from this.
        token = get_token(http, f"repository:{private}:pull", basic_header("jlhawn", PASSWORD))
        mark = lab.journal.mark()
        http.get(
            f"/v2/{private}/tags/list", headers={"Authorization": f"Bearer {token.json()['token']}"}
        )
        (entry,) = lab.journal.since(mark)
        assert entry.auth_scheme == "Bearer" and entry.status == 200
        assert token.json()["token"] not in repr(entry)


class TestSigner:
    def test_kid_is_the_libtrust_id_of_the_certificate_key(self) -> None:
        signer = TokenSigner()
        assert LIBTRUST_KID.match(signer.key_id)
        assert signer.key_id == libtrust_key_id(signer.certificate.public_key())
        header = jwt.get_unverified_header(signer.sign({"a": 1}))
        assert header["kid"] == signer.key_id
        der = base64.b64decode(header["x5c"][0])
        assert der == signer.certificate.public_bytes(serialization.Encoding.DER)

    def test_each_instance_has_its_own_key(self) -> None:
        assert TokenSigner().key_id != TokenSigner().key_id

    def test_rfc3339(self) -> None:
        assert rfc3339(1257894000) == "2009-11-10T23:00:00Z"  # token.md's issued_at example


class _TokenDistribution(DistributionRegistry):
    """docker-registry with ``auth: token`` trusting the lab's certificate."""

    def __init__(self, tokens: TokenAuth, realm: str) -> None:
        super().__init__()
        self.tokens, self.realm = tokens, realm

    def config_yaml(self) -> str:
        assert self.dir is not None
        bundle = self.tokens.signer.write_certificate(Path(self.dir) / "token-root.pem")
        return super().config_yaml() + (
            "auth:\n"
            "  token:\n"
            f"    realm: {self.realm}\n"
            f"    service: {self.tokens.service}\n"
            f"    issuer: {self.tokens.issuer}\n"
            f"    rootcertbundle: {bundle}\n"
        )

    def _wait_ready(self) -> None:
        # The base class waits for a 200 ping, which token auth turns into 401.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"docker-registry exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1.0).status_code == 401:
                    return
            except httpx.TransportError:
                time.sleep(0.05)  # no readiness event exists
        pytest.fail(f"docker-registry did not answer: {self.log_tail()}")


@pytest.fixture
def real(lab: LabRegistry) -> Iterator[DistributionRegistry]:
    if not available():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    with _TokenDistribution(lab.tokens, lab.token_realm) as registry:
        yield registry


class TestDistributionAcceptsLabTokens:
    """Distribution 2.8 verifies the lab's tokens: key named by x5c or kid, claims, access."""

    @pytest.mark.parametrize("keys", [("x5c", "kid"), ("x5c",), ("kid",)])
    def test_accepted(
        self, lab: LabRegistry, http: httpx.Client, real: DistributionRegistry, private: str,
        keys: tuple[str, ...],
    ) -> None:  # fmt: skip
        lab.tokens.header_keys = keys
        token = get_token(http, f"repository:{private}:pull", basic_header("jlhawn", PASSWORD))
        r = real.client.get(
            f"/v2/{private}/tags/list", headers={"Authorization": f"Bearer {token.json()['token']}"}
        )
        # Past auth: the real registry simply holds no such repository.
        assert r.status_code == 404, r.headers.get("WWW-Authenticate")
        assert r.json()["errors"][0]["code"] == "NAME_UNKNOWN"

    def test_key_not_named_is_refused(
        self, lab: LabRegistry, http: httpx.Client, real: DistributionRegistry, private: str
    ) -> None:
        lab.tokens.header_keys = ()  # token.go: "unable to get token signing key"
        token = get_token(http, f"repository:{private}:pull", basic_header("jlhawn", PASSWORD))
        r = real.client.get(
            f"/v2/{private}/tags/list", headers={"Authorization": f"Bearer {token.json()['token']}"}
        )
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].endswith(',error="invalid_token"')

    def test_same_challenges(
        self, lab: LabRegistry, http: httpx.Client, real: DistributionRegistry, private: str
    ) -> None:
        good = get_token(http, f"repository:{private}:pull", basic_header("jlhawn", PASSWORD))
        other = lab.tokens.signer.sign(TestRegistryChecksTokens().claims(lab, "elsewhere/repo"))
        expired = lab.tokens.signer.sign(
            TestRegistryChecksTokens().claims(lab, private, exp=int(time.time()) - 120)
        )
        cases = [
            ("/v2/", None),
            (f"/v2/{private}/tags/list", None),
            (f"/v2/{private}/manifests/v1", None),
            (f"/v2/{private}/tags/list", other),
            (f"/v2/{private}/tags/list", expired),
            ("/v2/", good.json()["token"]),
        ]
        for path, token in cases:
            headers = {**ACCEPT, **({"Authorization": f"Bearer {token}"} if token else {})}
            mine, theirs = http.get(path, headers=headers), real.client.get(path, headers=headers)
            assert mine.status_code == theirs.status_code, path
            assert mine.headers.get("WWW-Authenticate") == theirs.headers.get("WWW-Authenticate"), (
                path
            )
            if theirs.status_code == 401:
                assert mine.content == theirs.content, path


def test_cli_token_auth() -> None:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "lab_registry", "serve", "--prefix", "ectest-cli",
         "--token-auth", f"jlhawn:{PASSWORD}"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[3]
        assert process.stdout.readline().strip() == (
            f"token auth: realm {url}/token, service lab-registry"
        )
        name = "ectest-cli/single"
        assert httpx.get(f"{url}/v2/{name}/tags/list").status_code == 401
        token = httpx.get(
            f"{url}/token",
            params={"service": "lab-registry", "scope": f"repository:{name}:pull"},
            headers={"Authorization": basic_header("jlhawn", PASSWORD)},
        ).json()["token"]
        r = httpx.get(f"{url}/v2/{name}/tags/list", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0
