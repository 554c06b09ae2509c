"""Property-based checks of POST /images/create, driven by the OpenAPI fragment.

schemathesis generates cases for the one operation under test from
``spec/images-create.yaml`` (the harness's observation paths excluded), with a
fixed seed and a fixed number of examples. Each case is made safe (see
:func:`make_safe`), sent once through the project's client, and every SCHEMA
requirement is a property judged over all the answers. The cases are sent once
per run and shared by the four checks, so a check's verdict does not depend on
which checks run or in what order.

Safety: a generated request must never make the engine reach the network or
touch an image it does not own, so before a case is sent

* ``fromSrc`` becomes ``-`` (the body is then a small archive) or stays absent:
  never a URL;
* ``fromImage`` becomes ``127.0.0.1:9/gen/<generated text, sanitised>``: a
  closed loopback port, so a pull fails at connect, on the engine's own host.
  It is dropped when ``fromSrc`` is also generated: the document has each
  "only used" for its own operation, the engines settle the contradiction
  differently, and the import is the cheaper and more telling case (a pull of
  a closed port costs Podman about 3 s of retries);
* ``repo`` is always a fresh name under the run prefix;
* ``X-Registry-Auth`` is kept when it is a legal header value (it can only
  ever go to 127.0.0.1:9), else dropped;
* ``tag``, ``message``, ``changes`` and ``platform`` are sent as generated;
  no other parameter is sent.

Every image a 200 import names is removed afterwards.

Determinism: Hypothesis draws with ``@seed(SEED)`` and no example database,
and only generates (no shrinking: every case is sent exactly once, outside
Hypothesis, so runtime is bounded). Hypothesis also mixes in string constants
it finds in whatever local modules happen to be imported; that set changes
with test order and with unrelated code, so it is switched off while the cases
are drawn (``engine_conformance.determinism``). ``observe["cases_digest"]``
fingerprints the generated cases so runs can be compared.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from schemathesis.checks import not_a_server_error, status_code_conformance
from schemathesis.errors import FailureGroup

from engine_conformance import archives, spec
from engine_conformance.checks import error_answer_problems, imported_id
from engine_conformance.cleanup import Images
from engine_conformance.determinism import no_local_constants
from engine_conformance.target import Client, Exchange

SEED = 20_240_601
EXAMPLES = 40
CLOSED_REGISTRY = "127.0.0.1:9"  # the discard port: nothing listens, a pull fails at connect
QUERY = ("fromImage", "fromSrc", "repo", "tag", "message", "changes", "platform")

# Fixed cases sent before the generated ones, so that each kind of request is
# judged whatever the generator draws: an import (twice: bare, and with the
# documented parameters), a pull, and a request with no parameter at all (the
# document requires none).
EXPLICIT: tuple[dict[str, Any], ...] = (
    {"fromSrc": "-"},
    {"fromSrc": "-", "message": "engine-conformance schema", "tag": "v1",
     "changes": ["ENV EC_SCHEMA=1", 'CMD ["/bin/true"]']},
    {"fromImage": "ectest-missing", "tag": "latest"},
    {},
)


# -- generation --------------------------------------------------------------------


@functools.cache
def operation() -> schemathesis.APIOperation:
    # An explicit default config: a schemathesis.toml found above the working
    # directory must not change what is generated.
    schema = schemathesis.openapi.from_path(spec.SPEC_PATH, config=schemathesis.Config()).exclude(
        func=lambda ctx: spec.is_harness_path(ctx.operation.path)
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = [(op.method.upper(), op.path) for op in operations]
    assert labels == [("POST", spec.ENDPOINT_PATH)], f"expected only POST /images/create: {labels}"
    return operations[0]


@functools.cache
def generated_cases() -> tuple[schemathesis.Case, ...]:
    """The explicit cases, then ``EXAMPLES`` drawn with ``SEED`` (same every run)."""
    op = operation()
    cases = [op.Case(query=dict(query)) for query in EXPLICIT]

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        phases=[Phase.generate],
        derandomize=False,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        verbosity=Verbosity.quiet,
    )
    @given(op.as_strategy())
    def collect(case: schemathesis.Case) -> None:
        cases.append(case)

    with no_local_constants():
        collect()
    return tuple(cases)


def cases_digest(cases: tuple[schemathesis.Case, ...]) -> str:
    """A fingerprint of the generated requests (query and headers), before they are made safe."""
    text = json.dumps(
        [[dict(c.query or {}), dict(c.headers or {})] for c in cases], sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# -- making a case safe ------------------------------------------------------------

_HEADER_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?")


def _text(value: object) -> str:
    """A generated value as a string that encodes (lone surrogates become '?')."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _slug(value: object) -> str:
    """Generated text as one valid repository path component (never a host)."""
    kept = "".join(c for c in str(value).lower() if c in "abcdefghijklmnopqrstuvwxyz0123456789")
    return kept[:40] or "x"


