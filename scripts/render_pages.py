"""Render leaderboard pages in a real headless browser: each page must load, run its script and show its tables.
(a script; the test suite runs it on the published pages when Chromium is installed)

For every ``index.html`` given (default: all under leaderboards/), Chromium loads the page headless and dumps the DOM
after its script ran, and takes a screenshot. A page passes when its DOM holds at least one table and every header of
its sortable tables carries the ``aria-sort`` attribute that the page's script sets (so the script ran to its end
without an error). Chromium comes from Debian's packages: ``apt-get install -y chromium``.

    python scripts/render_pages.py                          # every published page, screenshots in a temporary folder
    python scripts/render_pages.py leaderboards/cifar10/index.html --png-dir /tmp/pages
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage")


@dataclass
class PageReport:
    page: Path
    tables: int
    sortable_headers: int
    headers_set_by_script: int
    png: Path | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.tables > 0 and self.headers_set_by_script == self.sortable_headers

    def line(self) -> str:
        status = "ok" if self.ok else "FAILED"
        detail = self.error or (f"{self.tables} tables, script set {self.headers_set_by_script} of "
                                f"{self.sortable_headers} sortable headers")
        return f"{status}: {self.page} ({detail}){f'; screenshot {self.png}' if self.png else ''}"


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables = self.sortable_headers = self.headers_set = 0
        self._sortable_depth: list[bool] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables += 1
            self._sortable_depth.append("sortable" in (attrs.get("class") or "").split())
        elif tag == "th" and self._sortable_depth and self._sortable_depth[-1]:
            self.sortable_headers += 1
            self.headers_set += "aria-sort" in attrs

    def handle_endtag(self, tag):
        if tag == "table" and self._sortable_depth:
            self._sortable_depth.pop()


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def render(browser: str, page: Path, png: Path | None, timeout: float = 120) -> PageReport:
    """Loads ``page`` in ``browser`` (headless), checks its DOM and writes a screenshot to ``png``."""
    url = page.resolve().as_uri()
    try:
        dom = subprocess.run([browser, *FLAGS, "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
        if dom.returncode != 0 or "<html" not in dom.stdout:
            return PageReport(page, 0, 0, 0, None, f"the browser exited with {dom.returncode}: "
                                                  f"{dom.stderr.strip().splitlines()[-1:] or ''}")
        if png is not None:
            subprocess.run([browser, *FLAGS, "--window-size=1400,2400", f"--screenshot={png}", url],
                           capture_output=True, timeout=timeout, check=True)
    except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as error:
        return PageReport(page, 0, 0, 0, None, f"the browser failed: {error}")
    parser = _Tables()
    parser.feed(dom.stdout)
    if png is not None and (not png.is_file() or png.stat().st_size == 0):
        return PageReport(page, parser.tables, parser.sortable_headers, parser.headers_set, None, "no screenshot")
    return PageReport(page, parser.tables, parser.sortable_headers, parser.headers_set, png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("pages", nargs="*", type=Path, help="index.html files (default: every one under leaderboards/)")
    parser.add_argument("--png-dir", type=Path, help="where the screenshots go (default: a temporary folder)")
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print("error: no Chromium found (apt-get install -y chromium)", file=sys.stderr)
        return 2
    pages = args.pages or sorted((REPO / "leaderboards").rglob("index.html"))
    missing = [p for p in pages if not p.is_file()]
    if missing:
        print(f"error: no such page: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    png_dir = args.png_dir or Path(tempfile.mkdtemp(prefix="pages-"))
    png_dir.mkdir(parents=True, exist_ok=True)
    reports = [render(browser, page, png_dir / f"{'_'.join(page.resolve().parent.parts[-2:])}.png")
               for page in pages]
    for report in reports:
        print(report.line())
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
