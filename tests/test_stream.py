"""Tests of the progress-stream parser, ``engine_conformance.base.stream``.

The Hypothesis tests run with a fixed seed and no example database, and
without the constants Hypothesis collects from whatever local modules are
imported (which depend on which tests ran before), so they draw the same
inputs on every run, alone or in a full session.
"""

from __future__ import annotations

import json
from bisect import bisect_left

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from engine_conformance.base.determinism import no_local_constants
from engine_conformance.base.stream import FramingError, Message, StreamParser, parse

SEED = 20_240_601
FIXED = settings(
    max_examples=200,
    database=None,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module", autouse=True)
def _fixed_constants():
    """No constants from local modules while these tests draw."""
    with no_local_constants():
        yield


# -- strategies ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4).map(
    lambda d: json.dumps(d).encode()
)
# Lines that are not one JSON object: scalars, arrays, glued objects, junk.
bad_lines = st.one_of(
    st.sampled_from([b"[1,2]", b"42", b'"text"', b"null", b'{"a":1}{"b":2}', b"{", b"Pulling fs"]),
    st.binary(max_size=20).filter(lambda b: b"\n" not in b and b.strip() != b""),
)
blank_lines = st.sampled_from([b"", b" ", b"\t", b"\r", b"  \r"])
lines = st.one_of(objects, objects, bad_lines, blank_lines)
endings = st.sampled_from([b"\n", b"\r\n"])


@st.composite
def bodies(draw) -> bytes:
    """Lines with mixed endings; sometimes a last line without a newline."""
    parts = [line + draw(endings) for line in draw(st.lists(lines, max_size=8))]
    if draw(st.booleans()):
        parts.append(draw(st.one_of(objects, bad_lines)))
    return b"".join(parts)


