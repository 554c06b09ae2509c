"""The requirement catalogue: what the suite judges, and on what grounds.

Requirements live in ``suites/requirements/*.yaml``, one list per suite. Each
states what it rests on, per API version range; its level follows from that::

    - id: PULL-003
      title: A tag in fromImage and a separate tag parameter ...
      versions: ">=1.24"        # API versions it applies to (">=A", "<B", "A-B", ">=A,<B", "any")
      basis:
        - kind: reference       # what the reference engine does where the document is silent
          versions: "<1.48"
          engines: Docker 20.10, 26.1, 28.5
          note: the tag parameter wins
        - kind: document        # the Engine API document of every version in the range
          versions: ">=1.48"
          at: parameter fromImage
          quote: If both `fromImage` and `tag` are provided, `tag` takes precedence.
      spec: >-                  # the reasoning, in the catalogue's own words
        ...

Basis kinds, and the level each gives (:data:`KINDS`):

==================  ======  ===================================================
kind                level   fields
==================  ======  ===================================================
document            MUST    ``at`` (``parameter NAME``, ``response CODE``,
                            ``definition NAME``, ``info SECTION``,
                            ``operation``, ``changelog VERSION``),
                            ``quote`` (exact words)
rfc                 MUST or ``source`` (``RFC 9110 §15.5``), ``keyword``
                    SHOULD  (MUST gives MUST; SHOULD, or ``none`` for a
                            definition with no requirement word, gives
                            SHOULD), ``quote``
registry-protocol   SHOULD  ``source`` (distribution / token / image spec and
                            section), ``quote``
reference           SHOULD  ``engines`` (the Docker versions seen), ``note``
observation         INFO    ``note``
==================  ======  ===================================================

At an API version, a requirement's level is the strongest level among the
basis entries whose range holds that version; :meth:`Catalogue.at` gives the
catalogue as judged at one version. ``tests/test_basis.py`` checks every
``document`` quote against the document of every version in its range.

A suite check names its requirement with ``@pytest.mark.requirement("IMPORT-001")``.

    >>> cat = Catalogue.load().at("1.48")                       # doctest: +SKIP
    >>> cat["PULL-003"].level, cat["PULL-003"].basis[0].kind    # doctest: +SKIP
    ('MUST', 'document')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine_conformance.base import paths, yamls
from engine_conformance.base.versions import SPEC_VERSION, version_tuple

CATALOGUE_DIR = paths.SUITES / "requirements"
LEVELS = ("MUST", "SHOULD", "INFO")
VERDICTS = ("pass", "fail", "skip", "error")
_ID = re.compile(r"^[A-Z]+(-[A-Z]+)*-\d{3}$")

KINDS: dict[str, tuple[str, ...]] = {
    # kind: the fields it needs (besides ``versions``)
    "document": ("at", "quote"),
    "rfc": ("source", "keyword", "quote"),
    "registry-protocol": ("source", "quote"),
    "reference": ("engines", "note"),
    "observation": ("note",),
}
LOCATORS = ("parameter", "response", "definition", "info", "operation", "changelog")
"""How a ``document`` basis names where its quote stands (first word of ``at``).

``changelog 1.22`` is the API version history's section for v1.22: a change the
document records once and that holds from then on (checked in that section only)."""


class CatalogueError(Exception):
    """The catalogue files are malformed."""


@dataclass(frozen=True)
class Basis:
    """One ground a requirement rests on, for the API versions in ``versions``."""

    kind: str
    versions: str
    at: str = ""
    quote: str = ""
    source: str = ""
    keyword: str = ""
    engines: str = ""
    note: str = ""

    @property
    def level(self) -> str:
        """The level this basis gives: see the module's table."""
        if self.kind == "document":
            return "MUST"
        if self.kind == "rfc":  # keyword "none": the RFC defines, with no requirement word
            return "MUST" if self.keyword == "MUST" else "SHOULD"
        if self.kind in ("registry-protocol", "reference"):
            return "SHOULD"
        return "INFO"

    def holds_at(self, api_version: str) -> bool:
        return version_in(api_version, self.versions)

    def cite(self) -> str:
        """One line a reader can check: what it rests on and the words.

        >>> Basis("document", ">=1.48", at="parameter fromImage", quote="tag wins").cite()
        'Engine API document >=1.48, parameter fromImage: "tag wins"'
        """
        if self.kind == "document":
            return f'Engine API document {self.versions}, {self.at}: "{self.quote}"'
        if self.kind in ("rfc", "registry-protocol"):
            return f'{self.source}: "{self.quote}"'
        if self.kind == "reference":
            return f"reference engine ({self.engines}): {self.note}"
        return f"observation: {self.note}"

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v} | {"level": self.level}


