"""A thread-safe record of every request the lab registry answered.

    >>> journal = Journal()
    >>> mark = journal.mark()
    >>> # ... an engine pulls ...
    >>> [e.path for e in journal.since(mark) if e.kind == "blob"]     # doctest: +SKIP
    ['/v2/ectest-1a2b3c/single/blobs/sha256:...']

An entry is appended just before the last byte of its response is sent (and
corrected if that byte fails), so a test that has just read a whole response
always finds its entry, with its final status and byte count. The ``Authorization`` value
is kept for tests that check what an engine sent, but it is left out of
``repr`` so that a failing assertion never prints a password.

Requests to the token endpoint are journalled without any secret: no
``Authorization``, secret query values replaced, and a ``TokenRequest`` in
``token`` telling the grant type, client_id, scopes and credential form.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab_registry.token import TokenRequest


@dataclass(frozen=True)
class JournalEntry:
    """One request and how its response went.

    ``kind`` is "base", "manifest", "blob", "tags", "catalog", "token" (the token
    endpoint; its ``token`` says what was asked and granted) or "other".
    ``body_size`` is the length the response announced; ``bytes_sent`` what
    actually left. ``client_hung_up`` means the client closed the connection
    before the body was complete; ``cut_short`` means a fault closed it.
    ``tls`` is the TLS version the request came over ("TLSv1.3"), None for plain HTTP.
    """

    seq: int
    time: float
    method: str
    path: str
    query: str
    repository: str | None
    kind: str
    reference: str | None
    status: int
    body_size: int
    bytes_sent: int
    client_hung_up: bool
    cut_short: bool
    accept: str | None = None
    user_agent: str | None = None
    fault: str | None = None
    authorization: str | None = field(default=None, repr=False)
    tls: str | None = None
    token: TokenRequest | None = None

    @property
    def complete(self) -> bool:
        """True if every announced body byte was sent."""
        return self.bytes_sent >= self.body_size

    @property
    def auth_scheme(self) -> str | None:
        """``"Basic"``, ``"Bearer"``... or None when no Authorization header came."""
        if not self.authorization:
            return None
        return self.authorization.split(" ", 1)[0]

    @property
    def auth_username(self) -> str | None:
        """The user name of a Basic Authorization header (never the password)."""
        if self.auth_scheme != "Basic" or self.authorization is None:
            return None
        try:
            decoded = base64.b64decode(self.authorization.split(" ", 1)[1]).decode()
        except (ValueError, IndexError, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0]


class Journal:
    """Append-only list of ``JournalEntry`` with marks and waiting.

    ``mark()`` returns a position; ``since(mark)`` the entries after it. ``clear()``
    empties the journal (marks taken before stay valid: positions never repeat).
    """

    def __init__(self) -> None:
        self._entries: list[JournalEntry] = []
        self._next_seq = 0
        self._cond = threading.Condition()

    def next_seq(self) -> int:
        """Reserve a sequence number (in request arrival order)."""
        with self._cond:
            seq = self._next_seq
            self._next_seq += 1
            return seq

    def record(self, entry: JournalEntry) -> None:
        with self._cond:
            self._entries.append(entry)
            self._cond.notify_all()

    def update(self, entry: JournalEntry) -> None:
        """Replace the entry with the same ``seq`` (a response that failed at the very end)."""
        with self._cond:
            for i, old in enumerate(self._entries):
                if old.seq == entry.seq:
                    self._entries[i] = entry
                    break
            else:
                self._entries.append(entry)
            self._cond.notify_all()

    def mark(self) -> int:
        """A position: entries of requests that arrive after it have ``seq >= mark``."""
        with self._cond:
            return self._next_seq

    def since(self, mark: int = 0) -> list[JournalEntry]:
        """Entries for requests that arrived at or after ``mark``, in arrival order."""
        with self._cond:
            return sorted((e for e in self._entries if e.seq >= mark), key=lambda e: e.seq)

    def token_requests(self, mark: int = 0) -> list[TokenRequest]:
        """What the token endpoint was asked since ``mark``, in arrival order."""
        return [e.token for e in self.since(mark) if e.token is not None]

    def entries(self) -> list[JournalEntry]:
        return self.since(0)

    def clear(self) -> None:
        with self._cond:
            self._entries.clear()

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries)

    def wait_for(
        self,
        predicate: Callable[[JournalEntry], bool],
        timeout: float = 10.0,
        mark: int = 0,
    ) -> JournalEntry | None:
        """Block until an entry since ``mark`` satisfies ``predicate``; None on timeout.

        Useful when the entry of an abandoned transfer is written a moment after
        the client gave up.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for entry in self._entries:
                    if entry.seq >= mark and predicate(entry):
                        return entry
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
