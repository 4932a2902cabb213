"""The Makefile: the install stamp's name, and `make run` never downloading unless asked (DOWNLOAD=yes)."""

import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`make -n` (print, do not run) with a virtual environment folder that does not exist."""
    return subprocess.run(["make", "-n", "-C", str(PROJECT), f"VENV={tmp_path / 'venv'}", *args],
                          capture_output=True, text=True, timeout=60)


def run_all_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr
    return next(line for line in done.stdout.splitlines() if "run_all.py" in line)


def test_stamp_name_has_no_comma(tmp_path):
    done = dry_run(tmp_path, "install")
    assert f"touch {tmp_path / 'venv'}/.installed-cpu-dev" in done.stdout
    assert ".installed-cpu,dev" not in done.stdout


@pytest.mark.parametrize("setting, flags", [
    ([], []),
    (["DOWNLOAD=yes"], ["--download-yes"]),
    (["DOWNLOAD=no"], ["--no-download"]),
])
def test_make_run_downloads_only_when_asked(tmp_path, setting, flags):
    words = run_all_line(dry_run(tmp_path, "run", *setting)).split()
    assert [w for w in words if w.startswith("--") and "download" in w] == flags


def test_unknown_download_value_is_refused(tmp_path):
    done = dry_run(tmp_path, "run", "DOWNLOAD=1")
    assert done.returncode != 0 and "DOWNLOAD must be yes, no or left out" in done.stderr
    assert "run_all.py" not in done.stdout