@dataclass(frozen=True)
class Requirement:
    id: str
    title: str
    level: str
    spec: str
    suite: str
    versions: str = ">=1.24"
    basis: tuple[Basis, ...] = field(default=())
    all_basis: tuple[Basis, ...] = field(default=(), repr=False)
    judged_at: str = ""

    @property
    def gating(self) -> bool:
        """Whether a fail of this requirement fails a run (INFO never does)."""
        return self.level != "INFO"

    def applies_to(self, api_version: str) -> bool:
        return version_in(api_version, self.versions)

    def at(self, api_version: str) -> Requirement:
        """This requirement as judged at ``api_version``: its level and basis in force there."""
        held = tuple(b for b in self.all_basis if b.holds_at(api_version))
        if not held:  # outside its range: it is skipped; keep the nearest basis to explain it
            held = self.all_basis[-1:] if self.all_basis else ()
        level = min((b.level for b in held), key=LEVELS.index, default=self.level)
        return replace(self, level=level, basis=held, judged_at=api_version)

    def levels(self) -> list[tuple[str, str, tuple[Basis, ...]]]:
        """Per version range of the catalogue's span: ``(range, level, basis)``, merged.

        The ranges are written ``1.24-1.47`` (both ends included); a range that
        runs to the newest document known ends in ``+``.
        """
        out: list[tuple[str, str, tuple[Basis, ...]]] = []
        spans: list[list[Any]] = []
        for minor in range(DOCUMENTED_MIN[1], DOCUMENTED_MAX[1] + 1):
            v = f"1.{minor}"
            if not self.applies_to(v):
                continue
            here = self.at(v)
            if (
                spans
                and spans[-1][2] == here.level
                and spans[-1][3] == here.basis
                and spans[-1][1] == f"1.{minor - 1}"
            ):
                spans[-1][1] = v
            else:
                spans.append([v, v, here.level, here.basis])
        for low, high, level, basis in spans:
            top = f"1.{DOCUMENTED_MAX[1]}"
            span = f"{low}+" if high == top else (low if low == high else f"{low}-{high}")
            out.append((span, level, basis))
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "title": self.title,
            "level": self.level,
            "suite": self.suite,
            "versions": self.versions,
            "spec": self.spec,
            "basis": [b.to_dict() for b in self.basis],
        }
        if self.judged_at:
            out["judged_at"] = self.judged_at
        else:
            out["levels"] = [
                {"versions": span, "level": level, "basis": [b.to_dict() for b in basis]}
                for span, level, basis in self.levels()
            ]
        return out


DOCUMENTED_MIN = (1, 24)
DOCUMENTED_MAX = (1, 55)
"""The Engine API documents the catalogue's basis is read against."""


def version_in(version: str, spec: str) -> bool:
    """Whether ``version`` falls in ``spec``: ``any``, ``>=A``, ``<B``, ``A-B``, or ``>=A,<B``."""
    v = version_tuple(version)
    for part in (p.strip() for p in spec.split(",")):
        if part in ("", "any"):
            continue
        if part.startswith(">="):
            ok = v >= version_tuple(part[2:])
        elif part.startswith("<="):
            ok = v <= version_tuple(part[2:])
        elif part.startswith("<"):
            ok = v < version_tuple(part[1:])
        elif part.startswith(">"):
            ok = v > version_tuple(part[1:])
        elif "-" in part:
            low, high = part.split("-", 1)
            ok = version_tuple(low) <= v <= version_tuple(high)
        else:
            ok = v == version_tuple(part)
        if not ok:
            return False
    return True


class Catalogue(dict[str, Requirement]):
    """All requirements by ID, in file order.

    :meth:`load` gives them as judged at the fragment's version (``SPEC_VERSION``);
    :meth:`at` at any other.
    """

    @classmethod
    def load(cls, directory: Path = CATALOGUE_DIR) -> Catalogue:
        cat = cls()
        for path in sorted(directory.glob("*.yaml")):
            entries = yamls.load(path.read_text()) or []
            if not isinstance(entries, list):
                raise CatalogueError(f"{path.name}: expected a list of requirements")
            for entry in entries:
                req = _requirement(entry, path.stem, path.name)
                if req.id in cat:
                    raise CatalogueError(f"{path.name}: duplicate requirement {req.id}")
                cat[req.id] = req
        return cat.at(SPEC_VERSION)

    def at(self, api_version: str) -> Catalogue:
        """The catalogue as judged at ``api_version`` (levels and basis in force there)."""
        return Catalogue({rid: req.at(api_version) for rid, req in self.items()})

    def unresolved(self) -> Catalogue:
        """The catalogue with every version range's basis (for listing, not judging)."""
        return Catalogue(
            {rid: replace(req, judged_at="", basis=req.all_basis) for rid, req in self.items()}
        )


