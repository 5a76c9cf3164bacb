"""Student notebooks from the instructor notebooks: `python -m slimlab.student` (or `make student`).

The committed notebooks are the instructor version: each exercise's solution sits between nbgrader-style
markers, so the notebooks run end to end. The student version (written to build/student/ by default):

* every solution region is replaced by a stub, indented like the marker —
  ``raise NotImplementedError  # your code here`` in code, ``YOUR ANSWER HERE`` in markdown;
* `show_source(...)` calls lose the functions an exercise asks for (`slimlab.exercises.EXERCISES[…].hides`);
  a call left with nothing to show is removed, and so is a cell left empty;
* cells tagged `instructor-only` (the note that points a reader of the instructor notebooks to
  `make student`) are removed;
* outputs, execution counts, execution timings and saved widget state are cleared;
* everything else is kept as it is.

It is a small converter rather than nbgrader (which installs, and whose ClearSolutions preprocessor works
offline): nbgrader brings a database layer (SQLAlchemy, alembic) and the classic notebook server with it
and would do only the first of the three steps. The markers are nbgrader's and the solution cells carry
nbgrader's cell metadata, so a teacher who uses nbgrader can still run it on the instructor notebooks.

`exercise_cells` builds the three cells of a new exercise (task, solution with nbgrader metadata, check
call) for a teacher who adds one to a notebook.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path
from typing import Iterable, Sequence

import nbformat

from .data import ROOT  # the project folder: $SLIMLAB_HOME or the checkout
from .files import atomic_write_text

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CODE_STUB = "raise NotImplementedError  # your code here"
TEXT_STUB = "YOUR ANSWER HERE"
TAG_TASK, TAG_SOLUTION, TAG_CHECK = "exercise-task", "exercise", "exercise-check"
TAG_INSTRUCTOR = "instructor-only"       # cells that only the instructor version keeps
ID_PREFIX = "exercise:"



# ---------------------------------------------------------------------------------------------
# solutions -> stubs

def clear_solutions(source: str, stub: str = CODE_STUB) -> str:
    """`source` with every BEGIN/END SOLUTION region (markers included) replaced by `stub`, indented like
    the BEGIN marker. Unbalanced or nested markers raise ValueError."""
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")
    out, inside, indent = [], False, ""
    for n, line in enumerate(source.split("\n"), 1):
        s = line.strip()
        if s.startswith(BEGIN):
            if inside:
                raise ValueError(f"line {n}: '{BEGIN}' inside another solution region")
            inside, indent = True, line[:len(line) - len(line.lstrip())]
            out.extend(indent + s_line for s_line in stub.split("\n"))
        elif s.startswith(END):
            if not inside:
                raise ValueError(f"line {n}: '{END}' without a '{BEGIN}' before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"'{BEGIN}' without a matching '{END}'")
    return "\n".join(out)


def solution_regions(source: str) -> list[str]:
    """The text between each BEGIN/END SOLUTION pair of `source` (markers excluded)."""
    regions, cur = [], None
    for line in source.split("\n"):
        s = line.strip()
        if s.startswith(BEGIN):
            cur = []
        elif s.startswith(END) and cur is not None:
            regions.append("\n".join(cur))
            cur = None
        elif cur is not None:
            cur.append(line)
    return regions


# ---------------------------------------------------------------------------------------------
# show_source(...) of exercised functions

def _arg_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _is_show_source(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and _arg_name(node.value.func) == "show_source")


def hide_sources(source: str, names: Iterable[str]) -> str | None:
    """`source` with the arguments named in `names` (matched by their last dotted part, e.g. `quantize_affine`
    for `Q.quantize_affine`) removed from top-level `show_source(...)` calls; a call left empty is removed.
    Returns None when nothing but blank lines is left (the cell should go)."""
    names = set(names)
    lines = source.split("\n")
    masked = "\n".join("#" * len(l) if l.lstrip().startswith(("%", "!")) else l for l in lines)  # IPython magics
    try:
        tree = ast.parse(masked)
    except SyntaxError:
        if any(f"{n})" in source or f"{n}," in source for n in names) and "show_source(" in source:
            raise ValueError("a cell that calls show_source(...) on an exercised function could not be parsed")
        return source
    edits = []
    for node in tree.body:
        if not _is_show_source(node):
            continue
        args = node.value.args
        keep = [a for a in args if _arg_name(a) not in names]
        if len(keep) == len(args):
            continue
        new = "" if not keep else f"{ast.unparse(node.value.func)}({', '.join(ast.unparse(a) for a in keep)})"
        edits.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, new))
    for l0, c0, l1, c1, new in sorted(edits, reverse=True):
        head, tail = lines[l0 - 1][:c0], lines[l1 - 1][c1:]
        joined = head + new + tail
        lines[l0 - 1:l1] = [joined] if joined.strip() else []
    text = "\n".join(lines)
    return text if text.strip() else None


# ---------------------------------------------------------------------------------------------
# notebooks

def exercise_ids(cell) -> list[str]:
    """The exercise ids a cell is tagged with (tags 'exercise:<id>')."""
    return [t[len(ID_PREFIX):] for t in cell.get("metadata", {}).get("tags", []) if t.startswith(ID_PREFIX)]


def notebook_exercises(nb) -> list[str]:
    """Exercise ids present in a notebook, in order."""
    seen = []
    for c in nb.cells:
        for e in exercise_ids(c):
            if e not in seen:
                seen.append(e)
    return seen


def solution_cell(nb, exercise: str):
    """The code cell holding `exercise`'s solution (tags 'exercise' and 'exercise:<id>'), or None."""
    for c in nb.cells:
        tags = c.get("metadata", {}).get("tags", [])
        if c.cell_type == "code" and TAG_SOLUTION in tags and f"{ID_PREFIX}{exercise}" in tags:
            return c
    return None


