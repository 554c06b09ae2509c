"""``engine-conformance compare RESULTS.json…``: verdicts side by side.

One row per requirement, one column per run (any number), rows whose verdicts
differ marked, and each column's score per level. Written as ``comparison.md``
and a self-contained ``comparison.html`` (with a "differs only" filter).

    >>> m = Matrix.from_results([a, b], labels=["docker-20.10", "podman-4.3"])  # doctest: +SKIP
    >>> m.differs("ERRORS-005")                                                 # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from engine_conformance.catalogue.requirements import LEVELS, reference_note
from engine_conformance.judge.verdicts import scores
from engine_conformance.reports.summary import percent

MARK = {"pass": "pass", "fail": "**FAIL**", "error": "*error*", "skip": "skip", None: "–"}
PLAIN = {"pass": "pass", "fail": "fail", "error": "error", "skip": "skip", None: "–"}


@dataclass
class Column:
    label: str
    detail: str  # engine, version, image store and API version
    verdicts: dict[str, str]
    scores: dict[str, float | None]
    levels: dict[str, str] = field(default_factory=dict)


@dataclass
class Matrix:
    columns: list[Column]
    rows: list[dict[str, str]] = field(default_factory=list)  # id, title, level, suite

    @classmethod
    def from_results(cls, runs: Sequence[Mapping[str, Any]], labels: Sequence[str] = ()) -> Matrix:
        columns, rows, seen = [], [], set()
        for i, results in enumerate(runs):
            t = results["target"]
            label = labels[i] if i < len(labels) else str(t.get("engine_key") or f"run {i + 1}")
            detail = (
                f"{t.get('engine')} {t.get('version')}, {t.get('image_store')}, "
                f"API {t.get('api_version')}"
            )
            reqs = results["requirements"]
            columns.append(
                Column(
                    label,
                    detail,
                    {r["id"]: r["verdict"] for r in reqs},
                    results.get("summary", {}).get("score") or scores(reqs),
                    {r["id"]: r["level"] for r in reqs},
                )
            )
            for r in reqs:
                if r["id"] not in seen:
                    seen.add(r["id"])
                    rows.append({k: r[k] for k in ("id", "title", "suite")} | {"note": ""})
                row = next(x for x in rows if x["id"] == r["id"])
                row["note"] = row["note"] or reference_note(r)
        for row in rows:
            row["level"] = " / ".join(
                dict.fromkeys(c.levels[row["id"]] for c in columns if row["id"] in c.levels)
            )
        rows.sort(key=lambda r: (r["suite"], r["id"]))
        return cls(columns, rows)

    def verdicts(self, rid: str) -> list[str | None]:
        return [c.verdicts.get(rid) for c in self.columns]

    def cell(
        self, column: Column, row: Mapping[str, str], marks: Mapping[str | None, str] = MARK
    ) -> str:
        """A verdict, with the column's level where the level differs across columns."""
        verdict = column.verdicts.get(row["id"])
        if verdict and " / " in row["level"]:
            return f"{marks[verdict]} ({column.levels[row['id']]})"
        return marks[verdict]

    def differs(self, rid: str) -> bool:
        return len(set(self.verdicts(rid))) > 1

    def markdown(self, title: str = "Verdicts across runs") -> str:
        head = " | ".join(c.label for c in self.columns)
        lines = [
            f"# {title}",
            "",
            "Columns: " + "; ".join(f"**{c.label}**: {c.detail}" for c in self.columns),
            "",
            f"| score | {head} |",
            "|---|" + "---|" * len(self.columns),
        ]
        for level in LEVELS:
            lines.append(
                f"| {level} | "
                + " | ".join(percent(c.scores.get(level)) for c in self.columns)
                + " |"
            )
        differing = sum(1 for r in self.rows if self.differs(r["id"]))
        lines += [
            "",
            f"{differing} of {len(self.rows)} requirements differ (marked ≠).",
            "",
            "A level written A / B differs with the API version judged; each cell then "
            "names its own.",
            "",
            f"| requirement | level | {head} | | note |",
            "|---|---|" + "---|" * len(self.columns) + "---|---|",
        ]
        for r in self.rows:
            cells = " | ".join(self.cell(c, r) for c in self.columns)
            lines.append(
                f"| {r['id']} | {r['level']} | {cells} | "
                f"{'≠' if self.differs(r['id']) else ''} | {r['note']} |"
            )
        return "\n".join(lines) + "\n"

    def html(self, title: str = "Verdicts across runs") -> str:
        head = "".join(
            f"<th title='{escape(c.detail)}'>{escape(c.label)}</th>" for c in self.columns
        )
        score_rows = "".join(
            f"<tr><th>{level}</th>"
            + "".join(f"<td>{percent(c.scores.get(level))}</td>" for c in self.columns)
            + "</tr>"
            for level in LEVELS
        )
        rows = []
        for r in self.rows:
            cells = "".join(
                f"<td class='{escape(c.verdicts.get(r['id']) or 'none')}'>"
                f"{escape(self.cell(c, r, PLAIN))}</td>"
                for c in self.columns
            )
            diff = self.differs(r["id"])
            rows.append(
                f"<tr class='{'differs' if diff else 'same'}'><th title='"
                f"{escape(r['title'])}'>{escape(r['id'])}</th><td>{escape(r['level'])}"
                f"</td>{cells}<td>{'≠' if diff else ''}</td>"
                f"<td class=note>{escape(r['note'])}</td></tr>"
            )
        detail = "".join(
            f"<li><b>{escape(c.label)}</b>: {escape(c.detail)}</li>" for c in self.columns
        )
        return f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}
