"""``report.html``: one self-contained page a person reads instead of the logs.

(Not named ``html``: run from an installed package's directory it would shadow the
standard library's ``html``.)

No network assets (styles and the filter script are inline), so it works from
``file://`` and as a CI artifact. Scores per level at the top, failures first
with their evidence and a ``curl`` command that repeats each request
(:func:`~engine_conformance.judge.reproducer.curl_for_evidence`), the property phase's
findings with their reproducers, filters by verdict, suite and level, and each
requirement's spec text. Each deviation has a "copy as bug report" button that
copies its section of ``findings.md`` (:func:`~engine_conformance.reports.findings.sections`,
embedded in a ``<template id=bug-ID>``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from engine_conformance.catalogue.requirements import LEVELS, cite, reference_note
from engine_conformance.judge.reproducer import curl_for_evidence
from engine_conformance.reports.findings import sections
from engine_conformance.reports.summary import gate_lines, percent, target_line, totals_line

ORDER = {"fail": 0, "error": 1, "pass": 2, "skip": 3}

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:16px 24px}
header h1{font-size:18px;margin:0 0 4px}
header .meta{opacity:.8;font-size:12px}
main{padding:16px 24px;max-width:1200px}
.scores{display:flex;gap:12px;margin:0 0 12px}
.score{background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 2px #0002;
 min-width:140px}
.score b{display:block;font-size:26px}
.score small{color:#666}
#totals{font-weight:600;margin:8px 0}
.gate{padding:8px 12px;border-radius:6px;margin:8px 0;background:#e7f6ea}
.gate.bad{background:#fdeaea}
.filters{position:sticky;top:0;background:#f6f7f9;padding:8px 0;display:flex;gap:12px;
 flex-wrap:wrap;align-items:center;border-bottom:1px solid #ddd;z-index:1}
details.req{background:#fff;border-radius:6px;margin:6px 0;box-shadow:0 1px 2px #0001}
details.req summary{padding:8px 12px;cursor:pointer;list-style:none;display:flex;gap:10px}
details.req .body{padding:0 12px 12px}
.v{font-weight:700;text-transform:uppercase;font-size:12px;padding:2px 6px;border-radius:4px;
 min-width:42px;text-align:center}
.v.pass{background:#d9f2de;color:#125c25}.v.fail{background:#fbd5d5;color:#8a1111}
.v.error{background:#fde7c2;color:#7a4800}.v.skip{background:#e4e6ea;color:#555}
.id{font-family:ui-monospace,monospace;min-width:100px}
.lvl{color:#555;min-width:52px}
.reason{white-space:pre-wrap;background:#fff7f7;border-left:3px solid #c33;padding:6px 10px}
.spec{white-space:pre-wrap;color:#333;border-left:3px solid #99a;padding:4px 10px;margin:8px 0}
.reference{background:#fff3b0;padding:4px 10px;margin:6px 0;font-weight:600}
.basis{margin:6px 0;padding-left:22px;color:#223}
pre{background:#1d2330;color:#e8e8e8;padding:8px 10px;border-radius:4px;overflow:auto;
 font-size:12px;white-space:pre-wrap;word-break:break-all}
table.m{border-collapse:collapse;background:#fff}
table.m td,table.m th{border:1px solid #ddd;padding:3px 8px;font-size:12px}
td.pass{background:#d9f2de}td.fail{background:#fbd5d5}td.error{background:#fde7c2}
td.skip{background:#eee}
button.copy{font:inherit;font-size:12px;padding:3px 10px;margin:8px 0;border:1px solid #99a;
 border-radius:4px;background:#fff;cursor:pointer}
button.copy.copied{background:#d9f2de;border-color:#125c25}
#copy-buffer{position:fixed;left:-9999px;top:0}
"""

_JS = """
(function(){
  var f={verdict:document.getElementById('f-verdict'),suite:document.getElementById('f-suite'),
         level:document.getElementById('f-level')};
  var items=[].slice.call(document.querySelectorAll('details.req'));
  function apply(){
    var shown=0;
    items.forEach(function(el){
      var ok=['verdict','suite','level'].every(function(k){
        return !f[k].value || el.dataset[k]===f[k].value;});
      el.style.display=ok?'':'none'; if(ok) shown++;
    });
    document.getElementById('shown').textContent='showing '+shown+' of '+items.length;
  }
  Object.keys(f).forEach(function(k){f[k].addEventListener('change',apply);});
  apply();
  // "copy as bug report": the clipboard API where the page may use it, else a selected
  // textarea and execCommand (older browsers; a page some browsers deny the API).
  function fallback(text){
    var ta=document.getElementById('copy-buffer');
    if(!ta){ta=document.createElement('textarea');ta.id='copy-buffer';ta.readOnly=true;
      document.body.appendChild(ta);}
    ta.value=text;ta.select();
    try{return document.execCommand('copy');}catch(e){return false;}
  }
  [].forEach.call(document.querySelectorAll('button.copy'),function(b){
    var label=b.textContent;
    function shown(ok){
      b.textContent=ok?'copied':'copy failed: select the section in findings.md';
      b.classList.toggle('copied',ok);
      setTimeout(function(){b.textContent=label;b.classList.remove('copied');},2500);
    }
    b.addEventListener('click',function(){
      var text=document.getElementById('bug-'+b.dataset.req).content.textContent;
      if(navigator.clipboard&&window.isSecureContext){
        navigator.clipboard.writeText(text).then(function(){shown(true);},
                                                 function(){shown(fallback(text));});
      }else{shown(fallback(text));}
    });
  });
})();
"""


