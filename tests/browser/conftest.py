"""Fixtures for the real-browser tests: JupyterLab 4 driven by Debian's Chromium via Playwright.

Layout of what a test gets:

    lab_server      one isolated JupyterLab (127.0.0.1, random port, token, temp config,
                    runtime, settings, workspaces and root dirs) per module
    browser         one headless Chromium (/usr/bin/chromium) per session
    open_notebook   writes a notebook into the server's root dir, opens it in a fresh page
                    and waits until its kernel is really idle; returns a `LabNotebook`
    artifacts_dir   where screenshots go ($LLMROUTE_ARTIFACTS or test-artifacts/browser/)

Chromium absent: skip outside CI, fail in CI (env CI set), so a CI run can never pass
by silently skipping the browser tests. Playwright's own browser download cannot work on
these machines; `.ci/browser-setup` installs Debian's `chromium` instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

# The flags the Debian build needs to run headless as root in a container.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-dev-shm-usage",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

SERVER_START_TIMEOUT_S = 60.0
KERNEL_READY_TIMEOUT_MS = 60_000
# A first import of pandas + matplotlib (the panel's plot) on a cold, busy CI machine is slow.
CELL_TIMEOUT_MS = 60_000


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def _unavailable(reason: str) -> None:
    """Skip locally, fail in CI: CI must really run the browser tests."""
    if _in_ci():
        pytest.fail(f"{reason} (CI is set, so browser tests must run; run .ci/browser-setup)", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------- reports for teardown


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Keep each phase's report on the item so fixtures can screenshot failures at teardown.
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "_report_call", None)
    return report is None or report.failed


# ---------------------------------------------------------------- artifacts


@pytest.fixture(scope="session")
def artifacts_root() -> Path:
    root = Path(os.environ.get("LLMROUTE_ARTIFACTS") or REPO_ROOT / "test-artifacts" / "browser")
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def artifacts_dir(artifacts_root: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh directory per test, named after it, emptied of the previous run's pictures."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    path = artifacts_root / safe
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# ---------------------------------------------------------------- JupyterLab server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kernel_env(base: dict[str, str]) -> dict[str, str]:
    """The server's (and so the kernel's) environment: no real keys, simulator forced."""
    env = {
        k: v
        for k, v in base.items()
        if "API_KEY" not in k.upper()
        and not k.upper().startswith("LLMROUTE_")
        and k.upper() not in {"OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"}
    }
    env["LLMROUTE_SIMULATE"] = "1"
    # The kernel must import the very package under test, even from an uninstalled checkout.
    # find_spec locates it without importing it (an import error belongs in the kernel's output).
    spec = importlib.util.find_spec("llmroute_magic")
    package_parent = str(Path(spec.origin).resolve().parents[1]) if spec and spec.origin else str(REPO_ROOT)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


def _write_kernelspec(jupyter_path: Path) -> None:
    # An explicit "python3" spec first on JUPYTER_PATH pins the kernel to the test's interpreter,
    # whatever user-level or system kernelspecs the machine has.
    spec_dir = jupyter_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": True},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))


def _write_lab_settings(settings_dir: Path) -> None:
    # The "get notified about official Jupyter news?" toast covers the bottom right of the page;
    # --LabApp.news_url=None does not stop it, these user settings do.
    target = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


@dataclass
class LabServer:
    base_url: str
    token: str
    root_dir: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"

    def notebook_url(self, name: str) -> str:
        # A workspace of its own per page: the default one would restore every notebook opened
        # before in this server as extra (hidden) tabs, whose cells the locators would also match.
        return self.url(f"lab/workspaces/{uuid.uuid4().hex[:12]}/tree/{name}")

    def _api(self, method: str, path: str) -> bytes:
        request = urllib.request.Request(
            f"{self.base_url}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def shutdown_kernel(self, notebook_name: str) -> None:
        """End the notebook's session (and kernel) so later tests do not share the CPU with it."""
        for session in json.loads(self._api("GET", "sessions")):
            if session.get("path") == notebook_name:
                self._api("DELETE", f"sessions/{session['id']}")

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        path = self.root_dir / name
        nbformat.write(nb, path)
        return path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def _wait_until_up(server: LabServer, deadline: float) -> None:
    status_url = server.url("api/status")
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(status_url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"jupyter lab not up after {SERVER_START_TIMEOUT_S} s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    # The server runs in its own session: signal the whole group so kernels go down with it.
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def _start_lab(base: Path) -> LabServer:
    root_dir = base / "root"
    dirs = {name: base / name for name in ("config", "runtime", "settings", "workspaces", "data", "path", "ipython")}
    for d in (root_dir, *dirs.values()):
        d.mkdir(parents=True, exist_ok=True)
    _write_kernelspec(dirs["path"])
    _write_lab_settings(dirs["settings"])

    env = _kernel_env(dict(os.environ))
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_PATH=str(dirs["path"]),
        JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
        JUPYTER_PLATFORM_DIRS="1",
        # No user startup files or profile settings in the kernel.
        IPYTHONDIR=str(dirs["ipython"]),
    )
    env.pop("JUPYTER_TOKEN", None)

    token = uuid.uuid4().hex
    port = _free_port()
    log_path = base / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--LabApp.news_url=None",
        "--ServerApp.terminals_enabled=False",
        "--allow-root",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=root_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    server = LabServer(f"http://127.0.0.1:{port}", token, root_dir, log_path, process)
    try:
        _wait_until_up(server, time.monotonic() + SERVER_START_TIMEOUT_S)
    except BaseException:
        _stop(process)
        raise
    return server


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory: pytest.TempPathFactory, chromium_executable: Path):
    base = tmp_path_factory.mktemp("lab")
    # A port picked free can be taken before the server binds it; one retry covers that race.
    for attempt in range(2):
        try:
            server = _start_lab(base / f"try{attempt}")
            break
        except RuntimeError:
            if attempt == 1:
                raise
    try:
        yield server
    finally:
        _stop(server.process)


