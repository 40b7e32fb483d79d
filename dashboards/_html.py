"""The report page: plain string building, every interpolated value through :func:`esc`.

Nothing that came from a trace (comm, file names, event names, field text, host names) is
ever written into the page without ``html.escape``: table cells, the SQL text, titles and
notes go through :func:`esc`; figure data goes through :func:`plotly.io.to_html`, which
writes it as JSON with ``<``, ``>`` and ``/`` as unicode escapes, and the figure functions
(:mod:`rmapscope.dashboards.figures`) escape every string they hand to plotly (plotly draws
text as pseudo-HTML, so ``<b>`` in a comm would otherwise turn bold; it decodes the
entities back for display).

Defence in depth: a Content-Security-Policy ``<meta>`` allows only scripts that carry the
page's random nonce (the plotly bundle, one small script per figure, the self-check), so an
inline event handler or an injected ``<script>`` could not run even if escaping failed.
Styles may be inline (plotly injects its own). No network access is allowed, except the
plotly.js CDN script when it is referenced instead of embedded (pinned by SRI hash).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import plotly.io as pio
import plotly.offline

from ._panel import Kpi, Panel, Section

if TYPE_CHECKING:
    import polars as pl

__all__ = ["Column", "Panel", "Section", "esc", "figure_html", "kpis", "page", "table"]


def esc(value: Any) -> str:
    """``value`` as text safe anywhere in HTML content or a quoted attribute."""
    return "" if value is None else html.escape(str(value), quote=True)


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The plotly.js bundle shipped with the plotly package."""
    return plotly.offline.get_plotlyjs()


def plotly_cdn_url() -> str:
    """The CDN address of the same plotly.js version as the bundled one."""
    return f"https://cdn.plot.ly/plotly-{plotly.offline.get_plotlyjs_version()}.min.js"


@lru_cache(maxsize=1)
def plotly_sri() -> str:
    """Subresource-integrity hash of the bundled plotly.js (what the CDN serves)."""
    digest = hashlib.sha384(plotly_js().encode("utf-8")).digest()
    return "sha384-" + base64.b64encode(digest).decode("ascii")


def csp(nonce: str) -> str:
    """The page's Content-Security-Policy: scripts only with ``nonce``, no network."""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; connect-src 'none'; object-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )


# --------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class Column:
    """A table column: the frame column, its header, an optional formatter to text."""

    name: str
    label: str
    fmt: Callable[[Any], str] | None = None
    cls: str = ""


def table(frame: pl.DataFrame, columns: Sequence[Column], max_rows: int | None = None) -> str:
    """An HTML table of ``frame``; every header and cell escaped."""
    head = "".join(f'<th class="{esc(c.cls)}">{esc(c.label)}</th>' for c in columns)
    rows = []
    for i, r in enumerate(frame.iter_rows(named=True)):
        if max_rows is not None and i >= max_rows:
            break
        cells = []
        for c in columns:
            v = r.get(c.name)
            text = "" if v is None else (c.fmt(v) if c.fmt else str(v))
            cells.append(f'<td class="{esc(c.cls)}">{esc(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="table-wrap"><table><thead><tr>'
        + head
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


# --------------------------------------------------------------------------- figures
_SCRIPT_TAG = re.compile(r"<script\b")


def figure_html(fig: Any, div_id: str, nonce: str) -> str:
    """``fig`` as a div plus its (nonce-carrying) plotting script, without plotly.js."""
    out = pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        default_width="100%",
        default_height=f"{int(fig.layout.height or 450)}px",
        config={
            "displaylogo": False,
            "responsive": True,
            "modeBarButtonsToRemove": ["select2d", "lasso2d"],
        },
    )
    # plotly's JSON escapes "<" as \u003c, so the only "<script" here are its own tags
    return _SCRIPT_TAG.sub(f'<script nonce="{nonce}"', out)