@st.composite
def split(draw, body: bytes) -> list[bytes]:
    """``body`` cut into chunks at arbitrary points (empty chunks included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=10)))
    bounds = [0, *cuts, len(body)]
    return [body[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def chunked(body_strategy: st.SearchStrategy[bytes] | None = None):
    """A body and the same body cut into chunks."""
    body_strategy = bodies() if body_strategy is None else body_strategy
    return body_strategy.flatmap(lambda body: st.tuples(st.just(body), split(body)))


def summary(parser: StreamParser) -> tuple[list, list]:
    return (
        [(m.obj, m.offset) for m in parser.messages],
        [(e.offset, e.detail, e.raw) for e in parser.errors],
    )


def feed_all(
    chunks: list[bytes], times: list[float] | None = None, close_at: float = -1.0
) -> StreamParser:
    parser = StreamParser()
    for i, chunk in enumerate(chunks):
        parser.feed(chunk, now=float(i) if times is None else times[i])
    parser.close(now=close_at)
    return parser


def line_start(body: bytes, offset: int) -> bool:
    return offset == 0 or body[offset - 1 : offset] == b"\n"


# -- framing -------------------------------------------------------------------------


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_lines_end_in_lf_or_crlf(ending):
    body = b'{"status":"a"}' + ending + b'{"status":"b","id":"x"}' + ending
    p = parse(body)
    assert [m.obj for m in p.messages] == [{"status": "a"}, {"status": "b", "id": "x"}]
    assert [m.offset for m in p.messages] == [0, len(b'{"status":"a"}' + ending)]
    assert p.errors == []


def test_mixed_endings():
    p = parse(b'{"a":1}\r\n{"b":2}\n{"c":3}\r\n')
    assert [m.obj for m in p.messages] == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert p.errors == []


def test_blank_lines_are_ignored():
    body = b'\n\r\n{"a":1}\r\n  \r\n\t\n\n{"b":2}\n\r\n'
    p = parse(body)
    assert [m.obj for m in p.messages] == [{"a": 1}, {"b": 2}]
    assert p.errors == []
    assert [body[m.offset :].split(b"\n")[0].rstrip(b"\r") for m in p.messages] == [
        b'{"a":1}',
        b'{"b":2}',
    ]


def test_trailing_line_without_newline_is_parsed_on_close():
    p = StreamParser()
    assert [m.obj for m in p.feed(b'{"a":1}\n{"b":2}', now=1.0)] == [{"a": 1}]
    assert [m.obj for m in p.close(now=2.0)] == [{"b": 2}]
    assert [m.obj for m in p.messages] == [{"a": 1}, {"b": 2}]
    assert p.messages[1].offset == 8
    assert p.bytes_seen == 15


def test_trailing_bad_line_without_newline_is_a_framing_error_on_close():
    p = StreamParser()
    p.feed(b'{"a":1}\r\nnot json', now=0.0)
    assert p.errors == []
    p.close(now=0.0)
    assert [(e.offset, e.raw) for e in p.errors] == [(9, b"not json")]


def test_close_twice_adds_nothing():
    p = StreamParser()
    p.feed(b'{"a":1}', now=0.0)
    assert len(p.close(now=0.0)) == 1
    assert p.close(now=0.0) == []
    assert len(p.messages) == 1


# -- a body cut short (an incomplete HTTP message) -------------------------------------------


def test_a_cut_inside_a_line_is_kept_aside_not_a_framing_error():
    p = StreamParser()
    p.feed(b'{"a":1}\r\n{"status":"Downloading","progressDe', now=0.0)
    assert p.close(now=1.0, cut=True) == []
    assert [m.obj for m in p.messages] == [{"a": 1}]
    assert p.errors == []
    assert p.cut_line == b'{"status":"Downloading","progressDe'
    assert p.bytes_seen == len(b'{"a":1}\r\n{"status":"Downloading","progressDe')


@pytest.mark.parametrize("tail", [b'{"b":2}', b'{"b":2}\r'], ids=["bare", "CR"])
def test_a_cut_after_a_whole_object_keeps_it(tail):
    # Podman ends a single-line answer without a newline; a cut right after it lost nothing.
    p = StreamParser()
    p.feed(b'{"a":1}\n' + tail, now=0.0)
    assert [m.obj for m in p.close(now=1.0, cut=True)] == [{"b": 2}]
    assert p.cut_line == b""
    assert p.errors == []


@pytest.mark.parametrize("tail", [b"", b"  ", b"\r"], ids=["nothing", "blanks", "CR"])
def test_a_cut_between_lines_leaves_nothing_aside(tail):
    p = StreamParser()
    p.feed(b'{"a":1}\r\n' + tail, now=0.0)
    assert p.close(now=1.0, cut=True) == []
    assert (p.cut_line, p.errors, len(p.messages)) == (b"", [], 1)


def test_a_whole_body_still_reports_its_bad_last_line():
    # Without ``cut`` the engine sent the line so: a framing error, as before.
    p = StreamParser()
    p.feed(b'{"a":1}\r\n{"status":"Down', now=0.0)
    p.close(now=1.0)
    assert [(e.offset, e.raw) for e in p.errors] == [(9, b'{"status":"Down')]
    assert p.cut_line == b""


@seed(SEED)
@FIXED
@given(chunked())
def test_a_cut_changes_nothing_but_how_a_broken_tail_counts(body_and_chunks):
    body, chunks = body_and_chunks
    whole = parse(body)
    cut = StreamParser()
    for chunk in chunks:
        cut.feed(chunk, now=0.0)
    cut.close(now=0.0, cut=True)
    # The same messages; the one framing error a whole body's broken tail gives is, in a
    # cut body, the line the cut shortened.
    assert summary(cut)[0] == summary(whole)[0]
    tail = [
        (e.offset, e.detail, e.raw)
        for e in whole.errors
        if e.offset == len(body) - len(body.rsplit(b"\n", 1)[-1]) and not body.endswith(b"\n")
    ]
    assert summary(cut)[1] + tail == summary(whole)[1]
    assert bool(cut.cut_line) == bool(tail)
    if cut.cut_line:
        assert body.endswith(cut.cut_line)
    assert cut.bytes_seen == len(body)


@pytest.mark.parametrize(
    "line, detail",
    [
        (b"[1,2]", "not an object: list"),
        (b"42", "not an object: int"),
        (b'"status"', "not an object: str"),
        (b"null", "not an object: NoneType"),
        (b'{"a":1}{"b":2}', "not JSON"),
        (b'{"a":', "not JSON"),
        (b"\xff\xfe{", "not JSON"),
    ],
)
def test_a_line_that_is_not_one_object_is_a_framing_error(line, detail):
    body = b'{"ok":1}\r\n' + line + b'\r\n{"ok":2}\r\n'
    p = parse(body)
    assert [m.obj for m in p.messages] == [{"ok": 1}, {"ok": 2}]
    assert len(p.errors) == 1
    error = p.errors[0]
    assert isinstance(error, FramingError)
    assert error.offset == 10
    assert error.detail.startswith(detail)
    assert error.raw == line


def test_framing_error_raw_is_capped():
    line = b"x" * 1000
    p = parse(line + b"\n")
    assert p.errors[0].raw == line[:200]


def test_parse_takes_an_iterable_of_chunks():
    p = parse([b'{"a"', b":1}\r", b'\n{"b":2}'])
    assert [m.obj for m in p.messages] == [{"a": 1}, {"b": 2}]


def test_deeply_nested_json_does_not_raise():
    p = parse(b"[" * 100_000 + b'\n{"a":1}\n')
    assert [m.obj for m in p.messages] == [{"a": 1}]
    assert [e.offset for e in p.errors] == [0]


# -- properties ----------------------------------------------------------------------


@seed(SEED)
@FIXED
@given(chunked())
def test_any_chunking_gives_the_same_result_as_one_chunk(body_and_chunks):
    body, chunks = body_and_chunks
    assert b"".join(chunks) == body
    whole = parse(body)
    pieces = feed_all(chunks)
    assert summary(pieces) == summary(whole)
    assert pieces.bytes_seen == len(body)


@seed(SEED)
@FIXED
@given(chunked(st.binary(max_size=300)))
def test_arbitrary_bytes_never_raise_and_errors_point_at_their_line(body_and_chunks):
    body, chunks = body_and_chunks
    p = feed_all(chunks)  # must not raise
    assert p.bytes_seen == len(body)
    for error in p.errors:
        assert 0 <= error.offset < len(body)
        assert line_start(body, error.offset), f"offset {error.offset} is mid-line"
        line = body[error.offset :].split(b"\n", 1)[0]
        assert body[error.offset : error.offset + len(error.raw)] == error.raw
        assert line.removesuffix(b"\r").startswith(error.raw)
        assert line.strip()
    for message in p.messages:
        assert line_start(body, message.offset)
        assert isinstance(message.obj, dict)
    # every line that is not blank is accounted for exactly once
    offsets = sorted([e.offset for e in p.errors] + [m.offset for m in p.messages])
    expected, start = [], 0
    for line in body.split(b"\n"):
        if line.removesuffix(b"\r").strip():
            expected.append(start)
        start += len(line) + 1
    assert offsets == expected


@seed(SEED)
@FIXED
@given(chunked(bodies()))
def test_errors_point_at_the_start_of_the_bad_line(body_and_chunks):
    body, chunks = body_and_chunks
    p = feed_all(chunks)
    for error in p.errors:
        assert line_start(body, error.offset)
        assert body[error.offset : error.offset + len(error.raw)] == error.raw
    for message in p.messages:
        line = body[message.offset :].split(b"\n", 1)[0].removesuffix(b"\r")
        assert json.loads(line) == message.obj


@seed(SEED)
@FIXED
@given(chunked())
def test_arrival_is_the_time_of_the_chunk_that_completes_the_line(body_and_chunks):
    body, chunks = body_and_chunks
    times = [10.0 + i for i in range(len(chunks))]
    p = feed_all(chunks, times, close_at=99.0)
    ends = []  # body offset one past each chunk
    total = 0
    for chunk in chunks:
        total += len(chunk)
        ends.append(total)
    for message in p.messages:
        newline = body.find(b"\n", message.offset)
        if newline < 0:
            assert message.arrived == 99.0  # completed by close()
        else:
            chunk_index = bisect_left(ends, newline + 1)
            assert message.arrived == times[chunk_index]


def test_arrival_times_are_those_given_to_feed():
    p = StreamParser()
    first = p.feed(b'{"a":1}\r\n{"b"', now=1.5)
    second = p.feed(b':2}\r\n{"c":3}', now=2.5)
    third = p.close(now=3.5)
    assert [(m.obj, m.arrived) for m in first + second + third] == [
        ({"a": 1}, 1.5),
        ({"b": 2}, 2.5),
        ({"c": 3}, 3.5),
    ]


def test_feed_without_a_time_uses_the_monotonic_clock(monkeypatch):
    import engine_conformance.base.stream as stream

    monkeypatch.setattr(stream.time, "monotonic", lambda: 42.0)
    p = StreamParser()
    p.feed(b'{"a":1}\n')
    p.feed(b'{"b":2}')
    p.close()
    assert [m.arrived for m in p.messages] == [42.0, 42.0]


# -- Message.error -------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj, expected",
    [
        ({"errorDetail": {"message": "detail"}, "error": "flat"}, "detail"),
        ({"errorDetail": {"message": "detail"}}, "detail"),
        ({"error": "flat"}, "flat"),
        ({"errorDetail": {"code": 1}, "error": "flat"}, "flat"),
        ({"errorDetail": {"message": 5}, "error": "flat"}, "flat"),
        ({"errorDetail": {"code": 1}}, "{'code': 1}"),
        ({"errorDetail": "text"}, "'text'"),
        ({"status": "Downloading", "progressDetail": {"current": 1}}, None),
        ({"error": 3}, None),
    ],
)
def test_message_error_prefers_error_detail_message(obj, expected):
    assert Message(obj, 0, 0.0).error == expected
