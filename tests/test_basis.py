"""Every MUST is the document's word at the version judged.

Each ``document`` basis of the catalogue quotes the Engine API document; this
checks the quote, whitespace-normalised, against the document of every API
version in the basis's range, at the place the basis names (``at``). The
documents are moby's published ``api/docs`` excerpts, kept beside the project
(``../shared/reference/engine-api``, or ``$EC_ENGINE_API_DOCS``); in a clone
without them the proof is skipped, saying so.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine_conformance.requirements import (
    DOCUMENTED_MAX,
    DOCUMENTED_MIN,
    Catalogue,
    CatalogueError,
    Requirement,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = Path(os.environ.get("EC_ENGINE_API_DOCS",
                           ROOT.parent / "shared" / "reference" / "engine-api"))
VERSIONS = [f"1.{m}" for m in range(DOCUMENTED_MIN[1], DOCUMENTED_MAX[1] + 1)]

needs_docs = pytest.mark.skipif(
    not (DOCS / "v1.44.yaml").is_file(),
    reason=f"the Engine API documents are not at {DOCS} (set EC_ENGINE_API_DOCS to a folder "
           "of moby's api/docs excerpts v1.24-create-an-image.md, v1.25.yaml … v1.55.yaml)",
)


def normal(text: str) -> str:
    return " ".join(text.split())


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


@functools.cache
def document(version: str) -> dict[str, Any] | str:
    if version == "1.24":
        return (DOCS / "v1.24-create-an-image.md").read_text()
    return yaml.safe_load((DOCS / f"v{version}.yaml").read_text())


@functools.cache
def changelog(version: str) -> str:
    """The version history's section for API ``version``."""
    text = (DOCS / "CHANGELOG.md").read_text()
    found = re.search(rf"(?ms)^## v{re.escape(version)} API changes\n(.*?)(?=^## |\Z)", text)
    return normal(found[1]) if found else ""


def passage(version: str, at: str) -> str:
    """The text of the document of ``version`` at ``at`` (see requirements.LOCATORS)."""
    kind, _, name = at.partition(" ")
    if kind == "changelog":
        return changelog(name)
    doc = document(version)
    if isinstance(doc, str):
        # v1.24: the markdown excerpt's "Create an image" section, up to the next endpoint.
        return normal(doc.split("#### Inspect an image")[0])
    post = doc["paths"]["/images/create"]["post"]
    if kind == "operation":
        return normal(" ".join(_strings({k: post.get(k) for k in ("summary", "description",
                                                               "consumes", "produces")})))
    if kind == "parameter":
        found = [p for p in post["parameters"] if p.get("name") == name]
        return normal(" ".join(_strings(found)))
    if kind == "response":
        return normal(" ".join(_strings(post["responses"].get(int(name),
                                                              post["responses"].get(name)))))
    if kind == "definition":
        top, _, prop = name.partition(".")
        node = doc["definitions"].get(top, {})
        if prop:
            node = node.get("properties", {}).get(prop, {})
        return normal(" ".join(_strings(node)))
    if kind == "info":
        text = doc["info"]["description"]
        sections = re.split(r"(?m)^#+ ", text)
        found = [s for s in sections if s.split("\n", 1)[0].strip() == name]
        return normal(" ".join(found))
    raise AssertionError(f"unknown locator {at!r}")


def _catalogue() -> Catalogue:
    return Catalogue.load().unresolved()


def _document_bases() -> list:
    return [pytest.param(req, b, id=f"{req.id}:{b.at}")
            for req in _catalogue().values() for b in req.all_basis if b.kind == "document"]


@needs_docs
@pytest.mark.parametrize(("req", "basis"), _document_bases())
def test_document_quotes_stand_in_every_version_of_their_range(req: Requirement, basis) -> None:
    quote = normal(basis.quote)
    if basis.at.startswith("changelog "):  # one section, whatever the version judged
        assert quote in passage("", basis.at), (
            f"{req.id}: the version history's v{basis.at.split()[1]} section does not say "
            f"{basis.quote!r}")
        return
    missing = [v for v in VERSIONS if basis.holds_at(v) and req.applies_to(v)
               and quote not in passage(v, basis.at)]
    assert not missing, (f"{req.id}: {basis.at!r} does not say {basis.quote!r} at API "
                         f"{', '.join(missing)}")


def test_no_must_rests_on_anything_but_a_document_or_an_rfc_must() -> None:
    wrong = []
    for req in _catalogue().values():
        for span, level, basis in req.levels():
            if level == "MUST" and not any(
                    b.kind == "document" or (b.kind == "rfc" and b.keyword == "MUST")
                    for b in basis):
                wrong.append(f"{req.id} {span}")
    assert not wrong


def test_levels_follow_the_version(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(yaml.safe_dump([{
        "id": "X-001", "title": "t", "spec": "s", "versions": ">=1.24",
        "basis": [{"kind": "reference", "versions": "<1.48", "engines": "Docker 26.1",
                   "note": "n"},
                  {"kind": "document", "versions": ">=1.48", "at": "parameter fromImage",
                   "quote": "q"}]}]))
    cat = Catalogue.load(tmp_path)
    assert cat.at("1.41")["X-001"].level == "SHOULD"
    assert cat.at("1.48")["X-001"].level == "MUST"
    assert [(span, level) for span, level, _ in cat["X-001"].levels()] == [
        ("1.24-1.47", "SHOULD"), ("1.48+", "MUST")]


@pytest.mark.parametrize(("entry", "message"), [
    ({"level": "MUST"}, "states a level"),
    ({"basis": None}, "lacks its basis"),
    ({"basis": [{"kind": "document", "at": "parameter tag"}]}, "lacks quote"),
    ({"basis": [{"kind": "rumour", "note": "n"}]}, "is not one of"),
    ({"basis": [{"kind": "document", "at": "somewhere", "quote": "q"}]}, "'at' starts with"),
    ({"basis": [{"kind": "rfc", "source": "RFC 9110", "keyword": "MAY", "quote": "q"}]},
     "keyword is MUST, SHOULD or none"),
    ({"basis": [{"kind": "observation", "versions": ">=1.30", "note": "n"}]},
     "no basis at API 1.24"),
])
def test_a_malformed_basis_is_refused(tmp_path: Path, entry: dict, message: str) -> None:
    base = {"id": "X-001", "title": "t", "spec": "s",
            "basis": [{"kind": "observation", "note": "n"}]}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump([base | entry]))
    with pytest.raises(CatalogueError, match=message):
        Catalogue.load(tmp_path)
