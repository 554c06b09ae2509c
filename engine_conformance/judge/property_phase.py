"""The property phase: requests drawn from the OpenAPI fragment, judged as they are answered.

    >>> phase = PropertyPhase(client, run, lab, files, report_dir,
    ...                       seed=DEFAULT_SEED, budget=Budget.parse("60s"))   # doctest: +SKIP
    >>> result = phase.run()                                                    # doctest: +SKIP
    >>> result.findings_for("SCHEMA-004")[0].reproducer                         # doctest: +SKIP
    "curl -sS -i --unix-socket /tmp/ec-…/docker.sock -X POST … 'http://localhost/v1.44/…'"

**Generation.** schemathesis draws cases for ``POST /images/create`` from
``spec/images-create.yaml`` in both its generation modes (positive: what the
schema allows; negative: what it forbids). Left alone those are mostly random
text an engine refuses at once, so each parameter is *steered*: Hypothesis
chooses, per parameter, between the generated value and inputs that exercise the
engine (see :func:`drafts`): the lab registry's repositories, tags and digests
and malformed references; archives valid, gz/bz2/xz-compressed, truncated or not
an archive, in the body or from the lab file server; valid and invalid
platforms; allowed and disallowed ``changes``; valid and invalid
``X-Registry-Auth`` encodings. A :class:`Draft` holds placeholders (``{lab}``,
``{prefix}``, ``{file:gz}``…) so that what is drawn does not depend on the run:
:func:`drafts_digest` fingerprints the draw for a seed.

**Safety.** Every reference names the lab registry (``{lab}/{prefix}/…``), every
URL the lab file server, every ``repo`` a fresh name under the run prefix: a
request can reach nothing off loopback and name nothing outside the run.

**Judging.** Each answer is judged by every property as it arrives
(:func:`violations`). Distinct findings are grouped by requirement and the shape
of the answer (``SCHEMA-004`` / ``pull -> HTTP 500``). The phase first explores
(Hypothesis draws, nothing raises: Hypothesis would stop drawing soon after a
first failure); then, for each finding, Hypothesis replays the choices of the
first request that showed it, and the test raises for that finding only, so
Hypothesis shrinks it to a minimal request. A request is sent once per run:
answers are cached by draft, so a replay does not ask the engine again. Each
finding keeps its smallest request and a ``curl`` reproducer
(:mod:`.reproducer`), its body written into ``<report-dir>/reproducers/``.

**Budget.** ``Budget.parse("60s")``: exploring sends for 45 s, shrinking until
57 s (no request is started that would end later, as slow as the slowest so far);
``Budget.parse("200")``: 200 examples explored, then at most 200 to shrink each
finding, with no bound in time.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st
from hypothesis.database import InMemoryExampleDatabase, choices_to_bytes

from engine_conformance.base import archives
from engine_conformance.base.determinism import no_local_constants
from engine_conformance.catalogue import spec
from engine_conformance.engine.target import Client, Exchange, TargetError
from engine_conformance.judge import bundles
from engine_conformance.judge.budget import DEFAULT_BUDGET, DEFAULT_SEED, MAX_EXAMPLES, Budget
from engine_conformance.judge.checks import error_answer_problems, exposures, imported_id
from engine_conformance.judge.cleanup import (
    Images,
    RunNames,
    image_names,
    may_remove_run_names,
    remove_created,
)
from engine_conformance.judge.reproducer import curl

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_BUDGET",
    "Budget",
    "Draft",
    "Finding",
    "PhaseResult",
    "PropertyPhase",
    "drafts",
    "drafts_digest",
    "violations",
    "finding_lines",
]

SHRINK_SHARE = 0.25  # of a time budget, kept for shrinking what generation found
SHRINK_STOP = 0.95  # of a time budget: no request is started after it

# -- what is drawn ------------------------------------------------------------------

BODIES: dict[str, Callable[[], bytes]] = {
    "tar": lambda: archives.rootfs(),
    "gz": lambda: archives.rootfs(compression="gz"),
    "bz2": lambda: archives.rootfs(compression="bz2"),
    "xz": lambda: archives.rootfs(compression="xz"),
    "truncated": lambda: (lambda gz: gz[: len(gz) // 2])(archives.rootfs(compression="gz")),
    "not-an-archive": lambda: b"engine-conformance: this is not an archive\n",
}
VALID_ARCHIVES = frozenset({"tar", "gz", "bz2", "xz"})

LAB_REFERENCES = (
    "{lab}/{prefix}/single:v1",
    "{lab}/{prefix}/single",
    "{lab}/{prefix}/oci:latest",
    "{lab}/{prefix}/multi:latest",
    "{lab}/{prefix}/multi-oci",
    "{lab}/{prefix}/arm-only:latest",
    "{lab}/{prefix}/single@{digest:single:v2}",
    "{lab}/{prefix}/missing:latest",
    "{lab}/{prefix}/single:missing",
)
# Each is refused by reference parsing before any registry is asked; all name the lab anyway.
MALFORMED_REFERENCES = (
    "{lab}/{prefix}/UPPER",
    "{lab}/{prefix}/bad::ref",
    "{lab}/{prefix}/single:bad tag",
    "{lab}/{prefix}/single@sha256:0123",
    "{lab}/{prefix}//empty",
    "{lab}/{prefix}/-lead",
    "{lab}/{prefix}/single:" + "t" * 129,
)
TAGS = ("v1", "latest", "{digest:single:v1}")
MALFORMED_TAGS = ("bad tag", "UPPER!", "t" * 129)
PLATFORMS = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux", "")
MALFORMED_PLATFORMS = ("not a platform", "linux/amd64/v1/extra", "!!/??")
CHANGES = (
    "ENV EC_PROPERTY=1",
    'CMD ["/bin/true"]',
    "LABEL ec=1",
    "EXPOSE 8080",
    "USER 1000",
    "WORKDIR /w",
    "VOLUME /v",
    "STOPSIGNAL SIGTERM",
    'ENTRYPOINT ["/bin/true"]',
)
DISALLOWED_CHANGES = ("RUN true", "FROM scratch", "ADD a b", "COPY a b", "MAINTAINER x")
AUTH_KINDS = (
    "none",
    "password",
    "identitytoken",
    "unpadded",
    "not-base64",
    "not-json",
    "generated",
)
KINDS = ("import", "pull", "import-url", "neither")

_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?")
_PLACEHOLDER = re.compile(r"\{(lab|prefix|missing|file:[a-z0-9-]+|digest:[a-z-]+:[a-z0-9]+)\}")


@dataclass(frozen=True)
class Draft:
    """A drawn request, independent of the run (placeholders instead of addresses)."""

    kind: str  # import, pull, import-url, neither
    mode: str  # schemathesis's generation mode the generated values came from
    query: tuple[tuple[str, str], ...]
    auth: str | None = None
    body: str | None = None  # a key of BODIES for fromSrc=-
    secret: str | None = None  # what the answer must never contain
    client_fault: bool = False  # a 5xx answer blames the server for the client's error

    def key(self) -> str:
        return json.dumps([self.kind, self.query, self.auth, self.body], ensure_ascii=True)

    def size(self) -> tuple[int, int]:
        return (len(self.key()), len(self.body or ""))


def _text(value: object) -> str:
    """A generated value as sendable text (lone surrogates become '?')."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _slug(value: object) -> str:
    kept = "".join(c for c in str(value).lower() if c in "abcdefghijklmnopqrstuvwxyz0123456789")
    return kept[:40] or "x"


