"""Drive a real JupyterLab in headless Debian Chromium (Playwright), as ../shared/RUNTIME.md describes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("HW_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    for mod in ("playwright", "jupyterlab"):
        try:
            __import__(mod)
        except ImportError:
            return f"python package {mod} is not installed"
    return None


class JupyterServer:
    """A Jupyter server application (``python -m <app>``) on a free port serving ``root``, with the application
    exposed to the page as ``window.jupyterapp``; its log in ``root/<log>``."""

    name = "Jupyter"

    def __init__(self, root: Path, app: list[str], log: str):
        self.root = root
        self.port = free_port()
        self.token = "hwtest"
        self.log_path = root / log
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *app, "--no-browser", "--allow-root", f"--port={self.port}",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/status?token={self.token}", timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} did not start; see {self.log_path}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Lab(JupyterServer):
    """A JupyterLab server on a free port serving ``root``."""

    name = "JupyterLab"

    def __init__(self, root: Path):
        super().__init__(root, ["jupyter", "lab", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
                                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"], "jupyterlab.log")

    def url(self, notebook: str, workspace: str) -> str:
        return f"http://127.0.0.1:{self.port}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={self.token}"


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook of these code cells, with the tests' kernelspec, written at ``path``."""
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": KERNELSPEC},
          "cells": [{"cell_type": "code", "id": f"cell{i}", "metadata": {}, "source": src, "outputs": [],
                     "execution_count": None} for i, src in enumerate(cells)]}
    path.write_text(json.dumps(nb))
    return path


def put_notebook(src: Path, dest_dir: Path, *, replace: dict[str, str] | None = None,
                 extra_cells: list[str] = ()) -> Path:
    """Copy a notebook, give it a kernelspec, apply plain-text replacements, and append code cells."""
    nb = json.loads(src.read_text())
    for source in extra_cells:
        nb["cells"].append({"cell_type": "code", "metadata": {}, "source": source, "outputs": [],
                            "execution_count": None})
    nb.setdefault("metadata", {})["kernelspec"] = KERNELSPEC
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for old, new in (replace or {}).items():
            source = source.replace(old, new)
        cell["source"] = source
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    dest = dest_dir / src.name
    dest.write_text(json.dumps(nb))
    return dest


class NotebookPage:
    """A notebook open in JupyterLab, with helpers that never wait on a running cell unless asked."""

    def __init__(self, page, lab: Lab, notebook: str, workspace: str, *, navigate: bool = True):
        self.page = page
        if navigate:
            page.goto(lab.url(notebook, workspace))
        page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=90_000)
        page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            " return k && k.status === 'idle'; }", timeout=90_000)
        for _ in range(3):
            if page.query_selector(".jp-Dialog"):
                page.click(".jp-Dialog .jp-mod-accept")
                time.sleep(0.5)

    # the cell and its prompt text; a cell JupyterLab has not rendered (windowed notebooks, just after a reload)
    # has no prompt node yet
    CELL = ("const c = window.jupyterapp.shell.currentWidget.content.widgets[i];"
            " const t = (c.promptNode && c.promptNode.textContent) || '';")

    def run_cell(self, index: int) -> None:
        """Start cell ``index`` and return once it started (or already ended: a fast cell may never be seen
        busy); notebook:run-cell itself resolves only when the cell ends."""
        before = self.page.evaluate(
            f"(i) => {{ window.jupyterapp.shell.currentWidget.content.activeCellIndex = i; {self.CELL}"
            " window.jupyterapp.commands.execute('notebook:run-cell'); return [t, c.model.executionCount]; }",
            index)
        self.page.wait_for_function(
            f"([i, before]) => {{ {self.CELL} const n = c.model.executionCount;"
            " return t.includes('*') || (t !== before[0] && /\\[\\d+\\]/.test(t))"
            " || (n !== null && n !== before[1]); }", arg=[index, before], timeout=30_000)

    def busy(self, index: int) -> bool:
        return self.page.evaluate(f"(i) => {{ {self.CELL} return t.includes('*'); }}", index)

    def wait_done(self, index: int, timeout: float = 300) -> None:
        self.page.wait_for_function(f"(i) => {{ {self.CELL} return /\\[\\d+\\]/.test(t); }}", arg=index,
                                    timeout=timeout * 1000)

    def run_and_wait(self, index: int, timeout: float = 300) -> None:
        self.run_cell(index)
        self.wait_done(index, timeout)

    def output_text(self, index: int) -> str:
        return self.page.evaluate(
            "(i) => { const c = window.jupyterapp.shell.currentWidget.content.widgets[i];"
            " return c.outputArea ? c.outputArea.node.innerText : ''; }", index)



def open_offline(browser, path: Path, errors: list[str], viewport: dict | None = None):
    """Open a saved page with every request but file: and blob: aborted; returns (page, requests seen)."""
    page = browser.new_page(viewport=viewport or {"width": 1300, "height": 1100})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "blob:"))
               else route.abort())
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_selector('#hw-root[data-rendered="true"]', timeout=15_000)
    return page, requests


def network_requests(requests: list[str]) -> list[str]:
    return [u for u in requests if not u.startswith(("file:", "blob:"))]


def start_view(browser, lab: Lab, notebook: Path, workspace: str, setup_cells: list[int], selector: str,
               errors: list[str]):
    """Open ``notebook`` in JupyterLab, run ``setup_cells`` in order, wait for the view ``selector``.
    Page errors go to ``errors``. Returns (NotebookPage, the view's element handle)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.on("pageerror", lambda e: errors.append(str(e)))
    nb = NotebookPage(page, lab, notebook.name, workspace)
    for index in setup_cells:
        nb.run_and_wait(index, 180)
    return nb, page.wait_for_selector(selector, timeout=30_000)