def _evidence(target_url: str, ev: Mapping[str, Any]) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in (ev.get("headers") or {}).items())
    stream = [json.dumps(m) for m in ev.get("first_messages") or []]
    if ev.get("last_message") is not None:
        stream += [f"… ({ev.get('message_count')} messages)", json.dumps(ev["last_message"])]
    parts = [
        f"<div class=evidence><b class=request>{escape(str(ev.get('request')))}</b>"
        f" → <b class=status>HTTP {escape(str(ev.get('status')))}</b>"
    ]
    if ev.get("timed_out"):
        parts.append(" (timed out)")
    if ev.get("incomplete"):
        parts.append(f"<div class=reason>incomplete message: {escape(str(ev['incomplete']))}</div>")
    if headers:
        parts.append(f"<pre class=headers>{escape(headers)}</pre>")
    if stream:
        parts.append(f"<pre class=stream>{escape(chr(10).join(stream))}</pre>")
    elif ev.get("body"):
        parts.append(f"<pre class=stream>{escape(str(ev['body']))}</pre>")
    if ev.get("framing_errors"):
        parts.append(f"<pre>{escape(chr(10).join(ev['framing_errors']))}</pre>")
    parts.append(
        f"<div>reproduce:</div><pre class=curl>{escape(curl_for_evidence(target_url, ev))}"
        "</pre></div>"
    )
    return "".join(parts)


def _findings(findings: list[Mapping[str, Any]]) -> str:
    """The property phase's findings: each shrunk request, its answer and its reproducer."""
    items = []
    for f in findings:
        items.append(
            f"<div class=evidence><div><b>{escape(str(f.get('shape')))}</b> "
            f"({escape(str(f.get('requests')))} requests, {escape(str(f.get('generation')))} "
            f"generation)</div><b class=request>{escape(str(f.get('request')))}</b> → "
            f"<b class=status>HTTP {escape(str(f.get('status')))}</b>"
            f"<pre class=stream>{escape(str(f.get('answer') or f.get('detail') or ''))}</pre>"
            f"<div>reproduce:</div><pre class=curl>{escape(str(f.get('reproducer')))}</pre>"
            "</div>"
        )
    return (
        f"<div class=findings><div>property phase: {len(findings)} distinct "
        f"finding{'s' if len(findings) != 1 else ''}, each shrunk to a minimal request"
        "</div>" + "".join(items) + "</div>"
    )


def _copy_button(rid: str, section: str) -> str:
    """The button and, beside it, the markdown it copies (a template is never rendered)."""
    return (
        f'<button type=button class=copy data-req="{escape(rid)}">copy as bug report'
        f'</button><template id="bug-{escape(rid)}">{escape(section)}</template>'
    )