@dataclass(frozen=True)
class Safe:
    """What is actually sent for a generated case."""

    kind: str  # "pull", "import" or "neither": what the engine is asked to do
    query: dict[str, Any]
    headers: dict[str, str]
    body: bytes | None


def make_safe(case: schemathesis.Case, repo: str) -> Safe:
    """Rewrite a generated case so that it can reach nothing outside the engine.

    Only the documented query parameters are sent; see the module docstring
    for what each becomes.
    """
    generated = dict(case.query or {})
    query: dict[str, Any] = {}
    body = None
    if "fromSrc" in generated:
        query["fromSrc"] = "-"
        body = archives.rootfs()
    elif "fromImage" in generated:
        query["fromImage"] = f"{CLOSED_REGISTRY}/gen/{_slug(generated['fromImage'])}"
    query["repo"] = repo
    for name in ("tag", "message", "platform"):
        if name in generated:
            query[name] = _text(generated[name])
    if "changes" in generated:
        changes = generated["changes"]
        query["changes"] = [_text(v) for v in (changes if isinstance(changes, list) else [changes])]
    headers = {}
    auth = (case.headers or {}).get("X-Registry-Auth")
    if isinstance(auth, str) and _HEADER_VALUE.fullmatch(auth):
        headers["X-Registry-Auth"] = auth
    kind = "pull" if "fromImage" in query else "import" if "fromSrc" in query else "neither"
    return Safe(kind, query, headers, body)


# -- sending -----------------------------------------------------------------------


@dataclass
class Sent:
    index: int
    case: schemathesis.Case  # the safe case, for schemathesis's checks
    safe: Safe
    exchange: Exchange

    def describe(self) -> str:
        ex = self.exchange
        text = f"case {self.index} ({self.safe.kind}) {ex.request_line[:240]} -> HTTP {ex.status}"
        body = ex.body[:160].decode("utf-8", "replace").strip()
        return text + (f" {body!r}" if body and ex.status != 200 else "")


@dataclass
class Traffic:
    sent: list[Sent]
    digest: str

    def statuses(self, sent: list[Sent] | None = None) -> dict[str, int]:
        counts = Counter(str(s.exchange.status) for s in (self.sent if sent is None else sent))
        return dict(sorted(counts.items()))

    def summary(self) -> dict[str, Any]:
        return {
            "seed": SEED,
            "cases": len(self.sent),
            "cases_digest": self.digest,
            "kinds": dict(sorted(Counter(s.safe.kind for s in self.sent).items())),
            "statuses": self.statuses(),
        }


@pytest.fixture(scope="module")
def traffic(client: Client, run_state) -> Iterator[Traffic]:
    """Every generated case, made safe and sent once; shared by the SCHEMA checks."""
    cases = generated_cases()
    tracker = Images(client, run_state)
    sent: list[Sent] = []
    try:
        for index, case in enumerate(cases):
            safe = make_safe(case, tracker.name("gen"))
            ex = client.create_image(safe.query, body=safe.body, headers=safe.headers)
            if ex.status == 200 and (found := imported_id(ex)):
                tracker.track(found)
            safe_case = operation().Case(query=safe.query, headers=dict(safe.headers))
            sent.append(Sent(index, safe_case, safe, ex))
        yield Traffic(sent, cases_digest(cases))
    finally:
        tracker.cleanup()


# -- judging -----------------------------------------------------------------------


def as_schemathesis_response(client: Client, ex: Exchange) -> schemathesis.Response:
    """The exchange as schemathesis's own response type, for its built-in checks."""
    request = requests.Request(
        ex.method, client.target.base_url + ex.path, params=ex.params,
        headers=ex.request_headers,
    ).prepare()
    return schemathesis.Response(
        status_code=ex.status,
        headers={k: [v] for k, v in ex.headers.items()},
        content=ex.body,
        request=request,
        elapsed=(ex.finished or ex.started) - ex.started,
        verify=True,
    )


