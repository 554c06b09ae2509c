"""Faults on demand: answers that misbehave in chosen ways, set and cleared at run time.

    >>> from lab_registry.faults import ErrorStatus, FaultTable, Throttle
    >>> table = FaultTable()
    >>> rule = table.add(ErrorStatus(503), repository="ectest-1a2b3c/single", times=1)
    >>> with table.add(Throttle(256 * 1024), prefix="/v2/ectest-1a2b3c/multi/blobs/"):
    ...     pass                                   # throttled only inside the block
    >>> table.clear()

The fault kinds:

- ``ErrorStatus(status)``: answer ``status`` (401, 403, 404, 429, 500, 503...)
  with an OCI error body; a 401 carries ``WWW-Authenticate: Basic realm=...``;
  ``delay=S`` answers only after S seconds (a refusal that takes a while, so that
  requests sent together are refused while all of them are under way).
- ``Throttle(bytes_per_second)``: send the body at that rate.
- ``CutShort(after_bytes)``: announce the full length, send that many bytes, close.
- ``CorruptBlob()``: serve blob bytes that do not hash to the requested digest.
- ``UnsupportedManifest(media_type)``: serve a manifest of a type no engine knows.

A rule applies to a ``repository`` (exact name), a path ``prefix`` (e.g.
``"/v2/"`` for everything), or both; with neither it applies to every
request. ``times=N`` makes it apply to N requests only (then it retires),
which is how a "fails once, then recovers" registry is made.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from lab_registry import mediatypes as mt

#: The OCI distribution error code each status is answered with by default.
DEFAULT_CODES = {
    400: "UNSUPPORTED",
    401: "UNAUTHORIZED",
    403: "DENIED",
    404: "NAME_UNKNOWN",
    405: "UNSUPPORTED",
    429: "TOOMANYREQUESTS",
    500: "UNKNOWN",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "UNAVAILABLE",
}


@dataclass(frozen=True)
class ErrorStatus:
    """Answer ``status`` with ``{"errors":[{"code":..., "message":...}]}``.

    ``code`` defaults by status (404 picks MANIFEST_UNKNOWN or BLOB_UNKNOWN by
    request kind). ``retry_after`` adds a ``Retry-After`` header (429, 503).
    ``delay`` is how many seconds the registry waits before it answers.
    """

    status: int
    code: str | None = None
    message: str | None = None
    retry_after: int | None = None
    realm: str = "lab"
    delay: float = 0.0

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"an error status is 4xx or 5xx, not {self.status}")
        if self.delay < 0:
            raise ValueError(f"delay must not be negative, not {self.delay}")

    def code_for(self, kind: str) -> str:
        if self.code:
            return self.code
        if self.status == 404 and kind == "manifest":
            return "MANIFEST_UNKNOWN"
        if self.status == 404 and kind == "blob":
            return "BLOB_UNKNOWN"
        return DEFAULT_CODES.get(self.status, "UNKNOWN")


@dataclass(frozen=True)
class Throttle:
    """Send response bodies at ``bytes_per_second``."""

    bytes_per_second: int

    def __post_init__(self) -> None:
        if self.bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")


@dataclass(frozen=True)
class CutShort:
    """Announce the whole body, send ``after_bytes`` of it, then close the connection."""

    after_bytes: int = 0


@dataclass(frozen=True)
class CorruptBlob:
    """Serve blob content that does not match its digest (same length, bytes flipped)."""


@dataclass(frozen=True)
class UnsupportedManifest:
    """Answer manifest requests with a manifest of ``media_type`` (unknown to engines)."""

    media_type: str = mt.UNSUPPORTED_MANIFEST


Fault = ErrorStatus | Throttle | CutShort | CorruptBlob | UnsupportedManifest

# Which request kinds each fault touches unless the rule says otherwise.
_DEFAULT_KINDS: dict[type, frozenset[str]] = {
    ErrorStatus: frozenset({"base", "manifest", "blob", "tags", "catalog", "other"}),
    Throttle: frozenset({"manifest", "blob"}),
    CutShort: frozenset({"manifest", "blob"}),
    CorruptBlob: frozenset({"blob"}),
    UnsupportedManifest: frozenset({"manifest"}),
}
# Faults that shape a body: a HEAD has none, so it neither triggers nor uses them up.
_BODY_FAULTS = (Throttle, CutShort, CorruptBlob)


@dataclass(eq=False)
class FaultRule:
    """One active fault and where it applies. A context manager that removes itself."""

    fault: Fault
    repository: str | None = None
    prefix: str | None = None
    kinds: frozenset[str] = frozenset()
    methods: frozenset[str] = frozenset({"GET", "HEAD"})
    times: int | None = None
    after: FaultRule | None = None
    hits: int = 0
    _table: FaultTable | None = field(default=None, repr=False)
    _used: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait_used(self, timeout: float) -> bool:
        """Block until a request has used this rule (the registry has begun answering it,
        throttled or cut as the rule says); False if none did within ``timeout`` seconds."""
        return self._used.wait(timeout)

    def matches(self, method: str, path: str, repository: str | None, kind: str) -> bool:
        if method not in self.methods or kind not in self.kinds:
            return False
        if self.after is not None and not self.after.spent:
            return False
        if method == "HEAD" and isinstance(self.fault, _BODY_FAULTS):
            return False
        if self.repository is not None and repository != self.repository:
            return False
        if self.prefix is not None and not path.startswith(self.prefix):
            return False
        return self.times is None or self.hits < self.times

    @property
    def spent(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def remove(self) -> None:
        if self._table is not None:
            self._table.remove(self)

    def __enter__(self) -> FaultRule:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


@dataclass
class Selected:
    """The faults that apply to one request (at most one of each kind)."""

    status: ErrorStatus | None = None
    throttle: Throttle | None = None
    cut_short: CutShort | None = None
    corrupt: CorruptBlob | None = None
    unsupported: UnsupportedManifest | None = None

    def __bool__(self) -> bool:
        return any(
            f is not None
            for f in (self.status, self.throttle, self.cut_short, self.corrupt, self.unsupported)
        )

    def describe(self) -> str | None:
        """A short label for the journal, e.g. ``"ErrorStatus(503)"``."""
        parts = []
        if self.status:
            parts.append(f"ErrorStatus({self.status.status})")
        for f in (self.throttle, self.cut_short, self.corrupt, self.unsupported):
            if f is not None:
                parts.append(type(f).__name__)
        return "+".join(parts) or None


_SLOTS = {
    ErrorStatus: "status",
    Throttle: "throttle",
    CutShort: "cut_short",
    CorruptBlob: "corrupt",
    UnsupportedManifest: "unsupported",
}


class FaultTable:
    """The active fault rules; the newest matching rule of each fault type wins."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(
        self,
        fault: Fault,
        *,
        repository: str | None = None,
        prefix: str | None = None,
        kinds: Iterable[str] | None = None,
        methods: Iterable[str] = ("GET", "HEAD"),
        times: int | None = None,
        after: FaultRule | None = None,
    ) -> FaultRule:
        """Activate ``fault``; returns the rule (``rule.remove()`` or ``with`` to end it).

        With ``after``, the rule applies only once that rule is spent: the switch from
        one fault to the next happens inside the registry, between two requests, so no
        client can slip a request in between (``fault(CutShort(n), times=1)`` and then
        ``fault(ErrorStatus(404), after=cut)``: the first transfer is cut, every later
        request is refused).
        """
        if type(fault) not in _SLOTS:
            raise TypeError(f"not a fault: {fault!r}")
        rule = FaultRule(
            fault=fault,
            repository=repository,
            prefix=prefix,
            kinds=frozenset(kinds) if kinds is not None else _DEFAULT_KINDS[type(fault)],
            methods=frozenset(m.upper() for m in methods),
            times=times,
            after=after,
            _table=self,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def rules_and_hits(self) -> list[tuple[FaultRule, int]]:
        """The rules in force, oldest first, each with its hits, read together under the lock."""
        with self._lock:
            return [(rule, rule.hits) for rule in self._rules]

    def select(self, method: str, path: str, repository: str | None, kind: str) -> Selected:
        """The faults for one request; counts a hit on each rule used."""
        chosen = Selected()
        with self._lock:
            used: dict[str, FaultRule] = {}
            for rule in reversed(self._rules):
                slot = _SLOTS[type(rule.fault)]
                if slot not in used and rule.matches(method, path, repository, kind):
                    used[slot] = rule
            if "status" in used:
                # An error answer has no body to shape: other rules keep their turns.
                used = {"status": used["status"]}
            for slot, rule in used.items():
                setattr(chosen, slot, rule.fault)
                rule.hits += 1
                rule._used.set()
            # Spent rules retire so that rules() shows only what is still in force.
            self._rules = [r for r in self._rules if not r.spent]
        return chosen