# --------------------------------------------------------------------------- page
_CSS = """
:root { --fg:#1d232b; --muted:#5b6672; --line:#d9dee4; --bg:#ffffff; --soft:#f4f6f8;
        --accent:#2b5d9b; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color:var(--fg); background:var(--bg); }
header.top { padding: 18px 28px 10px; border-bottom: 1px solid var(--line);
             background: var(--soft); }
header.top h1 { margin: 0 0 4px; font-size: 22px; }
header.top .meta { color: var(--muted); font-size: 13px; }
header.top .meta span { margin-right: 18px; white-space: nowrap; }
nav.toc { padding: 8px 28px; border-bottom: 1px solid var(--line); font-size: 13px; }
nav.toc a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
main { padding: 6px 28px 40px; max-width: 1500px; }
h2 { font-size: 18px; margin: 26px 0 6px; padding-bottom: 4px;
     border-bottom: 2px solid var(--line); }
section.panel { margin: 14px 0 22px; }
section.panel h3 { font-size: 15px; margin: 0 0 2px; }
p.desc { margin: 0 0 6px; color: var(--muted); max-width: 1100px; }
p.note { margin: 0 0 6px; color: #8a5a00; font-size: 13px; }
p.empty { padding: 10px 14px; background: var(--soft); border-radius: 4px; color: var(--muted); }
.kpis { display:flex; flex-wrap:wrap; gap:10px; margin:10px 0 4px; }
.kpi { border:1px solid var(--line); border-radius:6px; padding:8px 14px; min-width:130px; }
.kpi .v { font-size:20px; font-weight:600; }
.kpi .l { color:var(--muted); font-size:12px; }
.kpi.bad .v { color:#c62828; } .kpi.warn .v { color:#b26a00; } .kpi.good .v { color:#2e7d32; }
.table-wrap { overflow-x: auto; max-height: 560px; overflow-y: auto;
              border: 1px solid var(--line); }
table { border-collapse: collapse; font-size: 12.5px; width: 100%; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: top; }
th { position: sticky; top: 0; background: var(--soft); white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
td.hash { font-family: ui-monospace, monospace; font-size: 11px; word-break: break-all;
          min-width: 180px; }
td.pre { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 11.5px; }
td.wide { min-width: 320px; }
details.sql { margin-top: 4px; }
details.sql summary { cursor: pointer; color: var(--accent); font-size: 12.5px; }
details.sql pre { background: var(--soft); padding: 8px 10px; overflow-x: auto; font-size: 12px;
                  border: 1px solid var(--line); border-radius: 4px; }
.plotly-graph-div { border: 1px solid var(--line); border-radius: 4px; }
footer { color: var(--muted); font-size: 12px; padding: 10px 28px 30px; }
"""

# Runs first: records script errors, CSP violations and console.error calls, so the page can
# report them in its self-check marker (read by the browser tests).
_ERRORS_JS = """
window.__rmapscopeErrors = [];
window.addEventListener('error', function (e) {
  window.__rmapscopeErrors.push('error: ' + (e.message || 'unknown'));
});
window.addEventListener('unhandledrejection', function (e) {
  var why = e.reason && e.reason.message || e.reason;
  window.__rmapscopeErrors.push('unhandledrejection: ' + why);
});
document.addEventListener('securitypolicyviolation', function (e) {
  window.__rmapscopeErrors.push('csp: ' + e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
});
window.__rmapscopeWarnings = [];
(function () {
  var error = console.error, warn = console.warn, trace = console.trace;
  console.error = function () {
    window.__rmapscopeErrors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return error.apply(console, arguments);
  };
  console.warn = function () {
    window.__rmapscopeWarnings.push(Array.prototype.join.call(arguments, ' '));
    return warn.apply(console, arguments);
  };
  // plotly.js logs its warnings ("WARN: ...") with console.trace
  console.trace = function () {
    window.__rmapscopeWarnings.push(Array.prototype.join.call(arguments, ' '));
    return trace.apply(console, arguments);
  };
})();
"""

