"""Assertions the suites share, each explaining itself when it fails.

    >>> ex = client.create_image({"fromImage": "Bad::Ref"})     # doctest: +SKIP
    >>> assert_error_answer(ex)                                # doctest: +SKIP

A failed assertion is a ``fail`` verdict; its message is the verdict's reason,
so it says what was expected, what came, and on what grounds. What a check
relies on but does not judge (the engine reached the lab registry or the file
server: :func:`registry_requests`, :func:`file_server_requests`) is a
precondition: when it does not hold the verdict is ``error``, never ``fail``.

An incomplete answer (``ex.incomplete``: the connection ended it before its last
chunk or its declared length) is judged by PROGRESS-010 alone; every other check
judges the lines that arrived. A check that needs the end of a stream the cut may
have taken calls :func:`require_end`: ``error`` naming the cut, never ``fail``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from engine_conformance.catalogue import spec
from engine_conformance.engine.target import Client, Exchange
from engine_conformance.judge.verdicts import precondition


def error_answer_problems(ex: Exchange) -> list[str]:
    """What is wrong with a non-200 answer as an ``ErrorResponse`` (empty: nothing)."""
    problems = []
    ctype = ex.content_type.split(";")[0].strip()
    if ctype != "application/json":
        problems.append(f"Content-Type is {ctype or 'missing'!r}, not application/json")
    try:
        body = json.loads(ex.body)
    except ValueError:
        problems.append(f"body is not JSON: {ex.body[:120]!r}")
        return problems
    problems += [f"body: {p}" for p in spec.validate_error(body)]
    return problems


def assert_error_answer(ex: Exchange) -> None:
    """A non-200 answer must be ``application/json`` with a string ``message``."""
    problems = error_answer_problems(ex)
    assert not problems, (
        f"{ex.request_line} answered HTTP {ex.status} that is not an ErrorResponse: "
        + "; ".join(problems)
    )


def assert_stream_success(ex: Exchange) -> None:
    """A 200 stream with no framing errors and no error message."""
    assert ex.status == 200, f"{ex.request_line} answered HTTP {ex.status}: {ex.body[:300]!r}"
    assert not ex.framing_errors, f"stream framing errors: {ex.framing_errors[:3]}"
    assert ex.stream_error is None, f"stream reports an error: {ex.stream_error!r}"


def failed(ex: Exchange) -> bool:
    """Whether a client can tell the request failed (the rule of :func:`error_location`)."""
    return error_location(ex) is not None


def imported_id(ex: Exchange) -> str | None:
    """The image ID an import names in its last ``status`` message (``sha256:...``)."""
    for message in reversed(ex.messages):
        status = message.obj.get("status")
        if isinstance(status, str) and status.startswith("sha256:"):
            return status
    return None


def error_location(ex: Exchange) -> str | None:
    """Where ``ex`` reports an error a client can act on; None if it reports none that way.

    An error status is one (``"HTTP 500 before the stream"``), and so is a 200 stream with
    an error line: the document's 200 is "no error", so an error line reports the failure
    (the reference client stops at the first one). That it is the last line is reference
    behaviour, judged by PROGRESS-008 alone. A 200 stream with no error line gives None.
    """
    if ex.status >= 400:
        return f"HTTP {ex.status} before the stream"
    errors = (
        [i for i, m in enumerate(ex.messages) if m.error is not None] if ex.status == 200 else []
    )
    if errors and errors[0] == len(ex.messages) - 1:
        return f"HTTP 200, error in the last of {len(ex.messages)} stream lines"
    if errors:
        return f"HTTP 200, error at line {errors[0] + 1} of {len(ex.messages)} stream lines"
    return None


def require_end(ex: Exchange, what: str) -> None:
    """Precondition: the message of ``ex`` arrived whole, for a check that needs its end.

    Call it where the lines that arrived do not show what the check looks for at the
    end of the stream: if the message was cut (``ex.incomplete``), the lines that
    would have shown it may be the ones lost, so the verdict is ``error``, naming the
    cut, which PROGRESS-010 judges; if it arrived whole, nothing happens.
    """
    precondition(
        not ex.incomplete,
        f"{ex.request_line} answered HTTP {ex.status} in an incomplete message "
        f"({ex.incomplete}): {what} needs its end, which never arrived "
        "(PROGRESS-010 judges the incomplete message)",
    )


def assert_visible_failure(ex: Exchange, what: str) -> None:
    """``ex`` must report an error: an error status, or a 200 stream with an error line.

    The one rule for "the failure is visible" (:func:`error_location`); ``what`` says
    why the request could not succeed. A cut 200 stream whose lines show no such end
    is not judged (:func:`require_end`): its error line may be what the cut took.
    """
    if error_location(ex) is not None:
        return
    if ex.status == 200:
        require_end(ex, f"whether a client can tell the request failed ({what})")
    if ex.status != 200:
        how = f"answered HTTP {ex.status}"
    else:
        last = ex.messages[-1].obj if ex.messages else None
        how = (
            f"answered HTTP 200 and its {len(ex.messages)} stream lines carry no error "
            f"(last: {last})"
        )
    raise AssertionError(f"{what}, yet a client cannot tell the request failed: it {how}")


def assert_nothing_left(what: str, left: Iterable[str]) -> None:
    """A request that failed (``what`` says how) must have left no image: ``left`` lists
    what it left (names, image IDs), empty when nothing.

    No version of the document says what a failed request leaves; a check judges this
    only for a requirement that rests on the reference engine (or other grounds that say
    so), apart from the one that judges how the failure was reported.
    """
    found = [str(x) for x in left]
    assert not found, f"{what}, yet the engine left an image behind: {', '.join(found)}"


def assert_refused(
    ex: Exchange, status: int, what: str, left: object = None, grounds: str = ""
) -> None:
    """Refused with HTTP ``status`` and an ``ErrorResponse``, leaving nothing behind.

    ``left`` is what the refused request left behind (falsy: nothing); ``grounds``
    says where the expected status comes from. Every problem is reported at once.
    The document never says what a refused request leaves: pass ``left`` only for a
    requirement whose basis says it (the reference engine's), never under a MUST that
    rests on a quote about the status alone.
    """
    problems = []
    if ex.status != status:
        problems.append(
            f"{where(ex)}"
            + (f" ({ex.stream_error!r})" if ex.stream_error else "")
            + f", expected HTTP {status}"
            + (f" ({grounds})" if grounds else "")
        )
    elif error_problems := error_answer_problems(ex):
        problems.append(f"HTTP {status} that is not an ErrorResponse: " + "; ".join(error_problems))
    if left:
        problems.append(f"left an image behind: {left}")
    assert not problems, f"{what}: " + "; ".join(problems)


def where(ex: Exchange) -> str:
    """Where a client learns of a failure, for the report: the status, the stream, or nowhere."""
    found = error_location(ex)
    if found is not None:
        return found
    cut = f" in an incomplete message ({ex.incomplete})" if ex.incomplete else ""
    if ex.stream_error is not None:
        return f"HTTP {ex.status}, an error line that more lines follow{cut}"
    return f"HTTP {ex.status} with no error line{cut}"


def image_mismatch(image: dict[str, Any], facts: Any) -> str | None:
    """Why an inspected ``image`` is not the one ``facts`` (lab ``ImageFacts``) describes.

    None when it is. The image is told by its layers (``RootFS.Layers``, the diff IDs)
    and an ``Id`` that names it: the config digest (Docker's graphdriver store, Podman)
    or the digest of its manifest or of the index the tag names (Docker's containerd
    store identifies images so). Which of them ``Id`` should be is PULL-008's to judge.
    """
    problems = []
    ids = {facts.config_digest, facts.manifest_digest, facts.repo_digest}
    if image.get("Id") not in ids:
        problems.append(
            f"its Id {image.get('Id')} is neither the config "
            f"({facts.config_digest}) nor the manifest digest ({facts.manifest_digest})"
            + (
                f" nor the index digest ({facts.repo_digest})"
                if facts.repo_digest != facts.manifest_digest
                else ""
            )
        )
    layers = list((image.get("RootFS") or {}).get("Layers") or [])
    if layers != list(facts.diff_ids):
        problems.append(f"its layers {layers} are not {list(facts.diff_ids)}")
    return "; ".join(problems) or None


def image_ids(client: Client) -> set[str]:
    """Every image ID on the target now."""
    return {image["Id"] for image in client.list_images()}


# -- evidence that the engine did what is judged --------------------------------------------


def registry_requests(
    journal: Any,
    mark: int,
    repository: str,
    what: str,
    kinds: Sequence[str] = ("manifest",),
    wanted: Any = None,
) -> list[Any]:
    """The lab registry's journal entries since ``mark`` for ``repository`` (of ``kinds``;
    ``base`` is the ``/v2/`` check, which names no repository).

    A precondition of every check that judges how an engine handles what the registry
    served: if no such request came (or none ``wanted`` accepts), the engine never got
    what the check set up, so it cannot be judged (``error``, not ``fail``). A 500 the
    lab registry gave without a fault is its own internal error, also ``error``.
    """
    # The base endpoint (/v2/) names no repository; it counts when asked for.
    entries = [
        e
        for e in journal.since(mark)
        if e.kind in kinds and (e.repository == repository or e.kind == "base")
    ]
    broken = [e for e in entries if e.status == 500 and not e.fault]
    precondition(
        not broken,
        f"the lab registry failed internally on "
        f"{', '.join(f'{e.method} {e.path}' for e in broken[:3])}: {what} "
        "could not be judged",
    )
    matching = [e for e in entries if wanted is None or wanted(e)]
    seen = sorted({f"{e.method} {e.kind} {e.reference} -> {e.status}" for e in entries})
    precondition(
        matching,
        f"the lab registry saw no {'/'.join(kinds)} request for "
        f"{repository} that {what} needs (it saw {seen or 'none'}): the engine "
        "did not reach the registry, so it could not be judged",
    )
    return matching


def file_server_requests(
    file_server: Any, url: str, what: str, statuses: Iterable[int] = (200, 404)
) -> list[tuple[str, str, int]]:
    """The file server's answers to ``url``; a precondition that the engine asked for it."""
    path = url.removeprefix(file_server.base_url)
    asked = [r for r in file_server.requests if r[1] == path and r[2] in set(statuses)]
    precondition(
        asked,
        f"the file server was never asked for {url}: the engine did not "
        f"reach it, so {what} could not be judged",
    )
    return asked


# -- secrets in answers ---------------------------------------------------------------------


def secret_forms(value: str) -> set[str]:
    """How ``value`` can show in an answer: as is, JSON-escaped (Go's encoder writes <, >
    and & as \\u003c, \\u003e, \\u0026), escaped twice (an error quoted inside an error), or
    percent-encoded (a URL in a message)."""
    from urllib.parse import quote, quote_plus

    once = json.dumps(value)[1:-1]
    go = once.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    forms = {
        value,
        once,
        go,
        json.dumps(once)[1:-1],
        json.dumps(go)[1:-1],
        quote(value, safe=""),
        quote_plus(value),
    }
    return {f for f in forms if f}


def exposures(ex: Exchange, secrets: dict[str, str]) -> list[str]:
    """Where the answer ``ex`` shows one of ``secrets`` (a description -> the value).

    Read from the raw exchange (what the engine sent, before any report redacts it); the
    result names the secret by its description and the place, never by its value.
    """
    places: list[tuple[str, str]] = [("the status line", f"{ex.status} {ex.reason}")]
    places += [(f"header {name}", f"{name}: {value}") for name, value in ex.headers.items()]
    if ex.messages:
        places += [
            (f"stream message {i + 1} of {len(ex.messages)}", json.dumps(m.obj, ensure_ascii=False))
            for i, m in enumerate(ex.messages)
        ]
    places.append(
        (
            "the body" if ex.status == 200 else f"the HTTP {ex.status} error body",
            ex.body.decode("utf-8", "replace"),
        )
    )
    found = []
    for what, value in secrets.items():
        forms = secret_forms(value)
        for place, text in places:
            if any(form in text for form in forms):
                found.append(f"{what} in {place}")
    # A message names where it showed; the raw body repeats what a message already shows.
    shown = {f.split(" in ", 1)[0] for f in found if " in stream message " in f}
    return [f for f in found if not (f.split(" in ", 1)[0] in shown and f.endswith(" body"))]
