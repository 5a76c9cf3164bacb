"""The student-notebook converter (python -m slimlab.student) and the exercise-insertion helper."""
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from slimlab.exercises import EXERCISES
from slimlab.student import (BEGIN, CODE_STUB, END, TAG_INSTRUCTOR, clear_solutions, convert, convert_all,
                             exercise_cells, hide_sources, notebook_exercises, solution_cell,
                             solution_regions, student_notebook)
from test_exercises import instructor_copy

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------- pieces

def test_clear_solutions_keeps_the_scaffold_and_indents_the_stub():
    src = "def f(x):\n    y = 2\n    ### BEGIN SOLUTION\n    return x * y\n    ### END SOLUTION\n\nprint(f)"
    out = clear_solutions(src)
    assert out == f"def f(x):\n    y = 2\n    {CODE_STUB}\n\nprint(f)"
    two = "a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nc = 3\n### BEGIN SOLUTION\nd = 4\n### END SOLUTION"
    assert clear_solutions(two).count(CODE_STUB) == 2 and "b = 2" not in clear_solutions(two)
    assert solution_regions(two) == ["b = 2", "d = 4"]
    assert clear_solutions("no markers\n") == "no markers\n"


@pytest.mark.parametrize("bad", [f"{BEGIN}\nx", f"x\n{END}", f"{BEGIN}\n{BEGIN}\n{END}\n{END}"])
def test_unbalanced_markers_are_refused(bad):
    with pytest.raises(ValueError, match="SOLUTION"):
        clear_solutions(bad)


def test_clear_solutions_refuses_non_text():
    with pytest.raises(TypeError):
        clear_solutions(["a"])


def test_hide_sources_drops_only_exercised_functions():
    hidden = {"quantize_affine", "fit_power_law"}
    assert hide_sources("show_source(Q.qparams_from_range, Q.quantize_affine, Q.dequantize_affine)", hidden) \
        == "show_source(Q.qparams_from_range, Q.dequantize_affine)"
    assert hide_sources("show_source(S.fit_power_law)", hidden) is None
    mixed = "show_source(Q.quantize_affine)\ncfg = 1\nprint(cfg)"
    assert hide_sources(mixed, hidden) == "cfg = 1\nprint(cfg)"
    assert hide_sources("show_source(Q.pack_bits)\nx = 1", hidden) == "show_source(Q.pack_bits)\nx = 1"
    # quantize_affine_student is not quantize_affine; a magic line does not break the parse
    assert hide_sources("%matplotlib inline\nshow_source(quantize_affine_student)", hidden) \
        == "%matplotlib inline\nshow_source(quantize_affine_student)"


def _toy_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.cells = [nbformat.v4.new_markdown_cell("# Title", id="md0"),
                nbformat.v4.new_code_cell("show_source(Q.quantize_affine, Q.qrange)", id="c1"),
                *exercise_cells("02-quantize-affine", "### Task", "import torch\n\n"
                                "def quantize_affine_student(x, scale, zero_point, bits, symmetric=True):\n"
                                "    ### BEGIN SOLUTION\n    return SECRET_ANSWER\n    ### END SOLUTION"),
                nbformat.v4.new_code_cell("show_source(Q.fake_quantize)", id="c2"),
                nbformat.v4.new_code_cell("print(1)", id="c3", execution_count=3,
                                          outputs=[nbformat.v4.new_output("stream", text="1\n")])]
    nb.cells[-1].metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    return nb


def test_student_notebook_on_a_toy():
    nb = _toy_notebook()
    before = nbformat.writes(nb)
    st = student_notebook(nb)
    assert nbformat.writes(nb) == before                       # the input is left alone
    text = nbformat.writes(st)
    assert "SECRET_ANSWER" not in text and BEGIN not in text and CODE_STUB in text
    srcs = [c.source for c in st.cells]
    assert "show_source(Q.qrange)" in srcs                     # the exercised function is gone, the rest kept
    assert "show_source(Q.fake_quantize)" in srcs              # 02-ste is not in this notebook: nothing hidden
    assert srcs[0] == "# Title" and srcs[-1] == "print(1)"
    last = st.cells[-1]
    assert last.outputs == [] and last.execution_count is None and "execution" not in last.metadata
    assert "widgets" not in st.metadata
    nbformat.validate(st)


def test_instructor_only_cells_are_dropped():
    nb = _toy_notebook()
    note = nbformat.v4.new_markdown_cell("This is the instructor version: `make student` builds the student one.",
                                         id="note")
    note.metadata["tags"] = [TAG_INSTRUCTOR]
    nb.cells.insert(2, note)
    st = student_notebook(nb)
    assert "make student" not in nbformat.writes(st) and len(st.cells) == len(nb.cells) - 1


def test_student_notebook_refuses_unknown_or_unmarked_exercises():
    nb = _toy_notebook()
    nb.cells[3].metadata["tags"].append("exercise:99-nope")
    with pytest.raises(ValueError, match="99-nope"):
        student_notebook(nb)
    nb = _toy_notebook()
    nb.cells[3].source = "def quantize_affine_student(x):\n    return 1"
    with pytest.raises(ValueError, match="no '### BEGIN SOLUTION' marker"):
        student_notebook(nb)


