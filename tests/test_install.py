"""A non-editable install (`pip install .`) used from another folder: where do data and results go?

The old `ROOT` was the package's parent folder, so an installed slimlab looked for checkpoints, caches
and results inside site-packages. About 20 s (one pip install, three interpreter starts)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = ("import slimlab, slimlab.data as d, slimlab.zoo as z, slimlab.ledger as l; "
         "print(slimlab.__file__); print(d.ROOT); print(z.CHECKPOINT_DIR); print(l.RESULTS_DIR); print(d.ROOT_REASON)")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if shutil.which("pip") is None and subprocess.run([sys.executable, "-m", "pip", "--version"],
                                                      capture_output=True).returncode != 0:
        pytest.skip("pip is not available")
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"                      # build from a copy, so the checkout gets no build/ or egg-info
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "slimlab", src / "slimlab", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(target), str(src)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (target / "slimlab" / "data.py").is_file() and not (target / "pyproject.toml").exists()
    return tmp, target


def _probe(target: Path, cwd: Path, home: Path, **env) -> list[str]:
    e = {k: v for k, v in os.environ.items() if k not in ("SLIMLAB_HOME", "XDG_DATA_HOME", "PYTHONPATH")}
    e.update(PYTHONPATH=str(target), HOME=str(home), OMP_NUM_THREADS="1", **env)
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=e, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().splitlines()


def test_installed_package_resolves_paths_outside_site_packages(installed):
    tmp, target = installed
    elsewhere, home = tmp / "elsewhere", tmp / "home"
    elsewhere.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    # outside a checkout, no SLIMLAB_HOME: the user folder, never site-packages
    pkg, root, ckpt, results, why = _probe(target, elsewhere, home)
    assert Path(pkg).parent == target / "slimlab"
    assert Path(root) == (home / ".local" / "share" / "slimlab").resolve() and "user folder" in why
    assert not Path(root).is_relative_to(target) and Path(ckpt) == Path(root) / "data" / "checkpoints"
    assert not Path(root).exists(), "importing must not create folders"
    # SLIMLAB_HOME decides, from anywhere
    mine = tmp / "my-slimlab"
    pkg, root, ckpt, results, why = _probe(target, elsewhere, home, SLIMLAB_HOME=str(mine))
    assert Path(root) == mine.resolve() and why == "$SLIMLAB_HOME"
    assert Path(ckpt) == mine.resolve() / "data" / "checkpoints" and Path(results) == mine.resolve() / "results"
    # run from inside a checkout (here: its notebooks/ folder), the checkout is the home
    pkg, root, ckpt, results, why = _probe(target, REPO / "notebooks", home)
    assert Path(pkg).parent == target / "slimlab" and Path(root) == REPO and "current folder" in why
