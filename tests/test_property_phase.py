"""The property phase without an engine: what it draws, how it renders, its budget.

The draw is pinned: :data:`DRAFTS_DIGEST` is the fingerprint of the first 40
requests drawn with the default seed. It changes when the strategies in
engine_conformance/property_phase.py change (then update it, on purpose) or when
a Hypothesis or schemathesis upgrade draws differently: then a `--seed` no longer
replays an earlier run, and pyproject.toml's pins are what to look at.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from engine_conformance.base.determinism import no_local_constants
from engine_conformance.base.stream import StreamParser
from engine_conformance.engine.target import Exchange
from engine_conformance.judge import property_phase as pp
from engine_conformance.judge.checks import imported_id

DRAFTS_DIGEST = "69259767909bf0ff"

PREFIX = "ectest-0000"
LAB = "127.0.0.1:5999"


def test_the_draw_is_pinned():
    assert pp.drafts_digest(pp.DEFAULT_SEED, 40) == DRAFTS_DIGEST, (
        "the requests drawn with the default seed changed: if on purpose (strategies "
        "edited), update DRAFTS_DIGEST; if after an upgrade, check pyproject.toml's pins"
    )


def test_the_draw_is_repeatable_and_seeded():
    assert pp.drafts_digest(7, 20) == pp.drafts_digest(7, 20)
    assert pp.drafts_digest(7, 20) != pp.drafts_digest(8, 20)


class _Lab:
    catalogue = SimpleNamespace(manifest_digest=lambda repo, tag: "sha256:" + "ab" * 32)

    def reference(self, repository: str) -> str:
        return f"{LAB}/{PREFIX}/{repository}"


class _Files:
    base = "http://127.0.0.1:6000"

    def add(self, name: str, data: bytes) -> str:
        return f"{self.base}/t/{name}"

    def missing(self, name: str) -> str:
        return f"{self.base}/m/{name}"


def _phase(tmp_path) -> pp.PropertyPhase:
    names = SimpleNamespace(
        prefix=PREFIX, counter=iter(range(10**6)), created=set(), preexisting=frozenset()
    )
    return pp.PropertyPhase(SimpleNamespace(), names, _Lab(), _Files(), tmp_path)


_REF = re.compile(rf"{re.escape(LAB)}/{PREFIX}/\S*")


def test_every_drawn_request_stays_on_the_lab_and_under_the_prefix(tmp_path):
    phase = _phase(tmp_path)
    kinds = set()

    @seed(1)
    @settings(
        max_examples=300,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(pp.drafts())
    def safe(draft: pp.Draft) -> None:
        params, headers, body = phase.request(draft, f"{PREFIX}/prop-1")
        query = dict(params)
        kinds.add(draft.kind)
        assert query["repo"] == f"{PREFIX}/prop-1"
        assert not ("fromSrc" in query and "fromImage" in query)
        if "fromImage" in query:
            assert _REF.fullmatch(query["fromImage"].replace(" ", "_")), query
        if "fromSrc" in query:
            assert query["fromSrc"] == "-" or query["fromSrc"].startswith(_Files.base), query
        assert (body is not None) == (query.get("fromSrc") == "-")
        assert set(headers) <= {"X-Registry-Auth"}
        for _, value in params:
            value.encode("utf-8")  # sendable
        for value in headers.values():
            value.encode("ascii")
        if draft.secret and "X-Registry-Auth" in headers:
            assert draft.secret not in str(query)

    with no_local_constants():
        safe()
    assert kinds == set(pp.KINDS)


@pytest.mark.parametrize(
    "text,seconds,examples",
    [("60s", 60.0, pp.MAX_EXAMPLES), ("200", None, 200), (" 2.5S ", 2.5, pp.MAX_EXAMPLES)],
)
def test_budget(text, seconds, examples):
    budget = pp.Budget.parse(text)
    assert (budget.seconds, budget.examples) == (seconds, examples)


@pytest.mark.parametrize("text", ["", "0", "-3", "abc", "0s", "60m"])
def test_bad_budget(text):
    with pytest.raises(ValueError, match="property-budget"):
        pp.Budget.parse(text)


def _exchange(status: int, body: bytes, ctype: str = "application/json") -> Exchange:
    ex = Exchange(
        "POST",
        "/v1.44/images/create",
        [("fromSrc", "-")],
        {},
        status=status,
        headers={"content-type": ctype},
        body=body,
    )
    parser = StreamParser()
    parser.feed(body, 0.0)
    parser.close()
    ex.messages, ex.framing_errors = parser.messages, parser.errors
    return ex


def _draft(kind: str = "import", fault: bool = True, secret: str | None = None) -> pp.Draft:
    return pp.Draft(
        kind, "positive", (("fromSrc", "-"),), body="tar", client_fault=fault, secret=secret
    )


def _rids(found):
    return [v.requirement for v in found]


def test_properties_of_a_good_import():
    ex = _exchange(200, b'{"status":"sha256:' + b"a" * 64 + b'"}\r\n')
    assert imported_id(ex)
    assert pp.violations(ex, _draft(), {"sha256:a": {f"{PREFIX}/p:latest"}}, {}, PREFIX) == []


def test_properties_each_break():
    assert _rids(
        pp.violations(_exchange(418, b'{"message":"x"}'), _draft(False), {}, {}, PREFIX)
    ) == ["SCHEMA-001"]
    assert _rids(pp.violations(_exchange(400, b"bad", "text/plain"), _draft(), {}, {}, PREFIX)) == [
        "SCHEMA-002"
    ]
    assert _rids(
        pp.violations(_exchange(200, b'{"status":"x"}{"status":"y"}\r\n'), _draft(), {}, {}, PREFIX)
    ) == ["SCHEMA-003"]
    assert _rids(pp.violations(_exchange(500, b'{"message":"x"}'), _draft(), {}, {}, PREFIX)) == [
        "SCHEMA-004"
    ]
    assert _rids(
        pp.violations(_exchange(200, b'{"status":"Loading layer"}\r\n'), _draft(), {}, {}, PREFIX)
    ) == ["SCHEMA-005"]
    assert _rids(
        pp.violations(
            _exchange(400, b'{"message":"bad ec-secret-1"}'),
            _draft(secret="ec-secret-1"),
            {},
            {},
            PREFIX,
        )
    ) == ["SCHEMA-006"]
    ok = _exchange(200, b'{"status":"sha256:' + b"a" * 64 + b'"}\r\n')
    assert _rids(pp.violations(ok, _draft(), {"sha256:b": set()}, {}, PREFIX)) == ["SCHEMA-007"]
    assert _rids(pp.violations(ok, _draft(), {}, {"sha256:b": {f"{PREFIX}/x:1"}}, PREFIX)) == [
        "SCHEMA-007"
    ]


def test_a_pull_may_end_with_a_warning_after_its_status():
    body = (
        b'{"status":"Status: Downloaded newer image for x"}\r\n'
        b'{"status":"WARNING: image with reference x was found but does not match"}\r\n'
    )
    assert pp.stream_end_problem(_exchange(200, body), "pull") is None
    assert pp.stream_end_problem(_exchange(200, b'{"status":"Downloading"}\r\n'), "pull")
    cut = _exchange(200, b'{"error":"x"}\r\n{"status":"y"}\r\n')
    assert pp.stream_end_problem(cut, "pull")[0] == "goes on after its error line"
    assert (
        pp.stream_end_problem(_exchange(200, b'{"errorDetail":{"message":"x"}}\r\n'), "pull")
        is None
    )


def test_findings_are_grouped_by_property_and_shape():
    a = pp._violation_type(("SCHEMA-004", "import -> HTTP 500"))
    assert a is pp._violation_type(("SCHEMA-004", "import -> HTTP 500"))
    assert a is not pp._violation_type(("SCHEMA-004", "pull -> HTTP 500"))


def test_the_cli_refuses_a_bad_budget(capsys):
    from engine_conformance.run import cli

    code = cli.main(["run", "--target", "unix:///nonexistent.sock", "--property-budget", "soon"])
    assert code == cli.EXIT_USAGE
    assert "--property-budget" in capsys.readouterr().err


def test_findings_are_listed_with_their_reproducers():
    results = {
        "requirements": [
            {
                "id": "SCHEMA-004",
                "observations": {
                    "findings": [
                        {
                            "shape": "import -> HTTP 500",
                            "requests": 3,
                            "request": "POST /v1.44/images/create",
                            "reproducer": "curl -sS -i …",
                        }
                    ]
                },
            },
            {"id": "ERRORS-001", "observations": {}},
        ]
    }
    assert list(pp.finding_lines(results)) == [
        "SCHEMA-004 import -> HTTP 500 (3 requests): POST /v1.44/images/create",
        "  curl -sS -i …",
    ]


def test_an_echoed_secret_is_found_where_checks_find_it():
    # SCHEMA-006 asks checks.exposures, as AUTH-014 does: headers, status line, each
    # stream message and the body, the secret as is or escaped.
    draft = _draft(secret="ec-secret-1")
    ex = _exchange(400, b'{"message":"x"}')
    ex.headers["x-detail"] = "ec-secret-1"
    (v,) = [v for v in pp.violations(ex, draft, {}, {}, PREFIX) if v.requirement == "SCHEMA-006"]
    assert v.shape == "secret echoed in the headers" and "header x-detail" in v.detail
    ex = _exchange(200, b'{"status":"using ec-secret-1"}\r\n{"errorDetail":{"message":"x"}}\r\n')
    (v,) = [v for v in pp.violations(ex, draft, {}, {}, PREFIX) if v.requirement == "SCHEMA-006"]
    assert v.shape == "secret echoed in the body" and "stream message 1 of 2" in v.detail
    assert "ec-secret-1" not in v.detail  # the finding names the place, never the value
