"""HTML building blocks of the report pages: one self-contained file (inline CSS, PNGs as data URIs, a few lines
of inline JS that sort tables), so a page opens offline and from a copied folder."""
from __future__ import annotations

import base64
import html
import math

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 16px 40px; color: #222; }
nav a { margin-right: 12px; }
section { border-top: 1px solid #ddd; margin-top: 18px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
table.sortable th { cursor: pointer; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.missing { color: #8a5a00; background: #fff6e0; padding: 6px 10px; border-left: 4px solid #e0a000; }
.big { font-size: 22px; font-weight: 600; }
code, pre { background: #f6f6f6; padding: 1px 4px; white-space: pre-wrap; word-break: break-all; }
img { max-width: 100%; }
"""

# Click a header: sort its table by that column, ascending (numbers as numbers); click again: descending.
JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows), asc = th.dataset.dir !== "asc";
      var key = function (r) { var c = r.cells[col]; var v = c.dataset.sort !== undefined ? c.dataset.sort : c.textContent;
        var n = parseFloat(v); return isNaN(n) ? v.toLowerCase() : n; };
      rows.sort(function (a, b) { var x = key(a), y = key(b);
        var r = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return asc ? r : -r; });
      table.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = asc ? "asc" : "desc";
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.5g}"
    return str(value)


def img(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def missing(text: str) -> str:
    """What a section cannot show, and why: the page never fails for a missing file."""
    return f'<p class="missing">{esc(text)}</p>'


def table(head: list[str], rows: list[list], sortable: bool = False, raw: set[int] = frozenset()) -> str:
    """rows of cells; cells in columns `raw` are HTML already (links, images), others are escaped."""
    def cell(i, v):
        num = isinstance(v, (int, float)) and not isinstance(v, bool)
        attrs = ' class="num"' if num else ""
        return f"<td{attrs}>{v if i in raw else esc(fmt(v))}</td>"
    body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    cls = ' class="sortable"' if sortable else ""
    return f"<table{cls}><thead><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}</tr></thead><tbody>{body}</tbody></table>"


def section(sid: str, title: str, body: str) -> tuple[str, str, str]:
    return sid, title, f'<section id="{sid}"><h2>{esc(title)}</h2>{body}</section>'


def document(title: str, sections: list[tuple[str, str, str]], header: str = "") -> str:
    nav = "".join(f'<a href="#{sid}">{esc(t)}</a>' for sid, t, _ in sections)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><h1>{esc(title)}</h1>{header}"
            f"<nav>{nav}</nav>{''.join(s for _, _, s in sections)}<script>{JS}</script></body></html>\n")
