"""Where the suite's data lives: the checks, the catalogue, the expectations, the spec.

    >>> from engine_conformance.base import paths
    >>> paths.SUITES / "requirements"                        # doctest: +SKIP
    PosixPath('/work/main/suites/requirements')

From a checkout (or an editable install) they are the top-level ``suites/`` and
``spec/`` folders beside the package; an installed wheel carries them inside
the package (``engine_conformance/suites``, ``engine_conformance/spec``, mapped
there by pyproject.toml), so the tool works from any directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent  # engine_conformance/


def _data(name: str) -> Path:
    inside = PACKAGE / name
    return inside if inside.is_dir() else PACKAGE.parent / name


SUITES: Path = _data("suites")
"""The checks (``test_*.py``), ``requirements/`` and ``expectations/``."""

SPEC: Path = _data("spec")
"""The OpenAPI fragment and its README."""

ROOT: Path = SUITES.parent
"""The directory a suite run is rooted in: the checkout, or the installed package."""

MANAGED_MARKER = ".engine-conformance-managed"
"""A file in a managed engine's private directory: what names it as the suite's own."""

MANAGED_NAME = "$ENGINE_DIR"
"""What a report calls a managed engine's private directory (gone after the run)."""


def managed_engine_dir(url: str) -> Path | None:
    """The private directory of a managed engine whose socket ``url`` is, else None.

    >>> managed_engine_dir("unix:///var/run/docker.sock") is None
    True
    """
    if not url.startswith("unix://"):
        return None
    parent = Path(url[len("unix://") :]).parent
    return parent if (parent / MANAGED_MARKER).is_file() else None


def without_engine_dir(value: Any, url: str) -> Any:
    """``value`` (JSON-like) with the managed engine's directory of ``url`` named
    ``$ENGINE_DIR`` everywhere, the engine's own words included (its private
    directory's random name says nothing, and names this machine). Unchanged for any
    other engine.

    >>> without_engine_dir({"said": "open /var/lib/x"}, "unix:///run/docker.sock")
    {'said': 'open /var/lib/x'}
    """
    engine_dir = managed_engine_dir(url)
    if engine_dir is None:
        return value
    old = str(engine_dir)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return v.replace(old, MANAGED_NAME)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        return v

    return walk(value)