</title><style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#1d2330}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:3px 10px;text-align:left}}
td.pass{{background:#d9f2de}}td.fail{{background:#fbd5d5;font-weight:700}}
td.error{{background:#fde7c2}}td.skip,td.none{{background:#eee}}
tr.differs th{{background:#fff3b0}}
body.only-differs tr.same{{display:none}}
</style></head><body><h1>{escape(title)}</h1><ul>{detail}</ul>
<h2>Score per level</h2><table id=scores><tr><th></th>{head}</tr>{score_rows}</table>
<h2>Requirements</h2><label><input type=checkbox id=differs> differs only</label>
<span id=shown></span>
<table id=matrix><tr><th>requirement</th><th>level</th>{head}<th></th><th>note</th></tr>
{"".join(rows)}
</table><script>
(function(){{var box=document.getElementById('differs');
function apply(){{document.body.classList.toggle('only-differs',box.checked);
var n=document.querySelectorAll(box.checked?'tr.differs':'tr.differs,tr.same').length;
document.getElementById('shown').textContent='showing '+n+' requirements';}}
box.addEventListener('change',apply);apply();}})();
</script></body></html>
"""

    def write(self, out: Path, title: str = "Verdicts across runs") -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        md, page = out / "comparison.md", out / "comparison.html"
        md.write_text(self.markdown(title))
        page.write_text(self.html(title), encoding="utf-8")
        return [md, page]


def compare_dirs(
    report_dirs: Sequence[Path], out: Path, title: str = "Verdicts of the engines CI judges"
) -> list[Path]:
    """The comparison of the runs in ``report_dirs`` (those with a results.json) into ``out``;
    its Markdown is appended to ``$GITHUB_STEP_SUMMARY`` when that is set."""
    import os

    runs = [
        json.loads((d / "results.json").read_text())
        for d in report_dirs
        if (d / "results.json").is_file()
    ]
    if not runs:
        return []
    matrix = Matrix.from_results(runs)
    written = matrix.write(out, title)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(matrix.markdown(title) + "\n")
    return written


def main(args: argparse.Namespace) -> int:
    """The ``compare`` subcommand; refusals as :class:`cli.Refusal`."""
    from engine_conformance.base.exits import EXIT_OK, EXIT_USAGE, Refusal

    runs = []
    for path in args.results:
        try:
            runs.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise Refusal(f"{path}: not a results.json ({exc})", EXIT_USAGE) from None
        if not isinstance(runs[-1], dict) or "requirements" not in runs[-1]:
            raise Refusal(f"{path}: not a results.json (no requirements)", EXIT_USAGE)
    matrix = Matrix.from_results(runs, args.label)
    for written in matrix.write(args.out):
        print(written)
    return EXIT_OK
