"""Every MUST is the document's word at the version judged.

Each ``document`` basis of the catalogue quotes the Engine API document; this
checks the quote, whitespace-normalised, against the document of every API
version in the basis's range, at the place the basis names (``at``). The
documents are moby's published ``api/docs`` excerpts, kept beside the project
(``../shared/reference/engine-api``, or ``$EC_ENGINE_API_DOCS``); in a clone
without them the proof is skipped, saying so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine_conformance.catalogue import documents
from engine_conformance.catalogue.documents import Documents
from engine_conformance.catalogue.requirements import (
    Catalogue,
    CatalogueError,
    Requirement,
)

DOCS = Documents()
VERSIONS = list(documents.VERSIONS)

needs_docs = pytest.mark.skipif(bool(DOCS.missing), reason=DOCS.missing)


def passage(version: str, at: str) -> str:
    return DOCS.passage(version, at)


def _catalogue() -> Catalogue:
    return Catalogue.load().unresolved()


def _document_bases() -> list:
    return [
        pytest.param(req, b, id=f"{req.id}:{b.at}")
        for req in _catalogue().values()
        for b in req.all_basis
        if b.kind == "document"
    ]


@needs_docs
@pytest.mark.parametrize(("req", "basis"), _document_bases())
def test_document_quotes_stand_in_every_version_of_their_range(req: Requirement, basis) -> None:
    quote = documents.normal(basis.quote)
    if basis.at.startswith("changelog "):  # one section, whatever the version judged
        assert quote in passage("", basis.at), (
            f"{req.id}: the version history's v{basis.at.split()[1]} section does not say "
            f"{basis.quote!r}"
        )
        return
    missing = [
        v
        for v in VERSIONS
        if basis.holds_at(v) and req.applies_to(v) and quote not in passage(v, basis.at)
    ]
    assert not missing, (
        f"{req.id}: {basis.at!r} does not say {basis.quote!r} at API {', '.join(missing)}"
    )


def test_no_must_rests_on_anything_but_a_document_or_an_rfc_must() -> None:
    wrong = []
    for req in _catalogue().values():
        for span, level, basis in req.levels():
            if level == "MUST" and not any(
                b.kind == "document" or (b.kind == "rfc" and b.keyword == "MUST") for b in basis
            ):
                wrong.append(f"{req.id} {span}")
    assert not wrong


def test_levels_follow_the_version(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        yaml.safe_dump(
            [
                {
                    "id": "X-001",
                    "title": "t",
                    "spec": "s",
                    "versions": ">=1.24",
                    "basis": [
                        {
                            "kind": "reference",
                            "versions": "<1.48",
                            "engines": "Docker 26.1",
                            "note": "n",
                        },
                        {
                            "kind": "document",
                            "versions": ">=1.48",
                            "at": "parameter fromImage",
                            "quote": "q",
                        },
                    ],
                }
            ]
        )
    )
    cat = Catalogue.load(tmp_path)
    assert cat.at("1.41")["X-001"].level == "SHOULD"
    assert cat.at("1.48")["X-001"].level == "MUST"
    assert [(span, level) for span, level, _ in cat["X-001"].levels()] == [
        ("1.24-1.47", "SHOULD"),
        ("1.48+", "MUST"),
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"level": "MUST"}, "states a level"),
        ({"basis": None}, "lacks its basis"),
        ({"basis": [{"kind": "document", "at": "parameter tag"}]}, "lacks quote"),
        ({"basis": [{"kind": "rumour", "note": "n"}]}, "is not one of"),
        ({"basis": [{"kind": "document", "at": "somewhere", "quote": "q"}]}, "'at' starts with"),
        (
            {"basis": [{"kind": "rfc", "source": "RFC 9110", "keyword": "MAY", "quote": "q"}]},
            "keyword is MUST, SHOULD or none",
        ),
        (
            {"basis": [{"kind": "observation", "versions": ">=1.30", "note": "n"}]},
            "no basis at API 1.24",
        ),
    ],
)
def test_a_malformed_basis_is_refused(tmp_path: Path, entry: dict, message: str) -> None:
    base = {
        "id": "X-001",
        "title": "t",
        "spec": "s",
        "basis": [{"kind": "observation", "note": "n"}],
    }
    (tmp_path / "x.yaml").write_text(yaml.safe_dump([base | entry]))
    with pytest.raises(CatalogueError, match=message):
        Catalogue.load(tmp_path)