@cache
def operation() -> Any:
    """schemathesis's view of POST /images/create, the fragment's one operation."""
    import schemathesis

    # An explicit default config: a schemathesis.toml above the working directory
    # must not change what is generated.
    schema = schemathesis.openapi.from_path(spec.SPEC_PATH, config=schemathesis.Config())
    # The fragment's one operation is valid (tests/test_spec.py): every result is Ok.
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    labels = [(op.method.upper(), op.path) for op in operations]
    assert labels == [("POST", spec.ENDPOINT_PATH)], f"expected only POST /images/create: {labels}"
    return operations[0]


@cache
def _case_strategy(mode: str) -> st.SearchStrategy:
    from schemathesis import GenerationMode

    strategy: st.SearchStrategy = operation().as_strategy(generation_mode=GenerationMode(mode))
    return strategy


def _auth(draw: Callable[..., Any], generated: object) -> tuple[str | None, str | None]:
    """An X-Registry-Auth value and the secret in it."""
    kind = draw(st.sampled_from(AUTH_KINDS))
    if kind == "none":
        return None, None
    secret = f"ec-secret-{draw(st.integers(0, 2**32)):08x}"
    if kind == "generated":
        value = _text(generated) if generated is not None else ""
        return (value, None) if _HEADER_VALUE.fullmatch(value) else (None, None)
    if kind == "not-base64":
        return f"%%{secret}%%", secret
    if kind == "not-json":
        return base64.urlsafe_b64encode(f"user:{secret}".encode()).decode(), secret
    obj = (
        {"identitytoken": secret}
        if kind == "identitytoken"
        else {"username": "ec-user", "password": secret}
    )
    value = base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()
    return (value.rstrip("=") if kind == "unpadded" else value), secret


