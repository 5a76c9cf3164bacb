"""slimlab.execute: a notebook runs cell by cell in a real kernel, its outputs land in the written copy, a failing
cell leaves no file, and bad arguments are refused."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from slimlab.execute import execute_notebook, main


def _write(path, *sources):
    nb = new_notebook(cells=[new_markdown_cell("# title")] + [new_code_cell(s) for s in sources])
    nbformat.write(nb, str(path))
    return path


def test_runs_every_cell_in_the_notebooks_folder_and_logs_them(tmp_path):
    (tmp_path / "nbdir").mkdir()
    src = _write(tmp_path / "nbdir" / "a.ipynb",
                 "import os\nprint(os.path.basename(os.getcwd()))",
                 "import ipywidgets as w\nw.interact(lambda x: print(x * 2), x=w.IntSlider(3, 0, 5));",
                 "x = 6 * 7\nx")
    out = execute_notebook(src, tmp_path / "out" / "a.ipynb", log=tmp_path / "cells.log")
    nb = nbformat.read(str(out), as_version=4)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3]
    assert code[0]["outputs"][0]["text"].strip() == "nbdir"                    # cwd = the notebook's folder
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in code[1]["outputs"])
    assert code[2]["outputs"][0]["data"]["text/plain"] == "42"
    lines = (tmp_path / "cells.log").read_text().splitlines()
    assert sum(" start cell " in ln for ln in lines) == 4 and sum(" done cell " in ln for ln in lines) == 3   # markdown cells start, only code cells execute
    assert not list((tmp_path / "out").glob("*tmp"))   # no temporary file left beside it


def test_a_failing_cell_raises_and_writes_nothing(tmp_path):
    from nbclient.exceptions import CellExecutionError
    src = _write(tmp_path / "b.ipynb", "print('ok')", "raise RuntimeError('boom')", "print('never')")
    with pytest.raises(CellExecutionError, match="boom"):
        execute_notebook(src, tmp_path / "out" / "b.ipynb")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_arguments(tmp_path):
    src = _write(tmp_path / "c.ipynb", "1")
    with pytest.raises(ValueError, match=r"\.ipynb"):
        execute_notebook(tmp_path / "c.txt", tmp_path / "o.ipynb")
    with pytest.raises(ValueError, match="no notebook"):
        execute_notebook(tmp_path / "missing.ipynb", tmp_path / "o.ipynb")
    with pytest.raises(ValueError, match="out must end"):
        execute_notebook(src, tmp_path / "o.json")
    with pytest.raises(ValueError, match="poll_s"):
        execute_notebook(src, tmp_path / "o.ipynb", poll_s=0)
    with pytest.raises(ValueError, match="cwd"):
        execute_notebook(src, tmp_path / "o.ipynb", cwd=tmp_path / "nope")


def test_command_line(tmp_path):
    src = _write(tmp_path / "d.ipynb", "print('hi')")
    assert main([str(src), "--output-dir", str(tmp_path / "built")]) == 0
    assert "hi" in (tmp_path / "built" / "d.ipynb").read_text()
