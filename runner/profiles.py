"""The run profiles as data, and which notebooks a run selects.

``full`` runs every notebook with the defaults of its own ``parameters`` cell (the study's settings, which the
notebooks resolve from ``skinlib.study``); ``smoke`` applies :data:`SMOKE` on top: every notebook end to end in
minutes on a small CPU (a stratified subset, small images, one epoch per stage, random weights, eager). No
parameter default is copied here: ``parameters.notebook_parameters`` reads them with ``papermill.inspect_notebook``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from skinlib import study

PROJECT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = PROJECT / "notebooks"
KERNEL = "python3"
PROFILES = ("smoke", "full")

SMOKE: tuple[tuple[str, str, Any], ...] = (
    # parameter     notebooks     smoke value (minutes on 2 CPU cores; the full profile passes nothing)
    ("subset",      "01",         300),
    ("subset",      "02-08",      100),        # the smallest subset the notebooks accept
    ("image_size",  "01",         [48, 64]),
    ("image_size",  "02",         [32, 32]),
    ("image_size",  "03,06,08",   [32, 32]),
    ("image_size",  "04,05,07",   [75, 75]),   # keras.applications' smallest for the Inception networks
    ("epochs",      "02-08",      1),
    ("batch_size",  "02-08",      256),        # one step per smoke epoch
    ("weights",     "03-08",      None),       # no ImageNet download
    # 04 runs the study's recipe, so that its BatchNorm path (statistics zeroed, then trained) runs end to end. The
    # others take the corrected one (BN frozen): one step cannot rebuild zeroed statistics, so the deep BN
    # backbones then predict noise; 04's record says what that costs, and it still completes.
    ("recipe",      "05-08",      "corrected"),
    ("eager",       "02-09",      True),
)
"""(parameter, notebooks, value) of the smoke profile. Notebooks: numbers, ranges ("02-08") and lists ("03,06")."""


class RunError(Exception):
    """A bad run_all request (unknown notebook or parameter, bad value); the message says what to do."""


def numbers(spec: str) -> list[str]:
    """ "02-08" -> ["02", ..., "08"]; "03,06,08" -> ["03", "06", "08"]."""
    found = []
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        found += [f"{n:02d}" for n in range(int(first), int(last or first) + 1)]
    return found


def profile(name: str) -> dict[str, dict[str, Any]]:
    """``{notebook: {parameter: value}}``: what a profile passes to each notebook on top of its defaults."""
    if name not in PROFILES:
        raise RunError(f"unknown profile {name!r}; accepted: {', '.join(PROFILES)}")
    values: dict[str, dict[str, Any]] = {step.notebook: {} for step in study.STEPS}
    if name == "smoke":
        for parameter, notebooks, value in SMOKE:
            for number in numbers(notebooks):
                values[study.get(number).notebook][parameter] = value
    return values


def profile_frame(notebooks_dir: Path = NOTEBOOKS_DIR) -> pd.DataFrame:
    """Every notebook parameter: its default (the full profile), its smoke value, and its help (the comment)."""
    import papermill

    from runner.parameters import parse_value

    smoke = profile("smoke")
    rows = []
    for step in study.STEPS:
        for name, info in papermill.inspect_notebook(str(notebooks_dir / f"{step.notebook}.ipynb")).items():
            rows.append((step.number, name, info["default"],
                         repr(smoke[step.notebook].get(name, parse_value(info["default"]))), info.get("help", "")))
    frame = pd.DataFrame(rows, columns=["notebook", "parameter", "full (default)", "smoke", "help"])
    return frame.groupby(["parameter", "full (default)", "smoke", "help"], sort=False)["notebook"].agg(",".join) \
        .reset_index()[["parameter", "notebook", "full (default)", "smoke", "help"]]


def select(only: str | Iterable[str] | None) -> list[study.Step]:
    """The steps to run: all, or those named by ``--only`` ("03,04", "3", "03_finetune_vgg16")."""
    if not only:
        return list(study.STEPS)
    names = only.split(",") if isinstance(only, str) else list(only)
    try:
        wanted = {study.get(name.strip()).number for name in names if name.strip()}
    except KeyError as error:
        raise RunError(f"--only: {error.args[0]}") from None
    return [step for step in study.STEPS if step.number in wanted]
