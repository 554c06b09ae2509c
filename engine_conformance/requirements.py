"""The requirement catalogue: what the suite judges, and on what grounds.

Requirements live in ``suites/requirements/*.yaml``, one list per suite::

    - id: IMPORT-001
      title: An import creates an image that can be inspected
      level: MUST            # MUST: documented; SHOULD: reference engine; INFO: observation
      versions: ">=1.24"     # API versions it applies to (">=A", "<B", "A-B", or "any")
      spec: >-               # the text it rests on, quoted from the spec or the reference facts
        fromSrc: Source to import. ...

A suite check names its requirement with ``@pytest.mark.requirement("IMPORT-001")``.

    >>> cat = Catalogue.load()                                  # doctest: +SKIP
    >>> cat["IMPORT-001"].applies_to("1.41")                    # doctest: +SKIP
    True
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from . import paths
from .target import version_tuple

CATALOGUE_DIR = paths.SUITES / "requirements"
LEVELS = ("MUST", "SHOULD", "INFO")
BASIS = {"MUST": "documented", "SHOULD": "reference", "INFO": "observation"}
VERDICTS = ("pass", "fail", "skip", "error")
_ID = re.compile(r"^[A-Z]+(-[A-Z]+)*-\d{3}$")


class CatalogueError(Exception):
    """The catalogue files are malformed."""


@dataclass(frozen=True)
class Requirement:
    id: str
    title: str
    level: str
    spec: str
    suite: str
    versions: str = ">=1.24"

    @property
    def basis(self) -> str:
        """``documented``, ``reference`` or ``observation``, from the level."""
        return BASIS[self.level]

    @property
    def gating(self) -> bool:
        """Whether a fail of this requirement fails a run (INFO never does)."""
        return self.level != "INFO"

    def applies_to(self, api_version: str) -> bool:
        return version_in(api_version, self.versions)

    def to_dict(self) -> dict:
        return asdict(self) | {"basis": self.basis}


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
    """All requirements by ID, in file order."""

    @classmethod
    def load(cls, directory: Path = CATALOGUE_DIR) -> Catalogue:
        cat = cls()
        for path in sorted(directory.glob("*.yaml")):
            entries = yaml.safe_load(path.read_text()) or []
            if not isinstance(entries, list):
                raise CatalogueError(f"{path.name}: expected a list of requirements")
            for entry in entries:
                req = _requirement(entry, path.stem, path.name)
                if req.id in cat:
                    raise CatalogueError(f"{path.name}: duplicate requirement {req.id}")
                cat[req.id] = req
        return cat


def _requirement(entry: object, suite: str, where: str) -> Requirement:
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: each requirement is a mapping")
    missing = {"id", "title", "level", "spec"} - entry.keys()
    if missing:
        raise CatalogueError(f"{where}: {entry.get('id', '?')} lacks {', '.join(sorted(missing))}")
    req = Requirement(
        id=str(entry["id"]),
        title=str(entry["title"]).strip(),
        level=str(entry["level"]),
        spec=str(entry["spec"]).strip(),
        suite=suite,
        versions=str(entry.get("versions", ">=1.24")),
    )
    if not _ID.match(req.id):
        raise CatalogueError(f"{where}: bad requirement id {req.id!r} (e.g. IMPORT-004)")
    if req.level not in LEVELS:
        raise CatalogueError(f"{where}: {req.id} level must be one of {', '.join(LEVELS)}")
    try:
        version_in("1.41", req.versions)
    except Exception as exc:
        raise CatalogueError(f"{where}: {req.id} versions {req.versions!r}: {exc}") from None
    return req
