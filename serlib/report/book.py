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
    return out / "_build" / "html"


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


def rendered_dom(page: Path) -> str:
    """The DOM after Chromium has loaded ``page`` (to check images decoded and tables exist)."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("Chromium not found")
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
                             check=True, capture_output=True, text=True, timeout=120)
    return res.stdout


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


__all__ = ["BrokenPage", "pages_with_errors", "build", "copy_sources", "check_site", "screenshot", "rendered_dom", "find_chromium"]
