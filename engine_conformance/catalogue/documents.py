"""The published Engine API documents the catalogue's basis and the fragment are read against.

    >>> docs = Documents()                                      # doctest: +SKIP
    >>> "tag` takes precedence" in docs.passage("1.48", "parameter fromImage")  # doctest: +SKIP
    True

moby's ``api/docs`` excerpts for ``POST /images/create`` (``v1.24-create-an-image.md``,
``v1.25.yaml`` … ``v1.55.yaml``, ``CHANGELOG.md``), kept beside the project in
``../shared/reference/engine-api`` or wherever ``$EC_ENGINE_API_DOCS`` says. They are
reference data, not part of the package: :attr:`Documents.missing` says why they
cannot be read, and the tests that need them skip with it.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

from engine_conformance.base import yamls
from engine_conformance.base.paths import ROOT

VERSIONS = tuple(f"1.{m}" for m in range(24, 56))
"""Every version with a document: 1.24 (markdown) and 1.25 to 1.55 (Swagger 2.0)."""


def normal(text: object) -> str:
    """Whitespace-normalised text: how quotes are compared."""
    return " ".join(str(text).split())


def strings(node: Any) -> list[str]:
    """Every string in a parsed YAML node, depth first."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


class Documents:
    """The folder of documents, read once each."""

    def __init__(self, folder: Path | str | None = None) -> None:
        self.folder = Path(
            folder
            or os.environ.get("EC_ENGINE_API_DOCS")
            or ROOT.parent / "shared" / "reference" / "engine-api"
        )

    @property
    def missing(self) -> str:
        """Why the documents cannot be read here ('' when they can)."""
        if (self.folder / "v1.44.yaml").is_file():
            return ""
        return (
            f"the Engine API documents are not at {self.folder} (set EC_ENGINE_API_DOCS "
            "to a folder of moby's api/docs excerpts v1.24-create-an-image.md, "
            "v1.25.yaml … v1.55.yaml and CHANGELOG.md)"
        )

    @functools.cache  # noqa: B019 (one instance per folder, alive for the process)
    def document(self, version: str) -> dict[str, Any] | str:
        """The parsed Swagger document, or for 1.24 the markdown "Create an image" section
        up to the next endpoint's."""
        if version == "1.24":
            return (self.folder / "v1.24-create-an-image.md").read_text().split("\n#### ")[0]
        parsed: dict[str, Any] = yamls.load((self.folder / f"v{version}.yaml").read_text())
        return parsed

    @functools.cache  # noqa: B019
    def changelog(self) -> dict[str, str]:
        """The API version history, one section per version (``"1.48": text``)."""
        sections: dict[str, str] = {}
        current = None
        for line in (self.folder / "CHANGELOG.md").read_text().splitlines():
            if m := re.match(r"^## v(\d+\.\d+) API changes", line, re.IGNORECASE):
                current = m.group(1)
                sections[current] = ""
            elif current:
                sections[current] += line + "\n"
        return sections

    def passage(self, version: str, at: str) -> str:
        """The normalised text at ``at`` (a basis locator, see requirements.LOCATORS)."""
        kind, _, name = at.partition(" ")
        if kind == "changelog":
            return normal(self.changelog().get(name, ""))
        doc = self.document(version)
        if isinstance(doc, str):  # v1.24: one markdown section holds all of it
            return normal(doc)
        post = doc["paths"]["/images/create"]["post"]
        if kind == "operation":
            return normal(
                " ".join(
                    strings(
                        {k: post.get(k) for k in ("summary", "description", "consumes", "produces")}
                    )
                )
            )
        if kind == "parameter":
            return normal(
                " ".join(strings([p for p in post["parameters"] if p.get("name") == name]))
            )
        if kind == "response":
            return normal(
                " ".join(strings(post["responses"].get(int(name) if name.isdigit() else name)))
            )
        if kind == "definition":
            top, _, prop = name.partition(".")
            node = doc["definitions"].get(top, {})
            if prop:
                node = node.get("properties", {}).get(prop, {})
            return normal(" ".join(strings(node)))
        if kind == "info":
            sections = re.split(r"(?m)^#+ ", doc["info"]["description"])
            return normal(" ".join(s for s in sections if s.split("\n", 1)[0].strip() == name))
        raise ValueError(f"unknown locator {at!r}")
