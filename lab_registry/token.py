"""Token authentication as distribution specifies it: a Bearer challenge, a token endpoint, JWTs.

    >>> from lab_registry.token import TokenAuth, parse_scope
    >>> tokens = TokenAuth(service="lab-registry")
    >>> rule = tokens.require("ectest-1a2b3c/private", users={"alice": "s3cret"})
    >>> grant = tokens.grant_password("alice", "s3cret", ["repository:ectest-1a2b3c/private:pull"])
    >>> tokens.verify(grant.access_token).allows("ectest-1a2b3c/private", "pull")
    True
    >>> parse_scope("repository:localhost:5000/a/b:pull,push")
    ('repository', 'localhost:5000/a/b', ('pull', 'push'))

The flow (docs/spec/auth/token.md, oauth.md and jwt.md of distribution): a
protected request is answered 401 with ``WWW-Authenticate: Bearer
realm="<token endpoint>",service="<service>",scope="repository:NAME:pull"``;
the client asks the realm for a token (``GET`` with or without Basic
credentials, ``offline_token=true`` adding a refresh token; or ``POST`` with
``grant_type=password`` or ``grant_type=refresh_token``, the form Docker's
``identitytoken`` takes) and repeats the request with ``Authorization: Bearer``.

Tokens are JWTs signed with a key made for each ``TokenAuth`` (one per lab
registry, so one per run) and carry distribution's claims: ``iss``, ``sub``,
``aud`` (the service), ``exp``, ``nbf``, ``iat``, ``jti`` and ``access``, the
intersection of what was asked and what the subject may do. The header names
the key both ways distribution 2.8 accepts (registry/auth/token/token.go,
``VerifySigningKey``): ``x5c``, the signing key's self-signed certificate,
which must be in the registry's ``rootcertbundle``; and ``kid``, the libtrust
key ID of that certificate's public key, which distribution looks up among the
keys of the same bundle. ``write_certificate`` writes the bundle out.

Passwords, refresh tokens and access tokens never appear in ``repr``, in a
``TokenRequest`` or in any message the endpoint writes.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab_registry.auth import parse_basic

#: Where the lab serves its token endpoint (the challenge's ``realm`` is the registry URL + this).
TOKEN_PATH = "/token"
DEFAULT_SERVICE = "lab-registry"
DEFAULT_ISSUER = "lab-registry-token-issuer"
#: Distribution's clock-skew allowance for ``exp`` and ``nbf`` (token.go ``Leeway``).
LEEWAY = 60
#: Lab-issued tokens live five minutes; the spec asks for at least 60 seconds.
DEFAULT_EXPIRES_IN = 300
#: The actions the lab grants: it is a read-only registry.
READ_ACTIONS = ("pull",)


class InvalidToken(Exception):
    """A Bearer token the registry must refuse (``error="invalid_token"``)."""


def parse_scope(scope: str) -> tuple[str, str, tuple[str, ...]] | None:
    """``(type, name, actions)`` from one scope entry, or None if malformed.

    The grammar (docs/spec/auth/scope.md) is ``type[(class)]:name:actions``,
    where the name may itself hold a ``host:port``, so the actions follow the
    last colon and the type precedes the first. The class is dropped: the lab
    has none.
    """
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    kind = kind.split("(", 1)[0]
    return kind, name, tuple(a for a in actions.split(",") if a)


def libtrust_key_id(public_key: Any) -> str:
    """The libtrust key ID distribution 2.8 uses for ``kid``: ``ABCD:EFGH:...`` (12 groups).

    SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 without
    padding, in groups of four joined by colons (libtrust ``keyIDFromCryptoKey``).
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def rfc3339(when: float) -> str:
    """``2009-11-10T23:00:00Z``: the ``issued_at`` form of the spec's example."""
    moment = datetime.datetime.fromtimestamp(int(when), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenSigner:
    """An ES256 key and its self-signed certificate, made fresh for each instance."""

    algorithm = "ES256"

    def __init__(self, common_name: str = DEFAULT_ISSUER) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            # Backdated an hour so a registry whose clock lags a little still accepts it.
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )  # fmt: skip
        self.public_key = self._key.public_key()
        #: The ``kid`` distribution 2.8 looks up among its rootcertbundle's keys.
        self.key_id = libtrust_key_id(self.public_key)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write_certificate(self, path: str | Path) -> Path:
        """Write the certificate (PEM) for a registry's ``auth.token.rootcertbundle``."""
        target = Path(path)
        target.write_bytes(self.certificate_pem)
        return target

    def sign(self, claims: Mapping[str, Any], header_keys: Iterable[str] = ("x5c", "kid")) -> str:
        """A compact JWS of ``claims`` whose header names the key as ``header_keys`` say."""
        headers: dict[str, Any] = {"typ": "JWT"}
        keys = set(header_keys)
        if "kid" in keys:
            headers["kid"] = self.key_id
        if "x5c" in keys:
            der = self.certificate.public_bytes(serialization.Encoding.DER)
            headers["x5c"] = [base64.b64encode(der).decode()]
        return jwt.encode(dict(claims), self._key, algorithm=self.algorithm, headers=headers)

    def __repr__(self) -> str:
        return f"<TokenSigner {self.algorithm} kid={self.key_id}>"


