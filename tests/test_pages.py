"""The published leaderboard pages in a real headless browser (Chromium from Debian's packages; skipped without it)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import render_pages  # noqa: E402

BROWSER = render_pages.find_browser()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium (apt-get install -y chromium)")
TABLE = "<table class='sortable'><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>2</td></tr>" \
        "</tbody></table>"


def test_every_published_page_loads_runs_its_script_and_shows_its_tables(tmp_path, capsys):
    pages = sorted((render_pages.REPO / "leaderboards").rglob("index.html"))
    assert pages, "no published page"
    assert render_pages.main([*map(str, pages), "--png-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("ok: ") == len(pages) and "FAILED" not in out
    assert len(list(tmp_path.glob("*.png"))) == len(pages)


def test_a_page_whose_script_fails_is_reported(tmp_path):
    from robustbench_ens.leaderboard.html import JS

    good, broken = tmp_path / "good.html", tmp_path / "broken.html"
    good.write_text(f"<html><body>{TABLE}<script>{JS}</script></body></html>")
    broken.write_text(f"<html><body>{TABLE}<script>undefinedFunction();{JS}</script></body></html>")
    assert render_pages.render(BROWSER, good, tmp_path / "good.png").ok
    report = render_pages.render(BROWSER, broken, None)
    assert not report.ok and report.headers_set_by_script == 0 and report.sortable_headers == 2
    assert "FAILED" in report.line()