@st.composite
def drafts(draw: Callable[..., Any]) -> Draft:
    """One request: schemathesis's generated values, steered parameter by parameter."""
    kind = draw(st.sampled_from(KINDS))
    mode = draw(st.sampled_from(("positive", "negative")))
    case = draw(_case_strategy(mode))
    generated = {k: v for k, v in dict(case.query or {}).items() if v is not None}
    query: list[tuple[str, str]] = []
    fault = False
    body = None

    def pick(name: str, steered: tuple[str, ...], malformed: tuple[str, ...] = ()) -> str | None:
        nonlocal fault
        choice = draw(
            st.sampled_from(
                ("none", "steered", "malformed", "generated")
                if malformed
                else ("none", "steered", "generated")
            )
        )
        if choice == "none":
            return None
        if choice == "generated":
            return _text(generated[name]) if name in generated else None
        fault = fault or choice == "malformed"
        drawn: str = draw(st.sampled_from(steered if choice == "steered" else malformed))
        return drawn

    if kind == "pull":
        source = draw(st.sampled_from(("lab", "malformed", "generated")))
        if source == "lab":
            ref = draw(st.sampled_from(LAB_REFERENCES))
        elif source == "malformed":
            ref, fault = draw(st.sampled_from(MALFORMED_REFERENCES)), True
        else:
            ref = "{lab}/{prefix}/gen-" + _slug(generated.get("fromImage", ""))
        query.append(("fromImage", ref))
        if (tag := pick("tag", TAGS, MALFORMED_TAGS)) is not None:
            query.append(("tag", tag))
    elif kind in ("import", "import-url"):
        body = draw(st.sampled_from(tuple(BODIES)))
        # Only an archive the engine can read and fetch leaves the client to blame for a
        # refusal, whatever else was drawn (malformed or not).
        import_fault = body in VALID_ARCHIVES
        if kind == "import":
            query.append(("fromSrc", "-"))
        else:
            missing = draw(st.booleans())
            import_fault = import_fault and not missing
            query.append(("fromSrc", "{missing}" if missing else "{file:" + body + "}"))
            body = None
        if (tag := pick("tag", ("v1", "latest"), MALFORMED_TAGS)) is not None:
            query.append(("tag", tag))
        if "message" in generated and draw(st.booleans()):
            query.append(("message", _text(generated["message"])))
        for _ in range(draw(st.integers(0, 2))):
            source = draw(st.sampled_from(("allowed", "disallowed", "generated")))
            if source == "generated":
                values = generated.get("changes") or [""]
                values = values if isinstance(values, list) else [values]
                query.append(("changes", _text(draw(st.sampled_from(values)))))
            else:
                query.append(
                    (
                        "changes",
                        draw(
                            st.sampled_from(CHANGES if source == "allowed" else DISALLOWED_CHANGES)
                        ),
                    )
                )
    if (
        kind != "neither"
        and (platform := pick("platform", PLATFORMS, MALFORMED_PLATFORMS)) is not None
    ):
        query.append(("platform", platform))
    auth, secret = _auth(draw, dict(case.headers or {}).get("X-Registry-Auth"))
    if kind in ("import", "import-url"):
        fault = import_fault
    return Draft(kind, mode, tuple(query), auth, body, secret, fault)


