"""Options of the browser test (`make test-browser`): which notebook to drive, which site to check."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    g = parser.getgroup("slimlab browser")
    g.addoption("--notebook", default=os.environ.get("SLIMLAB_BROWSER_NOTEBOOK",
                                                     str(ROOT / "notebooks" / "02_quantization.ipynb")),
                help="notebook to run in JupyterLab; it must hold an IntSlider described 'bits'")
    g.addoption("--site", default=str(ROOT / "build" / "site"), help="static site to check (browser/build_site.py)")
    g.addoption("--shots", default=str(ROOT / "build" / "browser"), help="where screenshots go")


@pytest.fixture(scope="session")
def notebook_path(request) -> Path:
    p = Path(request.config.getoption("--notebook")).resolve()
    if not p.is_file():
        pytest.fail(f"notebook {p} not found (pass --notebook PATH or set SLIMLAB_BROWSER_NOTEBOOK)")
    return p


@pytest.fixture(scope="session")
def site_dir(request) -> Path:
    p = Path(request.config.getoption("--site")).resolve()
    if not (p / "index.html").is_file():
        pytest.fail(f"no static site at {p} (run `make site` or python browser/build_site.py first)")
    return p


@pytest.fixture(scope="session")
def shots_dir(request) -> Path:
    p = Path(request.config.getoption("--shots")).resolve()
    p.mkdir(parents=True, exist_ok=True)
    return p
