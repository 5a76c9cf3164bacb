"""The course in a real browser: JupyterLab + headless Chromium (Debian's), driven by Playwright.

1. Start JupyterLab from the project's venv on localhost, open the notebook (default
   notebooks/02_quantization.ipynb), clear it, run all cells from the Run menu, wait until
   every code cell has run, move the IntSlider described "bits" with the keyboard and check that
   the widget's output changes. Screenshot: build/browser/notebook02.png.
2. Serve build/site/ with `python -m http.server` and check that every page linked from the
   index loads, with all its figures (every <img> decoded, naturalWidth > 0). Screenshot of the index.
3. The landing page lists the 14 claims, each with its full-profile verdict(s) in the verdict's colour
   (or "missing"), and its key figures (PNG files beside it) load.
4. One static fallback figure (what a page shows where a widget cannot run): on the rendered
   05_distillation page, the code cell containing "The temperature slider, static" shows a loaded
   image. Rendered from the committed notebooks/ when the site's source notebooks lack that output.

Everything runs offline: requests leaving localhost are refused (the site's CDN scripts for MathJax
and require.js are optional). Servers are stopped in every case. Run with `make test-browser`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install -e .[browser]")

CHROMIUM = os.environ.get("SLIMLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RUN_TIMEOUT_S = float(os.environ.get("SLIMLAB_BROWSER_RUN_TIMEOUT", "420"))   # run-all: a hang guard (02 compiles two models)
START_TIMEOUT_S = 120.0                                                       # a server coming up
FALLBACK_NOTEBOOK = "05_distillation"          # a static fallback figure: the temperature slider drawn at six T
FALLBACK_MARKER = "The temperature slider, static"
LAB_SETTINGS = {  # JupyterLab user settings for the run: no autosave (the notebook file stays as committed),
    # every cell in the DOM, no news fetching
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = START_TIMEOUT_S) -> None:
    """Wait until `url` answers 200, failing early (with the log) if the server process dies."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop a server we started (its whole process group), politely first."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def _offline(context, port: int) -> None:
    """Refuse every request that leaves the local server (CDN scripts, news feeds)."""
    def route(r):
        u = urlparse(r.request.url)
        if u.scheme in ("http", "https", "ws", "wss") and (u.hostname, u.port) != ("127.0.0.1", port):
            return r.abort()
        return r.continue_()
    context.route("**/*", route)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium (or set SLIMLAB_CHROMIUM)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def lab(notebook_path, tmp_path_factory):
    """JupyterLab from the venv on 127.0.0.1, rooted at the notebook's folder; yields (base_url, token)."""
    tmp = tmp_path_factory.mktemp("jupyterlab")
    for rel, value in LAB_SETTINGS.items():
        f = tmp / "settings" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTER_DATA_DIR": str(tmp / "data"), "JUPYTER_PLATFORM_DIRS": "1",
           "SLIMLAB_PROFILE": os.environ.get("SLIMLAB_PROFILE", "quick")}
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={notebook_path.parent}", f"--LabApp.user_settings_dir={tmp / 'settings'}",
           f"--LabApp.workspaces_dir={tmp / 'workspaces'}", "--LabApp.extension_manager=readonly",
           "--ServerApp.terminals_enabled=False"]
    if os.geteuid() == 0:                     # CI runs as root
        cmd.append("--allow-root")
    log = tmp / "jupyterlab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/api/status?token={token}", proc, log)
        yield base, token, port
    finally:
        _shutdown_kernels(base, token)
        _stop(proc)


def _shutdown_kernels(base: str, token: str) -> None:
    """Shut down the kernels the server started (they live in their own process groups)."""
    hdr = {"Authorization": f"token {token}"}
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{base}/api/kernels", headers=hdr), timeout=10) as r:
            kernels = json.load(r)
        for k in kernels:
            req = urllib.request.Request(f"{base}/api/kernels/{k['id']}", headers=hdr, method="DELETE")
            urllib.request.urlopen(req, timeout=30).close()
    except (urllib.error.URLError, OSError, ValueError):
        pass


@contextlib.contextmanager
def _http_server(directory: Path, log: Path, probe: str):
    """`python -m http.server` on 127.0.0.1 serving `directory`, up once `probe` answers; yields (base, port)."""
    port = _free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                 "--directory", str(directory)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/{probe}", proc, log)
        yield f"http://127.0.0.1:{port}", port
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def site_server(site_dir):
    with _http_server(site_dir, site_dir.parent / "site_server.log", "index.html") as served:
        yield served


