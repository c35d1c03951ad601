"""The report machinery end to end: every notebook runs under papermill on generated corpora,
the book builds from them (strict Sphinx), and the built site renders in a browser.

This is the CI smoke run; it uses tiny synthetic corpora and 2-epoch trainings, so its
numbers mean nothing — it proves the plumbing, not the results.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from serlib.experiments import batch
from serlib.report.book import build, check_site, copy_sources, find_chromium, rendered_dom, screenshot, wide_tables
from serlib.data.synthetic import write_synthetic_corpus

pytestmark = pytest.mark.slow

NOTEBOOKS = sorted(p.name for p in batch.NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_has_a_parameters_cell_first():
    for name in NOTEBOOKS:
        nb = nbformat.read(batch.NOTEBOOKS / name, as_version=4)
        first = nb.cells[0]
        assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", []), name
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} has outputs committed"


def test_site_check_catches_a_missing_image_and_a_missing_summary_table(tmp_path):
    page = tmp_path / "book" / "results" / "summary.html"
    page.parent.mkdir(parents=True)
    page.write_text('<html><body><p>no table</p><img src="../../_images/gone.png"></body></html>')
    problems = check_site(tmp_path, corpora=["ravdess"])
    assert any("missing image" in p for p in problems)
    assert any("summary table" in p for p in problems)
    assert any("ravdess" in p for p in problems)


NO_TRAINING = """# Installed by tests/test_report.py: a page that tries to train or prepare run folders fails.
import serlib.experiments.protocol, serlib.systems.registry, serlib.systems.tier1.trainer, serlib.experiments.crosscorpus
def _refuse(*args, **kwargs):
    raise RuntimeError("a page tried to train")