@dataclass(frozen=True)
class Claims:
    """A verified token's claims."""

    subject: str
    audience: str
    issuer: str
    expires: int
    jwt_id: str
    access: tuple[tuple[str, str, tuple[str, ...]], ...]

    def allows(self, repository: str, action: str) -> bool:
        return any(
            kind == "repository" and name == repository and action in actions
            for kind, name, actions in self.access
        )


@dataclass(frozen=True, eq=False)
class TokenRule:
    """Who may pull ``repository`` (None: every repository) with a token.

    ``users`` authenticate with a password (Basic at the endpoint, or
    ``grant_type=password``); ``refresh_tokens`` maps tokens accepted by
    ``grant_type=refresh_token`` to the user they stand for. ``public``: anyone,
    even anonymous, gets a pull token (a registry still demands the token).
    """

    repository: str | None
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    refresh_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
    public: bool = False

    def applies_to(self, repository: str | None) -> bool:
        return self.repository is None or self.repository == repository

    def grants(self, subject: str | None) -> bool:
        if self.public:
            return True
        if subject is None:
            return False
        return subject in self.users or subject in self.refresh_tokens.values()


@dataclass(frozen=True)
class TokenRequest:
    """What the token endpoint was asked and answered; never a secret.

    ``credential`` is the form the client authenticated with: ``"basic"``
    (GET with Basic), ``"password"`` and ``"refresh_token"`` (POST grants),
    ``"anonymous"`` (no credentials), or None for an unusable request.
    ``grant_type`` is None for GET (the spec's GET has none). ``scopes`` are
    as asked; ``granted`` the scope entries the token carries. ``account`` is
    the user name a client may add to a GET (Docker and Podman do).
    """

    method: str
    grant_type: str | None
    credential: str | None
    client_id: str | None
    service: str | None
    scopes: tuple[str, ...]
    offline: bool
    username: str | None = None
    account: str | None = None
    granted: tuple[str, ...] = ()
    refresh_token_issued: bool = False
    status: int = 200
    error: str | None = None


@dataclass(frozen=True)
class TokenGrant:
    """A successful token response (the secrets stay out of ``repr``)."""

    access_token: str = field(repr=False)
    expires_in: int
    issued_at: str
    scope: str
    refresh_token: str | None = field(default=None, repr=False)

    def body(self, oauth: bool) -> dict[str, Any]:
        """The response document: the GET form also carries ``token`` (token.md)."""
        doc: dict[str, Any] = {"access_token": self.access_token}
        if not oauth:
            doc["token"] = self.access_token
        doc.update(expires_in=self.expires_in, issued_at=self.issued_at, scope=self.scope)
        if self.refresh_token is not None:
            doc["refresh_token"] = self.refresh_token
        return doc


