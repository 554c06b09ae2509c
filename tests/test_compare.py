"""engine-conformance compare: a verdict matrix across runs; docs/matrix.md is CI's own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine_conformance.catalogue import expectations
from engine_conformance.reports.compare import Matrix
from engine_conformance.run.runner import ROOT


def _results(key: str, verdicts: dict[str, str]) -> dict:
    reqs = [
        {
            "id": rid,
            "title": f"title of {rid}",
            "level": "MUST" if rid < "B" else "INFO",
            "suite": rid.split("-")[0].lower(),
            "verdict": v,
        }
        for rid, v in verdicts.items()
    ]
    return {
        "target": {
            "engine_key": key,
            "engine": key.split("-")[0],
            "version": "1",
            "image_store": "graphdriver",
            "api_version": "1.41",
        },
        "requirements": reqs,
    }


A = _results("docker-20.10", {"A-001": "pass", "A-002": "fail", "B-001": "pass"})
B = _results("podman-4.3", {"A-001": "pass", "A-002": "pass", "B-001": "skip", "C-001": "error"})


def test_matrix_marks_differences_and_scores_each_column():
    m = Matrix.from_results([A, B])
    assert [c.label for c in m.columns] == ["docker-20.10", "podman-4.3"]
    assert not m.differs("A-001") and m.differs("A-002") and m.differs("C-001")
    assert m.verdicts("C-001") == [None, "error"]
    assert m.columns[0].scores["MUST"] == 0.5
    assert m.columns[1].scores["INFO"] == 0.0  # an error applied, and was not shown to pass
    md = m.markdown()
    assert "| A-002 | MUST | **FAIL** | pass | ≠ |" in md
    assert "| A-001 | MUST | pass | pass |  |" in md
    assert "3 of 4 requirements differ" in md


def test_compare_command_writes_markdown_and_self_contained_html(tmp_path):
    paths = []
    for i, results in enumerate((A, B, A)):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(results))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine_conformance",
            "compare",
            *map(str, paths),
            "--out",
            str(tmp_path / "out"),
            "--label",
            "one",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "| requirement | level | one | podman-4.3 | docker-20.10 | |" in md
    page = (tmp_path / "out" / "comparison.html").read_text()
    assert "<script src" not in page and "<link" not in page
    assert "differs only" in page and page.count("class='differs'") == 3


def test_compare_refuses_what_is_not_a_results_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("[]")
    proc = subprocess.run(
        [sys.executable, "-m", "engine_conformance", "compare", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _matrix_columns(text: str) -> dict[str, dict[str, str]]:
    """docs/matrix.md read back: column label -> requirement -> verdict."""
    unmark = {"pass": "pass", "**FAIL**": "fail", "*error*": "error", "skip": "skip"}
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = next(line for line in lines if line.startswith("| requirement |"))
    labels = [c.strip() for c in header.strip("|").split("|")][2:-1]
    columns: dict[str, dict[str, str]] = {label: {} for label in labels}
    for line in lines[lines.index(header) + 1 :]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0].startswith("---"):
            continue
        for label, cell in zip(labels, cells[2 : 2 + len(labels)], strict=True):
            cell = cell.split(" (")[0]  # "pass (MUST)": the level, where versions differ
            if cell in unmark:
                columns[label][cells[0]] = unmark[cell]
    return columns


def test_docs_matrix_is_current_with_the_expectation_files():
    matrix = ROOT / "docs" / "matrix.md"
    assert matrix.is_file(), "docs/matrix.md is missing: run the tests, then scripts/update-matrix"
    columns = _matrix_columns(matrix.read_text())
    files = sorted(expectations.EXPECTATIONS_DIR.glob("*.yaml"))
    assert files
    stale = []
    for path in files:
        key = path.stem
        if key not in columns:
            stale.append(f"{key}: no column")
            continue
        want = expectations.load(path)
        diff = sorted(
            rid for rid in set(want) | set(columns[key]) if want.get(rid) != columns[key].get(rid)
        )
        if diff:
            stale.append(f"{key}: {', '.join(diff[:10])}")
    assert not stale, (
        "docs/matrix.md is stale against suites/expectations/ (run the tests, "
        "then scripts/update-matrix): " + "; ".join(stale)
    )


@pytest.mark.parametrize("name", ["matrix.md", "matrix.html"])
def test_docs_matrix_files_exist(name):
    assert (ROOT / "docs" / name).is_file()
