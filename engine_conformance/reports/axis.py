"""The API-version axis: one catalogue judged at several API versions, one report.

Requirements carry the versions they apply to (``versions: ">=1.24"``) and the
spec fragment carries ``x-since``; a run at each version the engine serves shows
where behaviour changes with the version asked for.

    >>> all_versions("1.12", "1.41", catalogue_min="1.24")[:3]
    ['1.24', '1.25', '1.26']
    >>> all_versions("1.24", "1.45", catalogue_min="1.24")[-1]
    '1.44'
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from engine_conformance.base.versions import SPEC_VERSION, version_tuple
from engine_conformance.catalogue.requirements import Catalogue
from engine_conformance.judge.verdicts import scores


def catalogue_minimum(catalogue: Mapping[str, Any] | None = None) -> str:
    """The lowest API version (1.x) at which some requirement applies."""
    catalogue = Catalogue.load() if catalogue is None else catalogue
    top = version_tuple(SPEC_VERSION)[1]
    for minor in range(0, top + 1):
        if any(req.applies_to(f"1.{minor}") for req in catalogue.values()):
            return f"1.{minor}"
    return SPEC_VERSION


def all_versions(
    engine_min: str | None, engine_max: str | None, catalogue_min: str | None = None
) -> list[str]:
    """Every API version from the engine's (and catalogue's) minimum to the suite's maximum
    that the engine serves, lowest first."""
    low = max(
        version_tuple(engine_min or "1.24"), version_tuple(catalogue_min or catalogue_minimum())
    )
    high = min(version_tuple(engine_max or SPEC_VERSION), version_tuple(SPEC_VERSION))
    if low[0] != 1 or high[0] != 1:
        return []
    return [f"1.{minor}" for minor in range(low[1], high[1] + 1)]


def merge_versions(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One ``results.json`` for runs at several versions (``{version: results}``).

    The highest version's run is the report's own (verdicts, totals, gate); each
    requirement gains ``versions_judged`` and the summary ``by_api_version``.
    """
    versions = sorted(runs, key=version_tuple)
    merged = copy.deepcopy(dict(runs[versions[-1]]))
    merged["run"]["api_versions"] = versions
    merged["run"]["complete"] = all(r["run"].get("complete") for r in runs.values())
    merged["run"]["interrupted"] = any(r["run"].get("interrupted") for r in runs.values())
    merged["run"]["duration"] = round(sum(r["run"]["duration"] for r in runs.values()), 3)
    for req in merged["requirements"]:
        req["versions_judged"] = {
            v: next((r["verdict"] for r in runs[v]["requirements"] if r["id"] == req["id"]), "skip")
            for v in versions
        }
    merged["summary"]["by_api_version"] = {
        v: {
            "score": scores(runs[v]["requirements"]),
            **{k: runs[v]["summary"][k] for k in ("pass", "fail", "error", "skip")},
        }
        for v in versions
    }
    return merged
