"""Build and check the Jupyter Book (1.x) report.

``python -m serlib.report.book build`` (what ``make book`` calls) runs
``jupyter-book build`` on the project root with Sphinx warnings as errors. The
book's ``_config.yml`` turns notebook execution off: pages come from the
committed executed notebooks, so building needs no data, no training and no
network.

``check`` verifies a built site the way a reader would notice problems: the
summary page has its table, every per-corpus page exists, and every image an
HTML page references exists. ``screenshot`` opens the summary page in headless
Chromium and saves a PNG (and checks the browser saw no broken image).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Sequence
from urllib.parse import unquote, urlparse

from serlib.core.runs import PROJECT_ROOT

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")


class BrokenPage(RuntimeError):
    """A page of the book holds an error output: it must not be published."""


def pages_with_errors(source: Path = PROJECT_ROOT) -> list[str]:
    """``page: ErrorName`` for every notebook under ``source/book`` with an error output."""
    import nbformat

    broken = []
    for path in sorted((source / "book").rglob("*.ipynb")):
        if any(part.startswith((".", "_")) for part in path.relative_to(source).parts):
            continue
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            broken.append(f"{path.relative_to(source)}: {errors[0].get('ename', 'error')}")
    return broken


def build(source: Path = PROJECT_ROOT, out: Path | None = None, strict: bool = True) -> Path:
    """Build the HTML site of ``source`` into ``out/_build/html`` (default ``source/_build/html``); returns that folder.

    Raises :class:`BrokenPage` before building when any page holds an error output.
    """
    broken = pages_with_errors(source)
    if broken:
        raise BrokenPage("pages with an error output, not published: " + "; ".join(broken))
    out = Path(out) if out else source
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.is_file() else "jupyter-book", "build", str(source), "--path-output", str(out), "--builder", "html"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)
    html = out / "_build" / "html"
    finish_site(html)
    return html


SITE_TITLE = "serlib — speech emotion recognition, honestly measured"


def finish_site(html: Path) -> None:
    """What Jupyter Book leaves out: MathJax served from the site itself, and a title on the redirecting index.html."""
    import jupyter_server_mathjax

    mathjax = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = html / "_static" / "mathjax"
    if not (target / "MathJax.js").is_file():
        shutil.copytree(mathjax, target, dirs_exist_ok=True)
    index = html / "index.html"
    if index.is_file() and "<title>" not in index.read_text(encoding="utf-8"):
        index.write_text('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
                         f"<title>{SITE_TITLE}</title>\n"
                         '<meta http-equiv="Refresh" content="0; url=book/intro.html" />\n</head>\n'
                         '<body><p><a href="book/intro.html">The report starts here.</a></p></body></html>\n',
                         encoding="utf-8")


def copy_sources(dest: Path, source: Path = PROJECT_ROOT) -> Path:
    """Copy the book sources (config, toc, book/) into ``dest`` for a throw-away build."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in BOOK_SOURCES:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, dest / name)
    return dest


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            src = dict(attrs).get("src")
            if src:
                self.images.append(src)
        if tag == "table":
            self.tables += 1


def page_refs(html: Path) -> _Refs:
    parser = _Refs()
    parser.feed(html.read_text(encoding="utf-8", errors="replace"))
    return parser


