"""What run_all.py checks before any kernel starts: every planned value, the output folder, notebook 09's members,
one run per output folder, and a warning before a full-size run without a GPU. Each problem is a ``RunError`` whose
message names the notebook, parameter or folder and says what to do (run_all.py exits 2)."""

from __future__ import annotations

import atexit
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from runner.parameters import notebook_parameters
from runner.profiles import NOTEBOOKS_DIR, RunError
from skinlib import outputs, settings, study

LOCK = ".run_all.lock"


def check_parameters(steps: Sequence[study.Step], planned: Mapping[str, Mapping[str, Any]],
                     notebooks_dir: Path = NOTEBOOKS_DIR) -> None:
    """Resolves each notebook's parameters (its own defaults, then the planned values) as the notebook will
    (``settings.resolve``)."""
    for step in steps:
        if step.model is None and not step.members:
            continue  # the EDA has no training settings
        try:
            settings.resolve(step, _values(step, planned, notebooks_dir))
        except settings.SettingsError as error:
            raise RunError(f"-p: {error}") from None


def _values(step: study.Step, planned: Mapping[str, Mapping[str, Any]], notebooks_dir: Path) -> dict[str, Any]:
    return {**notebook_parameters(notebooks_dir / f"{step.notebook}.ipynb"), **planned[step.notebook]}


def check_out_dir(out_dir: Path) -> Path:
    """Creates ``out_dir`` and checks that it can be written to."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except (NotADirectoryError, FileExistsError):
        raise RunError(f"--out {out_dir}: a part of this path is a file, not a folder; choose another --out") from None
    except PermissionError:
        raise RunError(f"--out {out_dir}: this folder cannot be written to (permission denied); choose another --out "
                       "or change its permissions") from None
    except OSError as error:
        raise RunError(f"--out {out_dir}: cannot write there: {error.strerror or error}") from None
    return out_dir


def lock(out_dir: Path) -> Path:
    """Claims ``out_dir`` for this process (``<out>/.run_all.lock`` with its PID), released at exit. A second
    run_all.py on the same folder is refused, naming the first one's PID; a lock left by a dead process is taken
    over."""
    path = out_dir / LOCK
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
            if holder.isdigit() and _alive(int(holder)):
                raise RunError(f"--out {out_dir} is in use by another run_all.py (PID {holder}); wait for it, or "
                               "choose another --out (two runs in one folder would mix their records)") from None
            path.unlink(missing_ok=True)  # left by a process that is gone
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        atexit.register(lambda: path.unlink(missing_ok=True))
        return path
    raise RunError(f"--out {out_dir}: could not claim {path}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_members(steps: Sequence[study.Step], planned: Mapping[str, Mapping[str, Any]], out_dir: Path) -> None:
    """Notebook 09 needs its members' models: run in this run before it, or already in ``out_dir``."""
    selected = {step.number for step in steps}
    for step in steps:
        if not step.members:
            continue
        members = settings.resolve(step, _values(step, planned, NOTEBOOKS_DIR)).members
        missing = [n for n in members if n not in selected and not outputs.RunFolder(out_dir, n).record.is_file()]
        if missing:
            names = " and ".join(study.get(n).notebook for n in missing)
            command = f"python run_all.py --only {','.join([*missing, step.number])} --out {out_dir}"
            raise RunError(f"{step.notebook} averages the models of {names}, which have no results in {out_dir}: "
                           f"run them first, or together: `{command}` (with the same --data, --protocol and -p)")


def cpu_warning(steps: Sequence[study.Step], profile_name: str) -> str | None:
    """A warning before a full-size run on a machine without an NVIDIA GPU: how much training it asks for, and
    the quicker alternatives. None when there is a GPU or nothing heavy to run."""
    if profile_name != "full" or shutil.which("nvidia-smi") or Path("/dev/nvidia0").exists():
        return None
    heavy = [(step, sum(stage.epochs for stage in step.stages)) for step in steps if step.model]
    if not heavy:
        return None
    listing = ", ".join(f"{step.number} ({epochs} epochs at {step.image_size[0]}x{step.image_size[1]})"
                        for step, epochs in heavy)
    return (f"No NVIDIA GPU found: the full profile trains at the study's size on the CPU: {listing}, each epoch "
            "over about 8,000 images. On 2 CPU cores notebook 02 (the small baseline) takes minutes per 10 epochs; "
            "the ImageNet backbones need roughly 300 to 1,000 times its multiply-adds per image. For a quick check "
            "use `make run PROFILE=smoke` (about 7 minutes) or `--only 02`.")


__all__ = ["check_members", "check_out_dir", "check_parameters", "cpu_warning", "lock"]