# ---------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"{CHROMIUM} not found (install Debian's chromium: .ci/browser-setup)")
    for module in ("playwright", "jupyterlab"):
        try:
            __import__(module)
        except ImportError:
            _unavailable(f"{module} (Python) not installed: pip install '.[browser]'")
    return CHROMIUM


# Module scope, not session: Playwright's sync API keeps an asyncio loop marked as running in the
# main thread while it is alive, which breaks every later test that starts its own event loop.
@pytest.fixture(scope="module")
def browser(chromium_executable: Path):
    from playwright.sync_api import expect, sync_playwright

    # expect()'s 5 s default is tight for a 2-core machine busy with a kernel and the rest of a suite.
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(chromium_executable), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class LabNotebook:
    """One notebook open in JupyterLab, with the moves a user makes on it."""

    def __init__(self, page, server: LabServer, artifacts_dir: Path):
        self.page = page
        self.server = server
        self.artifacts_dir = artifacts_dir
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self._shots = 0
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    # -- locators

    @property
    def cells(self):
        return self.page.locator(".jp-Notebook .jp-CodeCell")

    def cell(self, index: int):
        return self.cells.nth(index)

    def output(self, index: int):
        return self.cell(index).locator(".jp-OutputArea-output")

    # -- actions

    def wait_kernel_idle(self, timeout_ms: int = KERNEL_READY_TIMEOUT_MS) -> None:
        # The toolbar indicator flashes "idle" while the kernel is still initialising; the
        # status bar text is the reliable signal, so wait for both.
        from playwright.sync_api import expect

        indicator = ".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator[data-status='idle']"
        expect(self.page.locator(indicator)).to_have_count(1, timeout=timeout_ms)
        status_bar = self.page.locator("#jp-main-statusbar")
        expect(status_bar).to_contain_text("Python 3 (ipykernel) | Idle", timeout=timeout_ms)

    def prompt(self, index: int):
        return self.cell(index).locator(".jp-InputPrompt")

    def run_cell(self, index: int, *, wait: bool = True, timeout_ms: int = CELL_TIMEOUT_MS) -> None:
        """Run one cell with Ctrl+Enter (Shift+Enter on the last cell would add a new one);
        with `wait`, until its prompt shows a new execution count."""
        from playwright.sync_api import expect

        prompt = self.prompt(index)
        before = prompt.inner_text().strip()
        self.cell(index).locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Control+Enter")
        expect(prompt).not_to_have_text(before, timeout=timeout_ms)
        if wait:
            self.wait_cell_done(index, timeout_ms=timeout_ms)

    def wait_cell_done(self, index: int, *, timeout_ms: int = CELL_TIMEOUT_MS) -> None:
        from playwright.sync_api import expect

        expect(self.prompt(index)).to_have_text(re.compile(r"\[\d+\]:"), timeout=timeout_ms)

    def screenshot(self, name: str, show=None) -> Path:
        """Save the page as NN-name.png, after scrolling the locator `show` into view."""
        if show is not None:
            show.scroll_into_view_if_needed()
        self._shots += 1
        path = self.artifacts_dir / f"{self._shots:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def widget_errors(self) -> list[str]:
        text = self.page.locator(".jp-Notebook").inner_text()
        return [marker for marker in ("Error displaying widget", "Loading widget") if marker in text]


@pytest.fixture
def open_notebook(browser, lab_server: LabServer, artifacts_dir: Path, request: pytest.FixtureRequest):
    """Factory: open_notebook(name, cells) -> LabNotebook with its kernel idle."""
    contexts = []
    names: list[str] = []
    notebooks: list[LabNotebook] = []

    def _open(name: str, cells: list[str]) -> LabNotebook:
        lab_server.write_notebook(name, cells)
        names.append(name)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        notebook = LabNotebook(page, lab_server, artifacts_dir)
        notebooks.append(notebook)
        page.goto(lab_server.notebook_url(name))
        notebook.wait_kernel_idle()
        return notebook

    try:
        yield _open
    finally:
        if _failed(request):
            for nb in notebooks:
                try:
                    nb.screenshot("failure")
                except Exception:  # the page may be gone; the report matters more
                    pass
            shutil.copy(lab_server.log_path, artifacts_dir / "jupyterlab.log")
            (artifacts_dir / "browser-console.txt").write_text(
                "\n".join(
                    [
                        *(f"console error: {e}" for nb in notebooks for e in nb.console_errors),
                        *(f"page error: {e}" for nb in notebooks for e in nb.page_errors),
                    ]
                )
            )
        for context in contexts:
            context.close()
        for name in names:
            try:
                lab_server.shutdown_kernel(name)
            except (OSError, ValueError):  # best effort: the server going down ends it anyway
                pass
