"""JupyterLab serves the nine notebooks: start it on 127.0.0.1 with a token, list them, open one, stop it."""

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from skinlib import study

PROJECT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server rooted at the project; yields (base URL, token); stopped afterwards."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={PROJECT}",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],  # CI containers run as root
        stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{(tmp_path / 'jupyterlab.log').read_text()}")
            try:
                if requests.get(f"{base}/api/status", params={"token": token}, timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer in 90 s:\n{(tmp_path / 'jupyterlab.log').read_text()}")
            time.sleep(0.5)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_jupyterlab_lists_and_opens_the_notebooks(jupyterlab):
    base, token = jupyterlab
    headers = {"Authorization": f"token {token}"}
    assert requests.get(f"{base}/api/contents/notebooks", timeout=10).status_code == 403  # token required

    listing = requests.get(f"{base}/api/contents/notebooks", headers=headers, timeout=10)
    assert listing.status_code == 200
    names = sorted(item["name"] for item in listing.json()["content"] if item["type"] == "notebook")
    assert names == [f"{step.notebook}.ipynb" for step in study.STEPS]

    opened = requests.get(f"{base}/api/contents/notebooks/01_eda.ipynb", headers=headers, timeout=10)
    assert opened.status_code == 200
    notebook = opened.json()
    assert notebook["type"] == "notebook" and notebook["format"] == "json"
    cells = notebook["content"]["cells"]
    assert cells[0]["cell_type"] == "markdown" and "parameters" in cells[1]["metadata"]["tags"]
    assert notebook["content"]["metadata"]["kernelspec"]["name"] == "python3"

    lab = requests.get(f"{base}/lab", headers=headers, timeout=20)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