def student_notebook(nb, *, where: str = "notebook"):
    """A student copy of the nbformat notebook `nb` (the input is not changed)."""
    from .exercises import EXERCISES
    nb = _deepcopy(nbformat.from_dict(nb))
    ids = notebook_exercises(nb)
    unknown = [e for e in ids if e not in EXERCISES]
    if unknown:
        raise ValueError(f"{where}: exercise id(s) {unknown} have no checker in slimlab.exercises; "
                         f"known: {', '.join(EXERCISES)}")
    hidden = {n for e in ids for n in EXERCISES[e].hides}
    cells = []
    for i, cell in enumerate(nb.cells):
        src = cell.source
        tags = cell.get("metadata", {}).get("tags", [])
        if TAG_INSTRUCTOR in tags:
            continue
        if TAG_SOLUTION in tags and BEGIN not in src:
            raise ValueError(f"{where}, cell {i}: tagged as an exercise solution but has no '{BEGIN}' marker")
        try:
            src = clear_solutions(src, CODE_STUB if cell.cell_type == "code" else TEXT_STUB)
        except ValueError as e:
            raise ValueError(f"{where}, cell {i}: {e}") from None
        if cell.cell_type == "code" and hidden and "show_source" in src:
            src = hide_sources(src, hidden)
            if src is None:
                continue
        cell.source = src
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    return nb


def _deepcopy(nb):
    return nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))


def convert(path: str | Path, out_dir: str | Path) -> Path:
    """Write the student version of the notebook at `path` into `out_dir` (same file name); return its path."""
    path = Path(path)
    if path.suffix != ".ipynb" or not path.is_file():
        raise ValueError(f"not a notebook file: {path}")
    nb = nbformat.read(path, as_version=4)
    student = student_notebook(nb, where=path.name)
    text = nbformat.writes(student)
    if BEGIN in text or END in text:
        raise ValueError(f"{path.name}: a solution marker survived the conversion")
    return atomic_write_text(Path(out_dir) / path.name, text)


def convert_all(paths: Sequence[str | Path] | None = None, out_dir: str | Path | None = None) -> list[Path]:
    """Student versions of `paths` (default: every notebooks/*.ipynb) in `out_dir` (default build/student)."""
    paths = sorted((ROOT / "notebooks").glob("*.ipynb")) if not paths else [Path(p) for p in paths]
    out_dir = ROOT / "build" / "student" if out_dir is None else Path(out_dir)
    return [convert(p, out_dir) for p in paths]


# ---------------------------------------------------------------------------------------------
# building the cells of a new exercise

def exercise_cells(exercise: str, task: str, solution: str, check: str | None = None) -> list:
    """The three cells of an exercise: markdown task, solution code (nbgrader solution metadata), check call."""
    from .exercises import EXERCISES
    if exercise not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise!r}; known: {', '.join(EXERCISES)}")
    if BEGIN not in solution or END not in solution:
        raise ValueError(f"the solution of {exercise} must hold '{BEGIN}' … '{END}'")
    fn = EXERCISES[exercise].function
    if f"def {fn}(" not in solution:
        raise ValueError(f"the solution of {exercise} must define {fn}(...)")
    idt = f"{ID_PREFIX}{exercise}"
    safe = re.sub(r"[^A-Za-z0-9-]", "-", exercise)
    check = check or f"from slimlab.exercises import check\n\ncheck({exercise!r}, {fn})"
    md = nbformat.v4.new_markdown_cell(task.strip("\n"), id=f"ex-{safe}-task")
    md.metadata["tags"] = [TAG_TASK, idt]
    code = nbformat.v4.new_code_cell(solution.strip("\n"), id=f"ex-{safe}-solution")
    code.metadata["tags"] = [TAG_SOLUTION, idt]
    code.metadata["nbgrader"] = {"grade": False, "grade_id": exercise, "locked": False, "schema_version": 3,
                                 "solution": True, "task": False}
    chk = nbformat.v4.new_code_cell(check.strip("\n"), id=f"ex-{safe}-check")
    chk.metadata["tags"] = [TAG_CHECK, idt]
    return [md, code, chk]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slimlab.student", description=__doc__.split("\n")[0])
    ap.add_argument("notebooks", nargs="*", help="instructor notebooks (default: notebooks/*.ipynb)")
    ap.add_argument("--out", default=None, help="output folder (default: build/student)")
    a = ap.parse_args(argv)
    for p in convert_all(a.notebooks, a.out):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