@pytest.fixture(scope="session")
def fallback_site(site_dir, tmp_path_factory):
    """(folder, notebook): a site folder whose 05 page shows the static fallback figure, and the notebook the
    page was rendered from. The site itself when the notebook it rendered holds that cell's output; else
    (e.g. a clean checkout whose results/full/notebooks predate the fallback) the page is rendered here,
    as the site renders it, from the committed notebooks/; skip when neither holds the figure."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import build_site
    href = f"{FALLBACK_NOTEBOOK}.html"
    page = next((p for p in json.loads((site_dir / "site.json").read_text())["pages"] if p["href"] == href), None)
    if page is not None and build_site.cell_has_image(build_site.ROOT / page["source"], FALLBACK_MARKER):
        return site_dir, page["source"]
    committed = build_site.ROOT / "notebooks" / f"{FALLBACK_NOTEBOOK}.ipynb"
    if not build_site.cell_has_image(committed, FALLBACK_MARKER):
        pytest.skip(f"no static fallback figure to check: neither the site's source "
                    f"({page['source'] if page else 'no ' + href}) nor {build_site._rel(committed)} holds an "
                    f"image output of the code cell containing {FALLBACK_MARKER!r} (run the notebook and "
                    f"commit it with its outputs)")
    out = tmp_path_factory.mktemp("fallback_site")
    print(f"\nfallback: the site's {href} comes from {page['source'] if page else '?'} without the figure; "
          f"rendering {build_site._rel(committed)}")
    build_site.render_pages([committed], out)
    return out, build_site._rel(committed)


@pytest.fixture(scope="session")
def fallback_server(fallback_site):
    folder, _ = fallback_site
    with _http_server(folder, folder.parent / "fallback_server.log", f"{FALLBACK_NOTEBOOK}.html") as served:
        yield served


# ---------------------------------------------------------------- JupyterLab helpers (DOM of JupyterLab 4)
PROMPTS_JS = """() => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell'))
    .map(c => (c.querySelector('.jp-InputArea-prompt') || {textContent: ''}).textContent.trim())"""
ERRORS_JS = r"""() => Array.from(document.querySelectorAll('.jp-OutputArea-output'))
    .map(e => e.innerText).filter(t => /Traceback|^\w*Error\b/m.test(t)).map(t => t.slice(-1500))"""


def _run_menu(page, menu: str, item: str) -> None:
    """Click a main-menu entry by its visible labels (e.g. Run → Run All Cells), as a user would."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{menu}$")).click()
    page.locator(".lm-Menu-content > .lm-Menu-item:not(.lm-mod-hidden)").filter(
        has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{item}$"))).click()


def _wait_all_run(page, n_code: int, timeout: float) -> list[str]:
    """Wait until every code cell shows an execution number; fail fast if a cell raised."""
    t0, settled = time.monotonic(), None
    while time.monotonic() - t0 < timeout:
        prompts = page.evaluate(PROMPTS_JS)
        running = any("*" in p for p in prompts)
        done = sum(bool(re.fullmatch(r"\[\d+\]:", p)) for p in prompts)
        if not running and done >= n_code:
            return prompts
        if not running and time.monotonic() - t0 > 10:     # nothing queued, but not all ran: an error?
            settled = settled or time.monotonic()
            if time.monotonic() - settled > 5:
                errs = page.evaluate(ERRORS_JS)
                pytest.fail(f"run-all stopped after {done}/{n_code} code cells; errors: {errs or prompts}")
        else:
            settled = None
        time.sleep(1.0)
    pytest.fail(f"run-all did not finish within {timeout:.0f} s (prompts: {page.evaluate(PROMPTS_JS)})")


def _code_cells(nb_path: Path) -> int:
    nb = json.loads(nb_path.read_text())
    return sum(1 for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip())


def _snapshot(page, cell) -> str:
    """What the widget's output shows now: text and image sources of the Output areas near the slider."""
    return cell.evaluate("""c => {
        let outs = Array.from(c.querySelectorAll('.widget-output'));
        if (!outs.length) outs = Array.from(document.querySelectorAll('.jp-Notebook .widget-output'));
        return outs.map(o => o.innerText + '|' + Array.from(o.querySelectorAll('img')).map(i => i.src).join(','))
                   .join('\\n---\\n'); }""")


def test_bits_slider_changes_the_output_in_jupyterlab(browser, lab, notebook_path, shots_dir):
    base, token, port = lab
    n_code = _code_cells(notebook_path)
    committed = hashlib.sha256(notebook_path.read_bytes()).hexdigest()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    _offline(context, port)
    page = context.new_page()
    try:
        page.goto(f"{base}/lab/tree/{notebook_path.name}?token={token}", timeout=START_TIMEOUT_S * 1000)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=START_TIMEOUT_S * 1000)
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]',
                               timeout=START_TIMEOUT_S * 1000)             # the kernel is up
        page.locator(".jp-Notebook .jp-Cell").first.click()                # focus the notebook
        _run_menu(page, "Edit", "Clear Outputs of All Cells")
        page.wait_for_function(f"() => ({PROMPTS_JS})().every(p => !/\\d/.test(p))", timeout=30_000)
        t0 = time.monotonic()
        _run_menu(page, "Run", "Run All Cells")
        _wait_all_run(page, n_code, RUN_TIMEOUT_S)
        print(f"\nrun all: {n_code} code cells in {time.monotonic() - t0:.0f} s")

        slider = page.locator(".widget-hslider").filter(
            has=page.locator(".widget-label", has_text=re.compile(r"^\s*bits\s*$")))
        slider.first.wait_for(timeout=60_000)
        assert slider.count() == 1, f"expected one IntSlider described 'bits', found {slider.count()}"
        cell = page.locator(".jp-Notebook .jp-CodeCell").filter(has=slider)
        cell.scroll_into_view_if_needed()
        handle = slider.locator(".noUi-handle")
        page.wait_for_function("c => c.innerText.trim().length > 0 || c.querySelector('img')",
                               arg=cell.locator(".jp-Cell-outputArea").first.element_handle(), timeout=60_000)
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=60_000)
        before, value0 = _snapshot(page, cell), handle.get_attribute("aria-valuenow")
        handle.focus()
        handle.press("ArrowLeft")                                           # fewer bits ...
        if handle.get_attribute("aria-valuenow") == value0:                 # ... unless already at the minimum
            handle.press("ArrowRight")
        value1 = handle.get_attribute("aria-valuenow")
        assert value1 != value0, f"the bits slider did not move from {value0}"
        t1, after = time.monotonic(), before
        while time.monotonic() - t1 < 90:
            time.sleep(0.5)
            after = _snapshot(page, cell)
            busy = page.locator('.jp-Notebook-ExecutionIndicator[data-status="busy"]').count()
            if after != before and after.strip() and not busy:
                break
        slider.evaluate("e => e.scrollIntoView({block: 'start'})")         # the slider and its output in view
        page.screenshot(path=str(shots_dir / "notebook02.png"))
        assert after != before, f"output unchanged after moving bits {value0} → {value1}"
        print(f"bits {value0} → {value1}: output changed in {time.monotonic() - t1:.1f} s")
    except BaseException:
        page.screenshot(path=str(shots_dir / "notebook02_failure.png"))  # what the browser showed
        raise
    finally:
        context.close()
    assert hashlib.sha256(notebook_path.read_bytes()).hexdigest() == committed, \
        f"{notebook_path} was modified by the browser run (autosave?)"