serlib.experiments.protocol.run_protocol = serlib.experiments.protocol._train_one = serlib.systems.tier1.trainer.fit = _refuse
serlib.systems.registry.get_model = serlib.experiments.crosscorpus.run_matrix = serlib.experiments.crosscorpus.run_matrices = _refuse
"""


def no_training_kernels(folder: Path) -> Path:
    """An IPython profile whose startup file makes every training entry point raise inside notebook kernels."""
    startup = folder / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-no-training.py").write_text(NO_TRAINING)
    return folder


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """Train the smoke grids in-process, then execute every page into a copy of the book -- with kernels in which
    training raises, so every page is shown to read run folders only -- and build it."""
    tmp = tmp_path_factory.mktemp("smoke")
    data = tmp / "data"
    for corpus in ("ravdess", "emodb", "urdu"):  # urdu: data present, never trained
        write_synthetic_corpus(corpus, data / corpus, per_class=2, seconds=0.8)
    results, cache = str(tmp / "results"), str(tmp / "cache")
    src = copy_sources(tmp / "book-src")
    out = src / "book" / "results"
    shutil.rmtree(out)
    for sub in ("corpora", "studies"):
        (out / sub).mkdir(parents=True)
        shutil.copy2(batch.PROJECT_ROOT / "book" / "results" / sub / "index.md", out / sub / "index.md")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(no_training_kernels(tmp / "ipython")))
        executed = batch.run_corpus("ravdess", protocol="speaker-split", seeds=[0], out_dir=out, smoke=True, root=data,
                                    results=results, cache_dir=cache, summary=False)
        executed.append(batch.run_ablations("ravdess", ablations=["no-vad", "demucs"], protocol="speaker-split",
                                            smoke=True, root=data, results=results, cache_dir=cache, out_dir=out))
        executed.append(batch.run_cross_corpus({"ravdess-emodb": ["ravdess", "emodb"]}, seeds=[0], smoke=True,
                                               root=data, results=results, cache_dir=cache, out_dir=out,
                                               protocol="speaker-split"))
        executed.append(batch.run_selection("ravdess", smoke=True, root=data, results=results, cache_dir=cache,
                                            out_dir=out))
        executed += batch.run_summary(out, results=results, root=data, smoke=True)
    html = build(src, tmp / "site")
    return executed, html, Path(results)


def cells_text(path: Path) -> str:
    return json.dumps(nbformat.read(path, as_version=4).cells, ensure_ascii=False)


def test_every_notebook_executes_under_papermill(smoke_book):
    executed, _, _ = smoke_book
    assert {p.name for p in executed} >= {"ravdess-data.ipynb", "ravdess-speaker-split.ipynb", "ablations-ravdess.ipynb",
                                          "cross-corpus.ipynb", "tier1plus-recipe.ipynb", "summary.ipynb",
                                          "full-grid.ipynb", "provenance.ipynb"}
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
        assert not errors, f"{path.name}: {errors[:1]}"
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells), path.name


def test_the_no_training_kernel_guard_really_stops_a_page_that_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "NOTEBOOKS", tmp_path)
    monkeypatch.setenv("IPYTHONDIR", str(no_training_kernels(tmp_path / "ipython")))
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Trains"), params,
                nbformat.v4.new_code_cell("from serlib.experiments.protocol import run_protocol\nrun_protocol(None, None)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "trains.ipynb")
    with pytest.raises(batch.PageFailed, match="a page tried to train"):
        batch.execute("trains.ipynb", tmp_path / "out" / "trains.ipynb", {"x": 2}, log=False)


def test_the_protocol_page_shows_every_system_and_the_paired_comparisons(smoke_book):
    executed, _, _ = smoke_book
    text = cells_text(next(p for p in executed if p.name == "ravdess-speaker-split.ipynb"))
    for system in ("Tier-1", "MFCC-statistics SVM", "eGeMAPS + linear SVM", "ComParE + linear SVM",
                   "Whisper-base + logistic regression"):
        assert system in text, system
    for phrase in ("pooled test UAR % [95 % CI]", "mean ± std of folds %", "Tier-1 vs best baseline",
                   "best encoder system vs best baseline", "best encoder system vs Tier-1", "one-sided p (A > B)",
                   "resamples test speakers",
                   "Most confused pairs", "UAR per test speaker", "epochs run"):
        assert phrase in text, phrase


def test_the_summary_shows_the_previous_system_and_the_test_across_corpora(smoke_book):
    executed, _, _ = smoke_book
    text = cells_text(next(p for p in executed if p.name == "summary.ipynb"))
    assert "72.0 (validation)" in text and "not comparable" in text and "56.7 (test)" in text
    assert "previous recall %" in text and "Not yet: the test needs at least 3 corpora" in text


ABSOLUTE = re.compile(r"""(?:^|[\s"'=(\[,])(/(?:[\w.+-]+/)+[\w.+-]*)""")


def machine_paths(path: Path) -> list[str]:
    """Absolute paths in a notebook's sources, text outputs and metadata (images are skipped)."""
    nb = nbformat.read(path, as_version=4)
    texts = [json.dumps(nb.metadata)]
    for cell in nb.cells:
        texts.append(cell.source)
        texts.append(json.dumps(cell.metadata))
        for out in cell.get("outputs", []):
            texts.append(str(out.get("text", "")) + str(out.get("evalue", "")))
            texts += [str(v) for k, v in out.get("data", {}).items() if not k.startswith("image/")]
    return sorted({m for t in texts for m in ABSOLUTE.findall(t)})


def test_no_template_holds_a_machine_path():
    for name in NOTEBOOKS:
        assert machine_paths(batch.NOTEBOOKS / name) == [], name


def test_no_executed_page_holds_a_machine_path(smoke_book):
    executed, _, results = smoke_book
    for path in executed:
        assert machine_paths(path) == [], path.name
        assert str(results.parent) not in path.read_text(), path.name


def test_the_machine_path_check_finds_one():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('data_root = "/home/someone/data"')]
    assert ABSOLUTE.findall(nb.cells[0].source) == ["/home/someone/data"]
    assert ABSOLUTE.findall("train / val / test, https://doi.org/10.5683/SP2 and results/emodb/x") == []


def test_the_summary_lists_unavailable_corpora_as_not_run(smoke_book):
    executed, _, _ = smoke_book
    text = cells_text(next(p for p in executed if p.name == "summary.ipynb"))
    assert "not run: data not available here" in text and "make run CORPUS=iemocap" in text
    assert "not run yet: data present" in text  # urdu has data in the smoke run but was not trained


