"""The front page of a leaderboards folder: one row per published suite, linking its page.

``write_front_page(root)`` reads every ``leaderboard.json`` under ``root`` (a suite's folder, or a
folder inside it such as a preview) and writes ``root/README.md`` and ``root/index.html``: what each
suite attacked, on how many points, at which budgets, how its worst case is counted, its best
defense at the headline budget, and when it ran; above them, the questions the leaderboards answer
(``answers.toml`` in ``root``, written by hand from the published numbers), each with links to
the pages that back it. The runner calls it after writing a leaderboard
into a folder named ``leaderboards``; ``python -m robustbench_ens.leaderboard.front leaderboards``
writes it by hand.
"""
from __future__ import annotations

import json
import sys
import tomllib
from collections import Counter
from pathlib import Path

from .. import atomic
from . import html, markdown, page, views
from .format import fmt_eps

INTRO = ("Every leaderboard published here, one row per suite (a suite is a grid of attacks against defenses, see "
         "docs/suites.md). Robust accuracies are per-example worst cases where the row says so: a point counts as "
         "robust only if every attack at that budget or a smaller one fails on it; the first edition's pages took "
         "the lowest of the attacks' robust accuracies instead, an upper bound on the per-example worst case.")
ANSWERS = "answers.toml"  # hand-written from the published numbers; the front page shows it above the suites
COLUMNS = ["Suite", "What was attacked", "Points", "Threat model", "Worst case counted", "Most robust at headline",
           "Run"]


def suite_rows(root: Path) -> list[tuple[str, dict]]:
    """(folder relative to ``root``, leaderboard.json) of every leaderboard under ``root``, in folder order."""
    return [(path.parent.relative_to(root).as_posix(), json.loads(path.read_text()))
            for path in sorted(root.rglob("leaderboard.json")) if path.parent != root]


def _row(folder: str, board: dict) -> list[str]:
    setting, headline = board["setting"], board["headline_eps"]
    threat = setting.get("threat", {})
    eps = ", ".join(fmt_eps(e) for e in threat.get("eps", []))
    per_example = "defense_rankings_by_threat_model" in board
    top = next(iter(board.get("defense_ranking", [])), None)
    best = "—" if top is None else \
        f"{top['defense']}: {100 * top['worst_robust_acc']:.1f} % (clean {100 * top['clean_acc']:.1f} %)"
    kinds = Counter(attack.get("kind", "transfer") for attack in setting.get("attacks", []))
    attacked = f"{len(setting.get('defenses', []))} defenses; {', '.join(f'{n} {k}' for k, n in kinds.items())} attacks"
    return [folder, attacked, str(setting.get("data", {}).get("n_examples", "")),
            f"{threat.get('norm', '')} {eps} (headline {fmt_eps(headline)})",
            _counted(per_example, setting.get("not_run")), best,
            setting.get("date", "")[:10]]


def _counted(per_example: bool, not_run: dict | None) -> str:
    counted = "per example" if per_example else "per attack (first edition)"
    if not not_run:
        return counted
    missing = sum(not_run["attacks"].values())
    return f"{counted}; partial: {missing} of {not_run['cells']} cells not run"


def _summary(description: str, limit: int = 240) -> str:
    return description if len(description) <= limit else description[:limit].rsplit(" ", 1)[0] + " …"


def front_blocks(rows: list[tuple[str, dict]], page_name: str, answers: list[dict] = ()) -> list[page.Block]:
    """The front page's blocks; ``page_name`` is the file each link opens in a suite's folder. ``answers``: the
    questions the leaderboards answer (``answers.toml``), each with the pages that back it."""
    table = views.make_table("suites", COLUMNS, [_row(folder, board) for folder, board in rows], {"Points"})
    links = tuple((f"{folder}/{page_name}", _summary(board["setting"].get("description", "")))
                  for folder, board in rows)
    blocks = [page.Heading("robustbench-ens leaderboards", 1), page.Para(INTRO)]
    if answers:
        blocks.append(page.Heading("Answers"))
        for item in answers:
            blocks.append(page.Para(f"{item['question']} {item['answer']}"))
            if item.get("backed_by"):
                blocks.append(page.Links(tuple((link["page"].replace("README.md", page_name), link["what"])
                                               for link in item["backed_by"])))
    return blocks + [page.Heading("Suites"), page.Table(table), page.Heading("Pages"), page.Links(links)]


def read_answers(root: Path) -> list[dict]:
    """The ``[[answer]]`` tables of ``root/answers.toml`` (question, answer, backed_by = [{page, what}]), if any: the
    findings written from the published numbers, with the pages that back each."""
    path = Path(root) / ANSWERS
    if not path.is_file():
        return []
    answers = tomllib.loads(path.read_text(encoding="utf-8")).get("answer", [])
    for number, item in enumerate(answers, start=1):
        missing = {"question", "answer"} - item.keys()
        if missing or not all({"page", "what"} <= link.keys() for link in item.get("backed_by", [])):
            raise ValueError(f"{path}: answer {number} needs question, answer and backed_by = [{{page, what}}]")
        if any(mark in item[key] for key in ("question", "answer") for mark in "`*"):
            raise ValueError(f"{path}: answer {number} is plain text, shown as written on both pages: no Markdown "
                             "(` *)")
    return answers


def write_front_page(root: Path) -> list[Path]:
    """README.md and index.html of ``root``, listing every leaderboard under it (and the answers, if written)."""
    root = Path(root)
    rows, answers = suite_rows(root), read_answers(root)
    return [atomic.write_text(root / "README.md", markdown.render(front_blocks(rows, "README.md", answers))),
            atomic.write_text(root / "index.html", html.render(front_blocks(rows, "index.html", answers), {}))]


if __name__ == "__main__":
    for path in write_front_page(Path(sys.argv[1] if len(sys.argv) > 1 else "leaderboards")):
        print(f"wrote {path}")
