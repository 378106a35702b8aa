"""index.html: the page blocks as one self-contained static HTML file.

No external asset of any kind: CSS and JS are inline, the plots are ``data:`` URIs. Every
string that comes from the data or the setting goes through :func:`html.escape`. The
small script makes every table sortable by clicking (or Enter on) a header: numeric cells
sort by their ``data-v`` value, others as text; a second click reverses the order.
"""
from __future__ import annotations

import base64
import html as _html
import math
import re

from . import page
from .views import DisplayTable

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --head:#f6f8fa; --accent:#0969da;
        --failed:#ffebe9; --failed-fg:#a40e26; --warn:#fff8c5; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       max-width: 1600px; margin: 0 auto; padding: 24px 20px 64px; }
h1 { font-size: 1.8em; border-bottom: 1px solid var(--line); padding-bottom: .3em; }
h2 { font-size: 1.4em; border-bottom: 1px solid var(--line); padding-bottom: .25em; margin-top: 2em; }
h3 { font-size: 1.1em; margin-top: 1.5em; }
p { max-width: 75em; }
nav { font-size: .95em; color: var(--muted); }
nav a { color: var(--accent); text-decoration: none; margin-right: 1em; }
.scroll { overflow-x: auto; margin: .5em 0 1em; }
table { border-collapse: collapse; font-size: .92em; }
th, td { border: 1px solid var(--line); padding: 4px 9px; vertical-align: top; }
th { background: var(--head); cursor: pointer; user-select: none; white-space: nowrap; text-align: left; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
table:not(.kv) td:nth-child(-n+2):not(.num) { white-space: nowrap; }  /* names never break at hyphens */
tbody tr:nth-child(even) { background: #fbfcfd; }
tbody tr:hover { background: #eef4fb; }
th[aria-sort]::after { content: " \\2195"; color: #a0a7b0; }
th[aria-sort="ascending"]::after { content: " \\25B2"; color: var(--fg); }
th[aria-sort="descending"]::after { content: " \\25BC"; color: var(--fg); }
td.failed { background: var(--failed); color: var(--failed-fg); font-weight: 600; }
td.partial, td.incomplete, td.warning { background: var(--warn); }
table.kv td:first-child { font-weight: 600; white-space: nowrap; }
table.kv td { word-break: break-word; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .9em; }
footer { margin-top: 3em; color: var(--muted); font-size: .85em; }
"""

JS = """
(function () {
  function key(td) {
    var v = td.getAttribute('data-v');
    if (v !== null && v !== '' && !isNaN(Number(v))) return Number(v);
    var t = td.textContent.trim();
    var m = /^[-+]?(\\d+\\.?\\d*|\\.\\d+)([eE][-+]?\\d+)?$/.exec(t);
    return m ? Number(t) : t.toLowerCase();
  }
  function cmp(a, b, dir) {
    var na = typeof a === 'number', nb = typeof b === 'number';
    if (na && nb) return (a - b) * dir;
    if (na) return -1;            /* numbers before text (failed, dashes), either direction */
    if (nb) return 1;
    return a.localeCompare(b, undefined, {numeric: true}) * dir;
  }
  function sortBy(table, th, col) {
    var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      h.setAttribute('aria-sort', 'none');
    });
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (r, i) {
      return {r: r, k: key(r.cells[col]), i: i};
    });
    rows.sort(function (x, y) { return cmp(x.k, y.k, dir) || (x.i - y.i); });
    rows.forEach(function (x) { body.appendChild(x.r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.setAttribute('aria-sort', 'none');
      th.tabIndex = 0;
      th.title = 'Click to sort';
      th.addEventListener('click', function () { sortBy(table, th, col); });
      th.addEventListener('keydown', function (e) {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(table, th, col); }
      });
    });
  });
})();
"""


def esc(text: object) -> str:
    return _html.escape(str(text), quote=True)


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return s or "section"


def table(t: DisplayTable) -> str:
    kv = t.key == "setting"
    cls = "sortable kv" if kv else "sortable"
    num = ' class="num"'
    head = "".join(f'<th scope="col"{num if t.numeric.get(c) else ""}>{esc(c)}</th>' for c in t.columns)
    body = []
    for i in range(len(t.text)):
        tds = []
        for j, c in enumerate(t.columns):
            classes = " ".join(x for x in ("num" if t.numeric.get(c) else "", t.flags.iat[i, j]) if x)
            v = t.sort.iat[i, j]
            attrs = f' class="{esc(classes)}"' if classes else ""
            if isinstance(v, (int, float)) and not math.isnan(v):
                attrs += f' data-v="{float(v):.10g}"'
            text, link = esc(t.text.iat[i, j]), t.links.iat[i, j] if t.links is not None else ""
            cell = f'<a href="#{esc(slug(link))}">{text}</a>' if link else text
            tds.append(f"<td{attrs}>{cell}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<div class="scroll"><table class="{cls}" id="{esc(t.key)}">'
            f"<thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table></div>")


def render(blocks: list[page.Block], images: dict[str, bytes]) -> str:
    """``images`` maps an Image block's filename to its PNG bytes (embedded as data: URIs)."""
    title = next((b.text for b in blocks if isinstance(b, page.Heading) and b.level == 1), "Leaderboard")
    nav = [b.text for b in blocks if isinstance(b, page.Heading) and b.level == 2]
    out: list[str] = []
    used: set[str] = set()
    for b in blocks:
        if isinstance(b, page.Heading):
            ident = slug(b.text)
            while ident in used:
                ident += "-x"
            used.add(ident)
            out.append(f'<h{b.level} id="{esc(ident)}">{esc(b.text)}</h{b.level}>')
            if b.level == 1 and nav:
                out.append("<nav>" + "".join(f'<a href="#{esc(slug(n))}">{esc(n)}</a>' for n in nav)
                           + "</nav>")
        elif isinstance(b, page.Para):
            out.append(f"<p>{esc(b.text)}</p>")
        elif isinstance(b, page.Table):
            out.append(table(b.table))
        elif isinstance(b, page.Image):
            data = images.get(b.filename)
            if data:
                uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
                out.append(f'<figure><img src="{uri}" alt="{esc(b.alt)}">'
                           f"<figcaption>{esc(b.alt)}</figcaption></figure>")
            else:
                out.append(f"<p>{esc(b.alt)}: not available.</p>")
        elif isinstance(b, page.Links):
            items = "".join(f'<li><a href="{esc(f)}">{esc(f)}</a>: {esc(d)}</li>' for f, d in b.items)
            out.append(f"<ul>{items}</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(out)
            + "\n<footer>Static page generated by robustbench-ens. Click a column header to sort."
              "</footer>\n"
            f"<script>{JS}</script>\n</body>\n</html>\n")