def test_the_tier1plus_page_shows_the_check_on_emodb_validation_speakers(smoke_book):
    executed, _, results = smoke_book
    text = cells_text(next(p for p in executed if p.name == "tier1plus-recipe.ipynb"))
    assert "Checked on a second corpus" in text and "Δ vs Tier-1+" in text
    for model in ("tier1plus", "tier1-tplus-window", "tier1-tplus-crops", "tier1-tplus-small"):
        assert list((results / "emodb").glob(f"*/{model}/fold-1/seed-0/metrics.json")), model


def test_ablations_say_why_demucs_did_not_run(smoke_book):
    executed, _, _ = smoke_book
    text = cells_text(next(p for p in executed if p.name == "ablations-ravdess.ipynb"))
    assert "not run" in text and "Demucs" in text


def test_the_built_site_has_its_pages_tables_and_images(smoke_book):
    _, html, _ = smoke_book
    assert check_site(html, corpora=["ravdess"]) == []
    for page in ("book/intro.html", "book/data.html", "book/methods.html", "book/reproducibility.html",
                 "book/limitations.html", "book/results/provenance.html", "book/results/corpora/ravdess-data.html"):
        assert (html / page).is_file(), page
    pngs = list((html / "_images").glob("*.png"))
    assert len(pngs) >= 5  # confusion matrices, curves, examples...