class TokenError(Exception):
    """A refused token request: ``status`` and an OAuth ``error`` code, no secret in it."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class TokenAuth:
    """Token rules, the issuer and the refresh tokens it handed out. Thread-safe.

    ``realm`` overrides where challenges send clients (default: the lab's own
    ``/token``); ``expires_in`` is the lifetime of issued tokens.
    """

    def __init__(
        self,
        service: str = DEFAULT_SERVICE,
        issuer: str = DEFAULT_ISSUER,
        expires_in: int = DEFAULT_EXPIRES_IN,
    ) -> None:
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.signer = TokenSigner(issuer)
        self.realm: str | None = None
        #: How issued tokens name their key (see the module's docstring).
        self.header_keys: tuple[str, ...] = ("x5c", "kid")
        self._rules: list[TokenRule] = []
        self._issued_refresh: dict[str, str] = {}
        self._lock = threading.Lock()

    # --- rules -------------------------------------------------------------------------

    def require(
        self,
        repository: str | None = None,
        users: Mapping[str, str] | None = None,
        refresh_tokens: Mapping[str, str] | Iterable[str] | None = None,
        public: bool = False,
    ) -> TokenRule:
        """Demand a Bearer token for ``repository`` (None: every repository).

        ``refresh_tokens`` given as a plain list stand for the rule's first user
        (or ``"token-user"`` if it has none).
        """
        users = dict(users or {})
        if refresh_tokens is None:
            tokens: dict[str, str] = {}
        elif isinstance(refresh_tokens, Mapping):
            tokens = dict(refresh_tokens)
        else:
            owner = next(iter(users), "token-user")
            tokens = {t: owner for t in refresh_tokens}
        rule = TokenRule(repository, users, tokens, public)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: TokenRule) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        """Drop the rules and the refresh tokens handed out, undo ``realm`` and
        ``header_keys`` changes (the key stays)."""
        with self._lock:
            self._rules.clear()
            self._issued_refresh.clear()
            self.realm = None
            self.header_keys = ("x5c", "kid")

    def rules(self) -> list[TokenRule]:
        """The rules in force, oldest first."""
        with self._lock:
            return list(self._rules)

    def issued_refresh_tokens(self) -> dict[str, str]:
        """The refresh tokens the endpoint handed out (token: subject), still accepted."""
        with self._lock:
            return dict(self._issued_refresh)

    def accept_refresh_token(self, token: str, subject: str) -> None:
        """Accept ``token`` for ``subject`` as if the endpoint had handed it out."""
        with self._lock:
            self._issued_refresh[token] = subject

    @property
    def active(self) -> bool:
        with self._lock:
            return bool(self._rules)

    def protects(self, repository: str | None) -> bool:
        """True if a request for ``repository`` needs a token (the ping: if any rule exists)."""
        with self._lock:
            rules = list(self._rules)
        if repository is None:
            return bool(rules)
        return any(r.applies_to(repository) for r in rules)

    # --- the registry side -------------------------------------------------------------

    def challenge(
        self, realm: str, repository: str | None, actions: str = "pull", error: str | None = None
    ) -> str:
        """The ``WWW-Authenticate`` value, in distribution's order and quoting."""
        value = f'Bearer realm="{self.realm or realm}",service="{self.service}"'
        if repository is not None:
            value += f',scope="repository:{repository}:{actions}"'
        if error is not None:
            value += f',error="{error}"'
        return value

    def verify(self, token: str) -> Claims:
        """The claims of a token this issuer signed, for this service, not expired.

        Raises ``InvalidToken`` (with a reason that holds no part of the token).
        """
        try:
            claims = jwt.decode(
                token,
                self.signer.public_key,
                algorithms=[self.signer.algorithm],
                audience=self.service,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        access: list[tuple[str, str, tuple[str, ...]]] = []
        for entry in claims.get("access") or []:
            if isinstance(entry, dict):
                actions = tuple(str(a) for a in entry.get("actions") or [])
                access.append((str(entry.get("type", "")), str(entry.get("name", "")), actions))
        return Claims(
            subject=str(claims.get("sub", "")),
            audience=self.service,
            issuer=str(claims["iss"]),
            expires=int(claims["exp"]),
            jwt_id=str(claims.get("jti", "")),
            access=tuple(access),
        )

    def authorize(
        self, authorization: str | None, repository: str | None, action: str
    ) -> str | None:
        """None if the request may proceed, else the challenge's ``error`` ("" for none).

        No Bearer token: ``""`` (a plain challenge). A token that fails
        verification: ``"invalid_token"``; a valid one without the action on
        the repository: ``"insufficient_scope"``. The ping needs any valid token.
        """
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ""
        try:
            claims = self.verify(token.strip())
        except InvalidToken:
            return "invalid_token"
        if repository is None or claims.allows(repository, action):
            return None
        return "insufficient_scope"

    # --- the token endpoint ------------------------------------------------------------

    def handle(
        self, method: str, query: str, body: bytes, authorization: str | None
    ) -> tuple[TokenRequest, TokenGrant | TokenError]:
        """Answer one request to the token endpoint: the journal's record and the outcome."""
        if method == "POST":
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            return self._handle_post(form)
        params = parse_qs(query, keep_blank_values=True)
        scopes = tuple(s for value in params.get("scope", []) for s in value.split() if s)
        offline = _first(params, "offline_token") == "true"
        credentials = parse_basic(authorization)
        record = TokenRequest(
            method=method,
            grant_type=None,
            credential="basic" if credentials else "anonymous",
            client_id=_first(params, "client_id"),
            service=_first(params, "service"),
            scopes=scopes,
            offline=offline,
            username=credentials[0] if credentials else None,
            account=_first(params, "account"),
        )
        if method not in ("GET", "HEAD"):
            return _refused(record, TokenError(405, "invalid_request", "use GET or POST"))
        if authorization and credentials is None:
            error = TokenError(401, "invalid_client", "only Basic credentials are understood")
            return _refused(record, error)
        try:
            self._check_service(record.service)
            subject = self._authenticate_password(*credentials) if credentials else None
            grant = self._grant(subject, scopes, offline=offline and subject is not None)
        except TokenError as exc:
            return _refused(record, exc)
        return _granted(record, grant), grant

    def _handle_post(
        self, form: dict[str, list[str]]
    ) -> tuple[TokenRequest, TokenGrant | TokenError]:
        grant_type = _first(form, "grant_type")
        scopes = tuple(s for value in form.get("scope", []) for s in value.split() if s)
        credential = grant_type if grant_type in ("password", "refresh_token") else None
        record = TokenRequest(
            method="POST",
            grant_type=grant_type,
            credential=credential,
            client_id=_first(form, "client_id"),
            service=_first(form, "service"),
            scopes=scopes,
            offline=_first(form, "access_type") == "offline",
            username=_first(form, "username") if grant_type == "password" else None,
        )
        try:
            self._check_service(record.service)
            if grant_type == "password":
                subject = self._authenticate_password(
                    _first(form, "username") or "", _first(form, "password") or ""
                )
                grant = self._grant(subject, scopes, offline=record.offline)
            elif grant_type == "refresh_token":
                refresh = _first(form, "refresh_token") or ""
                subject = self._authenticate_refresh(refresh)
                record = _with(record, username=subject)
                # oauth.md: a refresh grant hands back the same refresh token.
                grant = self._grant(subject, scopes, offline=False, refresh_token=refresh)
            else:
                raise TokenError(400, "unsupported_grant_type", "unsupported grant_type")
        except TokenError as exc:
            return _refused(record, exc)
        return _granted(record, grant), grant

    def grant_password(
        self, username: str, password: str, scopes: Iterable[str] = (), offline: bool = False
    ) -> TokenGrant:
        """A grant as the endpoint gives it for these credentials (TokenError if refused)."""
        return self._grant(self._authenticate_password(username, password), scopes, offline)

    def _check_service(self, service: str | None) -> None:
        # oauth.md: "Refresh tokens will only be good for getting tokens for this service."
        if service is not None and service != self.service:
            raise TokenError(400, "invalid_request", "unknown service")

    def _authenticate_password(self, username: str, password: str) -> str:
        with self._lock:
            rules = list(self._rules)
        ok = False
        for rule in rules:
            known = rule.users.get(username)
            if known is not None and hmac.compare_digest(known.encode(), password.encode()):
                ok = True
        if not ok:
            raise TokenError(401, "invalid_grant", "incorrect username or password")
        return username

    def _authenticate_refresh(self, token: str) -> str:
        with self._lock:
            tables = [r.refresh_tokens for r in self._rules] + [self._issued_refresh]
        for table in tables:
            for known, subject in table.items():
                if hmac.compare_digest(known.encode(), token.encode()):
                    return subject
        raise TokenError(401, "invalid_grant", "unknown or revoked refresh token")

    def _grant(
        self,
        subject: str | None,
        scopes: Iterable[str],
        offline: bool,
        refresh_token: str | None = None,
    ) -> TokenGrant:
        access = self._access(subject, scopes)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [{"type": t, "name": n, "actions": list(a)} for t, n, a in access],
        }
        token = self.signer.sign(claims, self.header_keys)
        if offline and subject is not None:
            refresh_token = secrets.token_urlsafe(32)
            with self._lock:
                self._issued_refresh[refresh_token] = subject
        scope = " ".join(f"{t}:{n}:{','.join(a)}" for t, n, a in access)
        return TokenGrant(token, self.expires_in, rfc3339(now), scope, refresh_token)

    def _access(
        self, subject: str | None, scopes: Iterable[str]
    ) -> list[tuple[str, str, tuple[str, ...]]]:
        """The intersection of what is asked and what ``subject`` may do (token.md)."""
        with self._lock:
            rules = list(self._rules)
        granted: list[tuple[str, str, tuple[str, ...]]] = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None or parsed[0] != "repository":
                continue  # unknown resource types get nothing, which is not an error
            kind, name, actions = parsed
            applicable = [r for r in rules if r.applies_to(name)]
            # A repository no rule protects is public, as an unprotected one is with Basic.
            if applicable and not any(r.grants(subject) for r in applicable):
                continue
            allowed = tuple(a for a in actions if a in READ_ACTIONS)
            if allowed:
                granted.append((kind, name, allowed))
        return granted

    def __repr__(self) -> str:
        with self._lock:
            n = len(self._rules)
        return f"<TokenAuth service={self.service!r} rules={n} {self.signer!r}>"


