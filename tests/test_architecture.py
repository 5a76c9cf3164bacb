"""The package's layering, as the README's "Architecture" section states it: each module imports only
from its own layer or the layers below. A new import that breaks the layering fails here."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "slimlab"

# layer number of every module; a module may import modules of a lower or equal layer only
LAYERS = {
    # base: knows no compression method
    "checks": 0, "files": 0, "machine": 0,
    "data": 1, "models": 1, "packing": 1,
    "measure": 2, "train": 2, "profile": 2, "ledger": 2,
    "parts": 3, "cluster": 3, "zoo": 3,
    # methods: one module per notebook topic, each usable on its own
    "scaling": 4, "quantize": 4, "prune": 4, "share": 4, "distill": 4,
    # deployment and cross-method comparisons
    "deploy": 5, "combine": 6,
    # verdicts, then the course tools
    "claims": 7,
    "nb": 8, "report": 8, "goals": 8, "exercises": 8, "student": 8, "execute": 8,
}
# the named exceptions: (importer, imported), each with its reason
ALLOWED: dict[tuple[str, str], str] = {
    ("ledger", "claims"): "the rule registry loads the rule module on first use (ledger.judge / ledger.rules)",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("slimlab."):
            out.add(node.module.split(".")[1])
    return out


def test_every_module_has_a_layer():
    mods = {p.stem for p in PKG.glob("*.py")} - {"__init__", "__main__"}
    assert mods <= set(LAYERS), f"modules without a layer in the README's architecture: {sorted(mods - set(LAYERS))}"


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_imports_respect_the_layers(module):
    path = PKG / f"{module}.py"
    if not path.is_file():
        pytest.skip(f"no slimlab/{module}.py")
    bad = []
    for dep in _imports(path):
        if dep not in LAYERS or dep == module:
            continue
        lower = LAYERS[dep] < LAYERS[module]
        same_layer_ok = LAYERS[dep] == LAYERS[module] and LAYERS[module] not in (4,)
        if not (lower or same_layer_ok or (module, dep) in ALLOWED):
            bad.append(f"{module} (layer {LAYERS[module]}) imports {dep} (layer {LAYERS[dep]})")
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("module", ["scaling", "quantize", "prune", "share", "distill", "deploy", "combine"])
def test_functions_that_change_their_model_in_place_end_in_an_underscore(module):
    """The README's naming rule: a public function whose docstring says it works in place is named
    `name_` (as torch's `Tensor.add_`); one that returns a new model does not say so."""
    tree = ast.parse((PKG / f"{module}.py").read_text())
    wrong = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            doc = " ".join((ast.get_docstring(node) or "").split())
            if "in place" in doc and not node.name.endswith("_"):
                wrong.append(node.name)
    assert not wrong, f"{module}: {wrong} work in place but lack the trailing underscore"