def _basis(raw: object, req_id: str, versions: str, where: str) -> Basis:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: {req_id} basis entries are mappings")
    kind = str(raw.get("kind", ""))
    if kind not in KINDS:
        raise CatalogueError(
            f"{where}: {req_id} basis kind {kind!r} is not one of {', '.join(KINDS)}"
        )
    unknown = set(raw) - {"kind", "versions", *Basis.__dataclass_fields__}
    if unknown:
        raise CatalogueError(f"{where}: {req_id} basis has unknown keys {sorted(unknown)}")
    missing = [k for k in KINDS[kind] if not str(raw.get(k, "")).strip()]
    if missing:
        raise CatalogueError(f"{where}: {req_id} {kind} basis lacks {', '.join(missing)}")
    basis = Basis(
        **{k: " ".join(str(v).split()) for k, v in raw.items() if k != "versions"},
        versions=str(raw.get("versions", versions)),
    )
    if kind == "document" and basis.at.split()[0] not in LOCATORS:
        raise CatalogueError(
            f"{where}: {req_id} document basis 'at' starts with one of "
            f"{', '.join(LOCATORS)}, not {basis.at!r}"
        )
    if kind == "rfc" and basis.keyword not in ("MUST", "SHOULD", "none"):
        raise CatalogueError(f"{where}: {req_id} rfc basis keyword is MUST, SHOULD or none")
    try:
        version_in("1.41", basis.versions)
    except Exception as exc:  # noqa: BLE001 - whatever the range parser raised is the file's fault
        raise CatalogueError(
            f"{where}: {req_id} basis versions {basis.versions!r}: {exc}"
        ) from None
    return basis


def _requirement(entry: object, suite: str, where: str) -> Requirement:
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: each requirement is a mapping")
    missing = {"id", "title", "spec"} - entry.keys()
    if missing:
        raise CatalogueError(f"{where}: {entry.get('id', '?')} lacks {', '.join(sorted(missing))}")
    rid = str(entry["id"])
    if not _ID.match(rid):
        raise CatalogueError(f"{where}: bad requirement id {rid!r} (e.g. IMPORT-004)")
    versions = str(entry.get("versions", ">=1.24"))
    try:
        version_in("1.41", versions)
    except Exception as exc:  # noqa: BLE001 - whatever the range parser raised is the file's fault
        raise CatalogueError(f"{where}: {rid} versions {versions!r}: {exc}") from None
    if "level" in entry:
        raise CatalogueError(f"{where}: {rid} states a level; the level follows from its basis")
    raw = entry.get("basis")
    if not isinstance(raw, list) or not raw:
        raise CatalogueError(f"{where}: {rid} lacks its basis (a list of what it rests on)")
    basis = tuple(_basis(b, rid, versions, where) for b in raw)
    req = Requirement(
        id=rid,
        title=str(entry["title"]).strip(),
        level="INFO",
        spec=str(entry["spec"]).strip(),
        suite=suite,
        versions=versions,
        basis=basis,
        all_basis=basis,
    )
    uncovered = [
        f"1.{m}"
        for m in range(DOCUMENTED_MIN[1], DOCUMENTED_MAX[1] + 1)
        if req.applies_to(f"1.{m}") and not any(b.holds_at(f"1.{m}") for b in basis)
    ]
    if uncovered:
        raise CatalogueError(
            f"{where}: {rid} has no basis at API {', '.join(uncovered[:3])}"
            f"{'…' if len(uncovered) > 3 else ''}"
        )
    return req


def cite(entry: Mapping[str, Any]) -> list[str]:
    """The basis of a judged requirement (a results.json entry), one line each.

    >>> cite({"basis": [{"kind": "reference", "engines": "Docker 26.1", "note": "400"}]})
    ['reference engine (Docker 26.1): 400']
    """
    return [
        Basis(**{k: v for k, v in b.items() if k != "level"}).cite()
        for b in entry.get("basis") or []
        if isinstance(b, Mapping)
    ]


def reference_note(entry: Mapping[str, Any]) -> str:
    """For a fail: whether the reference engine deviates here too ('' when not, or not a fail).

    >>> reference_note({"verdict": "fail", "reference_deviates": ["docker-26.1"]})
    'the reference engine deviates here too (docker-26.1)'
    """
    seen = entry.get("reference_deviates") or []
    if entry.get("verdict") != "fail" or not seen:
        return ""
    return f"the reference engine deviates here too ({', '.join(seen)})"