def _requirement(r: Mapping[str, Any], target_url: str, bug_report: str = "") -> str:
    attrs = (
        f'data-verdict="{escape(r["verdict"])}" data-suite="{escape(r["suite"])}" '
        f'data-level="{escape(r["level"])}" id="{escape(r["id"])}"'
    )
    open_ = " open" if r["verdict"] in ("fail", "error") and r["level"] != "INFO" else ""
    at = f" at API {r['judged_at']}" if r.get("judged_at") else ""
    body = [
        f"<div class=meta>{escape(r['level'])}{escape(at)}, "
        f"suite {escape(r['suite'])}, applies to API {escape(r.get('versions', ''))}, "
        f"{r.get('duration', 0):.2f} s ({r.get('engine_wait', 0):.2f} s waiting on the engine)"
        "</div>"
    ]
    if bug_report:
        body.append(_copy_button(r["id"], bug_report))
    if r.get("reason"):
        body.append(f"<div class=reason>{escape(r['reason'])}</div>")
    if reference_note(r):
        body.append(f"<div class=reference>{escape(reference_note(r))}</div>")
    body.append(
        "<ul class=basis>" + "".join(f"<li>{escape(line)}</li>" for line in cite(r)) + "</ul>"
    )
    body.append(f"<div class=spec>{escape(r.get('spec', ''))}</div>")
    findings = (r.get("observations") or {}).get("findings") or []
    if findings:
        body.append(_findings(findings))
    if r["verdict"] in ("fail", "error"):
        body += [_evidence(target_url, ev) for ev in r.get("evidence") or []]
    elif r.get("evidence"):
        body.append(
            f"<details><summary>evidence ({len(r['evidence'])} requests)</summary>"
            + "".join(_evidence(target_url, ev) for ev in r["evidence"])
            + "</details>"
        )
    if r.get("versions_judged"):
        cells = "".join(
            f"<td class={escape(v)}>{escape(ver)}: {escape(v)}</td>"
            for ver, v in r["versions_judged"].items()
        )
        body.append(f"<table class=m><tr>{cells}</tr></table>")
    return (
        f"<details class=req {attrs}{open_}><summary><span class='v {escape(r['verdict'])}'>"
        f"{escape(r['verdict'])}</span><span class=id>{escape(r['id'])}</span>"
        f"<span class=lvl>{escape(r['level'])}</span><span>{escape(r['title'])}</span>"
        f"</summary><div class=body>{''.join(body)}</div></details>"
    )


def _version_matrix(results: Mapping[str, Any]) -> str:
    """Requirement × API version, when the run judged several versions."""
    versions = results["run"].get("api_versions") or []
    if len(versions) < 2:
        return ""
    head = "".join(f"<th>{escape(v)}</th>" for v in versions)
    rows = []
    for r in results["requirements"]:
        judged = r.get("versions_judged") or {}
        cells = "".join(
            f"<td class={escape(judged.get(v, 'skip'))}>{escape(judged.get(v, '-'))}</td>"
            for v in versions
        )
        rows.append(f"<tr><th>{escape(r['id'])}</th>{cells}</tr>")
    return (
        f"<h2>Requirement × API version</h2><table class=m id=versions><tr><th></th>{head}"
        f"</tr>{''.join(rows)}</table>"
    )


def render(results: Mapping[str, Any]) -> str:
    s = results["summary"]
    target_url = results["target"].get("url", "")
    scores = "".join(
        f"<div class=score data-level={level}><small>{level}</small>"
        f"<b>{percent(s['score'][level])}</b>"
        f"<small>{s['by_level'][level]['pass']} of "
        f"{sum(s['by_level'][level][v] for v in ('pass', 'fail', 'error'))} pass</small></div>"
        for level in LEVELS
    )
    gate = gate_lines(results)
    gate_html = ""
    if gate:
        bad = gate[0][1]
        gate_html = (
            f"<div class='gate{' bad' if bad else ''}' id=gate>"
            + "<br>".join(escape(t) for t, _ in gate)
            + "</div>"
        )
    reqs = sorted(
        results["requirements"],
        key=lambda r: (ORDER.get(r["verdict"], 9), LEVELS.index(r["level"]), r["id"]),
    )
    suites = list(s.get("by_suite") or {})
    drafts = sections(results)
    blocks = "".join(_requirement(r, target_url, drafts.get(r["id"], "")) for r in reqs)

    def select(name: str, values: list[str]) -> str:
        opts = "".join(f"<option value='{escape(v)}'>{escape(v)}</option>" for v in values)
        return (
            f"<label>{name} <select id=f-{name}><option value=''>all</option>{opts}"
            "</select></label>"
        )

    run = results["run"]
    partial = (
        ""
        if run.get("complete", True)
        else (
            "<div class='gate bad'>Partial run: "
            + ("interrupted" if run.get("interrupted") else "a selection of the catalogue")
            + "</div>"
        )
    )
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>Conformance: {escape(target_line(results))}</title><style>{_CSS}</style></head>
<body><header><h1>POST /images/create conformance: {escape(target_line(results))}</h1>
<div class=meta>{escape(results["tool"]["name"])} {escape(results["tool"]["version"])} ·
started {escape(run["started"])} · {run["duration"]:.1f} s ·
{escape(str(results["target"].get("os")))}/{escape(str(results["target"].get("arch")))} ·
storage {escape(str(results["target"].get("storage_driver")))}</div></header>
<main><div class=scores>{scores}</div>
<div id=totals>{escape(totals_line(results))}</div>{partial}{gate_html}
<div class=filters>{select("verdict", ["fail", "error", "pass", "skip"])}
{select("suite", suites)}{select("level", list(LEVELS))}<span id=shown></span></div>
<div id=requirements>{blocks}</div>
{_version_matrix(results)}
</main><script>{_JS}</script></body></html>
"""


def write_html(path: Path, results: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(results), encoding="utf-8")