def check_site(html_dir: Path, corpora: Sequence[str] = ()) -> list[str]:
    """Problems found in a built site (empty list: fine)."""
    problems = []
    summary = html_dir / "book" / "results" / "summary.html"
    if not summary.is_file():
        problems.append(f"summary page missing: {summary}")
    else:
        refs = page_refs(summary)
        text = summary.read_text(encoding="utf-8", errors="replace")
        if refs.tables == 0 or "test UAR" not in text:
            problems.append("summary page has no summary table with a 'test UAR' column")
    for corpus in corpora:
        pages = list((html_dir / "book" / "results" / "corpora").glob(f"{corpus}-*.html"))
        if not pages:
            problems.append(f"no per-corpus page for {corpus}")
    for page in html_dir.rglob("*.html"):
        for src in page_refs(page).images:
            parsed = urlparse(src)
            if parsed.scheme in ("http", "https"):
                problems.append(f"{page.relative_to(html_dir)}: remote image {src}")
                continue
            if parsed.scheme == "data":
                continue
            target = (page.parent / unquote(parsed.path)).resolve()
            if not target.is_file():
                problems.append(f"{page.relative_to(html_dir)}: missing image {src}")
    return problems


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(page: Path, out: Path, width: int = 1400, height: int = 2200) -> Path:
    """Render ``page`` in headless Chromium to a PNG; raises when Chromium is missing or fails."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("Chromium not found: install Debian's `chromium` package (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={out}", page.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    if not out.is_file() or out.stat().st_size < 10_000:
        raise RuntimeError(f"Chromium produced no usable screenshot at {out}")
    return out


def rendered_dom(page: Path, budget_ms: int | None = None) -> str:
    """The DOM after Chromium has loaded ``page`` (to check images decoded and tables exist); ``budget_ms`` lets
    its scripts (MathJax) run that long in virtual time first."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("Chromium not found")
    budget = [f"--virtual-time-budget={budget_ms}"] if budget_ms else []
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *budget, "--dump-dom",
                              page.resolve().as_uri()], check=True, capture_output=True, text=True, timeout=120)
    return res.stdout


_MEASURE_TABLES = """<script>window.addEventListener('load', () => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const room = article.getBoundingClientRect().width;
  const wide = [];
  document.querySelectorAll('table').forEach((table, i) => {
    const width = Math.max(table.scrollWidth, table.getBoundingClientRect().width);
    if (width > room + 1) wide.push(`table ${i + 1}: ${Math.round(width)} px in ${Math.round(room)} px`);
  });
  document.body.setAttribute('data-wide-tables', JSON.stringify(wide));
});</script>"""


def wide_tables(page: Path, width: int = 1400) -> list[str]:
    """Tables of ``page`` wider than its article when Chromium renders it ``width`` px wide (empty: all fit).

    The page is copied beside itself with a measuring script (so its styles
    load as published), rendered headless, and the script's verdict read from the DOM.
    """
    import html as html_lib
    import json

    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("Chromium not found: install Debian's `chromium` package (apt-get install chromium)")
    probe = page.with_name(f".measure-{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _MEASURE_TABLES + "</body>"), encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},1000",
                                  "--virtual-time-budget=10000", "--dump-dom", probe.resolve().as_uri()],
                                 check=True, capture_output=True, text=True, timeout=120).stdout
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(r'data-wide-tables="([^"]*)"', dom)
    if found is None:
        raise RuntimeError(f"the table measurement did not run in Chromium on {page.name}")
    return json.loads(html_lib.unescape(found.group(1)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serlib.report.book")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", default=str(PROJECT_ROOT), help="the site goes to OUT/_build/html")
    b.add_argument("--no-strict", action="store_true")
    s = sub.add_parser("screenshot")
    s.add_argument("--html", default=str(PROJECT_ROOT / "_build" / "html"))
    s.add_argument("--out", default=str(PROJECT_ROOT / "_build" / "summary.png"))
    c = sub.add_parser("check")
    c.add_argument("--html", default=str(PROJECT_ROOT / "_build" / "html"))
    c.add_argument("--corpora", nargs="*", default=[])
    args = parser.parse_args(argv)
    if args.cmd == "build":
        try:
            html = build(PROJECT_ROOT, Path(args.out), strict=not args.no_strict)
        except BrokenPage as err:
            print(f"make book: {err}", file=sys.stderr)
            return 1
        problems = check_site(html)
        for p in problems:
            print("book check:", p, file=sys.stderr)
        print(f"built {html}")
        return 1 if problems else 0
    if args.cmd == "check":
        problems = check_site(Path(args.html), args.corpora)
        for p in problems:
            print(p)
        return 1 if problems else 0
    out = screenshot(Path(args.html) / "book" / "results" / "summary.html", Path(args.out))
    print(f"screenshot: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["BrokenPage", "pages_with_errors", "build", "copy_sources", "check_site", "screenshot", "rendered_dom", "find_chromium",
           "wide_tables"]
