"""Optional HTTP Basic authentication, for the whole registry or per repository.

    >>> from lab_registry.auth import AuthTable, basic_header
    >>> table = AuthTable()
    >>> rule = table.require("alice", "s3cret", repository="ectest-1a2b3c/private")
    >>> table.allows("ectest-1a2b3c/private", basic_header("alice", "s3cret"))
    True
    >>> table.allows("ectest-1a2b3c/private", None)
    False
    >>> table.allows("ectest-1a2b3c/single", None)     # not protected
    True

Passwords are compared in constant time and never appear in ``repr`` or in
any message the registry writes.

Why the base endpoint ``/v2/`` is challenged as soon as any rule exists: Docker
and Podman learn the auth scheme from the ``/v2/`` ping and only attach
credentials to later requests if that ping answered 401 with a challenge.
The price, with Basic: Docker 20.10 without credentials then refuses to pull
anything from this registry ("no basic auth credentials"), even unprotected
repositories, while a rule is active (plain HTTP clients still can). Remove
the rule (``registry.auth.clear()``) when the test that needed it is done.
"""

from __future__ import annotations

import base64
import hmac
import threading
from dataclasses import dataclass, field


def basic_header(username: str, password: str) -> str:
    """The ``Authorization`` header value for Basic credentials."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {token}"


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``(username, password)`` from a Basic ``Authorization`` value, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


@dataclass(frozen=True, eq=False)
class AuthRule:
    """Credentials required for ``repository`` (None: every repository)."""

    username: str
    password: str = field(repr=False)
    repository: str | None = None
    realm: str = "lab"

    def applies_to(self, repository: str | None) -> bool:
        return self.repository is None or self.repository == repository

    def accepts(self, credentials: tuple[str, str] | None) -> bool:
        if credentials is None:
            return False
        user, password = credentials
        # Both compared, always, so timing does not tell which one was wrong.
        ok_user = hmac.compare_digest(user.encode(), self.username.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_password


class AuthTable:
    """The active Basic auth rules. Thread-safe; change at run time."""

    def __init__(self) -> None:
        self._rules: list[AuthRule] = []
        self._lock = threading.Lock()

    def require(
        self,
        username: str,
        password: str,
        repository: str | None = None,
        realm: str = "lab",
    ) -> AuthRule:
        """Require these credentials for ``repository`` (or for everything)."""
        rule = AuthRule(username, password, repository, realm)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: AuthRule) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[AuthRule]:
        """The rules in force, oldest first."""
        with self._lock:
            return list(self._rules)

    @property
    def active(self) -> bool:
        with self._lock:
            return bool(self._rules)

    def challenge(self, repository: str | None) -> str | None:
        """The realm to challenge with if a request for ``repository`` needs auth."""
        with self._lock:
            rules = list(self._rules)
        if repository is None:  # the /v2/ ping: challenge if anything is protected
            return rules[0].realm if rules else None
        for rule in rules:
            if rule.applies_to(repository):
                return rule.realm
        return None

    def allows(self, repository: str | None, authorization: str | None) -> bool:
        """True if the request may proceed.

        For the ``/v2/`` ping (``repository`` None) any rule's credentials do;
        for a repository, those of any rule that applies to it.
        """
        with self._lock:
            rules = list(self._rules)
        if not rules:
            return True
        credentials = parse_basic(authorization)
        if repository is None:
            return any(r.accepts(credentials) for r in rules)
        applicable = [r for r in rules if r.applies_to(repository)]
        return not applicable or any(r.accepts(credentials) for r in applicable)
