"""Every relative link in the hand-written and published Markdown resolves: the file exists and, for a link into
a Markdown file with a ``#fragment``, a heading of that file has that GitHub anchor."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
    text = re.sub(r"[`*]", "", heading.lstrip("#")).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def markdown_files() -> list[Path]:
    return [REPO / "README.md", REPO / "benchmarks" / "README.md", *sorted((REPO / "docs").glob("*.md")),
            *sorted((REPO / "leaderboards").rglob("*.md"))]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        linked = page.parent / path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            headings = [line for line in linked.read_text().splitlines() if line.startswith("#")]
            if anchor not in {github_anchor(h) for h in headings}:
                broken.append(f"{target} (no such heading)")
    return broken


def test_github_anchor_follows_githubs_rule():
    assert github_anchor("## The same 500 points, counted per example") == "the-same-500-points-counted-per-example"
    assert github_anchor("### The `cifar10_l2` suite") == "the-cifar10_l2-suite"


def test_every_relative_link_resolves():
    pages = markdown_files()
    assert len(pages) > 20
    broken = {str(page.relative_to(REPO)): links for page in pages if (links := broken_links(page))}
    assert not broken, broken


def test_the_attack_printed_in_docs_is_what_ens_prints():
    """docs/attacks.md shows the example's ``print(attack)``: it must be what that constructor prints today."""
    from torch import nn

    from attacks import Ens

    lines = (REPO / "docs" / "attacks.md").read_text().splitlines()
    shown = [line for line in lines if line.startswith("Ens(4 models")]
    attack = Ens([nn.Identity() for _ in range(4)], eps=8 / 255, steps=10, decay=1.0, fusion="logits")
    assert shown == [repr(attack)]
