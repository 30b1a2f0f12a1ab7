"""``OUT/report/index.html``: one self-contained page (PNGs as data URIs, inline CSS, no script, no network).

LaTeX in questions and solutions is shown as escaped plain text, not typeset: MathJax's smallest offline
bundle (tex-svg, fonts inlined) is about 2 MB of JavaScript, which would make every report page ten times its
size and bring a script into a page that otherwise has none; the raw ``\\frac{1}{2}`` is also what the model
is trained on, so it is the honest thing to show.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from pipeline.report.figures import headline
from pipeline.report.plots import Plot
from pipeline.report.scan import BuildScan
from pipeline.report.summary import summary_lines

CLIP = 1500  # characters of a question or solution shown per sample

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1rem 2rem;
color:#222;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2rem}h3{font-size:1rem;margin:1.2rem 0 .4rem}
.meta{color:#666;font-size:.9rem}pre.summary{background:#f6f8fa;padding:.8rem;border-radius:6px;white-space:pre-wrap}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;font-size:.85rem}
.absent{color:#777;font-style:italic}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;
text-align:right}td:first-child,th:first-child{text-align:left}
.sample{border:1px solid #e3e3e3;border-radius:6px;padding:.5rem .8rem;margin:.6rem 0;background:#fcfcfc}
.sample .text{white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.82rem}
.sample .label{font-weight:600;font-size:.8rem;color:#444}.sample .info{color:#666;font-size:.78rem}
nav a{margin-right:.8rem;font-size:.9rem}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _clip(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= CLIP else text[: CLIP - 1] + "…"


def _image(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (f'<figure id="{plot.name}"><img alt="{_e(plot.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(plot.caption)}</figcaption></figure>")


def _funnel_table(scan: BuildScan) -> str:
    stages = headline(scan)["stages"]
    head = ("<tr><th>stage</th><th>candidates</th><th>rejected</th><th>generated</th><th>verified</th><th>failed</th>"
            "<th>duplicates</th><th>contaminated</th><th>kept</th><th>yield</th><th>tokens / kept</th>"
            "<th>ms / kept</th></tr>")
    body = []
    for s in stages:
        tokens = "" if s.tokens_per_kept is None else f"{s.tokens_per_kept:,.0f}"
        ms = "" if s.seconds_per_kept is None else f"{1000 * s.seconds_per_kept:,.2f}"
        cells = [s.stage, f"{s.candidates:,}", f"{sum(s.rejected.values()):,}", f"{s.generated:,}", f"{s.verified:,}",
                 f"{s.failed:,}", f"{s.duplicates:,}", f"{s.contaminated:,}", f"{s.kept:,}", f"{100 * s.yield_:.1f}%",
                 tokens, ms]
        body.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _sample(rec: dict[str, Any]) -> str:
    ver = rec.get("verification") or {}
    votes = f" {ver.get('votes')}/{ver.get('samples')}" if ver.get("samples") else ""
    source = rec.get("source") or {}
    info = [f"id {rec.get('id')}", f"answer {rec.get('answer')!r}",
            f"verification {ver.get('status')} ({ver.get('method')}{votes})"]
    if rec.get("difficulty"):
        info.append(f"difficulty {rec['difficulty']}")
    if source.get("dataset"):
        info.append(f"seed {source.get('dataset')} {source.get('seed_id') or ''}".strip())
    if rec.get("parent_ids"):
        info.append(f"parent {rec['parent_ids'][0]}")
    parts = [f'<div class="sample" data-method="{_e(rec.get("method"))}">']
    if rec.get("persona"):
        parts.append(f'<div class="label">persona</div><div class="text">{_e(_clip(rec["persona"]))}</div>')
    parts += [
        f'<div class="label">question</div><div class="text">{_e(_clip(rec.get("question")))}</div>',
        f'<div class="label">solution</div><div class="text">{_e(_clip(rec.get("solution")))}</div>',
        f'<div class="info">{_e(" · ".join(info))}</div></div>',
    ]
    return "".join(parts)


def render_page(scan: BuildScan, plots: list[Plot], absent: list[tuple[str, str]]) -> str:
    """The whole report page as one HTML string."""
    manifest = scan.manifest
    title = f"mathaug report: {manifest.get('recipe_name') or scan.out_dir.name}"
    nav = "".join(f'<a href="#{p.name}">{_e(p.title)}</a>' for p in plots) + '<a href="#samples">Sample rows</a>'
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{_e(scan.out_dir)} · run {_e(manifest.get("run_id"))} · recipe hash '
        f'{_e(manifest.get("recipe_hash"))} · written {_e(manifest.get("written_at"))} · mathaug '
        f'{_e(manifest.get("mathaug_version"))}</p>',
        f"<nav>{nav}</nav>",
        '<pre class="summary">' + _e("\n".join(summary_lines(scan))) + "</pre>",
        "<h2>Funnel table</h2>",
        _funnel_table(scan),
    ]
    for plot in plots:
        parts += [f"<h2>{_e(plot.title)}</h2>", _image(plot)]
    for title_, reason in absent:
        parts += [f"<h2>{_e(title_)}</h2>", f'<p class="absent">Nothing to plot: {_e(reason)}.</p>']
    parts.append('<h2 id="samples">Sample rows (random, up to ten per method)</h2>')
    parts.append('<p class="meta">LaTeX is shown as written in the row (not typeset).</p>')
    for method in scan.methods:
        rows = scan.samples.get(method) or []
        if rows:
            parts.append(f"<h3>{_e(method)} ({scan.kept.get(method, 0):,} rows)</h3>")
            parts += [_sample(rec) for rec in rows]
    parts.append("</body></html>")
    return "\n".join(parts)

