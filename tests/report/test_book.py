"""Report pages never lie either: scratch batches stay out of the book, failed pages never replace good ones,
and the book refuses to publish a page that holds an error."""

from __future__ import annotations

import nbformat
import pytest

from serlib.experiments import batch
from serlib.report.book import BrokenPage, build, copy_sources, pages_with_errors
from serlib.config import ConfigError


def test_pages_go_next_to_the_results_they_read(tmp_path, monkeypatch):
    monkeypatch.delenv("SERLIB_RESULTS", raising=False)
    assert batch.pages_dir() == batch.BOOK_RESULTS
    assert batch.pages_dir(batch.PROJECT_ROOT / "results") == batch.BOOK_RESULTS
    monkeypatch.setenv("SERLIB_RESULTS", str(tmp_path / "scratch"))
    assert batch.pages_dir() == tmp_path / "scratch" / "pages"
    assert batch.pages_dir(tmp_path / "other") == tmp_path / "other" / "pages"


def test_a_protocol_typo_stops_the_batch_before_any_page_runs(monkeypatch, capsys):
    executed = []
    monkeypatch.setattr(batch, "execute", lambda *a, **k: executed.append(a))
    monkeypatch.setattr(batch, "corpus_available", lambda corpus, root: True)
    assert batch.main(["corpus", "emodb", "--protocol", "bogus", "--seeds", "0", "--allow-dirty"]) == 2
    assert "data.protocol" in capsys.readouterr().err and executed == []
    with pytest.raises(ConfigError):
        batch.run_corpus("emodb", protocol="bogus")


def failing_template(folder, cell: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Template"), params, nbformat.v4.new_code_cell(cell)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "page.ipynb")


def test_a_failed_execution_keeps_the_previous_page(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "NOTEBOOKS", tmp_path)
    good = tmp_path / "out" / "corpora" / "page.ipynb"
    failing_template(tmp_path, "print(x)")
    batch.execute("page.ipynb", good, {"x": 2}, log=False)
    before = good.read_bytes()
    failing_template(tmp_path, "raise RuntimeError('no such corpus')")
    with pytest.raises(batch.PageFailed, match="page.ipynb failed at cell .*RuntimeError: no such corpus.*previous page is kept"):
        batch.execute("page.ipynb", good, {"x": 3}, log=False)
    assert good.read_bytes() == before
    assert pages_with_errors(tmp_path / "nowhere") == []


def test_the_book_refuses_to_publish_a_page_with_an_error_output(tmp_path):
    src = copy_sources(tmp_path / "src")
    page = next((src / "book" / "results").glob("*.ipynb"))
    nb = nbformat.read(page, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.outputs = [nbformat.v4.new_output("error", ename="KeyError", evalue="'path'", traceback=[])]
    nbformat.write(nb, page)
    assert pages_with_errors(src) == [f"{page.relative_to(src)}: KeyError"]
    with pytest.raises(BrokenPage, match="KeyError"):
        build(src, tmp_path / "site")


def test_the_committed_book_has_no_page_with_an_error_output():
    assert pages_with_errors(batch.PROJECT_ROOT) == []


def test_published_pages_leave_their_parameter_cells_out(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "NOTEBOOKS", tmp_path)
    failing_template(tmp_path, "print(x)")
    page = batch.execute("page.ipynb", tmp_path / "out" / "corpora" / "page.ipynb", {"x": 2}, log=False)
    nb = nbformat.read(page, as_version=4)
    tagged = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"]
    parameter_cells = [t for t in tagged if "parameters" in t or "injected-parameters" in t]
    assert len(parameter_cells) == 2 and all("remove-cell" in t for t in parameter_cells)  # no toggle above the title


def test_pages_of_another_results_folder_execute_and_fail_beside_them_not_in_the_checkout(tmp_path, monkeypatch):
    from serlib.core.runs import PROJECT_ROOT

    monkeypatch.setattr(batch, "NOTEBOOKS", tmp_path)
    before = set((PROJECT_ROOT / "_build").rglob("*")) if (PROJECT_ROOT / "_build").exists() else set()
    page = tmp_path / "scratch-results" / "pages" / "corpora" / "page.ipynb"
    failing_template(tmp_path, "raise RuntimeError('no such corpus')")
    with pytest.raises(batch.PageFailed, match=r"the failed notebook is .*scratch-results.*_build/failed"):
        batch.execute("page.ipynb", page, {"x": 1}, log=False)
    after = set((PROJECT_ROOT / "_build").rglob("*")) if (PROJECT_ROOT / "_build").exists() else set()
    assert after == before
    assert not list((page.parent / "_build" / "executing").iterdir())  # the scratch copy moved to failed/