def _draw_keys(seed_value: int, examples: int) -> list[str]:
    keys: list[str] = []

    @seed(seed_value)
    @settings(
        max_examples=examples,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        keys.append(data.draw(drafts()).key())

    with no_local_constants():
        collect()
    return keys


def drafts_digest(seed_value: int = DEFAULT_SEED, examples: int = 40) -> str:
    """A fingerprint of the first ``examples`` requests drawn with ``seed_value``."""
    text = "\n".join(_draw_keys(seed_value, examples))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# -- judging one answer ----------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    requirement: str
    shape: str  # what groups findings: the same property broken the same way
    detail: str


def _ctype(ex: Exchange) -> str:
    return ex.content_type.split(";")[0].strip()


def stream_end_problem(ex: Exchange, kind: str) -> tuple[str, str] | None:
    """How a 200 stream fails to end in success or an error line: (shape, detail), or None."""
    errors = [i for i, m in enumerate(ex.messages) if m.error is not None]
    if errors and errors[0] < len(ex.messages) - 1:
        return (
            "goes on after its error line",
            f"the stream reports an error at line {errors[0] + 1} of {len(ex.messages)} "
            f"({ex.messages[errors[0]].error!r}) and goes on: it "
            f"ends with {json.dumps(ex.messages[-1].obj)[:160]}",
        )
    if errors or ex.incomplete:
        # An incomplete message lost its end: PROGRESS-010 judges the cut, not this.
        return None
    if not ex.messages:
        return "ends without success or errorDetail (no line)", "the stream has no line"
    last = ex.messages[-1]
    ending = f"ends with {json.dumps(last.obj)[:160]}"
    status = last.obj.get("status")
    if kind.startswith("import") and imported_id(ex) == status:
        return None
    if kind == "pull" and any(
        str(m.obj.get("status", "")).startswith("Status: ") for m in ex.messages
    ):
        return None  # Docker may add a line after it (a platform WARNING)
    return "ends without success or errorDetail", f"the stream {ending}"


def status_class_problem(status: int) -> str | None:
    """Why ``status`` breaks the document's statuses (SCHEMA-008), or None.

    >>> status_class_problem(201)
    'HTTP 201 is a success other than 200, the one success the document gives'
    >>> status_class_problem(418) is None
    True
    """
    if status == 200 or 400 <= status <= 599:
        return None
    if 200 <= status < 300:
        return f"HTTP {status} is a success other than 200, the one success the document gives"
    return f"HTTP {status} is neither the documented success (200) nor an error status (4xx, 5xx)"


def snapshot(client: Client) -> dict[str, set[str]]:
    """Image ID -> its names (tags and digest references), for every image on the engine."""
    shot: dict[str, set[str]] = {}
    for image in client.list_images():
        shot[image["Id"]] = set(image_names(image))
    return shot


def new_names(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, set[str]]:
    """What appeared: new images with all their names, old images with their new names."""
    return {
        i: names - before.get(i, set())
        for i, names in after.items()
        if i not in before or names - before[i]
    }


def violations(
    ex: Exchange, draft: Draft, created: dict[str, set[str]], left: dict[str, set[str]], prefix: str
) -> list[Violation]:
    """Every property the answer to ``draft`` breaks, in requirement order."""
    found: list[Violation] = []
    status = ex.status
    if str(status) not in operation().responses.status_codes:
        found.append(
            Violation(
                "SCHEMA-001", f"HTTP {status}", f"HTTP {status} is not listed in the fragment"
            )
        )
    if (problem := status_class_problem(status)) is not None:
        found.append(Violation("SCHEMA-008", f"HTTP {status}", problem))
    if status != 200:
        problems = error_answer_problems(ex)
        if problems:
            shape = f"HTTP {status}, Content-Type {_ctype(ex) or 'missing'}, " + (
                "body not JSON"
                if any("not JSON" in p for p in problems)
                else "body not ErrorResponse"
                if any(p.startswith("body") for p in problems)
                else "body ErrorResponse"
            )
            found.append(Violation("SCHEMA-002", shape, "; ".join(problems)))
    else:
        shapes, details = [], []
        if _ctype(ex) != "application/json":
            shapes.append(f"Content-Type {_ctype(ex) or 'missing'}")
            details.append(f"Content-Type is {_ctype(ex) or 'missing'!r}, not application/json")
        if ex.framing_errors:
            shapes.append("a line that is not one JSON object")
            details += [
                f"line at byte {e.offset} is {e.detail}: {e.raw[:80]!r}"
                for e in ex.framing_errors[:2]
            ]
        bad = [(m, p) for m in ex.messages for p in spec.validate_stream_item(m.obj)[:1]]
        if bad:
            shapes.append("a line that is not a CreateImageInfo")
            details += [f"line at byte {m.offset}: {p}" for m, p in bad[:2]]
        if shapes:
            found.append(Violation("SCHEMA-003", ", ".join(shapes), "; ".join(details)))
        elif not ex.timed_out and (ended := stream_end_problem(ex, draft.kind)):
            found.append(Violation("SCHEMA-005", f"{draft.kind}: stream {ended[0]}", ended[1]))
    if draft.client_fault and status >= 500:
        found.append(
            Violation(
                "SCHEMA-004",
                f"{draft.kind} -> HTTP {status}",
                f"HTTP {status} for a request that is the client's fault: "
                f"{ex.body[:160].decode('utf-8', 'replace').strip()!r}",
            )
        )
    if draft.secret and (shown := exposures(ex, {"the X-Registry-Auth secret": draft.secret})):
        # Grouped by the kind of place (the same finding whichever message or header).
        kinds = sorted(
            {
                "headers"
                if " in header " in w
                else "status line"
                if w.endswith("status line")
                else "body"
                for w in shown
            }
        )
        found.append(
            Violation("SCHEMA-006", f"secret echoed in the {' and '.join(kinds)}", "; ".join(shown))
        )
    outside = {
        i: n
        for i, n in created.items()
        if not any(f"{prefix}/" in x for x in n) or any(f"{prefix}/" not in x for x in n)
    }
    if outside:
        image, names = sorted(outside.items())[0]
        found.append(
            Violation(
                "SCHEMA-007",
                "created an image not named under the run prefix",
                f"{image[:19]} named {sorted(names) or 'nothing'}",
            )
        )
    if left:
        image, names = sorted(left.items())[0]
        found.append(
            Violation(
                "SCHEMA-007",
                "left an image behind after clean-up",
                f"{image[:19]} ({sorted(names) or 'no name'}) remains after the "
                "run removed what the request made",
            )
        )
    return found


# -- findings --------------------------------------------------------------------------


@dataclass
class Finding:
    requirement: str
    shape: str
    detail: str
    draft: Draft
    exchange: Exchange
    count: int = 1
    reproducer: str = ""
    body_file: str | None = None
    bundle: str | None = None

    def to_dict(self) -> dict[str, Any]:
        ex = self.exchange
        return {
            "requirement": self.requirement,
            "shape": self.shape,
            "detail": self.detail,
            "requests": self.count,
            "request": ex.request_line,
            "kind": self.draft.kind,
            "generation": self.draft.mode,
            "status": ex.status,
            "answer": ex.body[:300].decode("utf-8", "replace"),
            "reproducer": self.reproducer,
            "body_file": self.body_file,
            "bundle": self.bundle,
        }


@dataclass
class PhaseResult:
    seed: int
    budget: str
    findings: list[Finding]
    sent: list[tuple[Draft, Exchange]]
    elapsed: float
    digest: str
    errors: list[str] = field(default_factory=list)
    outcome: str = ""
    shrunk: dict[str, str] = field(default_factory=dict)  # finding -> how shrinking ended

    def findings_for(self, requirement: str) -> list[Finding]:
        return [f for f in self.findings if f.requirement == requirement]

    def summary(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "budget": self.budget,
            "requests": len(self.sent),
            "seconds": round(self.elapsed, 1),
            "cases_digest": self.digest,
            "kinds": dict(sorted(Counter(d.kind for d, _ in self.sent).items())),
            "statuses": dict(sorted(Counter(str(e.status) for _, e in self.sent).items())),
            "shrinking": self.shrunk,
        }


_REPLAY_KEY = b"engine-conformance-property-phase"


class _Violated(Exception):
    """A property broke; one subclass per finding, so Hypothesis shrinks each apart."""


@cache
def _violation_type(key: tuple[str, str]) -> type[_Violated]:
    name = "Violated_" + hashlib.sha256(repr(key).encode()).hexdigest()[:10]
    return type(name, (_Violated,), {})


class PropertyPhase:
    """Draw, send, judge and shrink; one instance per run."""

    def __init__(
        self,
        client: Client,
        run: RunNames,
        lab: Any,
        files: Any,
        report_dir: Path,
        *,
        seed: int = DEFAULT_SEED,
        budget: Budget | None = None,
    ) -> None:
        self.client, self.names, self.lab, self.files = client, run, lab, files
        self.report_dir = Path(report_dir)
        self.seed = seed
        self.budget = budget or Budget.parse(DEFAULT_BUDGET)
        self._bodies = {name: make() for name, make in BODIES.items()}
        self._urls: dict[str, str] = {
            name: files.add(f"{run.prefix}-property-{name}", data)
            for name, data in self._bodies.items()
        }
        self._missing: str = files.missing(f"{run.prefix}-property-missing")
        self._answers: dict[str, list[Violation]] = {}
        self._findings: dict[tuple[str, str], Finding] = {}
        self.sent: list[tuple[Draft, Exchange]] = []
        self.errors: list[str] = []
        self.shrunk: dict[str, str] = {}  # finding -> how its shrinking ended
        self._slowest = 0.0  # seconds: the longest request (with its clean-up) so far

    # -- rendering --

    def _render(self, text: str) -> str:
        def value(m: re.Match[str]) -> str:
            name = m.group(1)
            if name == "lab":
                reference: str = self.lab.reference("x")
                return reference.split("/", 1)[0]
            if name == "prefix":
                return self.names.prefix
            if name == "missing":
                return self._missing
            if name.startswith("file:"):
                return self._urls[name[5:]]
            _, repo, tag = name.split(":")
            digest: str = self.lab.catalogue.manifest_digest(repo, tag)
            return digest

        return _PLACEHOLDER.sub(value, text)

    def request(
        self, draft: Draft, repo: str
    ) -> tuple[list[tuple[str, str]], dict[str, str], bytes | None]:
        params = [(k, self._render(v)) for k, v in draft.query] + [("repo", repo)]
        headers = {"X-Registry-Auth": draft.auth} if draft.auth is not None else {}
        body = self._bodies[draft.body] if draft.body else None
        return params, headers, body

    # -- one request --

    def _send(self, draft: Draft) -> list[Violation]:
        tracker = Images(self.client, self.names)
        params, headers, body = self.request(draft, tracker.name("prop"))
        try:
            return self._exchange(draft, tracker, params, headers, body)
        except TargetError as exc:
            # Not a property of the answer (the engine hung or went away): reported, not judged.
            self.errors.append(f"{draft.kind}: {exc}")
            tracker.cleanup()
            return []

    def _exchange(
        self,
        draft: Draft,
        tracker: Images,
        params: list[tuple[str, str]],
        headers: dict[str, str],
        body: bytes | None,
    ) -> list[Violation]:
        before = snapshot(self.client)
        ex = self.client.create_image(params, body=body, headers=headers, deadline=60)
        if ex.status == 200 and (image := imported_id(ex)):
            tracker.track(image)
        created = new_names(before, snapshot(self.client))
        tracker.cleanup()
        if not created:
            # Nothing new once the answer was read: nothing to remove, nothing left behind
            # (two more looks at the whole list would show the same, slower).
            self.sent.append((draft, ex))
            return self._record(draft, ex, violations(ex, draft, created, {}, self.names.prefix))
        # What the tracker did not know of, removed as well: "left behind" is what the
        # engine keeps although the run deleted it, never what the harness overlooked.
        preexisting, kept = self.names.preexisting, {}
        after = snapshot(self.client)
        for image, names in new_names(before, after).items():
            if image not in before:
                remove_created(self.client, image, self.names.prefix, preexisting)
                continue
            if not may_remove_run_names(
                {"Id": image, "RepoTags": sorted(after[image])}, self.names.prefix, preexisting
            ):
                kept[image] = names  # their removal would delete an image the run found there
                continue
            for name in names:
                if f"{self.names.prefix}/" in name:
                    try:
                        self.client.delete_image(name, force=False)
                    except TargetError:
                        pass
        left = {
            i: names - kept.get(i, set())
            for i, names in new_names(before, snapshot(self.client)).items()
            if i not in kept or names - kept[i]
        }
        self.sent.append((draft, ex))
        return self._record(draft, ex, violations(ex, draft, created, left, self.names.prefix))

    def _record(self, draft: Draft, ex: Exchange, found: list[Violation]) -> list[Violation]:
        """Keep each finding with its smallest request so far; ``found`` back."""
        for v in found:
            key = (v.requirement, v.shape)
            known = self._findings.get(key)
            if known is None:
                self._findings[key] = Finding(v.requirement, v.shape, v.detail, draft, ex)
            else:
                known.count += 1
                if draft.size() < known.draft.size():
                    known.draft, known.exchange, known.detail = draft, ex, v.detail
        return found

    def run(self) -> PhaseResult:
        """Explore (every answer judged), then shrink each distinct finding."""
        start = time.monotonic()
        seconds = self.budget.seconds

        def spent() -> float:
            return time.monotonic() - start

        explore_until = None if seconds is None else seconds * (1 - SHRINK_SHARE)
        first_hit: dict[tuple[str, str], tuple[Any, ...]] = {}

        def explore(draft: Draft, choices: tuple[Any, ...]) -> None:
            for v in self._answer(draft, explore_until, spent):
                first_hit.setdefault((v.requirement, v.shape), choices)

        # Exploring never raises: Hypothesis stops drawing soon after a first failure,
        # and one early finding must not end the search for others.
        outcome = self._hypothesis(
            explore,
            examples=self.budget.examples,
            out_of_budget=lambda: explore_until is not None and spent() >= explore_until,
        )
        # Then each finding alone: Hypothesis replays the choices of its first request
        # and shrinks them, sending what it has not sent before while the budget lasts.
        # A request under way when the budget runs out still has to finish: stop a little early.
        shrink_until = None if seconds is None else seconds * SHRINK_STOP
        for key, choices in first_hit.items():

            def shrink(draft: Draft, _: object, key: tuple[str, str] = key) -> None:
                found = self._answer(draft, shrink_until, spent)
                if any((v.requirement, v.shape) == key for v in found):
                    raise _violation_type(key)(key[1])

            def out_of_time() -> bool:
                return shrink_until is not None and spent() >= shrink_until

            name = f"{key[0]}: {key[1]}"
            if out_of_time():
                self.shrunk[name] = "not shrunk: budget spent"
                continue
            # A budget in examples bounds each finding's shrinking by as many again.
            ended = self._hypothesis(
                shrink,
                examples=MAX_EXAMPLES if seconds is not None else self.budget.examples,
                replay=choices,
                # Past the budget Hypothesis would go on shrinking on cached answers alone.
                out_of_budget=out_of_time,
            )
            self.shrunk[name] = (
                "shrinking cut short: budget spent"
                if ended != "shrunk" and out_of_time()
                else ended
            )
        findings = sorted(self._findings.values(), key=lambda f: (f.requirement, f.shape))
        self._reproduce(findings)
        digest = hashlib.sha256(
            "\n".join(d.key() for d, _ in self.sent).encode("utf-8", "surrogatepass")
        ).hexdigest()[:16]
        return PhaseResult(
            self.seed,
            str(self.budget),
            findings,
            self.sent,
            spent(),
            digest,
            self.errors,
            outcome,
            self.shrunk,
        )

    def _answer(
        self, draft: Draft, until: float | None, spent: Callable[[], float]
    ) -> list[Violation]:
        """The violations of ``draft``'s answer: sent once, or none when out of time."""
        key = draft.key()
        if key not in self._answers:
            # A request started before ``until`` must also end before it: one as slow as
            # the slowest so far would not, so it is not sent.
            if until is not None and spent() + self._slowest >= until:
                return []
            started = time.monotonic()
            self._answers[key] = self._send(draft)
            self._slowest = max(self._slowest, time.monotonic() - started)
        return self._answers[key]

    def _hypothesis(
        self,
        test: Callable[[Draft, tuple[Any, ...]], None],
        *,
        examples: int = 1,
        replay: tuple[Any, ...] | None = None,
        out_of_budget: Callable[[], bool],
    ) -> str:
        """Draw ``examples`` drafts, or replay ``replay``'s choices and shrink them."""
        database = None
        if replay is not None:
            database = InMemoryExampleDatabase()
            # The secondary corpus: Hypothesis shrinks what it finds there (an entry of
            # the primary one counts as shrunk already).
            database.save(_REPLAY_KEY + b".secondary", choices_to_bytes(replay))

        # settings after seed: seed() alone would turn the database (the replay) off.
        @settings(
            max_examples=examples,
            database=database,
            deadline=None,
            phases=[Phase.reuse, Phase.shrink] if replay is not None else [Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            report_multiple_bugs=False,
            print_blob=False,
        )
        @seed(self.seed)
        @given(st.data())
        def probe(data: st.DataObject) -> None:
            if out_of_budget():
                return  # no drawing either: the remaining examples cost nothing
            draft = data.draw(drafts())
            test(draft, tuple(data.conjecture_data.choices))

        # Where Hypothesis looks the replayed choices up (its own default is a digest of
        # the function, which is the same for every finding).
        # Not typed below: Hypothesis reads this attribute to key its example database.
        probe._hypothesis_internal_database_key = _REPLAY_KEY  # type: ignore[attr-defined]
        with no_local_constants():
            try:
                probe()
            except KeyboardInterrupt:
                raise
            except _Violated:
                return "shrunk"
            except BaseException as exc:  # noqa: BLE001 - Hypothesis's own report (Flaky…)
                return type(exc).__name__
        return "explored" if replay is None else "did not reproduce"

    def _reproduce(self, findings: list[Finding]) -> None:
        """A bundle per finding (:mod:`.bundles`), and its one-line ``curl``; both name
        files relative to the report directory, the curl line to be run from there."""
        info = getattr(self.names, "target_info", None) or {}
        engine = {k: v for k, v in info.items() if k != "url"}
        for f in findings:
            bundle = bundles.write_finding(
                self.report_dir,
                f.requirement,
                f.to_dict(),
                dataclasses.asdict(f.draft),
                f.exchange,
                engine,
                self.names.prefix,
                files=self.files,
                target_url=str(info.get("url") or ""),
            )
            f.bundle = str(bundle.relative_to(self.report_dir))
            ex = f.exchange
            body_file = None
            if (bundle / "bodies" / "1.bin").is_file():
                body_file = Path(f.bundle) / "bodies" / "1.bin"
                f.body_file = str(body_file)
            f.reproducer = curl(
                self.client.target, ex.method, ex.path, ex.params, ex.request_headers, body_file
            )


def finding_lines(results: dict[str, Any]) -> Iterator[str]:
    """Lines for the terminal: each finding of the property phase with its reproducer."""
    for req in results.get("requirements", []):
        for f in (req.get("observations") or {}).get("findings", []):
            yield (
                f"{req['id']} {f['shape']} ({f['requests']} request"
                f"{'s' if f['requests'] != 1 else ''}): {f['request'][:160]}"
            )
            yield f"  {f['reproducer']}"
