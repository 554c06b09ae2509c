"""The catalogue is whole: every requirement is checked, and every check is shown to fail.

A check that cannot fail is a defect, so each requirement must have at least
one deviant row expecting ``fail`` and one expecting ``pass``; a ``fail`` row names
the reason it must fail for.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from engine_conformance.catalogue.requirements import (
    Basis,
    Catalogue,
    CatalogueError,
    Requirement,
    version_in,
)

ROOT = Path(__file__).resolve().parent.parent
# Marks may be built in code (pytest.param(..., marks=requirement(rid))), so any
# quoted ID in a suite module counts here; test_expectations.py checks that a
# full run really judges every requirement.
MARK = re.compile(r"""["']([A-Z]+(?:-[A-Z]+)*-\d{3})["']""")


def _rows() -> list:
    rows = []
    for path in sorted((ROOT / "tests" / "deviants").glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"_rows_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        rows += getattr(module, "CASES", [])
    return rows


def test_every_requirement_has_a_check():
    marked = {m for p in (ROOT / "suites").glob("test_*.py") for m in MARK.findall(p.read_text())}
    assert set(Catalogue.load()) - marked == set()
    assert marked - set(Catalogue.load()) == set()


def test_every_requirement_has_failing_and_passing_deviant_rows():
    rows = _rows()
    missing = []
    for rid in Catalogue.load():
        expects = {row.expect for row in rows if row.requirement == rid}
        if not {"fail", "pass"} <= expects:
            missing.append(f"{rid} has rows for {sorted(expects) or 'nothing'}")
    assert not missing, "\n".join(missing)


def test_fail_rows_name_their_reason():
    # A row that names no reason could pass by failing for any cause at all.
    bare = [str(row) for row in _rows() if row.expect == "fail" and not row.reason]
    assert not bare, "fail rows without the reason they must fail for: " + ", ".join(bare)


def test_requirements_quote_their_basis():
    for req in Catalogue.load().values():
        assert len(req.spec) > 40, f"{req.id} rests on too little text: {req.spec!r}"


@pytest.mark.parametrize(
    ("version", "spec", "inside"),
    [
        ("1.41", ">=1.24", True),
        ("1.41", ">=1.42", False),
        ("1.31", "<1.32", True),
        ("1.40", "1.30-1.40", True),
        ("1.44", ">=1.24,<1.44", False),
        ("1.41", "any", True),
    ],
)
def test_version_ranges(version, spec, inside):
    assert version_in(version, spec) is inside


def test_malformed_catalogue_is_refused(tmp_path):
    (tmp_path / "x.yaml").write_text("- id: bad\n  title: t\n  spec: s\n")
    with pytest.raises(CatalogueError, match="bad requirement id"):
        Catalogue.load(tmp_path)


def test_levels_follow_the_basis():
    should = Requirement(
        "X-001",
        "t",
        "SHOULD",
        "s",
        "x",
        all_basis=(Basis("reference", ">=1.24", engines="D", note="n"),),
    )
    assert (should.at("1.41").level, should.at("1.41").gating) == ("SHOULD", True)
    info = Requirement(
        "X-002", "t", "MUST", "s", "x", all_basis=(Basis("observation", ">=1.24", note="n"),)
    )
    assert not info.at("1.41").gating