def _open_index(browser, base: str, port: int):
    """A fresh offline browser context on the site's index.html: (context, page); close the context."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    _offline(context, port)
    page = context.new_page()
    resp = page.goto(f"{base}/index.html")
    assert resp is not None and resp.ok, f"index.html: HTTP {resp and resp.status}"
    return context, page


def test_every_site_page_loads_with_its_figures(browser, site_server, site_dir, shots_dir):
    base, port = site_server
    manifest = json.loads((site_dir / "site.json").read_text())
    expected = {p["href"]: p["images"] for p in manifest["pages"]}
    context, page = _open_index(browser, base, port)
    try:
        links = page.eval_on_selector_all("a[href]", "as => as.map(a => a.getAttribute('href').split('#')[0])")
        page.screenshot(path=str(shots_dir / "site_index.png"), full_page=True)
        assert set(links) == set(expected), "index.html must link every page of the site, and only those"
        assert any(h.startswith("claims_report") for h in links)
        for href in sorted(set(links)):
            resp = page.goto(f"{base}/{href}", wait_until="load", timeout=120_000)
            assert resp is not None and resp.ok, f"{href}: HTTP {resp and resp.status}"
            page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=60_000)
            imgs = page.evaluate("() => Array.from(document.images).map(i => i.naturalWidth)")
            broken = [i for i, w in enumerate(imgs) if w == 0]
            assert not broken, f"{href}: broken images at positions {broken}"
            assert len(imgs) >= expected[href], f"{href}: {len(imgs)} images, expected {expected[href]}"
            assert page.title(), f"{href}: page has no title"
            print(f"{href}: loaded, {len(imgs)} figure(s)")
    finally:
        context.close()


def _rgb(hex_colour: str) -> str:
    h = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(h[i:i + 2], 16) for i in (0, 2, 4)))


def test_landing_page_lists_the_claims_with_coloured_verdicts_and_a_figure(browser, site_server, site_dir, shots_dir):
    base, port = site_server
    manifest = json.loads((site_dir / "site.json").read_text())
    context, page = _open_index(browser, base, port)
    try:
        rows = page.eval_on_selector_all("tr.claim", """rs => rs.map(r => ({claim: r.dataset.claim,
            verdicts: Array.from(r.querySelectorAll('.verdict')).map(v => ({cls: v.classList[1],
                text: v.innerText.trim(), colour: getComputedStyle(v).color}))}))""")
        assert [r["claim"] for r in rows] == [f"C{i}" for i in range(1, 15)], "the 14 claims, in order"
        colours = manifest["colours"]
        for r in rows:
            assert [v["cls"] for v in r["verdicts"]] == manifest["claims"][r["claim"]], r
            for v in r["verdicts"]:
                assert v["text"].endswith(v["cls"]), v
                assert v["colour"] == _rgb(colours[v["cls"]]), f"{r['claim']}: {v} not in its colour"
        print(f"landing page: 14 claims, {sum(len(r['verdicts']) for r in rows)} verdicts, coloured")
        figs = manifest["figures"]
        assert figs, "the landing page should show at least one key figure (results/full figures)"
        page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=60_000)
        shown = page.eval_on_selector_all("img.key-figure",
                                          "is => is.map(i => [i.getAttribute('src'), i.naturalWidth])")
        assert sorted(src for src, _ in shown) == sorted(figs)
        assert all(w > 0 for _, w in shown), f"a key figure did not load: {shown}"
        r = page.request.get(f"{base}/{figs[0]}")                   # served as a real PNG file
        assert r.ok and r.body()[:8] == b"\x89PNG\r\n\x1a\n"
        page.locator("img.key-figure").first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots_dir / "site_landing_figure.png"))
        print(f"key figures: {len(shown)} loaded ({figs[0]}: {shown[0][1]} px wide)")
    finally:
        context.close()


def test_a_static_fallback_figure_shows_on_the_site(browser, fallback_site, fallback_server, shots_dir):
    folder, source = fallback_site
    base, port = fallback_server
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    _offline(context, port)
    page = context.new_page()
    try:
        resp = page.goto(f"{base}/{FALLBACK_NOTEBOOK}.html", wait_until="load", timeout=120_000)
        assert resp is not None and resp.ok, f"{FALLBACK_NOTEBOOK}.html: HTTP {resp and resp.status}"
        cells = page.locator(".jp-CodeCell").filter(has=page.locator(".jp-InputArea", has_text=FALLBACK_MARKER))
        assert cells.count() == 1, f"expected one code cell containing {FALLBACK_MARKER!r}, found {cells.count()}"
        cell = cells.first
        images = cell.locator(".jp-OutputArea-output img")
        assert images.count() >= 1, f"the cell {FALLBACK_MARKER!r} shows no image (page from {source})"
        page.wait_for_function("c => Array.from(c.querySelectorAll('.jp-OutputArea-output img')).every(i => i.complete)",
                               arg=cell.element_handle(), timeout=60_000)
        widths = images.evaluate_all("is => is.map(i => i.naturalWidth)")
        assert all(w > 0 for w in widths), f"a fallback figure did not load: naturalWidth {widths}"
        images.first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots_dir / "site_fallback05.png"))
        print(f"static fallback: {FALLBACK_NOTEBOOK}.html (from {source}, served from {folder}): "
              f"{len(widths)} image(s), {widths[0]} px wide")
    finally:
        context.close()