# Runs last: once every figure is drawn (or after 8 s), writes
# <div id="rmapscope-check" data-figures data-ok data-failed data-errors data-warnings
# data-pwned data-foreign>
# so a headless browser's --dump-dom shows whether every chart drew with data, whether any
# error happened and whether any injected markup or script made it into the page.
_CHECK_JS = """
(function () {
  var deadline = Date.now() + 8000;
  function finite(v) { return typeof v === 'number' && isFinite(v); }
  function points(gd) {
    var n = 0;
    (gd.calcdata || []).forEach(function (cd) {
      (cd || []).forEach(function (p) {
        if (!p) { return; }
        if (p.z && p.z.length) { n += p.z.length; return; }
        if ((finite(p.x) && finite(p.y)) || (finite(p.p) && finite(p.s))) { n += 1; }
      });
    });
    return n;
  }
  function drawn(gd) {
    return gd.querySelectorAll('.cartesianlayer .point, .cartesianlayer image, ' +
      '.cartesianlayer .js-line').length;
  }
  function foreign() {
    var bad = [];
    var sel = 'img, iframe, object, embed, frame, form, input, b, i, u, a[href^="javascript"], ' +
      'script:not([nonce]), [onerror], [onload], [onclick], [onmouseover], [onfocus], ' +
      '[onanimationstart], [style*="expression"]';
    document.querySelectorAll(sel).forEach(function (el) { bad.push(el.tagName.toLowerCase()); });
    document.querySelectorAll('svg').forEach(function (el) {
      // plotly measures text in a hidden svg of its own, id js-plotly-tester
      if (!el.closest('.plotly-graph-div') && el.id !== 'js-plotly-tester') { bad.push('svg'); }
    });
    return bad;
  }
  function check() {
    var figs = document.querySelectorAll('.plotly-graph-div');
    var ok = 0, failed = [], pending = false;
    figs.forEach(function (gd) {
      if (!gd._fullLayout || !gd.calcdata) {
        pending = true;
        failed.push(gd.id + ':not-drawn');
        return;
      }
      var n = points(gd), d = drawn(gd);
      if (n > 0 && d > 0) { ok += 1; } else { failed.push(gd.id + ':points=' + n + ',drawn=' + d); }
    });
    if (pending && Date.now() < deadline) { setTimeout(check, 100); return; }
    var m = document.createElement('div');
    m.id = 'rmapscope-check';
    m.hidden = true;
    m.setAttribute('data-figures', String(figs.length));
    m.setAttribute('data-ok', String(ok));
    m.setAttribute('data-failed', failed.join(' '));
    m.setAttribute('data-errors', window.__rmapscopeErrors.join(' | '));
    m.setAttribute('data-warnings', window.__rmapscopeWarnings.join(' | '));
    var pwned = typeof window.__pwned === 'undefined' ? '' : String(window.__pwned);
    m.setAttribute('data-pwned', pwned);
    m.setAttribute('data-foreign', foreign().join(' '));
    m.setAttribute('data-done', '1');
    document.body.appendChild(m);
  }
  if (document.readyState === 'complete') { setTimeout(check, 50); }
  else { window.addEventListener('load', function () { setTimeout(check, 50); }); }
})();
"""


def _panel_html(p: Panel, nonce: str) -> str:
    parts = [f'<section class="panel" id="panel-{esc(p.id)}">', f"<h3>{esc(p.title)}</h3>"]
    if p.description:
        parts.append(f'<p class="desc">{esc(p.description)}</p>')
    if p.note:
        parts.append(f'<p class="note">{esc(p.note)}</p>')
    if p.kpis:
        parts.append(kpis(p.kpis))
    if p.figure is not None:
        parts.append(figure_html(p.figure, f"fig-{p.id}", nonce))
    elif p.table_html is not None:
        parts.append(p.table_html)
    if p.empty and p.figure is None and p.table_html is None:
        parts.append(f'<p class="empty">{esc(p.empty)}</p>')
    if p.sql:
        parts.append(
            '<details class="sql"><summary>SQL</summary>'
            f'<pre><code class="language-sql">{esc(p.sql)}</code></pre></details>'
        )
    parts.append("</section>")
    return "\n".join(parts)


def kpis(items: Iterable[Kpi]) -> str:
    """A row of big numbers: (value, label, tone) with tone in '', good, warn, bad."""
    return (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi {esc(tone)}"><div class="v">{esc(v)}</div>'
            f'<div class="l">{esc(label)}</div></div>'
            for v, label, tone in items
        )
        + "</div>"
    )


def page(
    *,
    title: str,
    meta: Sequence[tuple[str, str]],
    sections: Sequence[Section],
    embed_plotly: bool = True,
    with_csp: bool = True,
    footer: str = "",
) -> str:
    """The whole report as one HTML document."""
    nonce = secrets.token_urlsafe(18)
    head = ['<meta charset="utf-8">']
    if with_csp:
        head.append(f'<meta http-equiv="Content-Security-Policy" content="{esc(csp(nonce))}">')
    head += [
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style>",
        f'<script nonce="{nonce}">{_ERRORS_JS}</script>',
    ]
    if embed_plotly:
        # the bundle contains no "</script" (checked in the tests); it is not data anyway
        head.append(f'<script nonce="{nonce}">{plotly_js()}</script>')
    else:
        head.append(
            f'<script nonce="{nonce}" src="{esc(plotly_cdn_url())}" '
            f'integrity="{esc(plotly_sri())}" crossorigin="anonymous"></script>'
        )
    toc = " ".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = [
        '<header class="top">',
        f"<h1>{esc(title)}</h1>",
        '<div class="meta">'
        + "".join(f"<span>{esc(k)}: {esc(v)}</span>" for k, v in meta)
        + "</div>",
        "</header>",
        f'<nav class="toc">{toc}</nav>',
        "<main>",
    ]
    for s in sections:
        body.append(f'<h2 id="{esc(s.id)}">{esc(s.title)}</h2>')
        body.extend(_panel_html(p, nonce) for p in s.panels)
    body.append("</main>")
    if footer:
        body.append(f"<footer>{esc(footer)}</footer>")
    body.append(f'<script nonce="{nonce}">{_CHECK_JS}</script>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n'
        + "\n".join(head)
        + "\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