def test_the_summary_page_renders_in_headless_chromium(smoke_book, tmp_path):
    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (.ci/run installs Debian's chromium package)")
        pytest.skip("Chromium not installed (apt-get install chromium); CI installs it")
    _, html, _ = smoke_book
    page = html / "book" / "results" / "summary.html"
    shot = screenshot(page, tmp_path / "summary.png")
    assert shot.stat().st_size > 20_000
    dom = rendered_dom(page)
    assert "<table" in dom and "test UAR" in dom


@pytest.fixture(scope="module")
def committed_site(tmp_path_factory):
    """What `make book` does on a fresh clone: no data, no execution, Sphinx warnings are errors."""
    tmp = tmp_path_factory.mktemp("committed")
    src = copy_sources(tmp / "src")
    stray = src / ".pytest_cache" / "README.md"  # what `make test` leaves behind before `make book`
    stray.parent.mkdir()
    stray.write_text("# pytest cache directory\n")
    return src, build(src, tmp / "site")


def test_the_committed_book_builds_strictly_from_its_executed_notebooks(committed_site):
    src, html = committed_site
    corpora = sorted({p.name.split("-")[0] for p in (src / "book" / "results" / "corpora").glob("*-*.ipynb")})
    assert corpora, "no executed per-corpus notebook is committed under book/results/corpora/"
    assert check_site(html, corpora=corpora) == []
    assert "<title>" in (html / "index.html").read_text()


PROCESS_WORDS = re.compile(r"\b(issues?|previous version|session note|(?:this|an earlier|a later|the first|accelerator)"
                           r" session|targets?)\b", re.IGNORECASE)
READER_USES = ("make target", "batch target", "target sizes", "target words", "targets are the mixed")


class _Text(HTMLParser):
    """The visible text of a page (no scripts or styles)."""

    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(page: Path) -> str:
    parser = _Text()
    parser.feed(page.read_text(encoding="utf-8"))
    return " ".join(" ".join(parser.parts).split())


def reader_pages(html: Path) -> list[Path]:
    return [p for p in sorted((html / "book").rglob("*.html"))]


def test_no_built_page_uses_words_of_our_process_or_cuts_a_table_short(committed_site):
    _, html = committed_site
    problems = []
    for page in reader_pages(html):
        text = visible_text(page)
        for m in PROCESS_WORDS.finditer(text):
            context = text[max(0, m.start() - 20):m.end() + 20].lower()
            if not any(use in context for use in READER_USES):
                problems.append(f"{page.name}: ...{text[max(0, m.start() - 60):m.end() + 30]}...")
        if re.search(r"<td>\s*(\.\.\.|…)\s*</td>|<th>\s*(\.\.\.|…)\s*</th>", page.read_text(encoding="utf-8")):
            problems.append(f"{page.name}: a table cut short with '...'")
    assert problems == []


def test_the_process_word_check_finds_one(tmp_path):
    page = tmp_path / "p.html"
    page.write_text("<html><body><p>This meets the 74 % target.</p><table><tr><td>...</td></tr></table>"
                    "<p>make target</p></body></html>")
    text = visible_text(page)
    assert [m.group(0) for m in PROCESS_WORDS.finditer(text)] == ["target", "target"]
    assert re.search(r"<td>\s*(\.\.\.|…)\s*</td>", page.read_text())


def _chromium_or_skip():
    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (.ci/run installs Debian's chromium package)")
        pytest.skip("Chromium not installed (apt-get install chromium); CI installs it")


def test_every_summary_table_fits_a_1400_px_page(committed_site):
    _chromium_or_skip()
    _, html = committed_site
    for page in ("summary.html", "full-grid.html"):
        assert wide_tables(html / "book" / "results" / page, width=1400) == [], page


def test_the_width_check_catches_a_table_wider_than_the_page(committed_site, tmp_path):
    _chromium_or_skip()
    _, html = committed_site
    page = html / "book" / "results" / "wide-probe.html"
    row = "".join(f"<td>column-{i}-with-a-long-unbreakable-value</td>" for i in range(40))
    page.write_text((html / "book" / "results" / "summary.html").read_text(encoding="utf-8").replace(
        "</article>", f"<table><tr>{row}</tr></table></article>", 1), encoding="utf-8")
    try:
        assert len(wide_tables(page, width=1400)) == 1
    finally:
        page.unlink()


def test_equations_render_offline_from_the_site_itself(committed_site):
    _chromium_or_skip()
    _, html = committed_site
    methods = html / "book" / "methods.html"
    assert "cdn" not in " ".join(re.findall(r'<script[^>]*src="([^"]*)"', methods.read_text(encoding="utf-8"))).lower()
    dom = rendered_dom(methods, budget_ms=20000)
    assert dom.count('class="MathJax"') >= 10 and 'class="MathJax_Error' not in dom


def test_a_pages_written_notes_come_from_the_notes_folder_of_its_results_tree(tmp_path):
    page = tmp_path / "results" / "corpora" / "ravdess-emobox.ipynb"
    (tmp_path / "results" / "notes").mkdir(parents=True)
    (tmp_path / "results" / "notes" / "ravdess-emobox.md").write_text("**Reading the figures.** Sad fails.\n")
    assert batch.with_notes(page, {"seeds": [0]}) == {"seeds": [0], "notes": "**Reading the figures.** Sad fails."}
    assert batch.with_notes(page, {"notes": "given"}) == {"notes": "given"}
    assert batch.with_notes(page.with_name("urdu-speaker-cv.ipynb"), {"seeds": [0]}) == {"seeds": [0]}


def test_every_committed_note_belongs_to_a_committed_page():
    results = batch.BOOK_RESULTS
    pages = {p.stem for p in results.glob("*/*.ipynb")}
    assert {p.stem for p in (results / "notes").glob("*.md")} <= pages


def test_the_overview_lists_unrecognised_files_by_path_relative_to_the_corpus(tmp_path):
    from serlib.data.corpora import read_corpus
    from serlib.features.prepared import Prepared
    from serlib.report.pages import unrecognised_table
    from serlib.data.synthetic import write_synthetic_corpus

    root = write_synthetic_corpus("tess", tmp_path / "tess", per_class=1, seconds=0.5)
    odd = next(root.rglob("OAF_*.wav"))
    odd.rename(odd.with_name("OA_bite_neutral.wav"))
    table = unrecognised_table(Prepared(read_corpus("tess", root), None))
    assert list(table["file"]) == [f"{odd.parent.name}/OA_bite_neutral.wav"]
    assert not table["file"].str.startswith("/").any() and table["reason"].str.contains("name does not match").all()


def test_no_committed_page_carries_a_machine_path():
    pages = sorted((batch.PROJECT_ROOT / "book").rglob("*.ipynb"))
    assert pages, "no committed pages"
    leaks = {str(p.relative_to(batch.PROJECT_ROOT)): machine_paths(p) for p in pages}
    assert {page: paths for page, paths in leaks.items() if paths} == {}