def schemathesis_problem(client: Client, sent: Sent, check: Callable) -> str | None:
    """The title of the failure ``check`` finds in this answer, or None."""
    try:
        sent.case.validate_response(as_schemathesis_response(client, sent.exchange), checks=[check])
    except FailureGroup as group:
        return "; ".join(dict.fromkeys(f.title for f in group.exceptions))
    return None


def stream_problems(ex: Exchange) -> list[str]:
    """What is wrong with a 200 answer as a CreateImageInfo stream (empty: nothing)."""
    problems = []
    ctype = ex.content_type.split(";")[0].strip()
    if ctype != "application/json":
        problems.append(f"Content-Type is {ctype or 'missing'!r}, not application/json")
    for error in ex.framing_errors[:3]:
        problems.append(f"line at byte {error.offset} is {error.detail}: {error.raw[:80]!r}")
    for message in ex.messages:
        for problem in spec.validate_stream_item(message.obj)[:2]:
            problems.append(f"line at byte {message.offset}: {problem}")
    return problems


def verdict(client: Client, observe: dict, judged: list[Sent], bad: list[tuple[Sent, str]],
            what: str) -> None:
    # The traffic was sent once for every check: each check cites what it rests on.
    cited = [s for s, _ in bad] or _one_per_status(judged)
    client.cite(s.exchange for s in cited[:6])
    observe["judged"] = len(judged)
    observe["violations"] = len(bad)
    assert not bad, (
        f"{len(bad)} of {len(judged)} {what}: "
        + " | ".join(f"{s.describe()}: {problem}" for s, problem in bad[:3])
    )


def _one_per_status(sent: list[Sent]) -> list[Sent]:
    seen: dict[int, Sent] = {}
    for s in sent:
        seen.setdefault(s.exchange.status, s)
    return list(seen.values())


# -- the checks --------------------------------------------------------------------


@pytest.mark.requirement("SCHEMA-001")
def test_statuses_are_listed(client, traffic, observe):
    observe.update(traffic.summary())
    bad = []
    for s in traffic.sent:
        problem = schemathesis_problem(client, s, status_code_conformance)
        if problem:
            bad.append((s, problem))
    verdict(client, observe, traffic.sent, bad,
            "generated requests were answered with a status outside "
            f"{', '.join(sorted(operation().responses.status_codes))}")


@pytest.mark.requirement("SCHEMA-002")
def test_errors_are_error_responses(client, traffic, observe):
    errors = [s for s in traffic.sent if s.exchange.status != 200]
    observe["statuses"] = traffic.statuses(errors)
    if not errors:
        pytest.skip("no generated request was answered with a status other than 200")
    bad = []
    for s in errors:
        problems = error_answer_problems(s.exchange)
        if problems:
            bad.append((s, "; ".join(problems)))
    verdict(client, observe, errors, bad, "non-200 answers are not an ErrorResponse")


@pytest.mark.requirement("SCHEMA-003")
def test_streams_are_create_image_info(client, traffic, observe):
    ok = [s for s in traffic.sent if s.exchange.status == 200]
    observe["kinds"] = dict(sorted(Counter(s.safe.kind for s in ok).items()))
    observe["lines"] = sum(len(s.exchange.messages) for s in ok)
    if not ok:
        pytest.skip("no generated request was answered 200")
    bad = []
    for s in ok:
        problems = stream_problems(s.exchange)
        if problems:
            bad.append((s, "; ".join(problems[:3])))
    verdict(client, observe, ok, bad, "200 answers are not a CreateImageInfo stream")


@pytest.mark.requirement("SCHEMA-004")
def test_imports_are_not_server_errors(client, traffic, observe):
    imports = [s for s in traffic.sent if s.safe.kind == "import"]
    observe["statuses"] = traffic.statuses(imports)
    if not imports:
        pytest.skip("no generated request was an import")
    bad = []
    for s in imports:
        problem = schemathesis_problem(client, s, not_a_server_error)
        if problem:
            bad.append((s, problem))
    verdict(client, observe, imports, bad, "imports of a valid archive were answered 5xx")
