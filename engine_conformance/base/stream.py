"""The one parser for the ``POST /images/create`` progress stream.

The 200 body is a sequence of JSON objects, one per line. Docker ends lines
with ``\\r\\n``, Podman with ``\\n`` (or not at all for a single-message
answer). The parser is incremental so that arrival times are honest, and it
never raises on bad input: a line that is not a JSON object becomes a
:class:`FramingError` carrying its byte offset.

    >>> p = StreamParser()
    >>> [m.obj for m in p.feed(b'{"status":"a"}\\r\\n{"sta', now=0.0)]
    [{'status': 'a'}]
    >>> [m.obj for m in p.feed(b'tus":"b"}', now=0.1) + p.close(now=0.2)]
    [{'status': 'b'}]

A body that ended before its end (an incomplete HTTP message) is closed with
``cut=True``: its unterminated last line counts if it is one whole object, and is
otherwise kept in ``cut_line``, not reported as a framing error, since the cut
and not the engine's framing is what shortened it.

    >>> p = StreamParser()
    >>> _ = p.feed(b'{"status":"a"}\\r\\n{"status":"Down', now=0.0)
    >>> p.close(now=0.1, cut=True), p.errors, p.cut_line
    ([], [], b'{"status":"Down')
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """One JSON object from the stream and where/when it arrived."""

    obj: dict[str, Any]
    offset: int
    arrived: float

    @property
    def error(self) -> str | None:
        """The error text of an error message (``errorDetail.message`` first), else None."""
        detail = self.obj.get("errorDetail")
        message = detail.get("message") if isinstance(detail, dict) else None
        if isinstance(message, str):
            return message
        error = self.obj.get("error")
        if isinstance(error, str):
            return error
        if detail is not None:
            return repr(detail)
        return None


@dataclass(frozen=True)
class FramingError:
    """A line that is not one JSON object; ``offset`` is its first byte in the body."""

    offset: int
    detail: str
    raw: bytes


@dataclass
class StreamParser:
    """Incremental newline-delimited JSON parser; see the module docstring."""

    messages: list[Message] = field(default_factory=list)
    errors: list[FramingError] = field(default_factory=list)
    cut_line: bytes = b""  # the partial last line of a body closed with ``cut=True``
    _buffer: bytearray = field(default_factory=bytearray)
    _offset: int = 0  # body offset of _buffer[0]
    _first_arrival: float | None = None

    def feed(self, data: bytes, now: float | None = None) -> list[Message]:
        """Add bytes; return the messages completed by them."""
        now = time.monotonic() if now is None else now
        if data and self._first_arrival is None:
            self._first_arrival = now
        self._buffer += data
        out: list[Message] = []
        start = 0
        while True:
            nl = self._buffer.find(b"\n", start)
            if nl < 0:
                break
            self._take(bytes(self._buffer[start:nl]), self._offset + start, now, out)
            start = nl + 1
        del self._buffer[:start]
        self._offset += start
        return out

    def close(self, now: float | None = None, *, cut: bool = False) -> list[Message]:
        """End of body: a trailing line without a newline still counts.

        With ``cut`` (the message ended before its end), a trailing line that is not
        one JSON object is kept in ``cut_line`` instead of becoming a framing error.
        """
        now = time.monotonic() if now is None else now
        out: list[Message] = []
        if self._buffer:
            if cut and not _one_object(bytes(self._buffer)):
                self.cut_line = bytes(self._buffer)
                self._offset += len(self._buffer)
                self._buffer.clear()
                return out
            self._take(bytes(self._buffer), self._offset, now, out)
            self._offset += len(self._buffer)
            self._buffer.clear()
        return out

    @property
    def bytes_seen(self) -> int:
        return self._offset + len(self._buffer)

    def _take(self, line: bytes, offset: int, now: float, out: list[Message]) -> None:
        text = line[:-1] if line.endswith(b"\r") else line
        if not text.strip():
            return
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            # A single line may hold several objects glued together; that is
            # still a framing error, reported rather than guessed at.
            self.errors.append(FramingError(offset, f"not JSON: {exc}", text[:200]))
            return
        if not isinstance(obj, dict):
            detail = f"not an object: {type(obj).__name__}"
            self.errors.append(FramingError(offset, detail, text[:200]))
            return
        message = Message(obj, offset, now)
        self.messages.append(message)
        out.append(message)


def _one_object(line: bytes) -> bool:
    """Whether ``line`` (blank ones included, which count as nothing) parses as the
    parser would take it: one JSON object, or nothing."""
    text = line[:-1] if line.endswith(b"\r") else line
    if not text.strip():
        return True
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


def parse(body: bytes | Iterable[bytes]) -> StreamParser:
    """Parse a whole body (or an iterable of chunks) and return the finished parser."""
    parser = StreamParser()
    chunks = [body] if isinstance(body, bytes | bytearray) else body
    for chunk in chunks:
        parser.feed(bytes(chunk))
    parser.close()
    return parser
