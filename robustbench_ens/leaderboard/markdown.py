"""README.md: the page blocks as GitHub-flavoured Markdown."""
from __future__ import annotations

import re

from . import page
from .views import DisplayTable

_SPECIAL = re.compile(r"([\\`*_\[\]|<>#])")


def escape(text: str) -> str:
    """Escape Markdown/HTML-significant characters so data shows as literal text."""
    text = " ".join(str(text).split())  # no newlines inside a paragraph or a table cell
    return _SPECIAL.sub(r"\\\1", text).replace("&", "&amp;")


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def table(t: DisplayTable) -> str:
    cols = t.columns
    head = "| " + " | ".join(escape(c) for c in cols) + " |"
    rule = "|" + "|".join("---:" if t.numeric.get(c) else ":---" for c in cols) + "|"
    links = t.links if t.links is not None else t.text.map(lambda _: "")
    body = ["| " + " | ".join(f"[{escape(v)}](#{anchor(link)})" if link else escape(v)
                              for v, link in zip(row, link_row)) + " |"
            for row, link_row in zip(t.text.itertuples(index=False), links.itertuples(index=False))]
    return "\n".join([head, rule, *body])


def render(blocks: list[page.Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, page.Heading):
            out.append("#" * b.level + " " + escape(b.text))
        elif isinstance(b, page.Para):
            out.append(escape(b.text))
        elif isinstance(b, page.Table):
            out.append(table(b.table))
        elif isinstance(b, page.Image):
            out.append(f"![{escape(b.alt)}]({b.filename})")
        elif isinstance(b, page.Links):
            out.append("\n".join(f"- [{escape(f)}]({f}): {escape(d)}" for f, d in b.items))
    return "\n\n".join(out) + "\n"