def test_exercise_cells(tmp_path):
    with pytest.raises(ValueError, match="unknown exercise"):
        exercise_cells("00-x", "t", f"def f():\n    {BEGIN}\n    {END}")
    with pytest.raises(ValueError, match="must hold"):
        exercise_cells("05-soften", "t", "def soften_student(l, t):\n    return l")
    with pytest.raises(ValueError, match="must define soften_student"):
        exercise_cells("05-soften", "t", f"def other(l, t):\n    {BEGIN}\n    {END}")
    cells = exercise_cells("05-soften", "### Task", f"def soften_student(l, t):\n    {BEGIN}\n    return l\n    {END}")
    assert [c.id for c in cells] == ["ex-05-soften-task", "ex-05-soften-solution", "ex-05-soften-check"]
    assert cells[1].metadata["nbgrader"]["solution"] is True
    assert "check('05-soften', soften_student)" in cells[2].source
    assert notebook_exercises(nbformat.v4.new_notebook(cells=cells)) == ["05-soften"]


# --------------------------------------------------------------------------------------------- the real notebooks

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    src, missing = instructor_copy(tmp_path_factory.mktemp("instructor"))
    out = tmp_path_factory.mktemp("student")
    convert_all(sorted(src.glob("*.ipynb")), out)
    return src, out, missing


def test_student_notebooks_hold_no_solution_text(converted):
    src, out, _ = converted
    assert sorted(p.name for p in out.glob("*.ipynb")) == sorted(p.name for p in src.glob("*.ipynb"))
    for p in sorted(src.glob("*.ipynb")):
        inst = nbformat.read(p, as_version=4)
        student_text = (out / p.name).read_text()
        student = nbformat.reads(student_text, as_version=4)
        assert BEGIN not in student_text and END not in student_text
        # outside the solution regions, what text does the instructor notebook's source hold?
        elsewhere = "\n".join(clear_solutions(c.source, "") for c in inst.cells)
        for ex in notebook_exercises(inst):
            for region in solution_regions(solution_cell(inst, ex).source):
                for line in region.split("\n"):
                    s = line.strip()
                    if len(s) >= 12 and s not in elsewhere:
                        assert s not in student_text, (p.name, ex, s)
            assert solution_cell(student, ex).source.count(CODE_STUB) == 1
        # the displayed source of an exercised function is gone, every other cell is intact
        hidden = {h for ex in notebook_exercises(inst) for h in EXERCISES[ex].hides}
        for c in student.cells:
            if c.cell_type == "code":
                assert c.outputs == [] and c.execution_count is None
                for h in hidden:
                    assert not re.search(rf"show_source\([^)]*\b{h}\b", c.source), (p.name, h)
        inst_src = [c.source for c in inst.cells if "show_source(" not in c.source and not notebook_exercises_of(c)
                    and TAG_INSTRUCTOR not in c.metadata.get("tags", [])]
        stud_src = [c.source for c in student.cells if "show_source(" not in c.source and not notebook_exercises_of(c)]
        assert inst_src == stud_src, p.name
        assert "widgets" not in student.metadata
        assert not any(TAG_INSTRUCTOR in c.metadata.get("tags", []) for c in student.cells)


def notebook_exercises_of(cell):
    return [t for t in cell.metadata.get("tags", []) if t.startswith("exercise:")]


def test_every_exercise_is_in_a_student_notebook(converted):
    _, out, missing = converted
    found = set()
    for p in out.glob("*.ipynb"):
        found.update(notebook_exercises(nbformat.read(p, as_version=4)))
    assert found == set(EXERCISES) - set(missing)
    assert {"01-power-law-fit", "01-gain-per-doubling", "02-quantize-affine", "02-ste"} <= found


def test_student_exercise_cells_run_and_report_not_done(converted):
    """The stub cells define their functions; the check cells then say 'not implemented yet' (no error)."""
    _, out, _ = converted
    for p in sorted(out.glob("*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        for ex in notebook_exercises(nb):
            ns: dict = {}
            for c in nb.cells:
                if f"exercise:{ex}" in c.metadata.get("tags", []) and c.cell_type == "code":
                    exec(compile(c.source, f"<{p.name}:{ex}>", "exec"), ns)
            assert ns["check"](ex, ns[EXERCISES[ex].function], verbose=False).status == "not implemented"


def test_command_line_writes_atomically(tmp_path):
    nb = _toy_notebook()
    src = tmp_path / "toy.ipynb"
    nbformat.write(nb, src)
    r = subprocess.run([sys.executable, "-m", "slimlab.student", str(src), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=ROOT, check=True)
    assert "wrote" in r.stdout
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["toy.ipynb"]
    assert "SECRET_ANSWER" not in (tmp_path / "out" / "toy.ipynb").read_text()
    with pytest.raises(ValueError, match="not a notebook"):
        convert(tmp_path / "missing.ipynb", tmp_path / "out")
    json.loads((tmp_path / "out" / "toy.ipynb").read_text())