def error_document(error: TokenError, oauth: bool) -> bytes:
    """The body of a refusal: RFC 6749's form for POST, distribution's errors for GET."""
    if oauth:
        doc: dict[str, Any] = {"error": error.error, "error_description": error.description}
    else:
        code = "UNAUTHORIZED" if error.status == 401 else "DENIED"
        doc = {"errors": [{"code": code, "message": error.description}]}
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def redacted_query(query: str) -> str:
    """The query with secret-bearing parameters' values replaced (for the journal)."""
    secret = {"password", "refresh_token", "access_token", "token", "client_secret"}
    parts = []
    for part in query.split("&") if query else []:
        name, sep, _ = part.partition("=")
        parts.append(f"{name}{sep}REDACTED" if name in secret and sep else part)
    return "&".join(parts)


def _first(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _with(record: TokenRequest, **changes: Any) -> TokenRequest:
    return TokenRequest(**{**record.__dict__, **changes})


def _granted(record: TokenRequest, grant: TokenGrant) -> TokenRequest:
    return _with(
        record,
        granted=tuple(grant.scope.split()) if grant.scope else (),
        refresh_token_issued=(
            grant.refresh_token is not None and record.grant_type != "refresh_token"
        ),
    )


def _refused(record: TokenRequest, error: TokenError) -> tuple[TokenRequest, TokenError]:
    return _with(record, status=error.status, error=error.error), error
